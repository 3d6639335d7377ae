-- Per-tenant data keys (crypto-shredding): execution payloads and outputs are sealed
-- under their tenant's key (src/events/sealing.rs); the key itself is sealed under the
-- master key. Erasing a tenant deletes its row, which leaves its events in place but
-- unreadable. key_id is the id named in every value sealed with the key.
CREATE TABLE tenant_data_keys (
    tenant_id   TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL UNIQUE,
    key_sealed  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
