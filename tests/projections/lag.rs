//! Lag and checkpoints as the API, `/metrics` and the status module report them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hookrun::db::Db;
use hookrun::events::{EventStore, ExpectedVersion, NewEvent};
use hookrun::projections::ProjectionRunner;
use serde_json::{Value, json};

use super::support::app::{ADMIN_TOKEN, Backend, spawn_app};
use super::{projection, wait_projections};

on_both_backends!(
    projections_show_their_version_checkpoint_and_lag_in_the_api_and_metrics,
    lag_counts_the_events_not_yet_applied_until_the_runner_catches_up,
);

async fn projections_show_their_version_checkpoint_and_lag_in_the_api_and_metrics(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend, "projection_status").await else {
        return;
    };
    let (key, _) = app.run_executions("acme", 2).await;
    let all_caught_up = |v: &Value| {
        v["projections"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["lag_events"] == 0)
    };
    let v = wait_projections(&app, &key, all_caught_up).await;
    let names: Vec<&str> = v["projections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "agent_test_executions",
            "agent_summaries",
            "agent_daily_stats"
        ]
    );
    let executions = projection(&v, "agent_test_executions");
    assert_eq!(executions["version"], 2);
    assert_eq!(executions["stored_version"], 2);
    assert_eq!(executions["lag_seconds"], 0.0);
    assert!(executions["rebuilding"].is_null());
    assert_ne!(executions["checkpoint"], "0/0");

    // The operator's token works too; no credentials do not.
    assert_eq!(app.get(ADMIN_TOKEN, "/api/projections").await.status(), 200);
    let r = app
        .client
        .get(app.url("/api/projections"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let metrics = app.metrics().await;
    for line in [
        "hookrun_projection_lag_events{projection=\"agent_test_executions\"} 0",
        "hookrun_projection_lag_seconds{projection=\"agent_summaries\"} 0",
        "hookrun_projection_version{projection=\"agent_test_executions\"} 2",
        "hookrun_projection_rebuilding{projection=\"agent_daily_stats\"} 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
}

async fn lag_counts_the_events_not_yet_applied_until_the_runner_catches_up(backend: Backend) {
    // A store and database with no server, so nothing applies the events but the test.
    let dir = tempfile::tempdir().unwrap();
    let (db, store): (Db, Arc<dyn EventStore>) = match backend {
        Backend::Sqlite => {
            let db = Db::open_sqlite_file(&dir.path().join("lag.db"))
                .await
                .unwrap();
            let Db::Sqlite(s) = db.clone() else {
                unreachable!()
            };
            (
                db,
                Arc::new(hookrun::events::store::sqlite::SqliteEventStore::new(s)),
            )
        }
        Backend::Postgres => {
            let Some(url) = super::support::pg::fresh_database("projection_lag").await else {
                return;
            };
            let db = Db::connect(&url).await.unwrap();
            let Db::Postgres(pg) = db.clone() else {
                unreachable!()
            };
            let store = hookrun::events::store::postgres::PostgresEventStore::connect(pg)
                .await
                .unwrap();
            (db, Arc::new(store))
        }
    };
    let noise = |n: u32| NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "Noted".into(),
        data: json!({"n": n}),
        metadata: json!({"tenant_id": "t", "agent_id": "a"}),
    };
    store
        .append(
            "note-1",
            ExpectedVersion::NoStream,
            vec![noise(1), noise(2), noise(3)],
        )
        .await
        .unwrap();
    // On PostgreSQL an event becomes readable once no older transaction (anywhere on
    // the server) is still running: poll for what the runner could see.
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        let all = hookrun::projections::status::all(store.as_ref(), &db)
            .await
            .unwrap();
        if all.iter().all(|s| s.lag_events == 3) || Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for status in &before {
        assert_eq!(status.lag_events, 3, "{status:?}");
        assert!(status.lag_seconds >= 0.0);
        assert_eq!(status.stored_version, None);
    }
    let runner = ProjectionRunner::new(store.clone(), db.clone());
    runner.catch_up().await.unwrap();
    let after = hookrun::projections::status::all(store.as_ref(), &db)
        .await
        .unwrap();
    for status in &after {
        assert_eq!(
            (status.lag_events, status.lag_seconds),
            (0, 0.0),
            "{status:?}"
        );
        assert_eq!(status.stored_version, Some(status.version));
    }
}
