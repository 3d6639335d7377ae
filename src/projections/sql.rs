//! The transaction every read-model batch runs in, and the checkpoints (how far each
//! table has read the global order). The row statements are in [`super::rows`].
//!
//! [`Tx`] is the transaction a batch runs in. It serializes the writers of one target:
//! on SQLite `BEGIN IMMEDIATE` (one writer at a time), on PostgreSQL a transaction-level
//! advisory lock per checkpoint name (taken without a transaction id, so it does not
//! hold back the event store's read horizon).

use sqlx::{AssertSqlSafe, Postgres, Sqlite, Transaction};

use crate::db::{Db, begin_relaxed_postgres};
use crate::events::Position;

pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

/// Runs `$body` with `$c` bound to the transaction's connection (either backend).
macro_rules! on_tx {
    ($tx:expr, |$c:ident| $body:expr) => {
        match $tx {
            Tx::Sqlite(t) => {
                let $c = &mut **t;
                $body
            }
            Tx::Postgres(t) => {
                let $c = &mut **t;
                $body
            }
        }
    };
}
pub(super) use on_tx;

impl Tx {
    /// Begins a transaction holding the write locks of the checkpoints `locks`.
    pub async fn begin(db: &Db, locks: &[&str]) -> Result<Tx, sqlx::Error> {
        match db {
            Db::Sqlite(s) => Ok(Tx::Sqlite(s.writer.begin_with("BEGIN IMMEDIATE").await?)),
            Db::Postgres(pg) => {
                let mut tx = pg.begin().await?;
                lock_checkpoints(&mut tx, locks).await?;
                Ok(Tx::Postgres(tx))
            }
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(t) => t.commit().await,
            Tx::Postgres(t) => t.commit().await,
        }
    }

    /// Like [`Tx::begin`], for a transaction that commits without waiting for its log
    /// to reach the disk: atomic and in order with every other commit, but a crash of
    /// the machine (PostgreSQL: of the database server) may lose it, with the relaxed
    /// commits just before it. Any durable commit after it makes it durable too: one
    /// log holds both, and reaches the disk in order. For read-model batches, whose rows
    /// and checkpoint commit together and whose events were on disk before they could
    /// be read: a lost batch is folded again from the checkpoint it left.
    /// SQLite: `synchronous = NORMAL` for this transaction (`SqliteDb::begin_relaxed`);
    /// PostgreSQL: `synchronous_commit = off` (`db::begin_relaxed_postgres`).
    pub async fn begin_relaxed(db: &Db, locks: &[&str]) -> Result<Tx, sqlx::Error> {
        match db {
            Db::Sqlite(s) => Ok(Tx::Sqlite(s.begin_relaxed().await?)),
            Db::Postgres(pg) => {
                let mut tx = begin_relaxed_postgres(pg).await?;
                lock_checkpoints(&mut tx, locks).await?;
                Ok(Tx::Postgres(tx))
            }
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Tx::Postgres(_))
    }

    /// Runs one statement without results.
    pub async fn execute(&mut self, sql: String) -> Result<u64, sqlx::Error> {
        on_tx!(self, |c| Ok(sqlx::query(AssertSqlSafe(sql))
            .execute(c)
            .await?
            .rows_affected()))
    }
}

/// PostgreSQL: the transaction-level advisory lock of each checkpoint in `locks`.
async fn lock_checkpoints(
    tx: &mut Transaction<'static, Postgres>,
    locks: &[&str],
) -> Result<(), sqlx::Error> {
    let mut locks = locks.to_vec();
    locks.sort_unstable(); // one order everywhere: no deadlock between lockers
    for name in locks {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))")
            .bind(name)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Where a projection has read up to, and which version of it wrote the rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    pub position: Position,
    pub version: u32,
}

fn checkpoint_of(commit: i64, prepare: i64, version: i64) -> Checkpoint {
    Checkpoint {
        position: Position {
            commit: commit.max(0) as u64,
            prepare: prepare.max(0) as u64,
        },
        version: version.max(0) as u32,
    }
}

const SELECT_CHECKPOINT: &str =
    "SELECT commit_pos, prepare_pos, version FROM projection_checkpoints WHERE name = $1";

pub async fn read_checkpoint(db: &Db, name: &str) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64)> = crate::with_db_read!(db, |pool| {
        sqlx::query_as(SELECT_CHECKPOINT)
            .bind(name)
            .fetch_optional(pool)
            .await?
    });
    Ok(row.map(|(c, p, v)| checkpoint_of(c, p, v)))
}

pub async fn read_checkpoint_in(
    tx: &mut Tx,
    name: &str,
) -> Result<Option<Checkpoint>, sqlx::Error> {
    let row: Option<(i64, i64, i64)> = on_tx!(tx, |c| sqlx::query_as(SELECT_CHECKPOINT)
        .bind(name)
        .fetch_optional(c)
        .await?);
    Ok(row.map(|(c, p, v)| checkpoint_of(c, p, v)))
}

