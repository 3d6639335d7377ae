//! SQLite backend (embedded default): the `events` table in the data dir's SQLite file.
//!
//! Global order is the table's `seq` (`INTEGER PRIMARY KEY AUTOINCREMENT`), with
//! `Position { commit: seq, prepare: seq }`. Appends go to one writer task on the single
//! writer connection of [`SqliteDb`], which commits whatever appends are waiting in one
//! `BEGIN IMMEDIATE` transaction (group commit: one fsync for the batch, see
//! [`batch`](super::batch) for how the batch is decided in a few statements, and
//! [`heads`](super::heads) for the rounds decided without reading). Write
//! transactions are serialized, so sequence numbers are handed out in commit order and a
//! reader can never see `seq` N+1 before N. Each row's `hash` chains it to the previous
//! event of its stream (`events::chain`), computed in the same transaction. Reads go
//! through the reader pool (WAL: readers run beside the writer). [`EventStore::changes`]
//! only sees appends made through this process's store; subscribers re-check
//! periodically for writes from elsewhere.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::batch::{self, AppendRequest};
use super::heads::{Head, Heads};
use super::{AppendResult, EventStore, ExpectedVersion, StoreError, map_err, rules};
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

impl SqliteEventStore {
    /// A store over `db` (migrations must have been applied, as `Db::open_sqlite_file` does).
    /// Starts the writer task on the current tokio runtime.
    pub fn new(db: SqliteDb) -> Self {
        let (writer, requests) = mpsc::channel(4 * batch::MAX);
        let changes = watch::Sender::new(());
        tokio::spawn(group_commit(db.writer.clone(), requests, changes.clone()));
        SqliteEventStore {
            db,
            changes,
            writer,
        }
    }
}

/// The writer task: takes every append waiting and commits them in one `BEGIN
/// IMMEDIATE` transaction, then answers each. A commit is an fsync (`synchronous =
/// FULL`): batching makes it one per batch instead of one per append, and every answer
/// still comes after its events are on disk.
async fn group_commit(
    pool: SqlitePool,
    mut requests: mpsc::Receiver<AppendRequest>,
    changes: watch::Sender<()>,
) {
    let heads = Heads::default();
    let mut batch = Vec::with_capacity(batch::MAX);
    while requests.recv_many(&mut batch, batch::MAX).await > 0 {
        let results = match commit_batch(&pool, &heads, &batch).await {
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

/// The batch in rounds of a few statements each ([`batch`]); if the database refuses
/// a round's rows (which the checks should have prevented), the batch again one append
/// at a time, each in its own savepoint, so that one bad append fails alone.
async fn commit_batch(
    pool: &SqlitePool,
    heads: &Heads,
    batch: &[AppendRequest],
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_err)?;
    let mut written = Vec::new();
    match every_round(&mut tx, heads, batch, &mut written).await {
        Ok(answers) => {
            tx.commit().await.map_err(map_err)?;
            heads.remember(written);
            Ok(answers)
        }
        Err(e @ StoreError::Unavailable(_)) => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, "batched append refused; appending one at a time");
            tx.rollback().await.map_err(map_err)?;
            commit_each(pool, batch).await
        }
    }
}

async fn every_round(
    conn: &mut sqlx::SqliteConnection,
    heads: &Heads,
    batch: &[AppendRequest],
    written: &mut Vec<(String, Head)>,
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    let mut answers = batch::Answers::new(batch);
    for round in batch::rounds(batch) {
        let round_answers = append_round(conn, heads, batch, &round, written).await?;
        answers.record(round, round_answers);
    }
    Ok(answers.finish())
}

/// One round of a batch: one insert when memory can decide it ([`Heads`]), else two
/// reads and one insert. A unique violation means memory was wrong: the statement
/// undid its rows (the transaction goes on), and the round is decided from the reads.
async fn append_round(
    conn: &mut sqlx::SqliteConnection,
    heads: &Heads,
    batch: &[AppendRequest],
    round: &[usize],
    written: &mut Vec<(String, Head)>,
) -> Result<Vec<Result<AppendResult, StoreError>>, StoreError> {
    if let Some(stored) = heads.stored(batch, round) {
        match insert_round(conn, batch, round, &stored, written).await {
            Err(e) if is_unique_violation(&e) => {}
            decided => return decided.map_err(map_err),
        }
    }
    let stored = read_stored(conn, batch, round).await.map_err(map_err)?;
    insert_round(conn, batch, round, &stored, written)
        .await
        .map_err(map_err)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|db| db.is_unique_violation())
}

/// The last event of each of the round's streams, and the events already stored under
/// one of its ids.
async fn read_stored(
    conn: &mut sqlx::SqliteConnection,
    batch: &[AppendRequest],
    round: &[usize],
) -> Result<batch::Stored, sqlx::Error> {
    let (streams, ids) = batch::keys(batch, round);
    let streams = serde_json::to_string(&streams).map_err(unencodable)?;
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let ids = serde_json::to_string(&ids).map_err(unencodable)?;
    let mut stored = batch::Stored::default();
    // A bare column beside MAX() comes from the row holding the maximum.
    let lasts = sqlx::query(
        "SELECT stream_id, MAX(revision) AS revision, hash FROM events \
         WHERE stream_id IN (SELECT value FROM json_each(?1)) GROUP BY stream_id",
    )
    .bind(streams)
    .fetch_all(&mut *conn)
    .await?;
    for row in &lasts {
        let stream: String = row.try_get("stream_id")?;
        let revision = to_u64(row.try_get("revision")?);
        stored.last.insert(stream, (revision, row.try_get("hash")?));
    }
    let found = sqlx::query(
        "SELECT event_id, stream_id, revision, seq FROM events \
         WHERE event_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    for row in &found {
        let id: String = row.try_get("event_id")?;
        let seq = to_u64(row.try_get("seq")?);
        stored.ids.insert(
            Uuid::parse_str(&id).map_err(undecodable)?,
            rules::StoredId {
                stream_id: row.try_get("stream_id")?,
                revision: to_u64(row.try_get("revision")?),
                position: Position {
                    commit: seq,
                    prepare: seq,
                },
            },
        );
    }
    Ok(stored)
}

