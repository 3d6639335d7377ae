-- PostgreSQL leaves room on the pages of the per-agent read models for their updates
-- (fillfactor); SQLite rewrites a changed row in place and has no such setting.
SELECT 1;
