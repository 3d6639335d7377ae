//! The event store conformance suite: every backend must pass the same tests.
//!
//! Each scenario is written once as an async function over `Arc<dyn EventStore>` and run
//! against SQLite (a fresh file in a temp dir) and PostgreSQL (a fresh database per test),
//! as `sqlite_<scenario>` / `postgres_<scenario>`. PostgreSQL-only tests at the end prove
//! that `$all` never skips an event when transactions commit out of sequence order.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use hookrun::db::{Db, SqliteDb};
use hookrun::events::store::postgres::{PostgresEventStore, append_in_transaction};
use hookrun::events::store::sqlite::SqliteEventStore;
use hookrun::events::store::subscription::subscribe_all;
use hookrun::events::{
    AppendResult, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
};
use serde_json::json;
use sqlx::{PgPool, PgTransaction};
use tempfile::TempDir;
use tokio::time::timeout;
use uuid::Uuid;

use ExpectedVersion::{Any, Exact, NoStream};

/// Long enough for a loaded CI machine; only reached when a test is about to fail.
const PATIENCE: Duration = Duration::from_secs(15);

type Store = Arc<dyn EventStore>;
type Subscription = BoxStream<'static, Result<RecordedEvent, StoreError>>;

fn event(n: u32) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TestEvent".to_owned(),
        data: json!({"n": n, "text": "héllo \u{0} \"q\"", "nested": {"list": [1, 2.5, null]}}),
        metadata: json!({"tenant_id": "acme", "n": n}),
    }
}

fn events(count: u32) -> Vec<NewEvent> {
    (0..count).map(event).collect()
}

async fn append(
    store: &Store,
    stream: &str,
    at: ExpectedVersion,
    new: &[NewEvent],
) -> AppendResult {
    store
        .append(stream, at, new.to_vec())
        .await
        .expect("append")
}

async fn try_append(
    store: &Store,
    stream: &str,
    at: ExpectedVersion,
) -> Result<AppendResult, StoreError> {
    store.append(stream, at, events(1)).await
}

/// Revisions of `stream` from `from`, at most `limit`.
async fn revisions(store: &Store, stream: &str, from: u64, limit: usize) -> Vec<u64> {
    let read = store
        .read_stream(stream, from, limit)
        .await
        .expect("read_stream");
    read.iter().map(|e| e.revision).collect()
}

/// Runs `n` appends of `new()` to `stream` at once.
async fn concurrently(
    store: &Store,
    n: usize,
    stream: &'static str,
    at: ExpectedVersion,
    new: impl Fn() -> Vec<NewEvent>,
) -> Vec<Result<AppendResult, StoreError>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (store, new) = (Arc::clone(store), new());
            tokio::spawn(async move { store.append(stream, at, new).await })
        })
        .collect();
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|t| t.unwrap())
        .collect()
}

fn assert_same(recorded: &RecordedEvent, new: &NewEvent) {
    assert_eq!(recorded.event_id, new.event_id);
    assert_eq!(recorded.event_type, new.event_type);
    assert_eq!(recorded.data, new.data);
    assert_eq!(recorded.metadata, new.metadata);
}

fn conflict_actual(result: Result<AppendResult, StoreError>) -> Option<u64> {
    match result {
        Err(StoreError::WrongExpectedVersion { actual, .. }) => actual,
        other => panic!("expected a wrong-expected-version conflict, got {other:?}"),
    }
}

async fn next(subscription: &mut Subscription) -> RecordedEvent {
    let item = timeout(PATIENCE, subscription.next())
        .await
        .expect("an event in time");
    item.expect("subscriptions do not end").expect("read_all")
}

/// The first `n` events of `$all`. PostgreSQL hides new events while an older transaction
/// anywhere on the server is running (tests run in parallel), so this waits for them.
async fn first_events(store: &Store, n: usize) -> Vec<RecordedEvent> {
    let mut subscription = subscribe_all(Arc::clone(store), Position::START, 100);
    let mut got = Vec::new();
    while got.len() < n {
        got.push(next(&mut subscription).await);
    }
    got
}

// ---- scenarios ------------------------------------------------------------------------

