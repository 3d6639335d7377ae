-- Tenants, their API keys and their agents: current configuration, not history.
-- Secrets are sealed (XChaCha20-Poly1305); API keys are stored only as SHA-256 hashes.
CREATE TABLE tenants (
    tenant_id   TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);

CREATE TABLE tenant_api_keys (
    key_id      TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants (tenant_id),
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE agents (
    agent_id              TEXT PRIMARY KEY,
    tenant_id             TEXT NOT NULL REFERENCES tenants (tenant_id),
    name                  TEXT NOT NULL,
    system_prompt         TEXT NOT NULL,
    llm_config            TEXT NOT NULL,
    payload_schema        TEXT,
    status                TEXT NOT NULL,
    signature_scheme      TEXT NOT NULL DEFAULT 'github',
    webhook_secret_sealed TEXT NOT NULL,
    llm_key_sealed        TEXT,
    config_version        BIGINT NOT NULL,
    created_at            TEXT NOT NULL,
    updated_at            TEXT NOT NULL
);

CREATE INDEX agents_by_tenant ON agents (tenant_id, created_at);
