//! How the runner's passes keep the read models level: once caught up, every pass folds
//! one batch into all of them in one transaction; one that falls behind the others
//! catches up with them first; a checkpoint past the end of the store does not stall
//! the others.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hookrun::db::Db;
use hookrun::projections::runner::all_projections;
use serde_json::Value;

use super::sql;
use super::support::app::{Backend, TestApp, spawn_app};

on_both_backends!(
    a_reader_never_sees_one_read_model_ahead_of_another,
    a_read_model_behind_the_others_catches_up_and_then_moves_with_them,
    a_checkpoint_past_the_end_of_the_store_does_not_stall_the_others,
);

/// Every read model's checkpoint (`commit_pos`), read in one statement.
async fn checkpoints(db: &Db) -> Vec<i64> {
    let names: Vec<String> = all_projections()
        .iter()
        .map(|p| format!("'{}'", p.name()))
        .collect();
    let statement = sqlx::AssertSqlSafe(format!(
        "SELECT commit_pos FROM projection_checkpoints WHERE name IN ({}) ORDER BY name",
        names.join(", ")
    ));
    hookrun::with_db_read!(db, |pool| {
        sqlx::query_scalar(statement).fetch_all(pool).await.unwrap()
    })
}

/// The read models match a replay of the events, and their checkpoints are level.
async fn assert_level_and_right(app: &TestApp) {
    let differences = hookrun::audit::verify::verify_all(&app.state.store, &app.state.db)
        .await
        .unwrap();
    assert!(differences.is_empty(), "{differences:?}");
    let at = checkpoints(&app.state.db).await;
    assert_eq!(at.len(), all_projections().len());
    assert!(at.iter().all(|p| *p == at[0]), "not level: {at:?}");
}

/// The runner catches up within a deadline (a pass that never ends fails the test).
async fn catch_up(app: &TestApp) {
    tokio::time::timeout(Duration::from_secs(30), app.projector.catch_up())
        .await
        .expect("the runner caught up within 30 s")
        .unwrap();
}

/// The executions counted in the tenant's one agent summary (`GET /api/agents`).
async fn executions_counted(app: &TestApp, key: &str) -> i64 {
    let r = app.get(key, "/api/agents").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["agents"][0]["executions_total"]
        .as_i64()
        .unwrap_or_else(|| panic!("{v}"))
}

async fn a_reader_never_sees_one_read_model_ahead_of_another(backend: Backend) {
    let Some(app) = spawn_app(backend, "passes_level").await else {
        return;
    };
    let (key, agent) = app.tenant_with_agent("acme").await;
    // A dashboard reads the checkpoints over and over while the server's runner
    // follows 20 executions, sent together.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (db, stop) = (app.state.db.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut seen, mut uneven) = (BTreeSet::new(), Vec::new());
            while !stop.load(Ordering::SeqCst) {
                let at = checkpoints(&db).await;
                if at.len() == all_projections().len() {
                    seen.insert(at[0]);
                    if at.iter().any(|p| *p != at[0]) {
                        uneven.push(at);
                    }
                }
                tokio::task::yield_now().await;
            }
            (seen, uneven)
        })
    };
    for id in &app.send_accepted(&agent, 20, "d").await {
        app.wait_terminal(&key, id).await;
    }
    stop.store(true, Ordering::SeqCst);
    let (seen, uneven) = watcher.await.unwrap();
    assert!(uneven.is_empty(), "read models apart: {uneven:?}");
    assert!(seen.len() >= 3, "the watcher saw too few passes: {seen:?}");
    assert_level_and_right(&app).await;
}

async fn a_read_model_behind_the_others_catches_up_and_then_moves_with_them(backend: Backend) {
    let Some(app) = spawn_app(backend, "passes_behind").await else {
        return;
    };
    let (key, _) = app.run_executions("acme", 3).await;
    catch_up(&app).await;
    assert_eq!(executions_counted(&app, &key).await, 3);

    // The agent summaries start again from nothing (as after a lost table).
    sql(
        &app.state.db,
        "DELETE FROM projection_checkpoints WHERE name = 'agent_summaries'",
    )
    .await;
    sql(&app.state.db, "DELETE FROM agent_summaries").await;
    catch_up(&app).await;
    assert_level_and_right(&app).await;
    assert_eq!(executions_counted(&app, &key).await, 3);

    // ...and from there on they move with the others.
    app.run_executions("beta", 2).await;
    catch_up(&app).await;
    assert_level_and_right(&app).await;
    assert_eq!(executions_counted(&app, &key).await, 3);
}

async fn a_checkpoint_past_the_end_of_the_store_does_not_stall_the_others(backend: Backend) {
    let Some(app) = spawn_app(backend, "passes_ahead").await else {
        return;
    };
    app.run_executions("acme", 1).await;
    catch_up(&app).await;
    // The daily stats claim to have read far more than the store holds (their database
    // restored from a later copy than the events').
    sql(
        &app.state.db,
        "UPDATE projection_checkpoints SET commit_pos = commit_pos + 1000000, \
         prepare_pos = prepare_pos + 1000000 WHERE name = 'agent_daily_stats'",
    )
    .await;
    let (key, ids) = app.run_executions("beta", 2).await;
    catch_up(&app).await;
    for id in &ids {
        let row = app.wait_terminal(&key, id).await;
        assert_eq!(row["status"], "succeeded", "{row}");
    }
}

/// On PostgreSQL the per-agent read models leave room on their pages, so the update a
/// pass makes to each agent's row stays on its page and writes no index entry (a
/// heap-only update). Full pages, as with the default layout, would make the first
/// updates on every page move their rows and write to every index.
#[tokio::test]
async fn postgres_per_agent_rows_are_updated_without_index_writes() {
    let Some(url) = super::support::pg::fresh_database("per_agent_hot_updates").await else {
        return;
    };
    let Db::Postgres(pg) = Db::connect(&url).await.unwrap() else {
        unreachable!()
    };
    let mut tx = pg.begin().await.unwrap();
    for statement in [
        "INSERT INTO agent_summaries (agent_id, tenant_id, name, status, config_version, \
         registered_at, updated_at, executions_total, executions_succeeded, \
         executions_failed, total_tokens) \
         SELECT 'agent-' || n, 'tenant', 'an agent', 'active', 1, '2026-11-29T00:00:00Z', \
         '2026-11-29T00:00:00Z', 0, 0, 0, 0 FROM generate_series(1, 1000) n",
        "UPDATE agent_summaries SET executions_total = executions_total + 1, \
         updated_at = '2026-11-29T00:00:01Z'",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    let (updated, heap_only): (i64, i64) = sqlx::query_as(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables \
         WHERE relname = 'agent_summaries'",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        (updated, heap_only),
        (1000, 1000),
        "(updates, heap-only updates)"
    );
}
