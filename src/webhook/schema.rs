//! Payload schemas: an agent may declare a JSON Schema its webhook payloads must match.
//!
//! A schema is compiled once (at agent creation, to reject invalid schemas with a
//! clear message) and then reused from [`SchemaCache`](super::SchemaCache) for every delivery, keyed by
//! agent and config version so an agent update never serves a stale schema.
//! Remote `$ref`s are not resolvable: jsonschema is built without its HTTP and file
//! resolvers, so a schema cannot make hookrun fetch URLs or read local files.

use jsonschema::ReferencingError;
use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use serde_json::Value;

/// Longest violation message returned; messages quote the offending value, which
/// may be an entire (large) sub-document.
const MAX_MESSAGE_LEN: usize = 300;

/// The schema itself is not a valid JSON Schema (or references something unresolvable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SchemaError(pub String);

/// One way a payload fails its schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// JSON pointer to the offending value in the payload (`""` is the root).
    pub path: String,
    pub message: String,
}

/// A compiled JSON Schema (draft detected from `$schema`, default 2020-12).
pub struct PayloadSchema {
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadSchema")
            .field("draft", &self.validator.draft())
            .finish()
    }
}

impl PayloadSchema {
    pub fn compile(schema: &Value) -> Result<Self, SchemaError> {
        jsonschema::options()
            .build(schema)
            .map(|validator| Self { validator })
            .map_err(|e| {
                let at = match e.instance_path().as_str() {
                    "" => String::new(),
                    path => format!(" at {path}"),
                };
                let reason = match e.kind() {
                    // The library's own message talks about its cargo features; say what it
                    // means for a schema author instead.
                    ValidationErrorKind::Referencing(ReferencingError::Unretrievable {
                        uri,
                        ..
                    }) => format!(
                        "$ref {uri:?} cannot be resolved: only references within the schema itself \
                     (e.g. \"#/$defs/name\") are supported"
                    ),
                    _ => truncate(e.to_string()),
                };
                SchemaError(format!("invalid JSON Schema{at}: {reason}"))
            })
    }

    /// Every violation, so a sender can fix them all in one round trip.
    pub fn validate(&self, instance: &Value) -> Result<(), Vec<Violation>> {
        let violations: Vec<Violation> = self
            .validator
            .iter_errors(instance)
            .map(|e| Violation {
                path: e.instance_path().to_string(),
                message: truncate(e.to_string()),
            })
            .collect();
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_MESSAGE_LEN {
        let mut end = MAX_MESSAGE_LEN;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ticket_schema() -> Value {
        json!({
            "type": "object",
            "required": ["ticket_id", "priority"],
            "properties": {
                "ticket_id": {"type": "string", "pattern": "^TKT-[0-9]+$"},
                "priority": {"enum": ["low", "high"]},
                "tags": {"type": "array", "items": {"type": "string"}}
            }
        })
    }

    #[test]
    fn valid_payload_passes() {
        let schema = PayloadSchema::compile(&ticket_schema()).unwrap();
        schema
            .validate(&json!({"ticket_id": "TKT-1", "priority": "low"}))
            .unwrap();
    }

    #[test]
    fn every_violation_is_listed_with_its_json_pointer() {
        let schema = PayloadSchema::compile(&ticket_schema()).unwrap();
        let violations = schema
            .validate(&json!({"ticket_id": "x", "tags": ["a", 7]}))
            .unwrap_err();
        let paths: Vec<&str> = violations.iter().map(|v| v.path.as_str()).collect();
        assert_eq!(violations.len(), 3, "{violations:?}");
        assert!(
            paths.contains(&"") && paths.contains(&"/ticket_id") && paths.contains(&"/tags/1"),
            "{paths:?}"
        );
        assert!(
            violations.iter().any(|v| v.message.contains("priority")),
            "{violations:?}"
        );
        let json = serde_json::to_value(&violations[0]).unwrap();
        assert!(json.get("path").is_some() && json.get("message").is_some());
    }

    #[test]
    fn long_messages_are_truncated() {
        let schema = PayloadSchema::compile(&json!({"type": "string"})).unwrap();
        let violations = schema.validate(&json!(["é".repeat(1000)])).unwrap_err();
        assert!(violations[0].message.chars().count() <= MAX_MESSAGE_LEN + 1);
        assert!(violations[0].message.ends_with('…'));
    }

    #[test]
    fn invalid_schemas_are_rejected_with_a_clear_message() {
        let err = PayloadSchema::compile(&json!({"type": "strnig"})).unwrap_err();
        assert!(err.0.starts_with("invalid JSON Schema at /type:"), "{err}");
        let err =
            PayloadSchema::compile(&json!({"properties": {"a": {"minLength": -1}}})).unwrap_err();
        assert!(err.0.contains("/properties/a/minLength"), "{err}");
        assert!(PayloadSchema::compile(&json!(42)).is_err());
    }

    #[test]
    fn remote_and_file_refs_are_not_fetched() {
        for target in ["https://example.com/schema.json", "file:///etc/passwd"] {
            let err = PayloadSchema::compile(&json!({"$ref": target})).unwrap_err();
            assert!(err.0.starts_with("invalid JSON Schema"), "{err}");
            assert!(
                err.0.contains(target) && err.0.contains("only references within the schema"),
                "{err}"
            );
        }
        // Local references still work.
        let local = json!({"$defs": {"id": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/id"}}});
        let schema = PayloadSchema::compile(&local).unwrap();
        assert_eq!(schema.validate(&json!({"a": 1})).unwrap_err()[0].path, "/a");
    }

    #[test]
    fn compiled_schemas_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PayloadSchema>();
    }
}
