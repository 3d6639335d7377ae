//! Group commit, the part every backend shares: appends that arrive together are
//! decided and written in one transaction with a handful of statements for the whole
//! batch (read the streams' last events, read the ids already stored, one insert),
//! instead of several statements per append.
//!
//! A batch runs in rounds: a round holds appends that touch distinct streams and
//! distinct event ids, so each can be decided against what the store held before the
//! round ([`plan`]); an append to a stream (or with an id) that an earlier append of the
//! batch touched waits for a later round, which sees the earlier one's rows. Appends to
//! one stream thus keep their order; 50 copies of one delivery become 50 rounds, the
//! first stores it and the others conflict.
//!
//! What the store holds is read for each round, or taken from what the writer remembers
//! of the streams it wrote ([`heads`](super::heads)) when that can decide the round.
//!
//! The decisions are the same as one append at a time ([`rules`]). What a batch cannot
//! do alone is isolate an append whose rows the database refuses: the backend then
//! rolls the batch back and runs its appends one by one.

use std::collections::HashMap;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::heads::Head;
use super::rules::{self, StoredId};
use super::{AppendResult, ExpectedVersion, StoreError};
use crate::events::envelope::{NewEvent, Position};

/// Appends committed together at most (one transaction, one fsync).
pub(super) const MAX: usize = 256;

/// One append waiting for the group commit.
pub(super) struct AppendRequest {
    pub stream: String,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
    pub reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// Hands an append to a group-commit writer task and waits for its answer.
pub(super) async fn submit(
    writer: &mpsc::Sender<AppendRequest>,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<AppendResult, StoreError> {
    rules::check_events(stream, &events)?;
    let (reply, answer) = oneshot::channel();
    let request = AppendRequest {
        stream: stream.to_owned(),
        expected,
        events,
        reply,
    };
    let gone = || StoreError::Unavailable("the event store writer has stopped".into());
    writer.send(request).await.map_err(|_| gone())?;
    answer.await.map_err(|_| gone())?
}

/// The answers of a batch, filled in round by round (in the batch's order).
pub(super) struct Answers(Vec<Option<Result<AppendResult, StoreError>>>);

impl Answers {
    pub fn new(batch: &[AppendRequest]) -> Self {
        Answers(batch.iter().map(|_| None).collect())
    }

    /// The answers of one round, in the round's order.
    pub fn record(&mut self, round: Vec<usize>, answers: Vec<Result<AppendResult, StoreError>>) {
        for (i, answer) in round.into_iter().zip(answers) {
            self.0[i] = Some(answer);
        }
    }

    pub fn finish(self) -> Vec<Result<AppendResult, StoreError>> {
        self.0
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(StoreError::Backend("append not decided".into()))))
            .collect()
    }
}

/// Splits a batch into rounds (indexes into `batch`): each append goes to the round
/// after the last one that touched its stream or any of its ids.
pub(super) fn rounds(batch: &[AppendRequest]) -> Vec<Vec<usize>> {
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    let mut streams: HashMap<&str, usize> = HashMap::new();
    let mut ids: HashMap<Uuid, usize> = HashMap::new();
    for (i, request) in batch.iter().enumerate() {
        let round = std::iter::once(streams.get(request.stream.as_str()))
            .chain(request.events.iter().map(|e| ids.get(&e.event_id)))
            .flatten()
            .max()
            .map_or(0, |r| r + 1);
        if round == rounds.len() {
            rounds.push(Vec::new());
        }
        rounds[round].push(i);
        streams.insert(&request.stream, round);
        ids.extend(request.events.iter().map(|e| (e.event_id, round)));
    }
    rounds
}

/// What the store holds for a round's streams and ids, read in the writer's transaction
/// (or, for the usual appends, taken from [`Heads`](super::heads::Heads)).
#[derive(Debug, Default)]
pub(super) struct Stored {
    /// Each existing stream's last event: revision and hash.
    pub last: HashMap<String, (u64, Option<String>)>,
    /// Events already stored under one of the round's ids.
    pub ids: HashMap<Uuid, StoredId>,
}

