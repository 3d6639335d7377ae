//! Rebuilds: a replayed table swapped in while the API keeps answering, a changed
//! projection version rebuilt on start, an interrupted rebuild resumed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use hookrun::projections::batch::Target;
use serde_json::Value;

use super::support::app::{Backend, GATEWAY_OUTPUT, spawn_app};
use super::{
    assert_replayed_outputs, executions_shadow, index_names, projection, sql, wait_projections,
};

on_both_backends!(
    a_rebuild_swaps_in_a_replayed_table_while_the_api_keeps_answering,
    a_changed_projection_version_rebuilds_the_read_model_on_start,
    an_interrupted_rebuild_resumes_and_an_emptied_shadow_starts_over,
    a_rebuild_writing_behind_finds_the_rows_it_let_go_of_in_the_table,
    a_paced_rebuild_leaves_the_database_to_the_service_between_flushes,
);

async fn a_rebuild_swaps_in_a_replayed_table_while_the_api_keeps_answering(backend: Backend) {
    let Some(app) = spawn_app(backend, "projection_rebuild").await else {
        return;
    };
    let (key, ids) = app.run_executions("acme", 3).await;
    app.projector.catch_up().await.unwrap();
    // A live row that no longer matches its events: only a replay puts it right.
    sql(
        &app.state.db,
        &format!(
            "UPDATE agent_test_executions SET output = 'stale' WHERE execution_id = '{}'",
            ids[0]
        ),
    )
    .await;
    let stale: Value = app
        .get(&key, &format!("/api/executions/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(stale["output"], "stale");

    // Readers keep asking while the CLI rebuilds.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (client, url, key) = (
            app.client.clone(),
            app.url(&format!("/api/executions/{}", ids[1])),
            key.clone(),
        );
        let (stop, answered, failed) = (stop.clone(), answered.clone(), failed.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let r = client.get(&url).bearer_auth(&key).send().await.unwrap();
                let ok =
                    r.status() == 200 && r.json::<Value>().await.unwrap()["status"] == "succeeded";
                let counter = if ok { &answered } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let env = app.env.clone();
    let out = tokio::task::spawn_blocking(move || {
        super::support::app::run_cli(&env, &["projections", "rebuild", "agent_test_executions"])
    })
    .await
    .unwrap();
    stop.store(true, Ordering::SeqCst);
    reader.await.unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("rebuilt agent_test_executions (version 2)"),
        "{stdout}"
    );
    // Not a terminal: plain progress lines with done/total, rate and ETA or done.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("rebuild agent_test_executions: ") && l.contains(" events/s, ")),
        "{stderr}"
    );
    assert!(answered.load(Ordering::SeqCst) > 0);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "a read failed during the rebuild"
    );

    let fixed: Value = app
        .get(&key, &format!("/api/executions/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fixed["output"], GATEWAY_OUTPUT);
    assert_eq!(fixed["status"], "succeeded");

    // The swapped-in table has the live table's indexes, under their names; no shadow is left.
    let indexes = index_names(&app.state.db, "agent_test_executions").await;
    for name in [
        "agent_test_executions_by_agent_page",
        "agent_test_executions_unfinished",
    ] {
        assert!(indexes.contains(&name.to_owned()), "{name} in {indexes:?}");
    }
    assert!(
        index_names(&app.state.db, "agent_test_executions__rebuild")
            .await
            .is_empty()
    );
    // Nor the table it replaced (set aside by the swap on SQLite, then removed).
    let retired = hookrun::projections::shadow::retired("agent_test_executions");
    assert!(
        !hookrun::projections::shadow::table_exists(&app.state.db, &retired)
            .await
            .unwrap()
    );

    // The runner carries on on the new table.
    let (key2, more) = app.run_executions("beta", 1).await;
    let row: Value = app
        .get(&key2, &format!("/api/executions/{}", more[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["status"], "succeeded");
}

async fn a_changed_projection_version_rebuilds_the_read_model_on_start(backend: Backend) {
    let Some(app) = spawn_app(backend, "projection_version").await else {
        return;
    };
    let (key, ids) = app.run_executions("acme", 2).await;
    app.projector.catch_up().await.unwrap();
    let stale = format!(
        "UPDATE agent_test_executions SET output = 'stale' WHERE execution_id = '{}'",
        ids[0]
    );
    sql(&app.state.db, &stale).await;

    // A restart with the same version leaves the (wrong) row alone...
    let same = app.another_node().await;
    same.projector.catch_up().await.unwrap();
    let row: Value = same
        .get(&key, &format!("/api/executions/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["output"], "stale");

    // ...a stored version other than the code's makes the next start rebuild it.
    sql(
        &app.state.db,
        "UPDATE projection_checkpoints SET version = 1 WHERE name = 'agent_test_executions'",
    )
    .await;
    let restarted = app.another_node().await;
    let v = wait_projections(&restarted, &key, |v| {
        let p = projection(v, "agent_test_executions");
        p["stored_version"] == 2 && p["rebuilding"].is_null()
    })
    .await;
    assert_eq!(projection(&v, "agent_test_executions")["version"], 2);
    let row: Value = restarted
        .get(&key, &format!("/api/executions/{}", ids[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(row["output"], GATEWAY_OUTPUT);
}

async fn an_interrupted_rebuild_resumes_and_an_emptied_shadow_starts_over(backend: Backend) {
    use hookrun::projections::executions::Executions;
    use hookrun::projections::rebuild::{self, Pace};
    use hookrun::projections::{Projection, shadow};

    let Some(app) = spawn_app(backend, "projection_resume").await else {
        return;
    };
    let (key, ids) = app.run_executions("acme", 3).await;
    app.projector.catch_up().await.unwrap();
    let (store, db) = (app.state.store.clone(), app.state.db.clone());
    let all = app.all_events().await;
    let total = all.len() as u64;
    let part = Target::beside(Executions::NAME, "rebuild");

    // A shadow filled up to `half` and committed: a rebuild that stopped there.
    let half = all[all.len() / 2].position;
    let half_built = || async {
        shadow::prepare(
            &db,
            Executions::NAME,
            "execution_id",
            &part,
            Executions::VERSION,
            false,
        )
        .await
        .unwrap();
        rebuild::fill::<Executions>(&store, &db, &part, Some(half), Pace::Full, |_| {})
            .await
            .unwrap()
    };
    let first = half_built().await;
    assert_eq!(first, (all.len() / 2 + 1) as u64);
    let resumed = rebuild::rebuild::<Executions>(&store, &db, Pace::Full, &|_| {})
        .await
        .unwrap();
    assert_eq!(resumed.events, total - first, "only the rest is replayed");

    // A shadow whose rows were lost (an unlogged table after a PostgreSQL crash) while
    // its checkpoint survived is not trusted: the rebuild starts over.
    half_built().await;
    sql(&db, "DELETE FROM agent_test_executions__rebuild").await;
    let restarted = rebuild::rebuild::<Executions>(&store, &db, Pace::Full, &|_| {})
        .await
        .unwrap();
    assert_eq!(restarted.events, total);
    assert_replayed_outputs(&app, &key, &ids).await;
}

/// A rebuild folds rows in memory and writes them behind (`projections::behind`),
/// keeping them one flush longer and never looking for rows it did not write. Here it
/// flushes after every event of interleaved executions, so an execution's later events
/// find its row in the table, memory having let it go: the replayed table must still
/// equal the live one, row for row.
async fn a_rebuild_writing_behind_finds_the_rows_it_let_go_of_in_the_table(backend: Backend) {
    use hookrun::events::{Position, RecordedEvent};
    use hookrun::projections::behind::WriteBehind;
    use hookrun::projections::executions::Executions;
    use hookrun::projections::shadow;
    use hookrun::projections::written::RowsWritten;

    let Some(app) = spawn_app(backend, "projection_write_behind").await else {
        return;
    };
    app.run_executions("acme", 3).await;
    app.projector.catch_up().await.unwrap();
    let db = app.state.db.clone();
    let target = executions_shadow(&db, "behind").await;
    // As a busy service stores them: the executions' events interleaved, round robin
    // (renumbered in that order), so each execution's next event comes after the others'.
    let mut streams: Vec<Vec<RecordedEvent>> = Vec::new();
    for event in app.all_events().await {
        match streams
            .iter_mut()
            .find(|s| s[0].stream_id == event.stream_id)
        {
            Some(stream) => stream.push(event),
            None => streams.push(vec![event]),
        }
    }
    let longest = streams.iter().map(Vec::len).max().unwrap();
    let mut all: Vec<RecordedEvent> = (0..longest)
        .flat_map(|i| streams.iter().filter_map(move |s| s.get(i).cloned()))
        .collect();
    for (i, event) in all.iter_mut().enumerate() {
        event.position = Position {
            commit: i as u64 + 1,
            prepare: 0,
        };
    }
    assert!(all.len() >= 12, "three executions of four events or more");
    let mut behind =
        WriteBehind::<Executions>::flushing_at(Position::START, RowsWritten::from_empty(), 1);
    let mut flushed = 0;
    for event in all.chunks(1) {
        flushed += behind
            .fold(&db, &target, event)
            .await
            .unwrap()
            .expect("no race");
    }
    flushed += behind
        .flush(&db, &target, None)
        .await
        .unwrap()
        .expect("no race");
    assert_eq!(flushed, all.len() as u64, "every event is written once");
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            let n: i64 = hookrun::with_db!(&db, |pool| {
                sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
            });
            n
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM agent_test_executions__behind").await,
        3
    );
    let differing = "SELECT COUNT(*) FROM (SELECT * FROM agent_test_executions \
                     EXCEPT SELECT * FROM agent_test_executions__behind) d";
    assert_eq!(
        count(differing).await,
        0,
        "the replayed rows differ from the live ones"
    );
    shadow::drop(&db, &target).await.unwrap();
}

/// A running service's own rebuild is paced (`projections::behind::Pace`): after each
/// flush, the next one waits `n` times as long as the flush held the database. Here
/// every event is a flush of its own, and each must begin no sooner than that after the
/// one before it ended. Unpaced, the next flush begins as soon as one more event is
/// folded, far sooner than 20 times a transaction.
async fn a_paced_rebuild_leaves_the_database_to_the_service_between_flushes(backend: Backend) {
    use hookrun::events::Position;
    use hookrun::projections::behind::{Pace, WriteBehind};
    use hookrun::projections::executions::Executions;
    use hookrun::projections::shadow;
    use hookrun::projections::written::RowsWritten;

    let Some(app) = spawn_app(backend, "projection_paced").await else {
        return;
    };
    app.run_executions("acme", 2).await;
    let db = app.state.db.clone();
    let target = executions_shadow(&db, "paced").await;
    let all = app.all_events().await;
    let mut behind =
        WriteBehind::<Executions>::flushing_at(Position::START, RowsWritten::from_empty(), 1)
            .paced(Pace::Yielding(20));
    let mut flushes = Vec::new();
    let mut written = 0;
    for event in all.chunks(1) {
        written += behind
            .fold(&db, &target, event)
            .await
            .unwrap()
            .expect("no race");
        flushes.extend(behind.last_flush());
    }
    written += behind
        .flush(&db, &target, None)
        .await
        .unwrap()
        .expect("no race");
    flushes.extend(behind.last_flush());
    flushes.dedup();
    assert_eq!(written, all.len() as u64, "every event is written");
    assert!(
        flushes.len() >= 6,
        "a flush per execution event: {}",
        flushes.len()
    );
    for pair in flushes.windows(2) {
        let (before, next) = (pair[0], pair[1]);
        let held = before.ended - before.began;
        assert!(
            next.began >= before.ended + held * 20,
            "a flush began {:?} after the one before it, which held the database for {held:?}",
            next.began - before.ended
        );
    }
    shadow::drop(&db, &target).await.unwrap();
}
