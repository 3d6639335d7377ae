-- The event store: every step of every execution, append-only, the system of record.
--
-- Global order ($all) is (tx_id, seq): the appending transaction's id, then the
-- sequence number. Readers only return rows whose tx_id is below the xmin of their
-- snapshot (every transaction below it has finished), so a transaction that commits
-- late can never make an event appear before one a reader has already passed.
-- See src/events/store/postgres.rs.
--
-- `data` and `metadata` are `json` (not `jsonb`): validated, but stored as the exact
-- text the appender serialized (and `\u0000` in strings is accepted, as in SQLite).
CREATE TABLE events (
    seq          BIGSERIAL   PRIMARY KEY,
    tx_id        BIGINT      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    stream_id    TEXT        NOT NULL,
    revision     BIGINT      NOT NULL CHECK (revision >= 0),
    event_id     UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    data         JSON        NOT NULL,
    metadata     JSON        NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_revision_key UNIQUE (stream_id, revision),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

CREATE INDEX events_global_order ON events (tx_id, seq);
