//! A fresh PostgreSQL database per test.
//!
//! `HOOKRUN_TEST_POSTGRES_URL` names a server and a database to connect to for
//! `CREATE DATABASE` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! PostgreSQL tests run unless `HOOKRUN_SKIP_POSTGRES=1`; a skipped test prints a line
//! starting with `SKIPPED postgres` (CI fails when it sees one).
//!
//! The databases are named `hookrun_test_{unix seconds}_{uuid}` and outlive their test
//! (a failed test's data can be looked at). Before the first one of a run is created,
//! those created more than [`KEEP_FOR`] ago are dropped ([`sweep_once`]), so they do
//! not pile up on a machine that runs the tests again and again.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};
use tokio::sync::OnceCell;

/// How long a test database is kept after it was created. A run takes minutes.
pub const KEEP_FOR: Duration = Duration::from_secs(3600);

const PREFIX: &str = "hookrun_test_";

static SWEPT: OnceCell<()> = OnceCell::const_new();

pub fn admin_url() -> String {
    std::env::var("HOOKRUN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty database with a random name and returns its URL, or `None` (after
/// printing why) when PostgreSQL tests are switched off.
pub async fn fresh_database(test: &str) -> Option<String> {
    let mut conn = admin_connection(test).await?;
    sweep_once(&mut conn).await;
    let name = database_name(now_secs());
    create_database(&mut conn, &name).await;
    let admin = admin_url();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}

/// A connection to the server's admin database, or `None` (after printing why) when
/// PostgreSQL tests are switched off.
pub async fn admin_connection(test: &str) -> Option<PgConnection> {
    if std::env::var("HOOKRUN_SKIP_POSTGRES").as_deref() == Ok("1") {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL tests may not be skipped in CI"
        );
        println!("SKIPPED postgres: {test} (HOOKRUN_SKIP_POSTGRES=1)");
        return None;
    }
    let admin = admin_url();
    let conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is needed for {test} but {admin} cannot be reached ({e}); \
             start it or set HOOKRUN_SKIP_POSTGRES=1"
        )
    });
    Some(conn)
}

pub async fn create_database(conn: &mut PgConnection, name: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(conn)
        .await
        .expect("CREATE DATABASE");
}

/// `DROP DATABASE`; refused for a database still in use.
pub async fn drop_database(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\"")))
        .execute(conn)
        .await
        .map(drop)
}

/// Drops the old test databases, once per run: a test that comes while the sweep runs
/// waits for it, so the sweep never races a test's own databases.
pub async fn sweep_once(conn: &mut PgConnection) {
    SWEPT
        .get_or_init(|| drop_old_databases(conn, now_secs()))
        .await;
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A new test database's name, created at `created` (unix seconds).
pub fn database_name(created: u64) -> String {
    format!("{PREFIX}{created}_{}", uuid::Uuid::new_v4().simple())
}

/// Whether `name` is a test database created more than [`KEEP_FOR`] before `now`.
/// Names of the earlier format (`hookrun_test_{uuid}`, no time) count as old.
pub fn is_old(name: &str, now: u64) -> bool {
    let Some(rest) = name.strip_prefix(PREFIX) else {
        return false;
    };
    match rest.split_once('_') {
        Some((created, _)) => created
            .parse::<u64>()
            .is_ok_and(|created| created < now.saturating_sub(KEEP_FOR.as_secs())),
        None => rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()),
    }
}

/// Drops the old test databases ([`is_old`]). One still in use (by a run of another
/// checkout, say) is left: `DROP DATABASE` refuses it.
pub async fn drop_old_databases(conn: &mut PgConnection, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(PREFIX)
            .fetch_all(&mut *conn)
            .await
            .expect("list test databases");
    for name in names.into_iter().filter(|n| is_old(n, now)) {
        let _ = drop_database(conn, &name).await;
    }
}
