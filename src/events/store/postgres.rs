//! PostgreSQL backend (production single-region): the `events` table.
//!
//! This file owns the PostgreSQL implementation of [`EventStore`]: appends, reads, the
//! gap-free global order and the cross-process change signal (`LISTEN`/`NOTIFY`).
//!
//! # Global order without gaps
//!
//! A sequence alone is not a safe global order: transaction A can take `seq` 7, B take 8
//! and commit first; a reader that sees 8 and checkpoints there will never see 7. So each
//! row also records the id of the transaction that wrote it (`tx_id`, defaulting to
//! `pg_current_xact_id()`), the global order is `(tx_id, seq)` (that is
//! `Position { commit: tx_id, prepare: seq }`), and [`read_all`](EventStore::read_all)
//! only returns rows with `tx_id < pg_snapshot_xmin(pg_current_snapshot())`.
//!
//! Why that never skips: the snapshot's xmin is the oldest transaction id still running
//! when the reader's statement started. Every transaction below it has finished, so all
//! rows the reader can ever see with `tx_id < xmin` are visible to it now, and none can
//! appear later. Any transaction still running, or started later, has an id `>= xmin`
//! and therefore sorts after every row returned. Each returned position is thus final:
//! nothing can later appear before it. Within one transaction, `seq` keeps the append
//! order. Transaction ids are 64-bit (`xid8`, with epoch), so they do not wrap.
//!
//! The one cost: a transaction that holds a transaction id for long (any writing
//! transaction on the server, in any database, or a prepared transaction) holds xmin back,
//! and events committed after it started stay invisible to `read_all` until it ends.
//! Appends and `read_stream` are not affected.
//!
//! # Concurrency
//!
//! Appends run in `READ COMMITTED`: read the stream's revision (and last hash, which the
//! new events chain to: `events::chain`), look up the event ids (idempotency), check the
//! expected version, insert.
//! Two writers racing for the same revision are settled by the unique index on
//! `(stream_id, revision)` (the second waits for the first, then gets a unique violation);
//! the loser retries the whole append in a fresh transaction, which now sees the winner:
//! a conflict for `NoStream`/`Exact` (with the actual revision), idempotent success when
//! the winner stored the same event ids, a new revision for `Any`.
//!
//! Appends are group-committed: a few writer tasks (`pg_writer`) take the appends waiting
//! and decide and insert each batch in one transaction, with the same reads and checks
//! per round as above and the same retry when a race is lost. A batch that the heads the
//! writers remember can decide (`heads`) skips the reads: a wrong memory makes the
//! insert a unique violation, a lost race, and the retry reads.
//!
//! After a commit, readers in this process are woken at once through
//! [`EventStore::changes`]; other processes through `NOTIFY hookrun_events`, sent by a
//! background task at most every few milliseconds and never inside an append: a
//! transaction that notifies holds PostgreSQL's global notify-queue lock from pre-commit
//! to the end of its commit, which made every append commit alone. A background
//! `PgListener` turns the notifications into [`EventStore::changes`] signals.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::batch::{self, AppendRequest};
use super::heads::Heads;
use super::{AppendResult, EventStore, ExpectedVersion, StoreError, map_err};
use super::{pg_writer, rules};
use crate::events::envelope::{NewEvent, Position, RecordedEvent};

/// The `NOTIFY` channel appends signal on.
pub const NOTIFY_CHANNEL: &str = "hookrun_events";

/// How many times an append that lost a race is retried before giving up.
pub(super) const MAX_ATTEMPTS: usize = 64;

const SELECT: &str = "SELECT seq, tx_id, stream_id, revision, event_id::text AS event_id, \
     event_type, data::text AS data, metadata::text AS metadata, \
     (extract(epoch FROM recorded_at) * 1000000)::bigint AS recorded_us FROM events";

/// Shortest time between two `NOTIFY`s of this process (appends in between share one).
const NOTIFY_COALESCE: Duration = Duration::from_millis(5);

/// The PostgreSQL event store. Dropping it stops its listener and notifier tasks.
#[derive(Debug)]
pub struct PostgresEventStore {
    pool: PgPool,
    changes: Arc<watch::Sender<()>>,
    writer: mpsc::Sender<AppendRequest>,
    _listener: AbortOnDrop,
    _notifier: AbortOnDrop,
    _writers: Vec<AbortOnDrop>,
}

