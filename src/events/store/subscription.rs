//! A catch-up subscription to `$all` that works on any [`EventStore`].
//!
//! This file owns [`subscribe_all`]: read `$all` in batches from a position until caught
//! up, then wait for [`EventStore::changes`] and read again. A backend cannot signal
//! everything (an aborted transaction, a write by another process to a SQLite file, an
//! older PostgreSQL transaction finishing elsewhere on the server), so a caught-up
//! subscription also re-checks once per [`RECHECK`]; it never spins.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use super::{EventStore, StoreError};
use crate::events::envelope::{Position, RecordedEvent};

/// How long a caught-up subscription waits for a change signal before reading anyway
/// (also the pause after an error).
pub const RECHECK: Duration = Duration::from_secs(1);

/// Every event after `after` (exclusive) in global order, then each new one as it becomes
/// readable, forever; read `batch` events at a time.
///
/// A read error is yielded as an item, and the subscription carries on from the same
/// position after a pause of [`RECHECK`]; drop the stream to stop. Each delivered
/// event's `position` is the checkpoint to resume from.
pub fn subscribe_all(
    store: Arc<dyn EventStore>,
    after: Position,
    batch: usize,
) -> BoxStream<'static, Result<RecordedEvent, StoreError>> {
    // Subscribe to changes before the first read, so no append between a read and the
    // wait that follows it can go unnoticed.
    let changes = store.changes();
    let state = Subscription {
        store,
        after,
        batch: batch.max(1),
        buffered: VecDeque::new(),
        changes,
        pause: false,
    };
    futures::stream::unfold(state, Subscription::next).boxed()
}

struct Subscription {
    store: Arc<dyn EventStore>,
    /// Position of the last event handed out.
    after: Position,
    batch: usize,
    /// Events read but not yet handed out.
    buffered: VecDeque<RecordedEvent>,
    changes: watch::Receiver<()>,
    /// The last read failed: wait before the next one.
    pause: bool,
}

impl Subscription {
    async fn next(mut self) -> Option<(Result<RecordedEvent, StoreError>, Self)> {
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.after = event.position;
                return Some((Ok(event), self));
            }
            if std::mem::take(&mut self.pause) {
                tokio::time::sleep(RECHECK).await;
            }
            match self.store.read_all(self.after, self.batch).await {
                Ok(events) if events.is_empty() => self.wait_for_change().await,
                Ok(events) => self.buffered.extend(events),
                Err(error) => {
                    self.pause = true;
                    return Some((Err(error), self));
                }
            }
        }
    }

    /// Returns on a change signal or after [`RECHECK`], whichever comes first.
    async fn wait_for_change(&mut self) {
        match tokio::time::timeout(RECHECK, self.changes.changed()).await {
            Ok(Ok(())) | Err(_) => {}
            // The store dropped its sender: no more signals, only periodic re-checks.
            Ok(Err(_)) => tokio::time::sleep(RECHECK).await,
        }
    }
}
