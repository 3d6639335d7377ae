-- The delivery audit log: one row per webhook request (accepted, duplicate or
-- rejected), written off the request path by crate::audit. Bounded: at most N
-- duplicate and N rejected rows per agent and M rows for unknown agents are kept
-- (oldest pruned), and rejections beyond a rate are folded into one row whose
-- `count` says how many requests it stands for. See docs/security.md.
CREATE TABLE webhook_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    -- NULL when the path named no existing agent (then requested_agent says what it named).
    agent_id         TEXT,
    tenant_id        TEXT,
    requested_agent  TEXT NOT NULL,
    delivery_id      TEXT,
    execution_id     TEXT,
    outcome          TEXT NOT NULL CHECK (outcome IN ('accepted', 'duplicate', 'rejected')),
    -- The error code of a rejection (NULL when accepted or duplicate).
    reason           TEXT,
    status           INTEGER NOT NULL,
    source_addr      TEXT,
    received_at      TEXT NOT NULL,
    duration_ms      DOUBLE PRECISION NOT NULL,
    count            BIGINT NOT NULL DEFAULT 1
);

-- Listing one agent's deliveries newest first, and pruning per agent and outcome.
CREATE INDEX webhook_deliveries_by_agent ON webhook_deliveries (agent_id, id);
CREATE INDEX webhook_deliveries_by_agent_outcome ON webhook_deliveries (agent_id, outcome, id);