/// Decides the round against `stored` and inserts its rows in one statement; the heads
/// they leave go to `written` once they are in.
async fn insert_round(
    conn: &mut sqlx::SqliteConnection,
    batch: &[AppendRequest],
    round: &[usize],
    stored: &batch::Stored,
    written: &mut Vec<(String, Head)>,
) -> Result<Vec<Result<AppendResult, StoreError>>, sqlx::Error> {
    let plan = batch::plan(batch, round, stored);
    let mut positions = HashMap::with_capacity(plan.rows.len());
    if !plan.rows.is_empty() {
        // Rows in more than one statement: a refused row must undo the statements
        // before it too, since the caller then decides the round from what is stored,
        // in this same transaction.
        let several = plan.rows.len() > INSERT_MAX;
        if several {
            sqlx::query("SAVEPOINT round").execute(&mut *conn).await?;
        }
        let inserted = insert_rows(conn, &plan.rows, &mut positions).await;
        if several {
            if inserted.is_err() {
                sqlx::query("ROLLBACK TO round").execute(&mut *conn).await?;
            }
            sqlx::query("RELEASE round").execute(&mut *conn).await?;
        }
        inserted?;
        written.extend(plan.heads());
    }
    Ok(plan.answers(&positions))
}

/// Inserts `rows` ([`INSERT_SQL`]: one statement up to [`INSERT_MAX`] rows) and
/// records where each event went.
async fn insert_rows(
    conn: &mut sqlx::SqliteConnection,
    rows: &[batch::Row<'_>],
    positions: &mut HashMap<Uuid, Position>,
) -> Result<(), sqlx::Error> {
    let recorded_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    for chunk in rows.chunks(INSERT_MAX) {
        let slots = chunk.len().next_power_of_two();
        let mut insert = sqlx::query(sqlx::AssertSqlSafe(
            INSERT_SQL[slots.ilog2() as usize].as_str(),
        ));
        for r in chunk {
            insert = insert
                .bind(r.stream)
                .bind(to_i64(r.revision))
                .bind(r.event.event_id.to_string())
                .bind(r.event.event_type.as_str())
                .bind(r.data.as_str())
                .bind(r.metadata.as_str())
                .bind(recorded_at.as_str())
                .bind(r.hash.as_str());
        }
        for _ in 0..(slots - chunk.len()) * INSERT_COLUMNS {
            insert = insert.bind(None::<&str>);
        }
        for row in &insert.fetch_all(&mut *conn).await? {
            let id: String = row.try_get("event_id")?;
            let seq = to_u64(row.try_get("seq")?);
            positions.insert(
                Uuid::parse_str(&id).map_err(undecodable)?,
                Position {
                    commit: seq,
                    prepare: seq,
                },
            );
        }
    }
    Ok(())
}

/// Most rows one insert statement takes ([`INSERT_COLUMNS`] parameters each, far under
/// SQLite's limit).
const INSERT_MAX: usize = 256;
const INSERT_COLUMNS: usize = 8;

/// Insert statements for 1, 2, 4, … [`INSERT_MAX`] rows, every value a bound parameter:
/// a round's rows go in one statement, its unused rows bound to NULL and skipped. Nine
/// texts, each prepared once per connection and then cached. Not a JSON array of the
/// rows: each event's data would be escaped into it, parsed by SQLite and unescaped
/// again. Not one text per row count: most batches would be prepared anew. Not
/// statements of 64, 32, … rows: each is a round trip to the connection's thread while
/// the one writer is held (BENCHMARKS.md, item 50).
static INSERT_SQL: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (0..=INSERT_MAX.ilog2())
        .map(|i| {
            let row = format!("({})", ["?"; INSERT_COLUMNS].join(", "));
            format!(
                "INSERT INTO events (stream_id, revision, event_id, event_type, data, metadata, \
                 recorded_at, hash) SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL \
                 RETURNING event_id, seq",
                vec![row; 1 << i].join(", ")
            )
        })
        .collect()
});

/// A `LIMIT` written into the statement's text. SQLite plans a bound `LIMIT ?` for the
/// value bound, so it prepares such a statement again at every run. The callers of
/// `read_all` and `count_after` pass a few fixed limits: each text is prepared once
/// per connection and then cached.
fn literal_limit(limit: u64) -> i64 {
    to_i64(limit)
}

/// A statement's parameter that could not be built (a store fault, not a transient one).
fn unencodable(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Encode(Box::new(e))
}

/// A stored value that could not be read back (a store fault, not a transient one).
fn undecodable(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// The batch one append at a time, each in its own savepoint of one transaction: an
/// append that fails rolls back to its savepoint and leaves the others alone.
async fn commit_each(
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
    rules::check_events(stream, events)?;
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
        // Bound, though SQLite then prepares it at every run (`literal_limit`): the
        // per-agent listings pass any page size up to 500, too many texts to cache.
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
        let sql = format!(
            "SELECT {COLUMNS} FROM events WHERE seq >= ?1 ORDER BY seq LIMIT {}",
            literal_limit(limit as u64)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(to_i64(first))
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
        let sql = format!(
            "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE seq >= ?1 LIMIT {})",
            literal_limit(cap)
        );
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(to_i64(first))
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

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
