//! The event store conformance suite: every backend must pass the same tests.
//!
//! Each scenario is written once as an async function over `Arc<dyn EventStore>` and run
//! against SQLite (a fresh file in a temp dir) and PostgreSQL (a fresh database per test),
//! as `sqlite_<scenario>` / `postgres_<scenario>` (`scenarios.rs`). Backend-specific tests
//! (`backend_specific.rs`) prove, among others, that PostgreSQL's `$all` never skips an
//! event when transactions commit out of sequence order.

use crate::support;

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

mod backend_specific;
mod scenarios;

use scenarios::*;

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
