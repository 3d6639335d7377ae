//! Webhook payloads and signatures, exactly as a sender computes them.
//!
//! Signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key, raw body)>` with the key
//! being the base64-decoded webhook secret; delivery id in `X-GitHub-Delivery`.

use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// Size of every benchmark payload, in bytes.
pub const PAYLOAD_BYTES: usize = 1024;

/// The JSON Schema agents under test declare (the payloads below match it).
pub fn payload_schema() -> Value {
    json!({
        "type": "object",
        "required": ["ticket_id", "priority", "description"],
        "properties": {
            "ticket_id": {"type": "string", "pattern": "^TKT-[0-9]+$"},
            "priority": {"enum": ["low", "medium", "high"]},
            "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 10},
            "description": {"type": "string", "maxLength": 4000}
        }
    })
}

/// A schema-valid JSON payload of exactly [`PAYLOAD_BYTES`] bytes, unique per `n`.
pub fn payload(n: u64) -> Vec<u8> {
    let head = format!(
        r#"{{"ticket_id":"TKT-{n}","priority":"high","tags":["db","latency"],"description":""#
    );
    let tail = r#""}"#;
    let fill = PAYLOAD_BYTES.saturating_sub(head.len() + tail.len());
    let mut body = Vec::with_capacity(PAYLOAD_BYTES);
    body.extend_from_slice(head.as_bytes());
    body.extend(std::iter::repeat_n(b'x', fill));
    body.extend_from_slice(tail.as_bytes());
    body
}

/// The HMAC key of a webhook secret (its base64-decoded bytes).
pub fn key_of(secret: &str) -> anyhow::Result<Vec<u8>> {
    Ok(base64::engine::general_purpose::STANDARD.decode(secret.trim())?)
}

/// `sha256=<hex>` over `body`.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_one_kib_of_valid_json() {
        for n in [0, 7, 123_456_789] {
            let body = payload(n);
            assert_eq!(body.len(), PAYLOAD_BYTES);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["ticket_id"], format!("TKT-{n}"));
        }
    }
}
