//! Tamper evidence: every event's hash chains it to the previous event of its stream.
//!
//! `hash(n) = SHA-256("hookrun-event-chain-v1" ‖ hash(n-1) ‖ canonical bytes of event n)`,
//! where the first event of a stream (and the first event after history stored before
//! hashes existed) chains to 32 zero bytes. The canonical bytes are the stream name,
//! the revision, the event id, the type, and the data and metadata JSON exactly as
//! stored, each length-prefixed so that no two different events share an encoding.
//!
//! The backends compute the hash inside the append transaction (`store::sqlite`,
//! `store::postgres`); [`ChainChecker`] replays a stream's stored rows and names the
//! first link that does not hold: an edited, deleted or reordered event breaks the
//! chain at that revision. What a chain cannot show by itself is a stream cut short at
//! its end; [`ChainChecker::heads_digest`] gives auditors one value over all stream
//! heads to record and compare later.

use sha2::{Digest, Sha256};
use uuid::Uuid;

pub type Hash = [u8; 32];

const DOMAIN: &[u8] = b"hookrun-event-chain-v1";

/// The stored fields of one event that its hash covers.
#[derive(Debug, Clone, Copy)]
pub struct ChainedEvent<'a> {
    pub stream_id: &'a str,
    pub revision: u64,
    pub event_id: &'a Uuid,
    pub event_type: &'a str,
    /// The data JSON exactly as stored.
    pub data: &'a str,
    /// The metadata JSON exactly as stored.
    pub metadata: &'a str,
}

/// The hash of `event` chained to `previous` (`None` at the start of a chain).
pub fn event_hash(previous: Option<&Hash>, event: &ChainedEvent<'_>) -> Hash {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update(previous.unwrap_or(&[0u8; 32]));
    let field = |h: &mut Sha256, bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(&mut h, event.stream_id.as_bytes());
    h.update(event.revision.to_be_bytes());
    h.update(event.event_id.as_bytes());
    field(&mut h, event.event_type.as_bytes());
    field(&mut h, event.data.as_bytes());
    field(&mut h, event.metadata.as_bytes());
    h.finalize().into()
}

/// The stored (hex) form of a hash.
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// Parses a stored hash; `None` if it is not 64 hex digits.
pub fn from_hex(text: &str) -> Option<Hash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// One stored row as the chain check reads it.
#[derive(Debug, Clone)]
pub struct StoredLink {
    pub seq: u64,
    pub stream_id: String,
    pub revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: String,
    pub metadata: String,
    pub hash: Option<String>,
}

/// The first link of a stream that does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub stream_id: String,
    pub revision: u64,
    pub reason: String,
}

impl std::fmt::Display for BrokenLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "stream {} revision {}: {}",
            self.stream_id, self.revision, self.reason
        )
    }
}

/// Checks rows fed in `(stream_id, revision)` order, one stream after another.
#[derive(Debug)]
pub struct ChainChecker {
    /// Rows at or below this `seq` were stored before hashes existed.
    legacy_max_seq: u64,
    current: Option<StreamState>,
    broken: Vec<BrokenLink>,
    streams: u64,
    events: u64,
    legacy_events: u64,
    heads: Sha256,
}

#[derive(Debug)]
struct StreamState {
    stream_id: String,
    next_revision: u64,
    previous: Option<Hash>,
    /// The stream already failed: later rows are not judged again.
    failed: bool,
}

/// What a completed check found.
#[derive(Debug, Clone)]
pub struct ChainReport {
    pub streams: u64,
    pub events: u64,
    /// Events stored before hashes existed (the start of their stream's chain).
    pub legacy_events: u64,
    /// The first broken link of every stream that has one.
    pub broken: Vec<BrokenLink>,
    /// SHA-256 over every stream's name, last revision and last hash, in stream order.
    pub heads_digest: String,
}

impl ChainChecker {
    pub fn new(legacy_max_seq: u64) -> Self {
        ChainChecker {
            legacy_max_seq,
            current: None,
            broken: Vec::new(),
            streams: 0,
            events: 0,
            legacy_events: 0,
            heads: Sha256::new(),
        }
    }

