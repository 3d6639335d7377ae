//! Group commit on PostgreSQL: a few writer tasks take the appends that are waiting and
//! commit each batch in one transaction with three statements per round ([`batch`]),
//! instead of a transaction of four statements per append. The usual batch (new
//! streams, and the next event of streams this process wrote: one round that the
//! writers' shared [`Heads`] can decide) is a single insert committing on its own.
//!
//! Races with other writers (the other writer tasks, other processes) are settled as
//! for a single append (see the `postgres` module doc): the unique index on
//! `(stream_id, revision)` refuses the loser's insert, and the loser retries the whole
//! batch in a fresh transaction, which sees the winner's rows. A batch the database
//! refuses for another reason is run again one append at a time, so that the append at
//! fault fails alone.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{PgConnection, PgPool, Row};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use uuid::Uuid;

use super::batch::{self, AppendRequest};
use super::heads::{Head, Heads};
use super::postgres::{Failure, MAX_ATTEMPTS, append_one, position, to_i64, to_u64};
use super::rules::StoredId;
use super::{AppendResult, StoreError};

/// Writer tasks per process: while one waits for its commit's flush, another gathers
/// the next batch.
pub(super) const WRITERS: usize = 2;

/// One writer task; `requests` is shared by the [`WRITERS`] tasks.
pub(super) async fn run(
    pool: PgPool,
    heads: Arc<Heads>,
    requests: Arc<Mutex<mpsc::Receiver<AppendRequest>>>,
    changes: Arc<watch::Sender<()>>,
    appended: Arc<Notify>,
) {
    let mut batch = Vec::with_capacity(batch::MAX);
    loop {
        let received = requests
            .lock()
            .await
            .recv_many(&mut batch, batch::MAX)
            .await;
        if received == 0 {
            return;
        }
        let results = commit_batch(&pool, &heads, &batch).await;
        if results.iter().any(Result::is_ok) {
            changes.send_replace(());
            appended.notify_one();
        }
        for (request, result) in batch.drain(..).zip(results) {
            let _ = request.reply.send(result);
        }
    }
}

async fn commit_batch(
    pool: &PgPool,
    heads: &Heads,
    batch: &[AppendRequest],
) -> Vec<Result<AppendResult, StoreError>> {
    let unavailable = |e: &dyn std::fmt::Display| {
        batch
            .iter()
            .map(|_| Err(StoreError::Unavailable(e.to_string())))
            .collect()
    };
    let mut last_race = String::new();
    // Memory decides the first attempt only: a lost race may be memory's mistake.
    for attempt_no in 0..MAX_ATTEMPTS {
        match attempt(pool, heads, attempt_no == 0, batch).await {
            Ok(results) => return results,
            Err(Failure::Race(e)) => last_race = e.to_string(),
            Err(Failure::Store(e @ StoreError::Unavailable(_))) => return unavailable(&e),
            Err(Failure::Store(e)) => {
                tracing::warn!(error = %e, "batched append refused; appending one at a time");
                return one_at_a_time(pool, batch).await;
            }
        }
    }
    unavailable(&format!(
        "a batch of appends lost {MAX_ATTEMPTS} races in a row (last: {last_race})"
    ))
}

async fn one_at_a_time(
    pool: &PgPool,
    batch: &[AppendRequest],
) -> Vec<Result<AppendResult, StoreError>> {
    let mut results = Vec::with_capacity(batch.len());
    for request in batch {
        results.push(append_one(pool, &request.stream, request.expected, &request.events).await);
    }
    results
}

/// The whole batch in one transaction, round after round. Or, when it is one round
/// that memory can decide ([`Heads`], if `remembered`), one insert on its own: with
/// nothing to read first there is nothing to hold a transaction open for, and the
/// statement commits alone. Memory being wrong makes it a unique violation: a lost race.
async fn attempt(
    pool: &PgPool,
    heads: &Heads,
    remembered: bool,
    batch: &[AppendRequest],
) -> Result<Vec<Result<AppendResult, StoreError>>, Failure> {
    let rounds = batch::rounds(batch);
    let mut answers = batch::Answers::new(batch);
    let mut written = Vec::new();
    if let [round] = rounds.as_slice()
        && remembered
        && let Some(stored) = heads.stored(batch, round)
    {
        let mut conn = pool.acquire().await?;
        let round_answers = insert_round(&mut conn, batch, round, &stored, &mut written).await?;
        answers.record(round.clone(), round_answers);
        heads.remember(written);
        return Ok(answers.finish());
    }
    let mut tx = pool.begin().await?;
    for round in rounds {
        let stored = read_stored(&mut tx, batch, &round).await?;
        let round_answers = insert_round(&mut tx, batch, &round, &stored, &mut written).await?;
        answers.record(round, round_answers);
    }
    tx.commit().await?;
    heads.remember(written);
    Ok(answers.finish())
}