/// Every checkpoint (live read models, shadows, scratch copies: a handful of rows).
const SELECT_CHECKPOINTS: &str =
    "SELECT name, commit_pos, prepare_pos, version FROM projection_checkpoints";

/// The positions of the checkpoints `names`, in that order (a checkpoint not yet written
/// is at the start), read in one statement: one snapshot of all of them.
pub async fn read_positions(db: &Db, names: &[&str]) -> Result<Vec<Position>, sqlx::Error> {
    let rows = crate::with_db_read!(db, |pool| sqlx::query_as(SELECT_CHECKPOINTS)
        .fetch_all(pool)
        .await?);
    Ok(positions_of(names, rows))
}

/// [`read_positions`] inside a transaction.
pub async fn read_positions_in(tx: &mut Tx, names: &[&str]) -> Result<Vec<Position>, sqlx::Error> {
    let rows = on_tx!(tx, |c| sqlx::query_as(SELECT_CHECKPOINTS)
        .fetch_all(c)
        .await?);
    Ok(positions_of(names, rows))
}

fn positions_of(names: &[&str], rows: Vec<(String, i64, i64, i64)>) -> Vec<Position> {
    names
        .iter()
        .map(|name| {
            rows.iter()
                .find(|(n, ..)| n == name)
                .map_or(Position::START, |(_, c, p, v)| {
                    checkpoint_of(*c, *p, *v).position
                })
        })
        .collect()
}

/// Moves a checkpoint to `position`; a new checkpoint gets `version`, an existing one
/// keeps its version (only a completed rebuild changes it, with [`set_checkpoint`]).
pub async fn advance_checkpoint(
    tx: &mut Tx,
    name: &str,
    position: Position,
    version: u32,
) -> Result<(), sqlx::Error> {
    write_checkpoints(tx, &[(name, version)], position, false).await
}

/// [`advance_checkpoint`] for several checkpoints (name, version for a new one), in one
/// statement.
pub async fn advance_checkpoints(
    tx: &mut Tx,
    checkpoints: &[(&str, u32)],
    position: Position,
) -> Result<(), sqlx::Error> {
    write_checkpoints(tx, checkpoints, position, false).await
}

/// Sets a checkpoint's position and version.
pub async fn set_checkpoint(
    tx: &mut Tx,
    name: &str,
    position: Position,
    version: u32,
) -> Result<(), sqlx::Error> {
    write_checkpoints(tx, &[(name, version)], position, true).await
}

async fn write_checkpoints(
    tx: &mut Tx,
    checkpoints: &[(&str, u32)],
    position: Position,
    with_version: bool,
) -> Result<(), sqlx::Error> {
    let values: Vec<String> = (0..checkpoints.len())
        .map(|i| {
            let p: Vec<String> = (1..=5).map(|k| format!("${}", i * 5 + k)).collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO projection_checkpoints (name, commit_pos, prepare_pos, version, updated_at) \
         VALUES {} ON CONFLICT (name) DO UPDATE SET \
         commit_pos = excluded.commit_pos, prepare_pos = excluded.prepare_pos, {}\
         updated_at = excluded.updated_at",
        values.join(", "),
        if with_version {
            "version = excluded.version, "
        } else {
            ""
        }
    );
    let now = crate::catalog::timestamp(chrono::Utc::now());
    on_tx!(tx, |c| {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for (name, version) in checkpoints {
            q = q
                .bind(*name)
                .bind(position.commit as i64)
                .bind(position.prepare as i64)
                .bind(i64::from(*version))
                .bind(&now);
        }
        q.execute(c).await.map(|_| ())
    })
}

pub async fn delete_checkpoint(tx: &mut Tx, name: &str) -> Result<(), sqlx::Error> {
    on_tx!(tx, |c| sqlx::query(
        "DELETE FROM projection_checkpoints WHERE name = $1"
    )
    .bind(name)
    .execute(c)
    .await
    .map(|_| ()))
}

/// Makes every read-model batch committed so far durable (batches commit relaxed, see
/// [`Tx::begin_relaxed`]): one durable commit that writes to the log, which reaches
/// the disk in order, so everything committed before it is there too. It rewrites the
/// `name` checkpoint's `updated_at`, under that checkpoint's lock.
pub async fn flush(db: &Db, name: &str) -> Result<(), sqlx::Error> {
    let mut tx = Tx::begin(db, &[name]).await?;
    let now = crate::catalog::timestamp(chrono::Utc::now());
    on_tx!(&mut tx, |c| sqlx::query(
        "UPDATE projection_checkpoints SET updated_at = $1 WHERE name = $2"
    )
    .bind(&now)
    .bind(name)
    .execute(c)
    .await
    .map(|_| ()))?;
    tx.commit().await
}
