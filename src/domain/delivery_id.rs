//! Delivery ids: the sender's id for one delivery (`X-GitHub-Delivery`, `webhook-id`,
//! `Idempotency-Key`). The same delivery id for the same agent is the same execution.

use super::InvalidValue;

pub const MAX_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryId(String);

impl DeliveryId {
    /// A printable ASCII id of 1–256 characters (surrounding whitespace trimmed).
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let raw = raw.trim();
        if raw.is_empty() || raw.len() > MAX_LEN || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidValue(format!(
                "invalid delivery id: expected 1-{MAX_LEN} printable ASCII characters"
            )));
        }
        Ok(DeliveryId(raw.to_owned()))
    }

    /// For a delivery without an id: a fresh random one (no deduplication possible).
    pub fn generate() -> Self {
        DeliveryId(format!("gen-{}", uuid::Uuid::new_v4()))
    }
}

impl AsRef<str> for DeliveryId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for DeliveryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