#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl PostgresEventStore {
    /// A store over `pool` (migrations applied). Starts listening on [`NOTIFY_CHANNEL`]
    /// with one connection of the pool, in a background task.
    pub async fn connect(pool: PgPool) -> Result<Self, StoreError> {
        let mut listener = PgListener::connect_with(&pool).await.map_err(map_err)?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(map_err)?;
        let changes = Arc::new(watch::Sender::new(()));
        let task = tokio::spawn(forward_notifications(listener, Arc::clone(&changes)));
        let appended = Arc::new(Notify::new());
        let notifier = tokio::spawn(notify_other_processes(pool.clone(), Arc::clone(&appended)));
        let (writer, requests) = mpsc::channel(4 * batch::MAX);
        let requests = Arc::new(Mutex::new(requests));
        let heads = Arc::new(Heads::default());
        let writers = (0..pg_writer::WRITERS)
            .map(|_| {
                AbortOnDrop(tokio::spawn(pg_writer::run(
                    pool.clone(),
                    Arc::clone(&heads),
                    Arc::clone(&requests),
                    Arc::clone(&changes),
                    Arc::clone(&appended),
                )))
            })
            .collect();
        Ok(PostgresEventStore {
            pool,
            changes,
            writer,
            _listener: AbortOnDrop(task),
            _notifier: AbortOnDrop(notifier),
            _writers: writers,
        })
    }
}

/// Sends one `NOTIFY` for every burst of appends (a `Notify` permit coalesces them).
async fn notify_other_processes(pool: PgPool, appended: Arc<Notify>) {
    loop {
        appended.notified().await;
        let sent = sqlx::query("SELECT pg_notify($1, '')")
            .bind(NOTIFY_CHANNEL)
            .execute(&pool)
            .await;
        if let Err(e) = sent {
            // Readers elsewhere still re-check on their own (subscription::RECHECK).
            tracing::debug!(error = %e, "could not notify other processes of new events");
        }
        tokio::time::sleep(NOTIFY_COALESCE).await;
    }
}

async fn forward_notifications(mut listener: PgListener, changes: Arc<watch::Sender<()>>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(_)) => {}
            // Reconnected: notifications may have been missed, so wake readers anyway.
            Ok(None) => tracing::debug!("event store listener reconnected"),
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "event store listener failed; retrying in 1s");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        changes.send_replace(());
    }
}

#[async_trait]
impl EventStore for PostgresEventStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        batch::submit(&self.writer, stream, expected, events).await
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
        let sql =
            format!("{SELECT} WHERE stream_id = $1 AND revision >= $2 ORDER BY revision LIMIT $3");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(stream)
            .bind(to_i64(from))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
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
        // See the module doc: only transactions below the snapshot's xmin are final.
        let sql = format!(
            "{SELECT} WHERE (tx_id, seq) > ($1, $2) \
             AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint \
             ORDER BY tx_id, seq LIMIT $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_i64(after.commit))
            .bind(to_i64(after.prepare))
            .bind(to_i64(limit as u64))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(decode)
            .collect()
    }

    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE (tx_id, seq) > ($1, $2) \
             AND tx_id < pg_snapshot_xmin(pg_current_snapshot())::text::bigint LIMIT $3) t",
        )
        .bind(to_i64(after.commit))
        .bind(to_i64(after.prepare))
        .bind(to_i64(cap))
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(to_u64(count))
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.changes.subscribe()
    }
}

/// One append in its own transaction, retried while it loses races. The writer tasks
/// use it for a batch that failed as a whole.
pub(super) async fn append_one(
    pool: &PgPool,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendResult, StoreError> {
    let mut last_race = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let mut tx = pool.begin().await.map_err(map_err)?;
        match append_on(&mut tx, stream, expected, events).await {
            Ok((result, written)) => {
                if written {
                    tx.commit().await.map_err(map_err)?;
                }
                return Ok(result);
            }
            Err(Failure::Race(e)) => last_race = e.to_string(),
            Err(Failure::Store(e)) => return Err(e),
        }
    }
    Err(StoreError::Unavailable(format!(
        "append to {stream} lost {MAX_ATTEMPTS} races in a row (last: {last_race})"
    )))
}

