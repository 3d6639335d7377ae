//! The event store as the application uses it: a wrapper around a backend that seals
//! tenant data on append and, on read, opens it and upcasts old schema versions — so
//! every reader (actors, projections, the API, the CLI) sees current, readable events,
//! while the backend stores only ciphertext for tenant data (see `sealing`).
//!
//! An event whose key was destroyed (an erased tenant) is returned as stored, with
//! `metadata.unreadable` set: streams stay complete and replayable, their tenant data
//! does not come back.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;

use super::sealing::{self, UNREADABLE};
use super::tenant_keys::TenantKeys;
use super::{
    AppendResult, EventStore, ExpectedVersion, NewEvent, Position, RecordedEvent, StoreError,
};

pub struct SealedStore {
    inner: Arc<dyn EventStore>,
    keys: Arc<TenantKeys>,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn EventStore>, keys: Arc<TenantKeys>) -> Self {
        SealedStore { inner, keys }
    }

    async fn open(&self, mut events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>, StoreError> {
        for event in &mut events {
            if let Some((_, sealed)) = sealing::sealed_text(&event.event_type, &event.data) {
                let key = match sealing::key_id(sealed) {
                    Some(id) => self.keys.for_opening(id).await?,
                    None => None,
                };
                let opened = match key {
                    Some(sealer) => {
                        sealing::open(&event.event_type, &event.event_id, &mut event.data, &sealer)
                            .map_err(|e| e.to_string())
                    }
                    None => Err("the tenant's data key was destroyed (erased)".to_owned()),
                };
                if let Err(why) = opened {
                    if let Some(meta) = event.metadata.as_object_mut() {
                        meta.insert(UNREADABLE.into(), why.into());
                    }
                    continue;
                }
            }
            if let Err(e) = super::upcast::upcast_recorded(event) {
                tracing::warn!(stream = %event.stream_id, revision = event.revision, "{e}");
            }
        }
        Ok(events)
    }
}

#[async_trait]
impl EventStore for SealedStore {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        mut events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        for event in &mut events {
            if sealing::sealed_field(&event.event_type).is_none() {
                continue;
            }
            let tenant = event
                .metadata
                .get("tenant_id")
                .and_then(|t| t.as_str())
                .ok_or_else(|| {
                    StoreError::Backend(format!(
                        "{} in {stream} has no metadata.tenant_id: its data cannot be sealed",
                        event.event_type
                    ))
                })?;
            let sealer = self.keys.for_sealing(tenant).await?;
            sealing::seal(&event.event_type, &event.event_id, &mut event.data, &sealer);
        }
        self.inner.append(stream, expected, events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_stream(stream, from, limit).await?;
        self.open(events).await
    }

    async fn read_all(
        &self,
        after: Position,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let events = self.inner.read_all(after, limit).await?;
        self.open(events).await
    }

    async fn count_after(&self, after: Position, cap: u64) -> Result<u64, StoreError> {
        self.inner.count_after(after, cap).await
    }

    fn changes(&self) -> watch::Receiver<()> {
        self.inner.changes()
    }
}
