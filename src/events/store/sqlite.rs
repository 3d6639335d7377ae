//! SQLite backend (embedded default): the `events` table in the data dir's SQLite file.
//!
//! This file owns the SQLite implementation of [`EventStore`] and the backend-independent
//! append rules ([`rules`]: expected-version check and idempotent re-append) that the
//! PostgreSQL backend shares.
//!
//! Global order is the table's `seq` (`INTEGER PRIMARY KEY AUTOINCREMENT`), with
//! `Position { commit: seq, prepare: seq }`. Appends go to one writer task on the single
//! writer connection of [`SqliteDb`], which commits whatever appends are waiting in one
//! `BEGIN IMMEDIATE` transaction (group commit: one fsync for the batch, each append in
//! its own savepoint). Write transactions are serialized, so sequence numbers are handed
//! out in commit order and a reader can never see `seq` N+1 before N. Each row's `hash` chains it to the previous event of its stream
//! (`events::chain`), computed in the same transaction. Reads go through the reader pool (WAL: readers run beside the
//! writer). [`EventStore::changes`] only sees appends made through this process's store;
//! subscribers re-check periodically for writes from elsewhere.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use super::{AppendResult, EventStore, ExpectedVersion, StoreError};
use crate::db::SqliteDb;
use crate::events::envelope::{NewEvent, Position, RecordedEvent};

const COLUMNS: &str = "seq, stream_id, revision, event_id, event_type, data, metadata, recorded_at";

/// The SQLite event store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct SqliteEventStore {
    db: SqliteDb,
    changes: watch::Sender<()>,
    writer: mpsc::Sender<AppendRequest>,
}

/// One append waiting for the group commit.
struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendResult, StoreError>>,
}

/// Appends committed together at most (one transaction, one fsync).
const GROUP_COMMIT_MAX: usize = 256;

impl SqliteEventStore {
    /// A store over `db` (migrations must have been applied, as `Db::open_sqlite_file` does).
    /// Starts the writer task on the current tokio runtime.
    pub fn new(db: SqliteDb) -> Self {
        let (writer, requests) = mpsc::channel(4 * GROUP_COMMIT_MAX);
        let changes = watch::Sender::new(());
        tokio::spawn(group_commit(db.writer.clone(), requests, changes.clone()));
        SqliteEventStore {
            db,
            changes,
            writer,
        }
    }
}

/// The writer task: takes every append waiting, runs each in its own savepoint of one
/// `BEGIN IMMEDIATE` transaction, commits once, then answers each. A commit is an
/// fsync (`synchronous = FULL`): batching makes it one per batch instead of one per
/// append, and every answer still comes after its events are on disk. An append that
/// fails (a conflict, say) rolls back to its savepoint and leaves the others alone.
async fn group_commit(
    pool: SqlitePool,
    mut requests: mpsc::Receiver<AppendRequest>,
    changes: watch::Sender<()>,
) {
    let mut batch = Vec::with_capacity(GROUP_COMMIT_MAX);
    while requests.recv_many(&mut batch, GROUP_COMMIT_MAX).await > 0 {
        let results = match commit_batch(&pool, &batch).await {
            Ok(results) => results,
            Err(e) => batch
                .iter()
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect(),
        };
        if results.iter().any(Result::is_ok) {
            changes.send_replace(());
        }
        for (request, result) in batch.drain(..).zip(results) {
            let _ = request.reply.send(result);
        }
    }
}

async fn commit_batch(
    pool: &SqlitePool,
    batch: &[AppendRequest],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let mut results = Vec::with_capacity(batch.len());
    for request in batch {
        sqlx::query("SAVEPOINT append")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        let result = append_in(&mut tx, &request.stream, request.expected, &request.events).await;
        if result.is_err() {
            sqlx::query("ROLLBACK TO append")
                .execute(&mut *tx)
                .await
                .map_err(map_err)?;
        }
        sqlx::query("RELEASE append")
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        results.push(result);
    }
    tx.commit().await.map_err(map_err)?;
    Ok(results)
}

