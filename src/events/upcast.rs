//! Event schema evolution: every event's metadata carries the `schema_version` it was
//! written with, and readers turn older versions into the current shape here, on read,
//! so that the typed enums only ever describe the current version. Stored events are
//! never rewritten (their hashes cover the stored bytes).
//!
//! # Versions
//! - **1**: the original format.
//! - **2**: `ExecutionQueued.payload` and `ExecutionSucceeded.output` are stored sealed
//!   under the tenant's data key (`{"$sealed": "v1.<key id>.<data>"}`, opened by
//!   `events::sealed_store` before upcasting); `ExecutionQueued` records the agent's
//!   `config_version`; the `tenant-{id}` stream (`TenantErased`) exists.
//!
//! Upcasting 1 → 2 makes what version 1 left implicit explicit: an `ExecutionQueued`
//! without `config_version` or `node` gets them as `null` (not recorded). Each step is
//! one function from version N to N+1; `tests/upcast.rs` checks stored fixtures of
//! every event at every version (`tests/fixtures/events/v{N}/{type}.json`).

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::RecordedEvent;
use super::envelope::SCHEMA_VERSION;

/// The version this build writes and reads into.
pub const CURRENT: u32 = SCHEMA_VERSION;

/// Every event type, with the schema version that introduced it. A new event type or a
/// new version needs fixtures for every version it exists in.
pub const EVENT_TYPES: &[(&str, u32)] = &[
    ("ExecutionQueued", 1),
    ("ExecutionStarted", 1),
    ("LlmCalled", 1),
    ("LlmCallFailed", 1),
    ("ExecutionSucceeded", 1),
    ("ExecutionFailed", 1),
    ("AgentRegistered", 1),
    ("AgentLlmKeySet", 1),
    ("AgentPaused", 1),
    ("AgentActivated", 1),
    ("TenantErased", 2),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpcastError {
    #[error(
        "{event_type} was written with schema version {version}; this build reads versions 1 to {CURRENT}"
    )]
    UnknownVersion { event_type: String, version: u32 },
    #[error("{event_type} (schema version {version}) is not a JSON object")]
    NotAnObject { event_type: String, version: u32 },
    #[error("{event_type} cannot be read: {message}")]
    Invalid { event_type: String, message: String },
}

/// The schema version in an event's metadata (events without one are version 1).
pub fn schema_version(metadata: &Value) -> u32 {
    metadata
        .get("schema_version")
        .and_then(Value::as_u64)
        .map_or(1, |v| v as u32)
}

/// Turns `data` of `event_type` written at `version` into the current version's shape.
pub fn upcast(event_type: &str, version: u32, data: Value) -> Result<Value, UpcastError> {
    if version == 0 || version > CURRENT {
        return Err(UpcastError::UnknownVersion {
            event_type: event_type.to_owned(),
            version,
        });
    }
    let Value::Object(mut fields) = data else {
        return Err(UpcastError::NotAnObject {
            event_type: event_type.to_owned(),
            version,
        });
    };
    for from in version..CURRENT {
        match from {
            1 => v1_to_v2(event_type, &mut fields),
            _ => unreachable!("one step per version below CURRENT"),
        }
    }
    Ok(Value::Object(fields))
}

fn v1_to_v2(event_type: &str, fields: &mut Map<String, Value>) {
    if event_type == "ExecutionQueued" {
        for implicit in ["node", "config_version"] {
            fields.entry(implicit).or_insert(Value::Null);
        }
    }
}

/// Upcasts a recorded event in place; its metadata then says the current version and,
/// under `upcast_from`, the version it was stored with. Current events are untouched.
pub fn upcast_recorded(event: &mut RecordedEvent) -> Result<(), UpcastError> {
    let version = schema_version(&event.metadata);
    if version == CURRENT {
        return Ok(());
    }
    let data = std::mem::take(&mut event.data);
    event.data = upcast(&event.event_type, version, data)?;
    if let Value::Object(meta) = &mut event.metadata {
        meta.insert("schema_version".into(), CURRENT.into());
        meta.insert("upcast_from".into(), version.into());
    }
    Ok(())
}

/// Decodes a recorded event into its current typed form, upcasting it if it is older.
pub fn decode<E: DeserializeOwned>(event: &RecordedEvent) -> Result<E, UpcastError> {
    let invalid = |e: serde_json::Error| UpcastError::Invalid {
        event_type: event.event_type.clone(),
        message: e.to_string(),
    };
    let version = schema_version(&event.metadata);
    if version == CURRENT {
        E::deserialize(&event.data).map_err(invalid)
    } else {
        let data = upcast(&event.event_type, version, event.data.clone())?;
        serde_json::from_value(data).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_version_1_execution_queued_gets_its_implicit_fields() {
        let v1 = json!({"type": "ExecutionQueued", "payload": {}});
        let v2 = upcast("ExecutionQueued", 1, v1).unwrap();
        assert_eq!(v2["config_version"], Value::Null);
        assert_eq!(v2["node"], Value::Null);
        let kept = upcast("ExecutionQueued", 1, json!({"node": "n1"})).unwrap();
        assert_eq!(kept["node"], "n1");
    }

    #[test]
    fn versions_from_the_future_are_refused_with_a_clear_error() {
        let err = upcast("LlmCalled", CURRENT + 1, json!({})).unwrap_err();
        assert!(err.to_string().contains("this build reads versions 1 to"));
        assert_eq!(schema_version(&json!({})), 1);
    }
}
