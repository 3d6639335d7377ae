//! Shared helpers for integration tests.
#![allow(dead_code)]

/// Runs each named `async fn(Backend)` as two tests, `sqlite::name` and
/// `postgres::name` (the calling file must have `Backend` in scope).
#[allow(unused_macros)]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[actix_web::test] async fn $name() { super::$name(super::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[actix_web::test] async fn $name() { super::$name(super::Backend::Postgres).await } )*
        }
    };
}

/// Runs one SQL statement on the service's database, for a test that sets up or
/// damages stored state by hand.
pub async fn sql(db: &hookrun::db::Db, statement: impl Into<String>) {
    let statement = sqlx::AssertSqlSafe(statement.into());
    hookrun::with_db!(db, |pool| {
        sqlx::query(statement).execute(pool).await.expect("SQL");
    });
}

pub mod app;
pub mod pg;
pub mod process;
