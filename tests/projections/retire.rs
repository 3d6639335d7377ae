//! The table a rebuild's swap replaced. On SQLite the swap only sets it aside (dropping
//! it would visit and overwrite every page while the swap holds the one writer) and
//! `shadow::retire` deletes its rows in short transactions afterwards; on PostgreSQL the
//! swap drops it. One that an interrupted rebuild left behind goes at the next start.

use std::time::{Duration, Instant};

use hookrun::projections::Projection;
use hookrun::projections::executions::Executions;
use hookrun::projections::rebuild::{self, Pace};
use hookrun::projections::shadow::{self, Retired};

use super::support::app::{Backend, spawn_app};
use super::{assert_replayed_outputs, executions_shadow, index_names, sql};

on_both_backends!(
    a_swap_sets_the_replaced_table_aside_and_retiring_removes_it_in_steps,
    a_table_an_interrupted_rebuild_set_aside_is_removed_on_start,
);

async fn a_swap_sets_the_replaced_table_aside_and_retiring_removes_it_in_steps(backend: Backend) {
    let Some(app) = spawn_app(backend, "projection_retire").await else {
        return;
    };
    let (key, ids) = app.run_executions("acme", 3).await;
    app.projector.catch_up().await.unwrap();
    let (store, db) = (app.state.store.clone(), app.state.db.clone());
    sql(&db, "UPDATE agent_test_executions SET output = 'stale'").await;

    // `rebuild::rebuild` without its last step, to look at what the swap left.
    let part = executions_shadow(&db, "rebuild").await;
    rebuild::fill::<Executions>(&store, &db, &part, None, Pace::Full, |_| {})
        .await
        .unwrap();
    rebuild::swap::<Executions>(&store, &db, &part, Pace::Full)
        .await
        .unwrap();

    // The replayed rows are served, with the live table's indexes under their names.
    assert_replayed_outputs(&app, &key, &ids).await;
    let mut indexes = index_names(&db, Executions::NAME).await;
    indexes.retain(|name| !name.ends_with("_pkey"));
    indexes.sort();
    assert_eq!(
        indexes,
        [
            "agent_test_executions_by_agent_page",
            "agent_test_executions_unfinished"
        ]
    );

    let retired = shadow::retired(Executions::NAME);
    let aside = shadow::table_exists(&db, &retired).await.unwrap();
    let removed = shadow::retire(&db, Executions::NAME, 2, Pace::Full)
        .await
        .unwrap();
    if backend == Backend::Sqlite {
        assert!(aside, "the swap sets the replaced table aside");
        // Three rows, two at a time: the second step empties the table and drops it.
        assert_eq!(removed, Retired { rows: 3, steps: 2 });
    } else {
        assert!(!aside, "PostgreSQL drops the replaced table in the swap");
        assert_eq!(removed, Retired::default());
    }
    assert!(!shadow::table_exists(&db, &retired).await.unwrap());
    assert_eq!(
        shadow::retire(&db, Executions::NAME, 2, Pace::Full)
            .await
            .unwrap(),
        Retired::default(),
        "nothing is left to remove"
    );
}

async fn a_table_an_interrupted_rebuild_set_aside_is_removed_on_start(backend: Backend) {
    let Some(app) = spawn_app(backend, "projection_retire_start").await else {
        return;
    };
    app.run_executions("acme", 2).await;
    app.projector.catch_up().await.unwrap();
    let db = app.state.db.clone();
    let retired = shadow::retired(Executions::NAME);
    sql(
        &db,
        &format!("CREATE TABLE \"{retired}\" AS SELECT * FROM agent_test_executions"),
    )
    .await;

    let _restarted = app.another_node().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while shadow::table_exists(&db, &retired).await.unwrap() {
        assert!(
            Instant::now() < deadline,
            "{retired} is still there 20 s after a start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(shadow::table_exists(&db, Executions::NAME).await.unwrap());
}
