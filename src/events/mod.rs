//! The event store: the system of record.
//!
//! Everything hookrun knows about an execution is an event in a stream
//! (`execution-{id}`, `agent-{id}`). This module owns the store contract
//! ([`EventStore`]), the store-agnostic envelope ([`NewEvent`], [`RecordedEvent`])
//! and the typed event enums. It knows nothing of actors, HTTP or the readers of
//! the events (projections): data flows into it and is read out of it.
//!
//! # Layout
//! - [`chain`]: the hash chain that makes tampering with stored events evident.
//! - [`envelope`]: metadata every event carries, new and recorded events, positions.
//! - [`execution`]: the `execution-{id}` stream's events.
//! - [`agent`]: the `agent-{id}` stream's lifecycle events.
//! - [`tenant`]: the `tenant-{id}` stream (erasure).
//! - [`upcast`]: schema versions, and reading old ones as the current shape.
//! - [`sealing`], [`tenant_keys`], [`sealed_store`]: tenant data sealed under per-tenant
//!   keys (crypto-shredding), and the store wrapper that seals, opens and upcasts.
//! - [`store`]: the [`EventStore`] trait and its backends (SQLite, PostgreSQL).

pub mod agent;
pub mod chain;
pub mod envelope;
pub mod execution;
pub mod sealed_store;
pub mod sealing;
pub mod store;
pub mod tenant;
pub mod tenant_keys;
pub mod upcast;

pub use envelope::{EventMetadata, NewEvent, Position, RecordedEvent};
pub use store::{AppendResult, EventStore, ExpectedVersion, StoreError};