/// One append inside the writer's transaction.
async fn append_in(
    conn: &mut sqlx::SqliteConnection,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendResult, StoreError> {
    rules::check_not_empty(stream, events)?;
    let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let ids_json = serde_json::to_string(&ids).map_err(|e| StoreError::Backend(e.to_string()))?;
    let stored = sqlx::query(
        "SELECT stream_id, revision, seq FROM events \
             WHERE event_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids_json)
    .fetch_all(&mut *conn)
    .await
    .map_err(map_err)?
    .iter()
    .map(|row| {
        let seq = to_u64(row.try_get("seq").map_err(map_err)?);
        Ok(rules::StoredId {
            stream_id: row.try_get("stream_id").map_err(map_err)?,
            revision: to_u64(row.try_get("revision").map_err(map_err)?),
            position: Position {
                commit: seq,
                prepare: seq,
            },
        })
    })
    .collect::<Result<Vec<_>, StoreError>>()?;
    if let Some(outcome) = rules::already_stored(stream, events, &stored) {
        return outcome; // nothing written
    }

    // The stream's last event: its revision for the version check, its hash to
    // chain the new events to (see `events::chain`).
    let last: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT revision, hash FROM events WHERE stream_id = ?1 \
             ORDER BY revision DESC LIMIT 1",
    )
    .bind(stream)
    .fetch_optional(&mut *conn)
    .await
    .map_err(map_err)?;
    let current = last.as_ref().map(|(r, _)| to_u64(*r));
    rules::check_expected(stream, expected, current)?;
    let mut previous = rules::previous_hash(stream, last.and_then(|(_, h)| h))?;

    let recorded_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let mut revision = current.map_or(0, |r| r + 1);
    let mut seq = 0;
    for event in events {
        let (data, metadata) = (event.data.to_string(), event.metadata.to_string());
        let hash = rules::chain(&mut previous, stream, revision, event, &data, &metadata);
        seq = sqlx::query_scalar(
                "INSERT INTO events (stream_id, revision, event_id, event_type, data, \
                 metadata, recorded_at, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING seq",
            )
            .bind(stream)
            .bind(to_i64(revision))
            .bind(event.event_id.to_string())
            .bind(&event.event_type)
            .bind(data)
            .bind(metadata)
            .bind(&recorded_at)
            .bind(hash)
            .fetch_one(&mut *conn)
            .await
            .map_err(map_err)?;
        revision += 1;
    }
    let seq = to_u64(seq);
    Ok(AppendResult {
        next_expected_version: revision - 1,
        position: Position {
            commit: seq,
            prepare: seq,
        },
    })
}

#[async_trait]
impl EventStore for SqliteEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        rules::check_not_empty(stream, &events)?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        let gone = || StoreError::Unavailable("the SQLite writer has stopped".into());
        self.writer.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE stream_id = ?1 AND revision >= ?2 \
             ORDER BY revision LIMIT ?3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream)
            .bind(to_i64(from))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.db.reader)
            .await
            .map_err(map_err)?
            .iter()
            .map(decode)
            .collect()
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // (seq, seq) > (commit, prepare), lexicographically.
        let first = if after.prepare < after.commit {
            after.commit
        } else {
            after.commit.saturating_add(1)
        };
        let sql = format!("SELECT {COLUMNS} FROM events WHERE seq >= ?1 ORDER BY seq LIMIT ?2");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_i64(first))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.db.reader)
            .await
            .map_err(map_err)?
            .iter()
            .map(decode)
            .collect()
    }

    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError> {
        let first = if after.prepare < after.commit {
            after.commit
        } else {
            after.commit.saturating_add(1)
        };
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE seq >= ?1 LIMIT ?2)",
        )
        .bind(to_i64(first))
        .bind(to_i64(cap))
        .fetch_one(&self.db.reader)
        .await
        .map_err(map_err)?;
        Ok(to_u64(count))
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }
}

fn decode(row: &SqliteRow) -> Result<RecordedEvent, StoreError> {
    let seq = to_u64(row.try_get("seq").map_err(map_err)?);
    let event_id: String = row.try_get("event_id").map_err(map_err)?;
    let data: String = row.try_get("data").map_err(map_err)?;
    let metadata: String = row.try_get("metadata").map_err(map_err)?;
    let recorded_at: String = row.try_get("recorded_at").map_err(map_err)?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backend(format!(
            "stored event at seq {seq} has an invalid {what}: {e}"
        ))
    };
    Ok(RecordedEvent {
        stream_id: row.try_get("stream_id").map_err(map_err)?,
        revision: to_u64(row.try_get("revision").map_err(map_err)?),
        position: Position {
            commit: seq,
            prepare: seq,
        },
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt("event id", &e))?,
        event_type: row.try_get("event_type").map_err(map_err)?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", &e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", &e))?,
        recorded_at: DateTime::parse_from_rfc3339(&recorded_at)
            .map_err(|e| corrupt("recorded_at", &e))?
            .with_timezone(&Utc),
    })
}