/// What the store holds for a round: the streams' last events, then the stored ids (in
/// this order, as for a single append: see `postgres::append_on`).
async fn read_stored(
    conn: &mut PgConnection,
    batch: &[AppendRequest],
    round: &[usize],
) -> Result<batch::Stored, sqlx::Error> {
    let (streams, ids) = batch::keys(batch, round);
    let mut stored = batch::Stored::default();
    let lasts = sqlx::query(
        "SELECT DISTINCT ON (stream_id) stream_id, revision, hash FROM events \
         WHERE stream_id = ANY($1) ORDER BY stream_id, revision DESC",
    )
    .bind(streams)
    .fetch_all(&mut *conn)
    .await?;
    for row in &lasts {
        let revision = to_u64(row.try_get("revision")?);
        stored
            .last
            .insert(row.try_get("stream_id")?, (revision, row.try_get("hash")?));
    }
    let found = sqlx::query(
        "SELECT event_id::text AS event_id, stream_id, revision, tx_id, seq FROM events \
         WHERE event_id = ANY($1::text[]::uuid[])",
    )
    .bind(ids.iter().map(Uuid::to_string).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    for row in &found {
        stored.ids.insert(
            event_id(row)?,
            StoredId {
                stream_id: row.try_get("stream_id")?,
                revision: to_u64(row.try_get("revision")?),
                position: position(row)?,
            },
        );
    }
    Ok(stored)
}

/// Decides the round against `stored` and inserts its rows in one statement; the heads
/// they leave go to `written` once they are in.
async fn insert_round(
    conn: &mut PgConnection,
    batch: &[AppendRequest],
    round: &[usize],
    stored: &batch::Stored,
    written: &mut Vec<(String, Head)>,
) -> Result<Vec<Result<AppendResult, StoreError>>, sqlx::Error> {
    let mut plan = batch::plan(batch, round, stored);
    let mut positions = HashMap::with_capacity(plan.rows.len());
    if !plan.rows.is_empty() {
        let heads = plan.heads();
        // One statement whatever the number of rows: a column array per field.
        // `json` keeps the text as sent, so the hash covers exactly what is stored.
        let mut columns = Columns::default();
        for row in std::mem::take(&mut plan.rows) {
            columns.push(row);
        }
        let inserted = sqlx::query(
            "INSERT INTO events (stream_id, revision, event_id, event_type, data, metadata, \
             hash) SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[]::uuid[], \
             $4::text[], $5::text[]::json[], $6::text[]::json[], $7::text[]) \
             RETURNING event_id::text AS event_id, tx_id, seq",
        )
        .bind(columns.stream)
        .bind(columns.revision)
        .bind(columns.event_id)
        .bind(columns.event_type)
        .bind(columns.data)
        .bind(columns.metadata)
        .bind(columns.hash)
        .fetch_all(&mut *conn)
        .await?;
        for row in &inserted {
            positions.insert(event_id(row)?, position(row)?);
        }
        written.extend(heads);
    }
    Ok(plan.answers(&positions))
}

fn event_id(row: &sqlx::postgres::PgRow) -> Result<Uuid, sqlx::Error> {
    let text: String = row.try_get("event_id")?;
    Uuid::parse_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The rows of an insert, a column array per field.
#[derive(Default)]
struct Columns {
    stream: Vec<String>,
    revision: Vec<i64>,
    event_id: Vec<String>,
    event_type: Vec<String>,
    data: Vec<String>,
    metadata: Vec<String>,
    hash: Vec<String>,
}

impl Columns {
    fn push(&mut self, row: batch::Row<'_>) {
        self.stream.push(row.stream.to_owned());
        self.revision.push(to_i64(row.revision));
        self.event_id.push(row.event.event_id.to_string());
        self.event_type.push(row.event.event_type.clone());
        self.data.push(row.data);
        self.metadata.push(row.metadata);
        self.hash.push(row.hash);
    }
}
