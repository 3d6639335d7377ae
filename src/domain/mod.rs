//! Validated domain values. Raw input is parsed into these once, at the edge
//! (HTTP handlers, CLI); everything past the edge can rely on them being valid.

mod agent_id;
mod delivery_id;
mod execution_id;
mod tenant_id;

pub use agent_id::AgentId;
pub use delivery_id::DeliveryId;
pub use execution_id::ExecutionId;
pub use tenant_id::TenantId;

/// Why a raw value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);
