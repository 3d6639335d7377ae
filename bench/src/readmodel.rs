//! Reading hookrun's database directly (never through the server under test):
//! the `agent_test_executions` read model, and process-wide helpers on the pools.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{PgPool, Row};

use crate::server::{Backend, Server};

/// A connection pool to the server's database.
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Db {
    /// Opens the server's database (read-write: the seeder inserts with it).
    pub async fn open(server: &Server) -> anyhow::Result<Db> {
        Ok(match server.backend {
            Backend::Sqlite => {
                let path = server.scratch.dir.join("hookrun.db");
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .busy_timeout(Duration::from_secs(30));
                Db::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .connect_with(options)
                        .await
                        .context("open the server's SQLite file")?,
                )
            }
            Backend::Postgres => Db::Postgres(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&server.scratch.db_url)
                    .await
                    .context("connect to the server's PostgreSQL database")?,
            ),
        })
    }

    /// `(succeeded, failed)` rows in the read model.
    pub async fn terminal_counts(&self) -> anyhow::Result<(u64, u64)> {
        const SQL: &str = "SELECT \
            COALESCE(SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END), 0) AS ok, \
            COALESCE(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END), 0) AS failed \
            FROM agent_test_executions";
        let (ok, failed): (i64, i64) = match self {
            Db::Sqlite(p) => {
                let r = sqlx::query(SQL).fetch_one(p).await?;
                (r.try_get("ok")?, r.try_get("failed")?)
            }
            Db::Postgres(p) => {
                let r = sqlx::query(SQL).fetch_one(p).await?;
                (r.try_get("ok")?, r.try_get("failed")?)
            }
        };
        Ok((ok as u64, failed as u64))
    }

    /// Executions that can be running at once: per agent, its accepted executions up
    /// to `concurrency` (its execution slots), summed over agents.
    pub async fn startable(&self, concurrency: u32) -> anyhow::Result<u64> {
        let sql = format!(
            "SELECT CAST(COALESCE(SUM(CASE WHEN n < {concurrency} THEN n ELSE {concurrency} END), 0) \
             AS BIGINT) FROM (SELECT COUNT(*) AS n FROM agent_test_executions GROUP BY agent_id) per_agent"
        );
        let n: i64 = match self {
            Db::Sqlite(p) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(p)
                    .await?
            }
            Db::Postgres(p) => {
                sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                    .fetch_one(p)
                    .await?
            }
        };
        Ok(n as u64)
    }

    /// Those of `ids` that are terminal (succeeded or failed) in the read model.
    pub async fn terminal_among(&self, ids: &[String]) -> anyhow::Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = match self {
            Db::Sqlite(p) => sqlx::query(
                "SELECT execution_id FROM agent_test_executions \
                     WHERE status IN ('succeeded', 'failed') \
                     AND execution_id IN (SELECT value FROM json_each(?1))",
            )
            .bind(serde_json::to_string(ids)?)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("execution_id"))
            .collect::<Result<Vec<_>, _>>()?,
            Db::Postgres(p) => sqlx::query(
                "SELECT execution_id FROM agent_test_executions \
                     WHERE status IN ('succeeded', 'failed') AND execution_id = ANY($1)",
            )
            .bind(ids)
            .fetch_all(p)
            .await?
            .iter()
            .map(|r| r.try_get::<String, _>("execution_id"))
            .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(rows)
    }

    pub async fn close(self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}
