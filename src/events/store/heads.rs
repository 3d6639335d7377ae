//! What a writer remembers of the streams it appended to: each one's last revision and
//! hash, as its last commit left them. With them, the usual append (a new stream with
//! `NoStream`, the next event of a stream this process wrote, at `Exact`) is decided
//! and inserted without reading the store first: one statement instead of three per
//! round, which on PostgreSQL also means no `BEGIN` / `COMMIT` round trips.
//!
//! Memory is only ever a guess, and a wrong guess cannot write a wrong row. Every way
//! it can be wrong makes the insert break a unique constraint of `events`: the stream
//! exists after all (its revision 0 is taken), another writer extended it (the next
//! revision is taken), or an event id is stored already (a retried append). The writer
//! then decides that round again from what it reads, as it would have without memory.
//! Heads only grow and are remembered only after their commit, so memory is never
//! ahead of the store. The cost of a wrong guess is one refused insert (PostgreSQL logs
//! it as an error): a repeated delivery that this node did not accept first, or a
//! stream another node moved on.
//!
//! Bounded: two generations of [`GENERATION`] streams each; a stream not appended to
//! for two generations is forgotten (its next append reads, as any other would).

use std::collections::HashMap;
use std::sync::Mutex;

use super::ExpectedVersion;
use super::batch::{AppendRequest, Stored};

/// Streams per generation: more than the executions one node has in flight at once in
/// the benchmarks (10,000), at about 200 bytes each.
const GENERATION: usize = 16_384;

/// A stream's last stored event, as this process committed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Head {
    pub revision: u64,
    pub hash: String,
}

#[derive(Debug)]
pub(super) struct Heads {
    generation: usize,
    inner: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<String, Head>,
    previous: HashMap<String, Head>,
}

impl Generations {
    fn get(&self, stream: &str) -> Option<&Head> {
        self.current
            .get(stream)
            .or_else(|| self.previous.get(stream))
    }
}

impl Default for Heads {
    fn default() -> Self {
        Heads::with_generation(GENERATION)
    }
}

impl Heads {
    fn with_generation(generation: usize) -> Self {
        Heads {
            generation,
            inner: Mutex::new(Generations::default()),
        }
    }

    /// What the store holds for `round`'s streams and ids, if memory can tell for every
    /// append of it: a `NoStream` append to a stream memory does not know is taken to
    /// be new, an `Exact` or `Any` append to a stream memory knows is taken to follow
    /// the remembered head, and no event id is taken to be stored. `None` when an
    /// append needs more than that (an unknown stream at `Exact` or `Any`, a revision
    /// other than the remembered one, `NoStream` on a known stream): read the store.
    pub fn stored(&self, batch: &[AppendRequest], round: &[usize]) -> Option<Stored> {
        let memory = self.inner.lock().expect("heads lock");
        let mut stored = Stored::default();
        for &i in round {
            let request = &batch[i];
            let head = memory.get(&request.stream);
            match (request.expected, head) {
                (ExpectedVersion::NoStream, None) => {}
                (ExpectedVersion::Exact(n), Some(head)) if head.revision == n => {}
                (ExpectedVersion::Any, Some(_)) => {}
                _ => return None,
            }
            if let Some(head) = head {
                stored.last.insert(
                    request.stream.clone(),
                    (head.revision, Some(head.hash.clone())),
                );
            }
        }
        Some(stored)
    }

    /// Remembers the heads a batch left, once its commit succeeded.
    pub fn remember(&self, written: Vec<(String, Head)>) {
        if written.is_empty() {
            return;
        }
        let mut memory = self.inner.lock().expect("heads lock");
        for (stream, head) in written {
            if memory.current.len() >= self.generation {
                memory.previous = std::mem::take(&mut memory.current);
            }
            memory.current.insert(stream, head);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::envelope::NewEvent;
    use tokio::sync::oneshot;
    use uuid::Uuid;

    fn request(stream: &str, expected: ExpectedVersion) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected,
            events: vec![NewEvent {
                event_id: Uuid::new_v4(),
                event_type: "T".into(),
                data: serde_json::json!({}),
                metadata: serde_json::json!({}),
            }],
            reply: oneshot::channel().0,
        }
    }

    fn head(revision: u64) -> Head {
        Head {
            revision,
            hash: format!("h{revision}"),
        }
    }

    #[test]
    fn memory_decides_new_streams_and_the_next_event_of_known_ones() {
        let heads = Heads::default();
        heads.remember(vec![("known".into(), head(3))]);
        let batch = [
            request("new", ExpectedVersion::NoStream),
            request("known", ExpectedVersion::Exact(3)),
        ];
        let stored = heads.stored(&batch, &[0, 1]).expect("memory tells");
        assert_eq!(stored.last.len(), 1);
        assert_eq!(stored.last["known"], (3, Some("h3".into())));
        assert!(stored.ids.is_empty());
        let any = [request("known", ExpectedVersion::Any)];
        assert!(heads.stored(&any, &[0]).is_some());
    }

    #[test]
    fn anything_memory_cannot_tell_is_read() {
        let heads = Heads::default();
        heads.remember(vec![("known".into(), head(3))]);
        for (stream, expected) in [
            ("known", ExpectedVersion::NoStream),
            ("known", ExpectedVersion::Exact(2)),
            ("known", ExpectedVersion::Exact(4)),
            ("unknown", ExpectedVersion::Exact(0)),
            ("unknown", ExpectedVersion::Any),
        ] {
            // One such append makes the whole round read.
            let batch = [
                request("new", ExpectedVersion::NoStream),
                request(stream, expected),
            ];
            assert!(
                heads.stored(&batch, &[0, 1]).is_none(),
                "{stream} at {expected:?}"
            );
        }
    }

    #[test]
    fn a_later_commit_moves_the_head_on() {
        let heads = Heads::default();
        heads.remember(vec![("s".into(), head(0))]);
        heads.remember(vec![("s".into(), head(2))]);
        let batch = [request("s", ExpectedVersion::Exact(2))];
        assert_eq!(
            heads.stored(&batch, &[0]).unwrap().last["s"],
            (2, Some("h2".into()))
        );
        assert!(
            heads
                .stored(&[request("s", ExpectedVersion::Exact(0))], &[0])
                .is_none()
        );
    }

    #[test]
    fn streams_not_appended_to_for_two_generations_are_forgotten() {
        let heads = Heads::with_generation(2);
        let known = |stream: &str| {
            heads
                .stored(&[request(stream, ExpectedVersion::Exact(0))], &[0])
                .is_some()
        };
        heads.remember(vec![("a".into(), head(0)), ("b".into(), head(0))]);
        heads.remember(vec![("c".into(), head(0))]); // a and b: previous generation
        assert!(known("a") && known("b") && known("c"));
        heads.remember(vec![("d".into(), head(0)), ("e".into(), head(0))]);
        assert!(!known("a") && !known("b"), "two generations old");
        assert!(known("c") && known("d") && known("e"));
    }
}
