//! The catalog: tenants, their API keys and their agents.
//!
//! Why SQL tables and not event streams: this is configuration that the webhook path
//! reads on every request (agent lookup, secret, schema) and must read consistently
//! right after a write (an agent is usable the moment its 201 is answered). Its
//! history is still auditable: every change also appends a lifecycle event to the
//! agent's `agent-{id}` stream (never with a secret in it). Secrets are stored sealed
//! (see `crate::crypto`); API keys only as hashes.

pub mod agents;
pub mod cache;
pub mod commands;
pub mod reseal;
pub mod tenants;
pub mod webhook_secrets;

pub use agents::{AgentRecord, AgentStatus, LlmConfig};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

/// Timestamps are stored as RFC 3339 text in UTC with milliseconds: the same on both
/// backends, and it sorts as text.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
