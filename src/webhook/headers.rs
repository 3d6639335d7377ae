//! Header access for the verifiers, and delivery-id extraction.
//!
//! `webhook/` must stay free of HTTP framework types, so the verifiers read headers
//! through the small [`Headers`] trait: the HTTP layer adapts its header map, tests
//! pass plain `(name, value)` pairs. The trait returns *every* value of a header so
//! that a repeated signature header is seen and rejected on purpose instead of
//! silently picking one of the copies.

use super::signature::SignatureError;

/// Read-only view of request headers.
pub trait Headers {
    /// Every value of header `name` (ASCII case-insensitive), in the order received;
    /// empty when the header is absent. Adapters skip values that are not UTF-8.
    fn get_all(&self, name: &str) -> Vec<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for [(K, V)] {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.iter()
            .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
            .collect()
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Headers for [(K, V); N] {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.as_slice().get_all(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Headers for Vec<(K, V)> {
    fn get_all(&self, name: &str) -> Vec<&str> {
        self.as_slice().get_all(name)
    }
}

/// The single, trimmed value of `name`: `None` when absent, an error when repeated
/// (two signature headers would make "which one counts" ambiguous).
pub(crate) fn single<'h>(
    headers: &'h dyn Headers,
    name: &'static str,
) -> Result<Option<&'h str>, SignatureError> {
    match headers.get_all(name).as_slice() {
        [] => Ok(None),
        [value] => Ok(Some(value.trim())),
        many => Err(SignatureError::DuplicateHeader {
            header: name,
            count: many.len(),
        }),
    }
}

/// Like [`single`], but a missing header is an error naming it.
pub(crate) fn required<'h>(
    headers: &'h dyn Headers,
    name: &'static str,
    scheme: super::SignatureScheme,
) -> Result<&'h str, SignatureError> {
    single(headers, name)?.ok_or(SignatureError::MissingHeader {
        header: name,
        scheme,
    })
}

/// Headers that carry a sender's delivery id, in order of preference.
pub const DELIVERY_ID_HEADERS: [&str; 3] = ["X-GitHub-Delivery", "webhook-id", "Idempotency-Key"];

/// Longest delivery id accepted (matches `domain::DeliveryId`).
pub const MAX_DELIVERY_ID_LEN: usize = 256;

/// The sender's delivery id: the first of [`DELIVERY_ID_HEADERS`] whose (first) value,
/// trimmed, is 1–256 printable ASCII characters. `None` when no header qualifies.
pub fn delivery_id(headers: &dyn Headers) -> Option<String> {
    DELIVERY_ID_HEADERS.iter().find_map(|name| {
        let value = headers.get_all(name).first()?.trim();
        let ok = !value.is_empty()
            && value.len() <= MAX_DELIVERY_ID_LEN
            && value.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| value.to_owned())
    })
}

/// The delivery id of a request to an agent verified with `scheme`. Standard Webhooks
/// signs its `webhook-id`, so for that scheme it is the only source, returned as sent
/// (the caller validates it): an unsigned header must not let a captured delivery be
/// replayed under a new id. Other schemes sign no id and use [`delivery_id`].
pub fn delivery_id_for(scheme: super::SignatureScheme, headers: &dyn Headers) -> Option<String> {
    match scheme {
        super::SignatureScheme::Standard => headers
            .get_all(super::standard::HEADER_ID)
            .first()
            .map(|v| v.trim().to_owned()),
        _ => delivery_id(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_keeps_duplicates() {
        let h = [("X-Thing", "a"), ("x-thing", "b"), ("Other", "c")];
        assert_eq!(h.get_all("X-THING"), vec!["a", "b"]);
        assert!(h.get_all("missing").is_empty());
    }

    #[test]
    fn single_rejects_duplicates_and_trims() {
        let h = vec![("A".to_owned(), " v ".to_owned())];
        assert_eq!(single(&h, "a").unwrap(), Some("v"));
        let dup = [("a", "1"), ("A", "2")];
        let err = single(&dup, "a").unwrap_err();
        assert_eq!(
            err,
            SignatureError::DuplicateHeader {
                header: "a",
                count: 2
            }
        );
        assert!(err.to_string().contains("exactly once"), "{err}");
    }

    #[test]
    fn delivery_id_prefers_github_then_standard_then_idempotency_key() {
        let all = [
            ("Idempotency-Key", "k"),
            ("webhook-id", "msg_1"),
            ("X-GitHub-Delivery", " gh-1 "),
        ];
        assert_eq!(delivery_id(&all).as_deref(), Some("gh-1"));
        let two = [("Idempotency-Key", "k"), ("WEBHOOK-ID", "msg_1")];
        assert_eq!(delivery_id(&two).as_deref(), Some("msg_1"));
        assert_eq!(
            delivery_id(&[("idempotency-key", "k")]).as_deref(),
            Some("k")
        );
        assert_eq!(delivery_id(&[("other", "x")]), None);
    }

    #[test]
    fn delivery_id_skips_empty_too_long_or_unprintable_values() {
        let long = "x".repeat(MAX_DELIVERY_ID_LEN + 1);
        let h = [
            ("X-GitHub-Delivery", "  "),
            ("webhook-id", long.as_str()),
            ("Idempotency-Key", "ok"),
        ];
        assert_eq!(delivery_id(&h).as_deref(), Some("ok"));
        assert_eq!(delivery_id(&[("webhook-id", "a b")]), None);
        let max = "y".repeat(MAX_DELIVERY_ID_LEN);
        assert_eq!(
            delivery_id(&[("webhook-id", max.as_str())]),
            Some(max.clone())
        );
    }

    #[test]
    fn standard_webhooks_take_the_delivery_id_only_from_the_signed_webhook_id() {
        use crate::webhook::SignatureScheme::{Github, Standard, Stripe};
        let h = [("X-GitHub-Delivery", "unsigned"), ("webhook-id", " msg_1 ")];
        assert_eq!(delivery_id_for(Standard, &h).as_deref(), Some("msg_1"));
        assert_eq!(delivery_id_for(Github, &h).as_deref(), Some("unsigned"));
        assert_eq!(delivery_id_for(Stripe, &h).as_deref(), Some("unsigned"));
        // Returned as sent, even when invalid: the caller rejects it rather than
        // silently deduplicating under another id.
        assert_eq!(
            delivery_id_for(Standard, &[("webhook-id", "a b")]).as_deref(),
            Some("a b")
        );
        assert_eq!(delivery_id_for(Standard, &[("Idempotency-Key", "k")]), None);
    }
}