    pub fn push(&mut self, row: &StoredLink) {
        self.events += 1;
        if self
            .current
            .as_ref()
            .is_none_or(|s| s.stream_id != row.stream_id)
        {
            self.finish_stream();
            self.streams += 1;
            self.current = Some(StreamState {
                stream_id: row.stream_id.clone(),
                next_revision: 0,
                previous: None,
                failed: false,
            });
        }
        let legacy_max_seq = self.legacy_max_seq;
        let state = self.current.as_mut().expect("set above");
        if state.failed {
            return;
        }
        let fail = |state: &mut StreamState, revision: u64, reason: String| {
            state.failed = true;
            BrokenLink {
                stream_id: state.stream_id.clone(),
                revision,
                reason,
            }
        };
        if row.revision != state.next_revision {
            let reason = format!(
                "expected revision {} here: an event is missing or was renumbered",
                state.next_revision
            );
            let link = fail(state, state.next_revision, reason);
            self.broken.push(link);
            return;
        }
        state.next_revision += 1;
        let Some(stored) = row.hash.as_deref() else {
            if row.seq <= legacy_max_seq && state.previous.is_none() {
                self.legacy_events += 1; // history from before hashes: the chain starts later
                return;
            }
            let link = fail(state, row.revision, "the stored hash is missing".into());
            self.broken.push(link);
            return;
        };
        let computed = event_hash(
            state.previous.as_ref(),
            &ChainedEvent {
                stream_id: &row.stream_id,
                revision: row.revision,
                event_id: &row.event_id,
                event_type: &row.event_type,
                data: &row.data,
                metadata: &row.metadata,
            },
        );
        if from_hex(stored) != Some(computed) {
            let reason = "the stored hash does not match the event: its content, or an \
                          earlier event of the stream, was changed"
                .to_owned();
            let link = fail(state, row.revision, reason);
            self.broken.push(link);
            return;
        }
        state.previous = Some(computed);
    }

    fn finish_stream(&mut self) {
        if let Some(state) = self.current.take() {
            self.heads.update(state.stream_id.as_bytes());
            self.heads.update([0]);
            self.heads.update(state.next_revision.to_be_bytes());
            self.heads.update(state.previous.unwrap_or([0u8; 32]));
        }
    }

    pub fn finish(mut self) -> ChainReport {
        self.finish_stream();
        ChainReport {
            streams: self.streams,
            events: self.events,
            legacy_events: self.legacy_events,
            broken: self.broken,
            heads_digest: hex::encode(self.heads.finalize()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(stream: &str, n: u64) -> Vec<StoredLink> {
        let mut previous = None;
        (0..n)
            .map(|revision| {
                let mut link = StoredLink {
                    seq: 100 + revision,
                    stream_id: stream.into(),
                    revision,
                    event_id: Uuid::new_v4(),
                    event_type: "E".into(),
                    data: format!("{{\"n\":{revision}}}"),
                    metadata: "{}".into(),
                    hash: None,
                };
                let h = event_hash(previous.as_ref(), &as_chained(&link));
                link.hash = Some(to_hex(&h));
                previous = Some(h);
                link
            })
            .collect()
    }

    fn as_chained(l: &StoredLink) -> ChainedEvent<'_> {
        ChainedEvent {
            stream_id: &l.stream_id,
            revision: l.revision,
            event_id: &l.event_id,
            event_type: &l.event_type,
            data: &l.data,
            metadata: &l.metadata,
        }
    }

    fn check(rows: &[StoredLink], legacy_max_seq: u64) -> ChainReport {
        let mut checker = ChainChecker::new(legacy_max_seq);
        rows.iter().for_each(|r| checker.push(r));
        checker.finish()
    }

    #[test]
    fn an_intact_chain_passes_and_an_edit_names_its_revision() {
        let mut rows = chain("s", 4);
        assert!(check(&rows, 0).broken.is_empty());
        rows[2].data = "{\"n\":99}".into();
        let report = check(&rows, 0);
        assert_eq!(report.broken.len(), 1);
        assert_eq!(
            (
                report.broken[0].stream_id.as_str(),
                report.broken[0].revision
            ),
            ("s", 2)
        );
    }

    #[test]
    fn a_missing_event_or_hash_breaks_the_chain_but_legacy_history_does_not() {
        let mut rows = chain("s", 4);
        rows.remove(1);
        assert_eq!(check(&rows, 0).broken[0].revision, 1);

        let mut rows = chain("s", 3);
        rows[1].hash = None;
        assert!(check(&rows, 0).broken[0].reason.contains("missing"));

        // Rows stored before the migration start the chain: the first hashed row
        // chains to zeros.
        let mut rows = chain("s", 2);
        let mut legacy = rows[0].clone();
        legacy.hash = None;
        legacy.seq = 1;
        rows.iter_mut().for_each(|r| r.revision += 1);
        let mut previous = None;
        for r in rows.iter_mut() {
            let h = event_hash(previous.as_ref(), &as_chained(r));
            r.hash = Some(to_hex(&h));
            previous = Some(h);
        }
        rows.insert(0, legacy);
        let report = check(&rows, 1);
        assert!(report.broken.is_empty(), "{:?}", report.broken);
        assert_eq!(report.legacy_events, 1);
    }

    #[test]
    fn the_heads_digest_changes_when_a_stream_is_cut_short() {
        let rows = chain("s", 3);
        let full = check(&rows, 0).heads_digest;
        assert_ne!(full, check(&rows[..2], 0).heads_digest);
        assert_eq!(full, check(&rows, 0).heads_digest);
    }
}
