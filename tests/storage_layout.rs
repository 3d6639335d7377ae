//! The events in a SQLite file of their own (`HOOKRUN_EVENT_STORE_URL` naming another
//! file than the database): the server, `hookrun verify` and `verify --chain` all find
//! them there, and the database file holds none.

use crate::support;

use hookrun::db::Db;
use support::app::{Backend, spawn_app_with};

async fn count_events(db: &Db) -> i64 {
    hookrun::with_db_read!(db, |pool| {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

#[actix_web::test]
async fn events_in_a_sqlite_file_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().display().to_string();
    let events_url = format!("sqlite://{}", dir.path().join("events.db").display());
    let app = spawn_app_with(
        Backend::Sqlite,
        "layout_apart",
        &[
            ("HOOKRUN_DATA_DIR", &data_dir),
            ("HOOKRUN_EVENT_STORE_URL", &events_url),
        ],
    )
    .await
    .unwrap();
    let (key, ids) = app.run_executions("acme", 2).await;
    for id in &ids {
        assert_eq!(app.execution_events(&key, id).await.len(), 4);
    }
    let events = app.events_db().await;
    assert!(dir.path().join("events.db").exists());
    assert!(count_events(&events).await >= 8);
    assert_eq!(
        count_events(&app.state.db).await,
        0,
        "no events in hookrun.db"
    );

    let with_events = [("HOOKRUN_EVENT_STORE_URL", events_url.as_str())];
    for args in [&["verify", "--chain"][..], &["verify"][..]] {
        let out = app.cli(args, &with_events).await;
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
        if args.len() == 2 {
            assert!(stdout.contains("every hash chain is intact"), "{stdout}");
            assert!(!stdout.contains("checked 0 streams"), "{stdout}");
        }
    }
}
