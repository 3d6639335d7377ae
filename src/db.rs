//! Database connections and migrations for the two SQL backends.
//!
//! The same schema (events, catalog, read models) exists for SQLite and PostgreSQL
//! under `migrations/sqlite` and `migrations/postgres` (compiled in by
//! [`crate::migrations`]). SQLite gets two pools: one connection for all writes (SQLite
//! has one writer at a time; serializing in-process avoids `SQLITE_BUSY`), and a few
//! for reads (WAL lets readers run beside the writer).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, Postgres, Sqlite, Transaction};
use tokio::sync::{Notify, watch};

/// A SQLite database: one writer connection, several readers.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub writer: SqlitePool,
    pub reader: SqlitePool,
    /// Set while the writer connection commits below FULL ([`SqliteDb::relaxed_writer`]);
    /// the writer pool restores FULL when the connection comes back.
    pub relaxed: Arc<AtomicBool>,
    /// Notified each time the writer connection is given back (something may have been
    /// written): wakes [`SqliteDb::run_checkpoints`].
    pub written: Arc<Notify>,
}

/// A SQL database hookrun keeps state in.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqliteDb),
    Postgres(PgPool),
}

/// Runs the same code against whichever pool a [`Db`] holds (for SQL both backends share).
/// `$pool` is bound to the writer pool on SQLite.
#[macro_export]
macro_rules! with_db {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.writer;
                $body
            }
            $crate::db::Db::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
}

/// Like [`with_db!`], with `$tx` bound to a write transaction that commits without
/// waiting for the disk ([`SqliteDb::begin_relaxed`], [`begin_relaxed_postgres`]):
/// for rows that may be lost in a crash of the machine, as long as what they belong
/// with is lost with them or can be rebuilt.
#[macro_export]
macro_rules! with_relaxed_tx {
    ($db:expr, |$tx:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(sqlite) => {
                let mut $tx = sqlite.begin_relaxed().await?;
                $body
            }
            $crate::db::Db::Postgres(pg) => {
                let mut $tx = $crate::db::begin_relaxed_postgres(pg).await?;
                $body
            }
        }
    };
}

/// A PostgreSQL transaction whose commit does not wait for its WAL to be flushed
/// (`synchronous_commit = off`): atomic and in order with every other, but a crash of
/// the database server may lose it with the relaxed commits just before it.
pub async fn begin_relaxed_postgres(
    pool: &PgPool,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Like [`with_db!`] but binds the read pool on SQLite.
#[macro_export]
macro_rules! with_db_read {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite(sqlite) => {
                let $pool = &sqlite.reader;
                $body
            }
            $crate::db::Db::Postgres(pg) => {
                let $pool = pg;
                $body
            }
        }
    };
}

impl Db {
    /// Connects to `url` (`sqlite:…` or `postgres://…`) and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::Postgres(connect_postgres(url).await?)
        } else if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .with_context(|| format!("invalid SQLite URL {url}"))?;
            Db::Sqlite(connect_sqlite(options).await?)
        } else {
            anyhow::bail!("unsupported database URL {url:?}: expected sqlite:… or postgres://…");
        };
        db.migrate().await?;
        Ok(db)
    }

    /// Opens (creating if missing) the SQLite file at `path` and applies migrations.
    pub async fn open_sqlite_file(path: &Path) -> anyhow::Result<Db> {
        let options = SqliteConnectOptions::new().filename(path);
        let db = Db::Sqlite(connect_sqlite(options).await?);
        db.migrate().await?;
        Ok(db)
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self {
            Db::Sqlite(s) => crate::migrations::sqlite()
                .run(&s.writer)
                .await
                .context("Failed to apply SQLite migrations")?,
            Db::Postgres(pg) => crate::migrations::postgres()
                .run(pg)
                .await
                .context("Failed to apply PostgreSQL migrations")?,
        }
        Ok(())
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite(s) => {
                s.writer.close().await;
                s.reader.close().await;
            }
            Db::Postgres(pg) => pg.close().await,
        }
    }
}

/// Read connections to a SQLite file.
const READERS: u32 = 4;