/// Appends inside a transaction the caller opened on `conn` (and commits or rolls back).
/// Readers of `$all` see nothing appended after it began until it ends (module doc).
/// A lost race is reported as `Unavailable`: the transaction is aborted; retry it whole.
#[doc(hidden)]
pub async fn append_in_transaction(
    conn: &mut PgConnection,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<AppendResult, StoreError> {
    rules::check_events(stream, events)?;
    match append_on(conn, stream, expected, events).await {
        Ok((result, _)) => Ok(result),
        Err(Failure::Race(e)) => Err(StoreError::Unavailable(format!(
            "append to {stream} raced with another writer: {e}"
        ))),
        Err(Failure::Store(e)) => Err(e),
    }
}

pub(super) enum Failure {
    /// Lost a race to a concurrent writer (unique violation, deadlock, serialization
    /// failure); the transaction is aborted and the whole append can be retried.
    Race(sqlx::Error),
    Store(StoreError),
}

impl From<sqlx::Error> for Failure {
    fn from(err: sqlx::Error) -> Self {
        let race = match &err {
            sqlx::Error::Database(db) => {
                db.is_unique_violation() || matches!(db.code().as_deref(), Some("40001" | "40P01"))
            }
            _ => false,
        };
        if race {
            Failure::Race(err)
        } else {
            Failure::Store(map_err(err))
        }
    }
}

/// One append attempt on an open transaction: `(result, whether anything was written)`.
async fn append_on(
    conn: &mut PgConnection,
    stream: &str,
    expected: ExpectedVersion,
    events: &[NewEvent],
) -> Result<(AppendResult, bool), Failure> {
    // Each statement sees its own snapshot (READ COMMITTED), so the order matters: the
    // stream's revision first, then the ids. If the ids are not stored at the later
    // snapshot, they were not at the earlier one either, and a version mismatch is a
    // real conflict, not a concurrent copy of this very append.
    // The last event also gives the hash the new events chain to (`events::chain`):
    // a concurrent writer that extends the stream first makes our insert a unique
    // violation, so a chain never forks.
    let last: Option<(i64, Option<String>)> = sqlx::query_as(
        "SELECT revision, hash FROM events WHERE stream_id = $1 ORDER BY revision DESC LIMIT 1",
    )
    .bind(stream)
    .fetch_optional(&mut *conn)
    .await?;
    let current = last.as_ref().map(|(r, _)| to_u64(*r));
    let ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    let stored = sqlx::query(
        "SELECT stream_id, revision, tx_id, seq FROM events \
         WHERE event_id = ANY($1::text[]::uuid[])",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(rules::StoredId {
            stream_id: row.try_get("stream_id")?,
            revision: to_u64(row.try_get("revision")?),
            position: position(row)?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    if let Some(outcome) = rules::already_stored(stream, events, &stored) {
        return outcome.map(|r| (r, false)).map_err(Failure::Store);
    }
    rules::check_expected(stream, expected, current).map_err(Failure::Store)?;
    let mut previous =
        rules::previous_hash(stream, last.and_then(|(_, h)| h)).map_err(Failure::Store)?;

    let mut revision = current.map_or(0, |r| r + 1);
    let mut last = Position::START;
    for event in events {
        // `json` keeps the text as sent, so the hash covers exactly what is stored.
        let (data, metadata) = (event.data.to_string(), event.metadata.to_string());
        let hash = rules::chain(&mut previous, stream, revision, event, &data, &metadata);
        let row = sqlx::query(
            "INSERT INTO events (stream_id, revision, event_id, event_type, data, metadata, \
             hash) VALUES ($1, $2, $3::uuid, $4, $5::json, $6::json, $7) RETURNING tx_id, seq",
        )
        .bind(stream)
        .bind(to_i64(revision))
        .bind(event.event_id.to_string())
        .bind(&event.event_type)
        .bind(data)
        .bind(metadata)
        .bind(hash)
        .fetch_one(&mut *conn)
        .await?;
        last = position(&row)?;
        revision += 1;
    }
    Ok((
        AppendResult {
            next_expected_version: revision - 1,
            position: last,
        },
        true,
    ))
}

pub(super) fn position(row: &PgRow) -> Result<Position, sqlx::Error> {
    Ok(Position {
        commit: to_u64(row.try_get("tx_id")?),
        prepare: to_u64(row.try_get("seq")?),
    })
}

fn decode(row: &PgRow) -> Result<RecordedEvent, StoreError> {
    let position = position(row).map_err(map_err)?;
    let event_id: String = row.try_get("event_id").map_err(map_err)?;
    let data: String = row.try_get("data").map_err(map_err)?;
    let metadata: String = row.try_get("metadata").map_err(map_err)?;
    let recorded_us: i64 = row.try_get("recorded_us").map_err(map_err)?;
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Backend(format!(
            "stored event at {position} has an invalid {what}: {e}"
        ))
    };
    Ok(RecordedEvent {
        stream_id: row.try_get("stream_id").map_err(map_err)?,
        revision: to_u64(row.try_get("revision").map_err(map_err)?),
        position,
        event_id: Uuid::parse_str(&event_id).map_err(|e| corrupt("event id", &e))?,
        event_type: row.try_get("event_type").map_err(map_err)?,
        data: serde_json::from_str(&data).map_err(|e| corrupt("data", &e))?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt("metadata", &e))?,
        recorded_at: DateTime::<Utc>::from_timestamp_micros(recorded_us)
            .ok_or_else(|| corrupt("recorded_at", &recorded_us))?,
    })
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
