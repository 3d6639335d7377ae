-- The event store: every step of every execution, append-only, the system of record.
-- `seq` is the global order ($all): writes are serialized (one writer connection,
-- BEGIN IMMEDIATE), so sequence order is commit order and readers never see a gap.
-- `data` and `metadata` are the JSON text exactly as serialized by the appender.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id    TEXT    NOT NULL,
    revision     INTEGER NOT NULL CHECK (revision >= 0),
    event_id     TEXT    NOT NULL,
    event_type   TEXT    NOT NULL,
    data         TEXT    NOT NULL,
    metadata     TEXT    NOT NULL,
    recorded_at  TEXT    NOT NULL,
    CONSTRAINT events_stream_revision_key UNIQUE (stream_id, revision),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
