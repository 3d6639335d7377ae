//! Projections through the real server, on SQLite and PostgreSQL: lag in the API and
//! `/metrics` (`lag.rs`); rebuilds that swap a replayed table in while the API keeps
//! answering, and a changed projection version that rebuilds on start (`rebuilds.rs`);
//! how the runner's passes keep the read models level (`passes.rs`); the table a swap
//! replaced, removed in steps (`retire.rs`).

use crate::support;

use std::time::{Duration, Instant};

use hookrun::db::Db;
use hookrun::projections::batch::Target;
use serde_json::Value;
use support::app::TestApp;
pub use support::sql;

mod lag;
mod passes;
mod rebuilds;
mod retire;

/// Polls `GET /api/projections` until `done` holds for it (deadline 20 s).
pub async fn wait_projections(app: &TestApp, key: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = app.get(key, "/api/projections").await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "projections never reached the state: {v}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The secondary indexes of `table`, by name.
pub async fn index_names(db: &Db, table: &str) -> Vec<String> {
    match db {
        Db::Sqlite(s) => sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL",
        )
        .bind(table)
        .fetch_all(&s.writer)
        .await
        .unwrap(),
        Db::Postgres(pg) => sqlx::query_scalar("SELECT indexname::text FROM pg_indexes WHERE tablename = $1")
            .bind(table)
            .fetch_all(pg)
            .await
            .unwrap(),
    }
}

pub fn projection<'a>(v: &'a Value, name: &str) -> &'a Value {
    v["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no projection {name} in {v}"))
}

/// An empty shadow of `agent_test_executions` named after `suffix`, for a test that
/// writes into it by hand.
pub async fn executions_shadow(db: &Db, suffix: &str) -> Target {
    use hookrun::projections::executions::Executions;
    use hookrun::projections::{Projection, shadow};

    let target = Target::beside(Executions::NAME, suffix);
    shadow::prepare(
        db,
        Executions::NAME,
        "execution_id",
        &target,
        Executions::VERSION,
        false,
    )
    .await
    .unwrap();
    target
}

/// Each of the executions `ids` is served with the gateway's output: the replayed row,
/// not one a test made stale.
pub async fn assert_replayed_outputs(app: &TestApp, key: &str, ids: &[String]) {
    for id in ids {
        let row: Value = app
            .get(key, &format!("/api/executions/{id}"))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(row["output"], support::app::GATEWAY_OUTPUT, "{row}");
    }
}
