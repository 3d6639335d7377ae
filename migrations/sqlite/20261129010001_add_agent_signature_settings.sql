-- Per-agent replay window for timestamped signature schemes (standard, stripe), and
-- the previous webhook secret kept during a rotation overlap. The previous secret is
-- sealed like the current one (associated data agent:{id}:previous_webhook_secret)
-- and only verifies until previous_secret_expires_at (RFC 3339, UTC).
ALTER TABLE agents ADD COLUMN timestamp_tolerance_s INTEGER NOT NULL DEFAULT 300;
ALTER TABLE agents ADD COLUMN previous_secret_sealed TEXT;
ALTER TABLE agents ADD COLUMN previous_secret_expires_at TEXT;
