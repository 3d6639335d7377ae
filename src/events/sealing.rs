//! Which event fields hold tenant data, and sealing them under the tenant's data key.
//!
//! `ExecutionQueued.payload` (the webhook body), `ExecutionSucceeded.output` (the
//! LLM's answer) and the `message` of `LlmCallFailed` and `ExecutionFailed` (a
//! gateway's error text, which may quote the prompt or the payload it refused) are
//! stored as `{"$sealed": "v1.<key id>.<data>"}`: the field's JSON,
//! sealed with XChaCha20-Poly1305 under the tenant's data key, with associated data
//! naming the event id and the field (a sealed value moved to another event does not
//! open). Everything else stays readable, so streams can be audited, chained and
//! replayed without any key; destroying the key makes only the tenant's data unreadable.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::crypto::{CryptoError, Sealer};

/// The key of the one-field object a sealed value is stored as.
pub const SEALED: &str = "$sealed";

/// Set in the metadata of an event read back whose sealed field cannot be opened (its
/// tenant was erased); projections skip such events.
pub const UNREADABLE: &str = "unreadable";

/// The field of `event_type` that holds tenant data, if any.
pub fn sealed_field(event_type: &str) -> Option<&'static str> {
    match event_type {
        "ExecutionQueued" => Some("payload"),
        "ExecutionSucceeded" => Some("output"),
        "LlmCallFailed" | "ExecutionFailed" => Some("message"),
        _ => None,
    }
}

/// Associated data of a sealed field.
pub fn aad(event_id: &Uuid, field: &str) -> String {
    format!("event:{event_id}:{field}")
}

/// Seals the event's tenant-data field in place (no-op for other event types).
pub fn seal(event_type: &str, event_id: &Uuid, data: &mut Value, sealer: &Sealer) {
    let Some(field) = sealed_field(event_type) else {
        return;
    };
    let Some(value) = data.get_mut(field) else {
        return;
    };
    let plaintext = value.to_string();
    let sealed = sealer.seal(plaintext.as_bytes(), aad(event_id, field).as_bytes());
    *value = json!({ SEALED: sealed });
}

/// The sealed text of the event's tenant-data field, if it is stored sealed.
pub fn sealed_text<'a>(event_type: &str, data: &'a Value) -> Option<(&'static str, &'a str)> {
    let field = sealed_field(event_type)?;
    let object = data.get(field)?.as_object()?;
    if object.len() != 1 {
        return None;
    }
    Some((field, object.get(SEALED)?.as_str()?))
}

/// The id of the key a sealed text names (`v1.<key id>.<data>`).
pub fn key_id(sealed: &str) -> Option<&str> {
    let mut parts = sealed.splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some("v1"), Some(id)) if !id.is_empty() => Some(id),
        _ => None,
    }
}

/// Opens the sealed field in place with `sealer`.
pub fn open(
    event_type: &str,
    event_id: &Uuid,
    data: &mut Value,
    sealer: &Sealer,
) -> Result<(), CryptoError> {
    let Some((field, sealed)) = sealed_text(event_type, data) else {
        return Ok(());
    };
    let plaintext = sealer.open(sealed, aad(event_id, field).as_bytes())?;
    let value: Value = serde_json::from_slice(&plaintext)
        .map_err(|e| CryptoError::Malformed(format!("sealed {field} is not JSON: {e}")))?;
    data[field] = value;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::MasterKey;

    #[test]
    fn a_sealed_payload_opens_only_for_its_own_event() {
        let sealer = Sealer::new(MasterKey::generate());
        let id = Uuid::new_v4();
        let original = json!({"type": "ExecutionQueued", "payload": {"ticket": "TKT-1"}});
        let mut data = original.clone();
        seal("ExecutionQueued", &id, &mut data, &sealer);
        assert!(!data.to_string().contains("TKT-1"));
        let (_, text) = sealed_text("ExecutionQueued", &data).unwrap();
        assert_eq!(key_id(text), Some(sealer.current_key_id().as_str()));

        let mut moved = data.clone();
        assert!(open("ExecutionQueued", &Uuid::new_v4(), &mut moved, &sealer).is_err());
        open("ExecutionQueued", &id, &mut data, &sealer).unwrap();
        assert_eq!(data, original);

        let mut other = json!({"type": "LlmCalled", "model": "m"});
        seal("LlmCalled", &id, &mut other, &sealer);
        assert_eq!(other["model"], "m");
    }
}
