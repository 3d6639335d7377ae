//! Tests of one backend only.

use super::*;

#[tokio::test]
async fn sqlite_read_only_database_is_unavailable() {
    let (_dir, db) = sqlite_db().await;
    let read_only = SqliteDb {
        writer: db.reader.clone(),
        reader: db.reader,
        relaxed: Default::default(),
        written: Default::default(),
    };
    let store: Store = Arc::new(SqliteEventStore::new(read_only));
    let err = try_append(&store, "s-1", NoStream).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// Appends `e0`, then `e1` in a transaction held open, then commits `e2` (later sequence
/// number, earlier commit). Returns the store, the open transaction and the events.
async fn out_of_order_commit(test: &str) -> Option<(Store, PgTransaction<'static>, [NewEvent; 3])> {
    let (_, pool) = postgres_pool(test).await?;
    let store: Store = Arc::new(PostgresEventStore::connect(pool.clone()).await.unwrap());
    let [e0, e1, e2] = [event(0), event(1), event(2)];
    append(&store, "before", NoStream, std::slice::from_ref(&e0)).await;

    let mut held = pool.begin().await.unwrap();
    let r1 = append_in_transaction(&mut held, "held", NoStream, std::slice::from_ref(&e1));
    let r1 = r1.await.unwrap();
    let r2 = append(&store, "committed", NoStream, std::slice::from_ref(&e2)).await;
    assert!(
        r1.position.prepare < r2.position.prepare,
        "e1 took the earlier sequence number"
    );
    assert!(
        r1.position < r2.position,
        "and sorts first in the global order"
    );

    // The hazard: by sequence number alone, e2 is readable while e1 is not yet.
    let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM events")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(seqs.contains(&(r2.position.prepare as i64)));
    assert!(!seqs.contains(&(r1.position.prepare as i64)));
    Some((store, held, [e0, e1, e2]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_read_all_never_skips_an_out_of_order_commit() {
    let test = "postgres_read_all_never_skips_an_out_of_order_commit";
    let Some((store, held, [e0, e1, e2])) = out_of_order_commit(test).await else {
        return;
    };

    // A reader that got e0 and checkpointed there…
    let first = store.read_all(Position::START, 100).await.unwrap();
    assert!(
        first.len() <= 1,
        "nothing past the open transaction: {first:?}"
    );
    let checkpoint = match first.first() {
        Some(seen) => seen.position,
        None => first_events(&store, 1).await[0].position, // an older transaction elsewhere
    };
    assert_same(&store.read_all(Position::START, 1).await.unwrap()[0], &e0);
    // …does not get e2 while e1's transaction is open.
    assert!(store.read_all(checkpoint, 100).await.unwrap().is_empty());

    held.commit().await.unwrap();
    let all = first_events(&store, 3).await;
    assert_same(&all[1], &e1);
    assert_same(&all[2], &e2);
    // The checkpointed reader gets both, in order, one at a time too.
    let next = store.read_all(checkpoint, 1).await.unwrap();
    assert_same(&next[0], &e1);
    let next = store.read_all(next[0].position, 1).await.unwrap();
    assert_same(&next[0], &e2);
    assert_eq!(store.read_all(checkpoint, 100).await.unwrap(), all[1..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_subscription_delivers_an_out_of_order_commit_in_order() {
    let test = "postgres_subscription_delivers_an_out_of_order_commit_in_order";
    let Some((store, held, [e0, e1, e2])) = out_of_order_commit(test).await else {
        return;
    };

    let mut subscription = subscribe_all(Arc::clone(&store), Position::START, 10);
    assert_same(&next(&mut subscription).await, &e0);
    // While e1's transaction is open, e2 must not be delivered (it would skip e1).
    let early = timeout(Duration::from_millis(500), subscription.next()).await;
    assert!(
        early.is_err(),
        "delivered past an open transaction: {early:?}"
    );

    held.commit().await.unwrap();
    assert_same(&next(&mut subscription).await, &e1);
    assert_same(&next(&mut subscription).await, &e2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_reach_other_processes() {
    let test = "postgres_changes_reach_other_processes";
    let Some((url, pool)) = postgres_pool(test).await else {
        return;
    };
    let writer: Store = Arc::new(PostgresEventStore::connect(pool).await.unwrap());
    let Db::Postgres(other_pool) = Db::connect(&url).await.unwrap() else {
        unreachable!()
    };
    let other = PostgresEventStore::connect(other_pool).await.unwrap();

    let mut changes = other.changes();
    append(&writer, "s-1", NoStream, &events(1)).await;
    timeout(PATIENCE, changes.changed())
        .await
        .expect("a NOTIFY from the writer")
        .unwrap();
}

/// hookrun's PostgreSQL connections plan each statement for its parameters. A generic
/// plan, which PostgreSQL settles on after five runs of a prepared statement, is made
/// without the values: for `stream_id = ANY($1)` on a nearly empty events table it was
/// a sequential scan, and the connection kept it while the table grew.
#[tokio::test]
async fn postgres_statements_are_planned_for_their_parameters() {
    let test = "postgres_statements_are_planned_for_their_parameters";
    let Some((_, pool)) = postgres_pool(test).await else {
        return;
    };
    // A few events, and statistics that say so: as on a server just started.
    let store: Store = Arc::new(PostgresEventStore::connect(pool.clone()).await.unwrap());
    for i in 0..3u32 {
        append(&store, &format!("execution-{i}"), NoStream, &[event(i)]).await;
    }
    sqlx::query("ANALYZE events").execute(&pool).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let query = "SELECT DISTINCT ON (stream_id) stream_id, revision FROM events \
                 WHERE stream_id = ANY($1) ORDER BY stream_id, revision DESC";
    for i in 0..10 {
        sqlx::query(query)
            .bind(vec![format!("execution-{i}")])
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    }
    let (generic, custom): (i64, i64) = sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE statement = $1",
    )
    .bind(query)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    assert_eq!((generic, custom), (0, 10), "(generic plans, custom plans)");
}

/// Two stores on one database, as two nodes would have: each remembers the streams it
/// appended to, and the other can move them on. What one remembers may be stale; its
/// appends must still be decided by what is stored, and every chain stay whole.
async fn another_writer_moves_a_remembered_stream_on(a: Store, b: Store, db: Db) {
    append(&a, "s-1", NoStream, &events(1)).await; // a remembers s-1 at 0
    append(&b, "s-1", Exact(0), &events(1)).await; // b moves it to 1
    let stale = try_append(&a, "s-1", Exact(0)).await;
    assert_eq!(conflict_actual(stale), Some(1), "a remembered revision 0");
    let next = append(&a, "s-1", Exact(1), &events(1)).await;
    assert_eq!(next.next_expected_version, 2);
    assert_eq!(revisions(&b, "s-1", 0, 10).await, [0, 1, 2]);

    // A stream b never saw: b takes its NoStream append for a new stream, and is told.
    append(&a, "s-2", NoStream, &events(2)).await;
    assert_eq!(
        conflict_actual(try_append(&b, "s-2", NoStream).await),
        Some(1)
    );

    // A delivery retried through the other node is the same append, not a new one.
    let retried = events(2);
    let first = append(&a, "s-3", NoStream, &retried).await;
    assert_eq!(append(&b, "s-3", NoStream, &retried).await, first);
    assert_eq!(revisions(&a, "s-3", 0, 10).await, [0, 1]);

    // An event id the other node stored, as the last event of an append that memory
    // decides: no row of the append may stay behind, also when its rows take more than
    // one statement (SQLite: 256 rows a statement, so 300 take two).
    let taken = events(1);
    append(&b, "s-4", NoStream, &taken).await;
    for (stream, n) in [("s-5", 3), ("s-6", 300)] {
        let mut mixed = events(n);
        mixed[n as usize - 1].event_id = taken[0].event_id;
        match a.append(stream, NoStream, mixed).await {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("already used in stream s-4"), "{message}")
            }
            other => panic!("expected the used event id to be refused, got {other:?}"),
        }
        assert_eq!(revisions(&a, stream, 0, 400).await, Vec::<u64>::new());
    }
    assert_eq!(
        append(&a, "s-5", NoStream, &events(3))
            .await
            .next_expected_version,
        2
    );

    let report = hookrun::audit::chain::check_all(&db).await.unwrap();
    assert!(report.broken.is_empty(), "{:?}", report.broken);
    assert_eq!((report.streams, report.events), (5, 11));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_another_writer_moves_a_remembered_stream_on() {
    let (dir, db) = sqlite_db().await;
    let path = dir.path().join("hookrun.db");
    let other = match Db::open_sqlite_file(&path).await.unwrap() {
        Db::Sqlite(other) => other,
        Db::Postgres(_) => unreachable!(),
    };
    let (a, b): (Store, Store) = (
        Arc::new(SqliteEventStore::new(db)),
        Arc::new(SqliteEventStore::new(other)),
    );
    let check = Db::open_sqlite_file(&path).await.unwrap();
    another_writer_moves_a_remembered_stream_on(a, b, check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_another_writer_moves_a_remembered_stream_on() {
    let test = "postgres_another_writer_moves_a_remembered_stream_on";
    let Some((_, pool)) = postgres_pool(test).await else {
        return;
    };
    let store = || async { PostgresEventStore::connect(pool.clone()).await.unwrap() };
    let (a, b): (Store, Store) = (Arc::new(store().await), Arc::new(store().await));
    another_writer_moves_a_remembered_stream_on(a, b, Db::Postgres(pool.clone())).await;
}
