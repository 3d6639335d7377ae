//! The test databases of earlier runs are dropped once they are old
//! (`support::pg`), and recent ones are left alone.

use super::support::pg;

async fn exists(conn: &mut sqlx::PgConnection, name: &str) -> bool {
    sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_test_databases_are_dropped_and_recent_ones_kept() {
    let Some(mut conn) = pg::admin_connection("old_test_databases").await else {
        return;
    };
    // The run's own sweep first, so that it cannot take this test's databases.
    pg::sweep_once(&mut conn).await;
    let now = pg::now_secs();
    let old = pg::database_name(now - pg::KEEP_FOR.as_secs() - 60);
    let recent = pg::database_name(now - pg::KEEP_FOR.as_secs() + 60);
    let legacy = format!("hookrun_test_{}", uuid::Uuid::new_v4().simple());
    let other = format!("hookrun_other_{}", uuid::Uuid::new_v4().simple());
    for name in [&old, &recent, &legacy, &other] {
        pg::create_database(&mut conn, name).await;
    }

    pg::drop_old_databases(&mut conn, now).await;

    assert!(
        !exists(&mut conn, &old).await,
        "an old test database was kept"
    );
    assert!(
        !exists(&mut conn, &legacy).await,
        "a legacy test database was kept"
    );
    assert!(
        exists(&mut conn, &recent).await,
        "a recent test database was dropped"
    );
    assert!(
        exists(&mut conn, &other).await,
        "a database not of the tests was dropped"
    );
    for name in [&recent, &other] {
        pg::drop_database(&mut conn, name).await.unwrap();
    }
}

#[test]
fn the_age_check_reads_only_test_names_and_cannot_overflow() {
    let now = 2_000_000_000;
    let keep = pg::KEEP_FOR.as_secs();
    assert!(pg::is_old(&pg::database_name(now - keep - 1), now));
    assert!(!pg::is_old(&pg::database_name(now - keep), now));
    // A name from a clock far ahead, or one made by hand, is kept, not a panic.
    assert!(!pg::is_old(&pg::database_name(u64::MAX), now));
    assert!(!pg::is_old(&pg::database_name(now - keep - 1), keep / 2));
    assert!(!pg::is_old("hookrun_test_notanumber_x", now));
    assert!(!pg::is_old("hookrun_other_1_x", now));
}
