-- The per-agent read models are updated in place on every projection pass that has
-- events of their agent. A full page has no room for the new row version, so the
-- update writes a new entry into every index of the table too; with room on the page
-- it stays there (a heap-only update) and no index is touched. Half of each page is
-- left for that. Pages written before this keep their layout until rewritten.
ALTER TABLE agent_summaries SET (fillfactor = 50);
ALTER TABLE agent_daily_stats SET (fillfactor = 50);
