-- Projections have a version: a checkpoint written by another version of the fold
-- makes the next start rebuild that read model (src/projections/rebuild.rs).
-- Checkpoints stored before versions existed were written by version 1.
ALTER TABLE projection_checkpoints ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- The agent configuration version each execution ran with (NULL: not recorded).
ALTER TABLE agent_test_executions ADD COLUMN config_version BIGINT;

-- Keyset pagination of an agent's executions, newest first.
CREATE INDEX agent_test_executions_by_agent_page
    ON agent_test_executions (agent_id, queued_at, execution_id);

-- One row per agent: lifecycle (agent-{id}) and execution counts (execution-{id}).
CREATE TABLE agent_summaries (
    agent_id               TEXT PRIMARY KEY,
    tenant_id              TEXT NOT NULL,
    name                   TEXT NOT NULL,
    model                  TEXT,
    status                 TEXT NOT NULL,
    config_version         BIGINT NOT NULL,
    registered_at          TEXT NOT NULL,
    updated_at             TEXT NOT NULL,
    executions_total       BIGINT NOT NULL,
    executions_succeeded   BIGINT NOT NULL,
    executions_failed      BIGINT NOT NULL,
    total_tokens           BIGINT NOT NULL,
    last_execution_id      TEXT,
    last_execution_at      TEXT,
    last_execution_status  TEXT
);

CREATE INDEX agent_summaries_by_tenant ON agent_summaries (tenant_id, registered_at, agent_id);

-- Per agent and UTC day; stat_key is '{agent_id}/{day}'. duration_histogram is a JSON
-- map of 5%-wide duration buckets to counts (src/projections/daily.rs).
CREATE TABLE agent_daily_stats (
    stat_key            TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL,
    tenant_id           TEXT NOT NULL,
    day                 TEXT NOT NULL,
    queued              BIGINT NOT NULL,
    succeeded           BIGINT NOT NULL,
    failed              BIGINT NOT NULL,
    prompt_tokens       BIGINT NOT NULL,
    completion_tokens   BIGINT NOT NULL,
    total_tokens        BIGINT NOT NULL,
    duration_count      BIGINT NOT NULL,
    duration_histogram  TEXT NOT NULL,
    p50_duration_ms     BIGINT,
    p95_duration_ms     BIGINT
);

CREATE INDEX agent_daily_stats_by_agent ON agent_daily_stats (agent_id, day);
