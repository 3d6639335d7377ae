-- Nodes announce themselves with a heartbeat; an execution owned by a node whose
-- heartbeat stopped (or whose lease ran out) is resumed by another node.
CREATE TABLE nodes (
    node_id       TEXT PRIMARY KEY,
    started_at    TEXT NOT NULL,
    heartbeat_at  TEXT NOT NULL
);

-- The node that owns an unfinished execution (accepted or claimed it), and until when.
ALTER TABLE agent_test_executions ADD COLUMN node TEXT;
ALTER TABLE agent_test_executions ADD COLUMN lease_expires_at TEXT;
CREATE INDEX agent_test_executions_unfinished ON agent_test_executions (status, queued_at);
