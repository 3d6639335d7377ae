-- Tamper evidence: each event stores a SHA-256 chained to the previous event of its
-- stream (see src/events/chain.rs), computed inside the append transaction.
-- Events stored before this migration keep a NULL hash and count as the start of
-- their stream's chain; `event_chain_start` remembers where that history ends, so a
-- later event whose hash was removed is reported as a broken link, not as history.
ALTER TABLE events ADD COLUMN hash TEXT;

CREATE TABLE event_chain_start (
    legacy_max_seq INTEGER NOT NULL
);
INSERT INTO event_chain_start (legacy_max_seq) SELECT COALESCE(MAX(seq), 0) FROM events;