async fn connect_sqlite(options: SqliteConnectOptions) -> anyhow::Result<SqliteDb> {
    let options = options
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit is on disk before it returns (the 202 promises durability).
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Deleted content is overwritten with zeros: an erased tenant's rows do not
        // linger in free pages of the file (see `erasure`).
        .pragma("secure_delete", "on")
        .busy_timeout(Duration::from_secs(10));
    // The one writer touches the pages of every agent webhooks arrive for (their rows
    // in the audit log and the read models): 32 MiB of page cache (SQLite's default is
    // 2 MiB) keeps those pages in memory instead of reading them back at every commit.
    // Statement journals (the pages a multi-row statement changes, kept to undo it
    // alone) stay in memory: by default one spills into a temporary file past 64 KiB,
    // which an upsert of rows spread over many agents' pages does at every pass.
    // A server copies the WAL back into the database file beside the writer
    // (`SqliteDb::run_checkpoints`); the writer itself checkpoints only once the WAL
    // holds 8,000 pages (default 1,000), by then mostly copied, so that the file can
    // start over. A command run once leaves it all to the writer.
    let writer_options = options
        .clone()
        .pragma("cache_size", "-32768")
        .pragma("wal_autocheckpoint", "8000")
        .pragma("temp_store", "memory");
    let relaxed = Arc::new(AtomicBool::new(false));
    let lowered = Arc::clone(&relaxed);
    let written = Arc::new(Notify::new());
    let wrote = Arc::clone(&written);
    let writer = SqlitePoolOptions::new()
        // One connection: the flag below is about that one.
        .max_connections(1)
        .min_connections(1)
        // Each connection is a thread, and a thread inherits the priority of the one
        // that starts it: connections are opened here, by the service, and kept, so
        // that a rebuild at the lowest priority never opens one (`projections/aside.rs`).
        .max_lifetime(None)
        .idle_timeout(None)
        // No ping before each use: an embedded connection does not go stale, and every
        // event-store batch and read-model pass would pay one more round trip to
        // SQLite's worker thread on the one writer.
        .test_before_acquire(false)
        // A connection handed out by `relaxed_writer` goes back to the pool at FULL, or
        // is closed (a new one opens at FULL); the others are left alone.
        .after_release(move |conn, _| {
            let lowered = Arc::clone(&lowered);
            wrote.notify_one();
            Box::pin(async move {
                if lowered.swap(false, Ordering::SeqCst) {
                    sqlx::query("PRAGMA synchronous = FULL")
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(true)
            })
        })
        .connect_with(writer_options)
        .await
        .context("Failed to open the SQLite database")?;
    let reader = SqlitePoolOptions::new()
        .max_connections(READERS)
        .min_connections(READERS) // opened here and kept, as the writer's
        .max_lifetime(None)
        .idle_timeout(None)
        .test_before_acquire(false) // as the writer's
        .connect_with(options.read_only(true))
        .await
        .context("Failed to open the SQLite database for reading")?;
    Ok(SqliteDb {
        writer,
        reader,
        relaxed,
        written,
    })
}

/// The shortest time between two checkpoints beside the writer. Small checkpoints
/// keep the tail of accept latency down: in the accept benchmark's half-rate pass on
/// SQLite, p99 was 34–37 ms with a checkpoint every 100 ms, 17–23 ms every 30 ms and
/// 16–18 ms every 10 ms, at the same maximum rate (BENCHMARKS.md, third round).
const CHECKPOINT_GAP: Duration = Duration::from_millis(10);

impl SqliteDb {
    /// A write transaction (`BEGIN IMMEDIATE`) on the writer connection that commits at
    /// `synchronous = NORMAL`, not waiting for the disk; the pool sets FULL again when
    /// the connection comes back. In WAL mode the commit is atomic and in order with
    /// every other; a crash of the machine may lose it, with the relaxed commits just
    /// before it, until a FULL commit after it syncs the log they share.
    pub async fn begin_relaxed(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        let mut conn = self.writer.acquire().await?;
        self.relaxed.store(true, Ordering::SeqCst);
        // SQLite refuses the change inside a transaction: before beginning one.
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        let begin = sqlx::SqlSafeStr::into_sql_str("BEGIN IMMEDIATE");
        Transaction::begin(conn, Some(begin)).await
    }

    /// Copies the WAL back into the database file on a connection of its own after the
    /// writer has been used (at most every [`CHECKPOINT_GAP`]; nothing while nothing is
    /// written), until `shutdown` changes. A passive checkpoint never waits for, nor
    /// blocks, the writer or readers; left to the writer, that copy runs inside some
    /// commit and every append behind it waits (tens of ms under load).
    pub async fn run_checkpoints(self, mut shutdown: watch::Receiver<bool>) {
        use sqlx::ConnectOptions;
        let mut conn = match self.writer.connect_options().connect().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("no connection for WAL checkpoints (the writer does them): {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = self.written.notified() => {}
                _ = shutdown.changed() => return,
            }
            let done = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await;
            // Busy: another process's checkpoint is running; the next one will do.
            if let Err(e) = done
                && !is_transient(&e)
            {
                tracing::warn!("WAL checkpoint failed (the writer checkpoints instead): {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECKPOINT_GAP) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

async fn connect_postgres(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        // Every statement is planned for its parameters, each time it runs. Left to
        // itself, PostgreSQL settles on one generic plan per prepared statement after
        // five runs; made while the tables were nearly empty, the plans for
        // `stream_id = ANY($1)` (the event store's group commit) and
        // `execution_id = ANY($1)` (the read models) were sequential scans, kept for
        // the connection's life: a server that started under light load stayed at
        // less than half the accept rate of one that started under heavy load
        // (BENCHMARKS.md, item 20). A `SET` rather than a startup option, which
        // connection poolers in front of PostgreSQL often refuse.
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::query("SET plan_cache_mode = force_custom_plan")
                    .execute(conn)
                    .await
                    .map(drop)
            })
        })
        .connect(url)
        .await
        .with_context(|| format!("Failed to connect to PostgreSQL at {}", redact_url(url)))
}

/// The URL without its password, for messages and logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Whether a database error means "not now" (lost connection, shutdown, overload, a
/// database refusing connections) rather than "never": callers answer 503 and retry.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite result codes, extended ones too (the low byte is the primary
                // code): 5 busy, 6 locked, 8 read-only, 10 I/O error, 13 disk full,
                // 14 cannot open.
                let primary = code.parse::<i32>().map(|c| c & 0xff);
                primary.is_ok_and(|c| [5, 6, 8, 10, 13, 14].contains(&c))
                    || db.message().contains("database is locked")
            } else {
                // PostgreSQL: 08 connection exception, 53 insufficient resources, 57P0x
                // shutting down / cannot connect now, 55000 database not accepting
                // connections, 25006 read-only (a standby).
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P0")
                    || matches!(code.as_ref(), "55000" | "25006")
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// What the database file itself holds in `probe`, ignoring the WAL (`immutable`
    /// makes SQLite read the file as it is); `None` before the table reaches it.
    async fn in_file(path: &Path) -> Option<i64> {
        use sqlx::{ConnectOptions, Connection};
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .immutable(true);
        let mut conn = options.connect().await.ok()?;
        let value = sqlx::query_scalar("SELECT v FROM probe")
            .fetch_one(&mut conn)
            .await;
        let _ = conn.close().await;
        value.ok()
    }

    /// Every SQLite connection is opened when the database is, by the caller's thread,
    /// and kept: none is opened later by whichever thread then asks for one.
    #[tokio::test]
    async fn sqlite_connections_are_opened_up_front_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let Db::Sqlite(db) = Db::open_sqlite_file(&dir.path().join("hookrun.db"))
            .await
            .unwrap()
        else {
            unreachable!("opened as SQLite")
        };
        for (pool, connections) in [(&db.writer, 1), (&db.reader, READERS)] {
            assert_eq!(pool.size(), connections);
            assert_eq!(pool.options().get_min_connections(), connections);
            assert_eq!(pool.options().get_max_lifetime(), None);
            assert_eq!(pool.options().get_idle_timeout(), None);
        }
    }

    /// The writer keeps statement journals in memory (`temp_store = MEMORY`); readers
    /// keep SQLite's default, so that a large sort on a read does not grow the heap.
    #[tokio::test]
    async fn the_writer_keeps_statement_journals_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let Db::Sqlite(db) = Db::open_sqlite_file(&dir.path().join("hookrun.db"))
            .await
            .unwrap()
        else {
            unreachable!("a SQLite file opens as SQLite")
        };
        let temp_store = |pool: SqlitePool| async move {
            sqlx::query_scalar::<_, i64>("PRAGMA temp_store")
                .fetch_one(&pool)
                .await
                .unwrap()
        };
        assert_eq!(temp_store(db.writer.clone()).await, 2, "MEMORY");
        assert_eq!(temp_store(db.reader.clone()).await, 0, "DEFAULT");
    }

    /// A write reaches the database file soon after it commits, copied by the
    /// checkpointer beside the writer, not once the WAL holds 8,000 pages.
    #[tokio::test]
    async fn a_write_is_copied_into_the_database_file_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hookrun.db");
        let Db::Sqlite(db) = Db::open_sqlite_file(&path).await.unwrap() else {
            unreachable!("a SQLite file opens as SQLite")
        };
        let (stop, stopped) = watch::channel(false);
        let checkpoints = tokio::spawn(db.clone().run_checkpoints(stopped));
        for sql in [
            "CREATE TABLE probe (v INTEGER)",
            "INSERT INTO probe VALUES (42)",
        ] {
            sqlx::query(sql).execute(&db.writer).await.unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while in_file(&path).await != Some(42) {
            assert!(
                Instant::now() < deadline,
                "the write never reached the database file"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.send(true).unwrap();
        checkpoints.await.unwrap();
    }
}