async fn append_then_read_stream(store: Store) {
    let new = events(3);
    let result = append(&store, "s-1", NoStream, &new).await;
    assert_eq!(result.next_expected_version, 2);

    let read = store.read_stream("s-1", 0, 100).await.unwrap();
    assert_eq!(read.len(), 3);
    for (i, (recorded, new)) in read.iter().zip(&new).enumerate() {
        assert_same(recorded, new);
        assert_eq!(
            (recorded.stream_id.as_str(), recorded.revision),
            ("s-1", i as u64)
        );
        let age = chrono::Utc::now() - recorded.recorded_at;
        assert!(
            age.num_seconds().abs() < 60,
            "recorded_at {}",
            recorded.recorded_at
        );
    }
    assert!(read.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(read[2].position, result.position);
}

async fn read_stream_from_revision_with_limit(store: Store) {
    let new = events(5);
    append(&store, "s-1", NoStream, &new).await;
    append(&store, "s-2", NoStream, &events(1)).await;

    let read = store.read_stream("s-1", 2, 2).await.unwrap();
    assert_eq!(read.iter().map(|e| e.revision).collect::<Vec<_>>(), [2, 3]);
    assert_same(&read[0], &new[2]);
    assert_eq!(revisions(&store, "s-1", 4, 10).await, [4]);
    assert!(revisions(&store, "s-1", 5, 10).await.is_empty());
    assert!(revisions(&store, "s-1", 0, 0).await.is_empty());
    assert!(revisions(&store, "unknown", 0, 10).await.is_empty());
}

async fn no_stream_on_existing_stream_conflicts(store: Store) {
    append(&store, "s-1", NoStream, &events(1)).await;
    let err = try_append(&store, "s-1", NoStream).await.unwrap_err();
    assert!(err.is_conflict(), "{err:?}");
    let StoreError::WrongExpectedVersion {
        stream,
        expected,
        actual,
    } = err
    else {
        panic!("{err:?}")
    };
    assert_eq!(
        (stream.as_str(), expected, actual),
        ("s-1", NoStream, Some(0))
    );
    assert_eq!(revisions(&store, "s-1", 0, 10).await, [0]);
}

async fn exact_wrong_version_conflicts_with_actual(store: Store) {
    append(&store, "s-1", NoStream, &events(2)).await;
    assert_eq!(
        conflict_actual(try_append(&store, "s-1", Exact(0)).await),
        Some(1)
    );
    assert_eq!(
        conflict_actual(try_append(&store, "s-1", Exact(5)).await),
        Some(1)
    );
    assert_eq!(
        conflict_actual(try_append(&store, "missing", Exact(0)).await),
        None
    );
    assert!(revisions(&store, "missing", 0, 10).await.is_empty());

    let ok = try_append(&store, "s-1", Exact(1)).await.unwrap();
    assert_eq!(ok.next_expected_version, 2);
}

async fn any_appends_whatever_the_version(store: Store) {
    assert_eq!(
        append(&store, "s-1", Any, &events(1))
            .await
            .next_expected_version,
        0
    );
    assert_eq!(
        append(&store, "s-1", Any, &events(1))
            .await
            .next_expected_version,
        1
    );
    for result in concurrently(&store, 10, "s-1", Any, || events(1)).await {
        result.expect("Any never conflicts");
    }
    assert_eq!(
        revisions(&store, "s-1", 0, 100).await,
        (0..12).collect::<Vec<_>>()
    );
}

async fn concurrent_appends_at_same_version_one_wins(store: Store) {
    append(&store, "race", NoStream, &events(1)).await;
    let (mut won, mut lost) = (0, 0);
    for result in concurrently(&store, 20, "race", Exact(0), || events(1)).await {
        match result {
            Ok(result) => {
                assert_eq!(result.next_expected_version, 1);
                won += 1;
            }
            Err(StoreError::WrongExpectedVersion { actual, .. }) => {
                assert_eq!(actual, Some(1));
                lost += 1;
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!((won, lost), (1, 19));
    assert_eq!(revisions(&store, "race", 0, 100).await, [0, 1]);
}

/// Appends sent together are committed together (group commit): an invalid one among
/// them fails alone, and appends to one stream keep their order.
async fn a_bad_append_in_a_batch_fails_alone(store: Store) {
    let twice = {
        let one = event(0);
        vec![one.clone(), one]
    };
    // The database itself refuses this one on PostgreSQL (a NUL byte in text), so the
    // batch has to be replayed one append at a time there.
    let mut refused = event(0);
    refused.event_type = "Bad\u{0}Type".to_owned();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = Arc::clone(&store);
        let (stream, new) = match i {
            7 => ("bad-twice".to_owned(), twice.clone()),
            13 => ("bad-refused".to_owned(), vec![refused.clone()]),
            i if i % 2 == 0 => ("shared".to_owned(), events(1)),
            i => (format!("own-{i}"), events(2)),
        };
        tasks.push(tokio::spawn(async move {
            (stream.clone(), store.append(&stream, Any, new).await)
        }));
    }
    let mut shared = 0;
    for task in futures::future::join_all(tasks).await {
        let (stream, result) = task.unwrap();
        match stream.as_str() {
            "bad-twice" => assert!(
                matches!(&result, Err(StoreError::Backend(m)) if m.contains("twice")),
                "{result:?}"
            ),
            "bad-refused" => {} // SQLite stores it; PostgreSQL refuses it. Either way alone.
            "shared" => {
                result.expect("append to the shared stream");
                shared += 1;
            }
            _ => assert_eq!(result.expect("append").next_expected_version, 1),
        }
    }
    assert_eq!(shared, 20);
    assert_eq!(
        revisions(&store, "shared", 0, 100).await,
        (0..20).collect::<Vec<u64>>()
    );
    assert!(revisions(&store, "bad-twice", 0, 10).await.is_empty());
}

async fn appending_same_event_ids_is_idempotent(store: Store) {
    let batch = events(2);
    let first = append(&store, "s-1", NoStream, &batch).await;
    assert_eq!(append(&store, "s-1", NoStream, &batch).await, first);
    assert_eq!(append(&store, "s-1", Exact(7), &batch).await, first);
    assert_eq!(revisions(&store, "s-1", 0, 10).await, [0, 1]);

    let mixed = vec![batch[1].clone(), event(9)];
    let err = store.append("s-1", Any, mixed).await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    let elsewhere = store.append("s-2", Any, vec![batch[0].clone()]).await;
    assert!(
        matches!(elsewhere, Err(StoreError::Backend(_))),
        "{elsewhere:?}"
    );
    assert_eq!(revisions(&store, "s-1", 0, 10).await, [0, 1]);
    assert!(revisions(&store, "s-2", 0, 10).await.is_empty());

    // Concurrent retries of one append: all succeed with one result, one copy stored.
    let retried = events(1);
    let results = concurrently(&store, 10, "s-3", NoStream, || retried.clone()).await;
    let results: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("a retry succeeds"))
        .collect();
    assert!(results.iter().all(|r| *r == results[0]));
    assert_eq!(revisions(&store, "s-3", 0, 10).await, [0]);
}

async fn read_all_in_global_order(store: Store) {
    let (a, b, c) = (events(2), events(1), events(1));
    append(&store, "s-1", NoStream, &a).await;
    append(&store, "s-2", NoStream, &b).await;
    let last = append(&store, "s-1", Exact(1), &c).await;
    let expected: Vec<_> = a.iter().chain(&b).chain(&c).collect();

    first_events(&store, 4).await; // all four are readable from now on
    let all = store.read_all(Position::START, 100).await.unwrap();
    assert_eq!(all.len(), 4);
    for (recorded, new) in all.iter().zip(&expected) {
        assert_same(recorded, new);
    }
    let streams: Vec<_> = all
        .iter()
        .map(|e| (e.stream_id.as_str(), e.revision))
        .collect();
    assert_eq!(streams, [("s-1", 0), ("s-1", 1), ("s-2", 0), ("s-1", 2)]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    assert_eq!(all[3].position, last.position);

    let page = store.read_all(Position::START, 2).await.unwrap();
    assert_eq!(page, all[..2]);
    assert_eq!(
        store.read_all(page[1].position, 100).await.unwrap(),
        all[2..]
    );
    assert_eq!(store.read_all(all[1].position, 1).await.unwrap(), all[2..3]);
    assert!(
        store
            .read_all(all[3].position, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.read_all(Position::START, 0).await.unwrap().is_empty());
}

async fn changes_fire_after_append(store: Store) {
    let mut changes = store.changes();
    assert!(!changes.has_changed().unwrap());
    append(&store, "s-1", NoStream, &events(1)).await;
    timeout(PATIENCE, changes.changed())
        .await
        .expect("a change signal")
        .unwrap();
}

async fn subscription_catches_up_then_delivers_later_appends(store: Store) {
    let early = events(3);
    append(&store, "s-1", NoStream, &early).await;

    let mut subscription = subscribe_all(Arc::clone(&store), Position::START, 2);
    let mut seen = Vec::new();
    for new in &early {
        seen.push(next(&mut subscription).await);
        assert_same(seen.last().unwrap(), new);
    }
    let later = events(1);
    append(&store, "s-2", NoStream, &later).await;
    assert_same(&next(&mut subscription).await, &later[0]);

    // Resuming from a checkpoint delivers only what follows it.
    let mut resumed = subscribe_all(Arc::clone(&store), seen[1].position, 10);
    assert_same(&next(&mut resumed).await, &early[2]);
}

// ---- backends -------------------------------------------------------------------------

async fn sqlite_db() -> (TempDir, SqliteDb) {
    let dir = TempDir::new().unwrap();
    match Db::open_sqlite_file(&dir.path().join("hookrun.db"))
        .await
        .unwrap()
    {
        Db::Sqlite(db) => (dir, db),
        Db::Postgres(_) => unreachable!(),
    }
}

async fn on_sqlite<F: Future<Output = ()>>(scenario: impl FnOnce(Store) -> F) {
    let (_dir, db) = sqlite_db().await;
    scenario(Arc::new(SqliteEventStore::new(db))).await;
}

async fn postgres_pool(test: &str) -> Option<(String, PgPool)> {
    let url = support::pg::fresh_database(test).await?;
    match Db::connect(&url).await.unwrap() {
        Db::Postgres(pool) => Some((url, pool)),
        Db::Sqlite(_) => unreachable!(),
    }
}

async fn on_postgres<F: Future<Output = ()>>(test: &str, scenario: impl FnOnce(Store) -> F) {
    let Some((_, pool)) = postgres_pool(test).await else {
        return;
    };
    scenario(Arc::new(PostgresEventStore::connect(pool).await.unwrap())).await;
}

macro_rules! conformance {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            on_sqlite($scenario).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            on_postgres(stringify!($postgres), $scenario).await;
        }
    )*};
}

conformance! {
    append_then_read_stream => sqlite_append_then_read_stream, postgres_append_then_read_stream;
    read_stream_from_revision_with_limit =>
        sqlite_read_stream_from_revision_with_limit, postgres_read_stream_from_revision_with_limit;
    no_stream_on_existing_stream_conflicts =>
        sqlite_no_stream_on_existing_stream_conflicts, postgres_no_stream_on_existing_stream_conflicts;
    exact_wrong_version_conflicts_with_actual =>
        sqlite_exact_wrong_version_conflicts_with_actual,
        postgres_exact_wrong_version_conflicts_with_actual;
    any_appends_whatever_the_version =>
        sqlite_any_appends_whatever_the_version, postgres_any_appends_whatever_the_version;
    concurrent_appends_at_same_version_one_wins =>
        sqlite_concurrent_appends_at_same_version_one_wins,
        postgres_concurrent_appends_at_same_version_one_wins;
    a_bad_append_in_a_batch_fails_alone =>
        sqlite_a_bad_append_in_a_batch_fails_alone, postgres_a_bad_append_in_a_batch_fails_alone;
    appending_same_event_ids_is_idempotent =>
        sqlite_appending_same_event_ids_is_idempotent, postgres_appending_same_event_ids_is_idempotent;
    read_all_in_global_order => sqlite_read_all_in_global_order, postgres_read_all_in_global_order;
    changes_fire_after_append => sqlite_changes_fire_after_append, postgres_changes_fire_after_append;
    subscription_catches_up_then_delivers_later_appends =>
        sqlite_subscription_catches_up_then_delivers_later_appends,
        postgres_subscription_catches_up_then_delivers_later_appends;
}

// ---- backend-specific -----------------------------------------------------------------

#[tokio::test]
async fn sqlite_read_only_database_is_unavailable() {
    let (_dir, db) = sqlite_db().await;
    let read_only = SqliteDb {
        writer: db.reader.clone(),
        reader: db.reader,
        relaxed: Default::default(),
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
