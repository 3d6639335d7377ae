-- Read models: written only by projections, rebuilt from the event store at will.
CREATE TABLE agent_test_executions (
    execution_id       TEXT PRIMARY KEY,
    agent_id           TEXT NOT NULL,
    tenant_id          TEXT NOT NULL,
    delivery_id        TEXT NOT NULL,
    status             TEXT NOT NULL,
    output             TEXT,
    error              TEXT,
    error_kind         TEXT,
    model              TEXT,
    key_source         TEXT,
    prompt_tokens      BIGINT,
    completion_tokens  BIGINT,
    total_tokens       BIGINT,
    attempts           BIGINT NOT NULL DEFAULT 0,
    queued_at          TEXT NOT NULL,
    started_at         TEXT,
    completed_at       TEXT,
    duration_ms        BIGINT,
    llm_latency_ms     BIGINT,
    -- revision of the last event of the execution's stream folded into this row
    last_revision      BIGINT NOT NULL
);

CREATE INDEX agent_test_executions_by_agent ON agent_test_executions (agent_id, queued_at);

-- Where each projection has read up to in the global order (written in the same
-- transaction as its rows).
CREATE TABLE projection_checkpoints (
    name         TEXT PRIMARY KEY,
    commit_pos   BIGINT NOT NULL,
    prepare_pos  BIGINT NOT NULL,
    updated_at   TEXT NOT NULL
);
