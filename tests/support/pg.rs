//! A fresh PostgreSQL database per test.
//!
//! `HOOKRUN_TEST_POSTGRES_URL` names a server and a database to connect to for
//! `CREATE DATABASE` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//! PostgreSQL tests run unless `HOOKRUN_SKIP_POSTGRES=1`; a skipped test prints a line
//! starting with `SKIPPED postgres` (CI fails when it sees one).

use sqlx::Connection;

pub fn admin_url() -> String {
    std::env::var("HOOKRUN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Creates an empty database with a random name and returns its URL, or `None` (after
/// printing why) when PostgreSQL tests are switched off.
pub async fn fresh_database(test: &str) -> Option<String> {
    if std::env::var("HOOKRUN_SKIP_POSTGRES").as_deref() == Ok("1") {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL tests may not be skipped in CI"
        );
        println!("SKIPPED postgres: {test} (HOOKRUN_SKIP_POSTGRES=1)");
        return None;
    }
    let admin = admin_url();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for {test} but {admin} cannot be reached ({e}); \
             start it or set HOOKRUN_SKIP_POSTGRES=1"
            )
        });
    let name = format!("hookrun_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("CREATE DATABASE");
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    Some(format!("{base}/{name}"))
}
