//! Read-model batches commit relaxed (they need not wait for the disk: a lost batch is
//! folded again from its checkpoint), on the very connection the event store appends
//! on (SQLite's one writer) or in the same pool (PostgreSQL). What must hold, on both
//! backends: the relaxation never outlives its transaction, whether it committed or
//! was dropped, so every append after it is still durable before its 202.

use crate::support;

use hookrun::db::Db;
use hookrun::projections::sql::Tx;
use support::app::{Backend, spawn_app};

on_both_backends!(
    appends_stay_durable_after_read_model_batches,
    a_relaxed_transaction_dropped_unfinished_leaves_the_connection_durable,
);

/// How durably the connection the event store writes on commits now: SQLite's
/// `synchronous` (2 = FULL) on the one writer, PostgreSQL's `synchronous_commit` on
/// every pooled connection.
async fn commit_safety(db: &Db) -> Vec<String> {
    match db {
        Db::Sqlite(s) => {
            let level: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&s.writer)
                .await
                .unwrap();
            vec![level.to_string()]
        }
        Db::Postgres(pg) => {
            // One connection (waiting for it if it is being given back), then every
            // other idle one, each held so that the next is another.
            let mut held = vec![pg.acquire().await.unwrap()];
            while let Some(conn) = pg.try_acquire() {
                held.push(conn);
            }
            let mut seen = Vec::new();
            for conn in &mut held {
                let value: String = sqlx::query_scalar("SHOW synchronous_commit")
                    .fetch_one(&mut **conn)
                    .await
                    .unwrap();
                seen.push(value);
            }
            seen
        }
    }
}

fn durable(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "2",
        Backend::Postgres => "on",
    }
}

async fn appends_stay_durable_after_read_model_batches(backend: Backend) {
    let Some(app) = spawn_app(backend, "relaxed").await else {
        return;
    };
    app.run_executions("acme", 3).await;
    // The executions are terminal in the read model: batches have committed.
    app.projector.catch_up().await.unwrap();
    for value in commit_safety(&app.state.db).await {
        assert_eq!(value, durable(backend));
    }
}

async fn a_relaxed_transaction_dropped_unfinished_leaves_the_connection_durable(backend: Backend) {
    let Some(app) = spawn_app(backend, "relaxed-drop").await else {
        return;
    };
    let db = &app.state.db;
    let mut tx = Tx::begin_relaxed(db, &["relaxed-drop-test"]).await.unwrap();
    tx.execute("SELECT 1".into()).await.unwrap();
    drop(tx); // rolled back, as a batch that raced is
    for value in commit_safety(db).await {
        assert_eq!(value, durable(backend));
    }
    // And the connection still works for the event store.
    app.run_executions("acme", 1).await;
}
