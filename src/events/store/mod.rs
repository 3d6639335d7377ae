//! The [`EventStore`] contract and its backends.
//!
//! One trait, one conformance suite (`tests/event_store.rs`), several backends:
//! - [`sqlite`]: the embedded default, a file in the data dir.
//! - [`postgres`]: production single-region.

mod batch;
mod heads;
mod pg_writer;
pub mod postgres;
mod rules;
pub mod sqlite;
pub mod subscription;

use async_trait::async_trait;
use tokio::sync::watch;

use super::envelope::{NewEvent, Position, RecordedEvent};

/// What the writer expects the stream's current revision to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this revision (0-based).
    Exact(u64),
}

/// Outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Revision of the last event now in the stream (the next `Exact` to expect).
    pub next_expected_version: u64,
    /// Global position of the last appended event.
    pub position: Position,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency: the stream is not at the expected version.
    #[error("wrong expected version on stream {stream}: expected {expected:?}, actual {actual:?}")]
    WrongExpectedVersion {
        stream: String,
        expected: ExpectedVersion,
        /// Revision of the stream's last event, `None` if the stream does not exist.
        actual: Option<u64>,
    },
    /// The store cannot be reached or refuses writes right now; retrying later may work.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    #[error("event store error: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }
}

/// A database error as the store reports it: what may pass (a lost connection, a busy
/// or read-only database; see `db::is_transient`) is `Unavailable`, the rest `Backend`.
fn map_err(err: sqlx::Error) -> StoreError {
    if crate::db::is_transient(&err) {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Backend(err.to_string())
    }
}

/// An append-only store of event streams with a global order.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream is at `expected`.
    ///
    /// Idempotent: if every event id in `events` is already stored in `stream`, nothing is
    /// written and the result describes the stored events (whatever `expected` says).
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError>;

    /// Reads up to `limit` events of `stream` starting at revision `from` (inclusive),
    /// in revision order. An unknown stream is empty.
    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Reads up to `limit` events after `after` (exclusive) in global order.
    ///
    /// Never skips: an event that is not returned now because its transaction has not
    /// committed will only ever be visible at a position after the last one returned.
    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// How many events follow `after` in global order (what [`read_all`](Self::read_all)
    /// would return, read to the end), counting at most `cap`. Used for lag and progress.
    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError> {
        let mut count = 0;
        let mut after = after;
        while count < cap {
            let batch = self.read_all(after, 1000).await?;
            count += batch.len() as u64;
            match batch.last() {
                Some(last) if batch.len() == 1000 => after = last.position,
                _ => break,
            }
        }
        Ok(count.min(cap))
    }

    /// A signal that changes after events may have been appended (in this process and,
    /// where the backend can tell, in others). Readers that caught up wait on it instead
    /// of polling.
    fn changes(&self) -> watch::Receiver<()>;
}