/// Busy/locked/read-only/IO/full/cannot-open (and lost connections) may pass: `Unavailable`.
fn map_err(err: sqlx::Error) -> StoreError {
    const TRANSIENT: [i32; 6] = [5, 6, 8, 10, 13, 14]; // SQLITE_BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN
    let transient = match &err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let primary = db
                .code()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            primary.is_some_and(|c| TRANSIENT.contains(&c))
                || db.message().contains("database is locked")
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Backend(err.to_string())
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Append rules every backend applies the same way (used by `store::postgres` too).
pub(super) mod rules {
    use std::collections::HashSet;

    use super::super::{AppendResult, ExpectedVersion, StoreError};
    use crate::events::chain::{self, ChainedEvent, Hash};
    use crate::events::envelope::{NewEvent, Position};

    /// The hash new events chain to, from the stream's last stored hash (`None`: the
    /// stream is new, or its last event predates hashes — the chain starts here).
    pub(in crate::events::store) fn previous_hash(
        stream: &str,
        stored: Option<String>,
    ) -> Result<Option<Hash>, StoreError> {
        stored
            .map(|h| {
                chain::from_hex(&h).ok_or_else(|| {
                    StoreError::Backend(format!(
                        "the last event of {stream} has a malformed hash {h:?}: \
                         refusing to extend a damaged chain"
                    ))
                })
            })
            .transpose()
    }

    /// The stored (hex) hash of `event` at `revision`, and advances `previous` to it.
    pub(in crate::events::store) fn chain(
        previous: &mut Option<Hash>,
        stream: &str,
        revision: u64,
        event: &NewEvent,
        data: &str,
        metadata: &str,
    ) -> String {
        let hash = chain::event_hash(
            previous.as_ref(),
            &ChainedEvent {
                stream_id: stream,
                revision,
                event_id: &event.event_id,
                event_type: &event.event_type,
                data,
                metadata,
            },
        );
        *previous = Some(hash);
        chain::to_hex(&hash)
    }

    /// An event already stored under one of the ids being appended.
    #[derive(Debug)]
    pub(in crate::events::store) struct StoredId {
        pub stream_id: String,
        pub revision: u64,
        pub position: Position,
    }

    pub(in crate::events::store) fn check_not_empty(
        stream: &str,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Err(StoreError::Backend(format!(
                "append to {stream} has no events: an append needs at least one"
            )));
        }
        Ok(())
    }

    /// `current`: revision of the stream's last event, `None` if the stream does not exist.
    pub(in crate::events::store) fn check_expected(
        stream: &str,
        expected: ExpectedVersion,
        current: Option<u64>,
    ) -> Result<(), StoreError> {
        let ok = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(n) => current == Some(n),
        };
        if ok {
            Ok(())
        } else {
            Err(StoreError::WrongExpectedVersion {
                stream: stream.to_owned(),
                expected,
                actual: current,
            })
        }
    }

    /// Decides an append whose ids are (partly) stored already: `None` when none are
    /// (append normally); the stored result when all are, in `stream` (a retried append:
    /// nothing is written, whatever the expected version); an error otherwise.
    pub(in crate::events::store) fn already_stored(
        stream: &str,
        events: &[NewEvent],
        stored: &[StoredId],
    ) -> Option<Result<AppendResult, StoreError>> {
        if stored.is_empty() {
            return None;
        }
        if let Some(other) = stored.iter().find(|s| s.stream_id != stream) {
            return Some(Err(StoreError::Backend(format!(
                "append to {stream}: an event id is already used in stream {} (revision {})",
                other.stream_id, other.revision
            ))));
        }
        let distinct = events
            .iter()
            .map(|e| e.event_id)
            .collect::<HashSet<_>>()
            .len();
        if stored.len() != distinct {
            return Some(Err(StoreError::Backend(format!(
                "append to {stream} mixes {} already stored event ids with {} new ones: \
                 a retried append must carry exactly the same events",
                stored.len(),
                distinct - stored.len()
            ))));
        }
        let last = stored.iter().max_by_key(|s| s.revision)?;
        Some(Ok(AppendResult {
            next_expected_version: last.revision,
            position: last.position,
        }))
    }
}