/// The streams and the event ids a round touches (for the two reads of [`Stored`]).
pub(super) fn keys<'a>(batch: &'a [AppendRequest], round: &[usize]) -> (Vec<&'a str>, Vec<Uuid>) {
    let streams = round.iter().map(|&i| batch[i].stream.as_str()).collect();
    let ids = round
        .iter()
        .flat_map(|&i| batch[i].events.iter().map(|e| e.event_id))
        .collect();
    (streams, ids)
}

/// An event row to insert, its hash chained to the stream's previous event.
pub(super) struct Row<'a> {
    pub stream: &'a str,
    pub revision: u64,
    pub event: &'a NewEvent,
    pub data: String,
    pub metadata: String,
    pub hash: String,
}

/// A round decided: the rows to insert, and how to answer each append.
pub(super) struct Plan<'a> {
    pub rows: Vec<Row<'a>>,
    /// Per append of the round, in order: its answer when it writes nothing (a conflict,
    /// an idempotent retry, an invalid append), `None` when its rows are in `rows`.
    decided: Vec<Option<Result<AppendResult, StoreError>>>,
    /// Per append of the round: its last row's revision and event id, when it writes.
    last_rows: Vec<Option<(u64, Uuid)>>,
}

/// Decides each append of a round against `stored`, as [`rules`] does one at a time.
pub(super) fn plan<'a>(batch: &'a [AppendRequest], round: &[usize], stored: &Stored) -> Plan<'a> {
    let mut plan = Plan {
        rows: Vec::new(),
        decided: Vec::with_capacity(round.len()),
        last_rows: Vec::with_capacity(round.len()),
    };
    for &i in round {
        let request = &batch[i];
        match decide(request, stored) {
            Ok(rows) => {
                let last = rows.last().map(|r| (r.revision, r.event.event_id));
                plan.rows.extend(rows);
                plan.decided.push(None);
                plan.last_rows.push(last);
            }
            Err(answer) => {
                plan.decided.push(Some(answer));
                plan.last_rows.push(None);
            }
        }
    }
    plan
}

/// The rows of one append, or its answer when it writes nothing.
fn decide<'a>(
    request: &'a AppendRequest,
    stored: &Stored,
) -> Result<Vec<Row<'a>>, Result<AppendResult, StoreError>> {
    let stream = request.stream.as_str();
    let events = &request.events;
    rules::check_events(stream, events).map_err(Err)?;
    let already: Vec<StoredId> = events
        .iter()
        .filter_map(|e| stored.ids.get(&e.event_id).cloned())
        .collect();
    if let Some(answer) = rules::already_stored(stream, events, &already) {
        return Err(answer);
    }
    let last = stored.last.get(stream);
    let current = last.map(|(revision, _)| *revision);
    rules::check_expected(stream, request.expected, current).map_err(Err)?;
    let mut previous =
        rules::previous_hash(stream, last.and_then(|(_, h)| h.clone())).map_err(Err)?;
    let first = current.map_or(0, |r| r + 1);
    Ok(events
        .iter()
        .zip(first..)
        .map(|(event, revision)| {
            let (data, metadata) = (event.data.to_string(), event.metadata.to_string());
            let hash = rules::chain(&mut previous, stream, revision, event, &data, &metadata);
            Row {
                stream,
                revision,
                event,
                data,
                metadata,
                hash,
            }
        })
        .collect())
}

