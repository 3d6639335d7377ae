//! Events of the `tenant-{tenant_id}` stream: what happened to a tenant as a whole.
//!
//! `TenantErased` records a crypto-shredding erasure (`DELETE /api/tenants/{id}`): the
//! tenant's data keys were destroyed, so the payloads, outputs and error texts sealed
//! under them can no longer be read, and every read model drops the tenant's rows when
//! it folds this event (during a rebuild too, so erased rows never come back).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::RecordedEvent;

pub const STREAM_PREFIX: &str = "tenant-";

pub fn stream_name(tenant_id: &str) -> String {
    format!("{STREAM_PREFIX}{tenant_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum TenantEvent {
    /// The tenant's data keys were destroyed and its catalog entries deleted.
    TenantErased {
        tenant_id: String,
        erased_at: DateTime<Utc>,
        /// How many data keys were destroyed.
        keys_destroyed: u64,
    },
}

impl TenantEvent {
    pub fn event_type(&self) -> &'static str {
        match self {
            TenantEvent::TenantErased { .. } => "TenantErased",
        }
    }
}

/// The tenant an event erases, if it is a `TenantErased`.
pub fn erased_tenant(event: &RecordedEvent) -> Option<&str> {
    if event.event_type == "TenantErased" && event.stream_id.starts_with(STREAM_PREFIX) {
        event.data.get("tenant_id").and_then(|t| t.as_str())
    } else {
        None
    }
}
