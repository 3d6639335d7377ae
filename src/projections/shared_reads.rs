//! One read of the store for every projection at the same checkpoint.
//!
//! The runner applies one batch to each projection in turn; projections that are
//! level (the usual case) ask for the very same `read_all(after, limit)`. This wrapper
//! answers a repeat of the last `read_all` from memory, so the events are read,
//! decoded and opened once per batch instead of once per projection. It lives for one
//! catch-up pass only: what a later pass reads always comes from the store.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::events::{
    AppendResult, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
};

type LastRead = (Position, usize, Arc<Vec<RecordedEvent>>);

pub(super) struct SharedReads {
    inner: Arc<dyn EventStore>,
    last: Mutex<Option<LastRead>>,
}

impl SharedReads {
    pub(super) fn new(inner: Arc<dyn EventStore>) -> Self {
        SharedReads {
            inner,
            last: Mutex::new(None),
        }
    }
}

#[async_trait]
impl EventStore for SharedReads {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.inner.read_stream(stream, from, limit).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let cached = self
            .last
            .lock()
            .expect("shared reads lock")
            .as_ref()
            .filter(|(a, l, _)| *a == after && *l == limit)
            .map(|(_, _, events)| Arc::clone(events));
        if let Some(events) = cached {
            return Ok(events.as_ref().clone());
        }
        let events = self.inner.read_all(after, limit).await?;
        *self.last.lock().expect("shared reads lock") =
            Some((after, limit, Arc::new(events.clone())));
        Ok(events)
    }

    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError> {
        self.inner.count_after(after, cap).await
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.inner.changes()
    }
}