impl Plan<'_> {
    /// The head each stream of the round ends at once its rows are stored (for
    /// [`Heads::remember`](super::heads::Heads::remember) after the commit).
    pub fn heads(&self) -> Vec<(String, Head)> {
        // A round touches each stream once, so a stream's rows are consecutive.
        let mut heads: Vec<(String, Head)> = Vec::new();
        for row in &self.rows {
            let head = Head {
                revision: row.revision,
                hash: row.hash.clone(),
            };
            match heads.last_mut() {
                Some((stream, last)) if stream == row.stream => *last = head,
                _ => heads.push((row.stream.to_owned(), head)),
            }
        }
        heads
    }

    /// The answers of the round's appends, given the positions the insert gave each
    /// row (by event id). A row without a position is a backend fault.
    pub fn answers(
        self,
        positions: &HashMap<Uuid, Position>,
    ) -> Vec<Result<AppendResult, StoreError>> {
        self.decided
            .into_iter()
            .zip(self.last_rows)
            .map(|(decided, last)| match (decided, last) {
                (Some(answer), _) => answer,
                (None, Some((revision, id))) => positions
                    .get(&id)
                    .map(|&position| AppendResult {
                        next_expected_version: revision,
                        position,
                    })
                    .ok_or_else(|| {
                        StoreError::Backend(format!("the insert did not return event {id}"))
                    }),
                (None, None) => Err(StoreError::Backend("an append without rows".into())),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(stream: &str, ids: &[u128]) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events: ids
                .iter()
                .map(|&id| NewEvent {
                    event_id: Uuid::from_u128(id),
                    event_type: "T".into(),
                    data: serde_json::json!({}),
                    metadata: serde_json::json!({}),
                })
                .collect(),
            reply: oneshot::channel().0,
        }
    }

    #[test]
    fn appends_to_one_stream_or_with_one_id_go_to_successive_rounds() {
        let batch = [
            request("a", &[1]),
            request("b", &[2]),
            request("a", &[3]),
            request("c", &[2]),
            request("d", &[4]),
            request("a", &[5]),
        ];
        assert_eq!(rounds(&batch), vec![vec![0, 1, 4], vec![2, 3], vec![5]]);
    }

    #[test]
    fn a_round_chains_revisions_after_the_stored_last_event_and_answers_in_order() {
        let batch = [request("a", &[1, 2]), request("b", &[3])];
        let mut stored = Stored::default();
        stored.last.insert("a".into(), (4, None));
        let plan = plan(&batch, &[0, 1], &stored);
        let revisions: Vec<_> = plan.rows.iter().map(|r| (r.stream, r.revision)).collect();
        assert_eq!(revisions, vec![("a", 5), ("a", 6), ("b", 0)]);
        let at = |n| Position {
            commit: n,
            prepare: n,
        };
        let heads: Vec<_> = plan
            .heads()
            .into_iter()
            .map(|(stream, head)| (stream, head.revision))
            .collect();
        assert_eq!(heads, [("a".to_owned(), 6), ("b".to_owned(), 0)]);
        assert_eq!(plan.heads()[0].1.hash, plan.rows[1].hash);
        let positions = HashMap::from([
            (Uuid::from_u128(1), at(10)),
            (Uuid::from_u128(2), at(11)),
            (Uuid::from_u128(3), at(12)),
        ]);
        let answers: Vec<_> = plan
            .answers(&positions)
            .into_iter()
            .map(|a| a.unwrap())
            .collect();
        assert_eq!(answers[0].next_expected_version, 6);
        assert_eq!(answers[0].position, at(11));
        assert_eq!(answers[1].next_expected_version, 0);
    }

    #[test]
    fn an_invalid_append_is_answered_alone_and_writes_nothing() {
        let mut conflicting = request("b", &[3]);
        conflicting.expected = ExpectedVersion::NoStream;
        let batch = [request("a", &[1, 1]), conflicting, request("c", &[4])];
        let mut stored = Stored::default();
        stored.last.insert("b".into(), (0, None));
        let plan = plan(&batch, &[0, 1, 2], &stored);
        assert_eq!(plan.rows.len(), 1);
        let positions = HashMap::from([(Uuid::from_u128(4), Position::START)]);
        let answers = plan.answers(&positions);
        assert!(matches!(&answers[0], Err(StoreError::Backend(m)) if m.contains("twice")));
        assert!(answers[1].as_ref().unwrap_err().is_conflict());
        assert!(answers[2].is_ok());
    }
}
