//! Standard Webhooks (<https://www.standardwebhooks.com/>): headers `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` (a space-separated list of
//! `v1,<base64>`), signed content `{id}.{timestamp}.{body}`, key = the secret with
//! its optional `whsec_` prefix removed, base64-decoded.
//!
//! The signature is checked before the timestamp, so "stale" / "in the future" is
//! only ever reported to a sender that holds the secret (the actionable case).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use hmac::Mac as _;

use super::headers::{self, Headers};
use super::signature::{
    SignatureError, SignatureScheme, any_matches, base64_key, check_timestamp, mac_of,
    parse_timestamp,
};

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

const SECRET_PREFIX: &str = "whsec_";
const SCHEME: SignatureScheme = SignatureScheme::Standard;

pub(crate) fn verify(
    secrets: &[&str],
    headers: &dyn Headers,
    body: &[u8],
    now_unix: i64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let id = headers::required(headers, HEADER_ID, SCHEME)?;
    let raw_ts = headers::required(headers, HEADER_TIMESTAMP, SCHEME)?;
    let signatures = headers::required(headers, HEADER_SIGNATURE, SCHEME)?;
    let ts = parse_timestamp(HEADER_TIMESTAMP, raw_ts)?;
    let candidates = parse_signatures(signatures)?;
    let matched = secrets.iter().any(|secret| {
        let mac = mac_of(
            &key(secret),
            &[id.as_bytes(), b".", raw_ts.as_bytes(), b".", body],
        );
        any_matches(&mac, &candidates)
    });
    if !matched {
        return Err(SignatureError::Mismatch { scheme: SCHEME });
    }
    check_timestamp(ts, now_unix, tolerance_s)
}

/// The decodable `v1` signatures of the list; other versions are skipped (the spec
/// lets senders list several, e.g. during an algorithm change).
fn parse_signatures(value: &str) -> Result<Vec<Vec<u8>>, SignatureError> {
    let mut versions = Vec::new();
    let mut v1_seen = false;
    let mut decoded = Vec::new();
    for entry in value.split_whitespace() {
        let (version, signature) = entry.split_once(',').unwrap_or((entry, ""));
        if version == "v1" {
            v1_seen = true;
            if let Ok(bytes) = STANDARD.decode(signature)
                && bytes.len() == 32
            {
                decoded.push(bytes);
            }
        } else {
            versions.push(version.to_owned());
        }
    }
    if !v1_seen {
        return Err(SignatureError::UnsupportedAlgorithm {
            header: HEADER_SIGNATURE,
            found: versions.join(" "),
            expected: "v1 (webhook-signature: v1,<base64 HMAC-SHA256>)",
        });
    }
    if decoded.is_empty() {
        return Err(SignatureError::MalformedHeader {
            header: HEADER_SIGNATURE,
            reason: "no v1 signature is the base64 of a 32-byte HMAC-SHA256 (expected v1,<base64>)"
                .into(),
        });
    }
    Ok(decoded)
}

/// The HMAC key: base64 after the optional `whsec_` prefix; a secret that is not
/// base64 falls back to its text bytes (hookrun never issues such secrets).
fn key(secret: &str) -> Vec<u8> {
    let secret = secret.trim();
    base64_key(secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret))
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` value (`v1,<base64>`) for one delivery.
pub fn sign_standard(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = mac_of(
        &key(secret),
        &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::verify;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const NOW: i64 = 1_614_265_330;

    fn check(id: &str, ts: &str, sig: &str, now: i64) -> Result<(), SignatureError> {
        let h = [
            (HEADER_ID, id),
            (HEADER_TIMESTAMP, ts),
            (HEADER_SIGNATURE, sig),
        ];
        verify(SCHEME, &[SECRET], &h, b"{}", now, 300)
    }

    #[test]
    fn round_trip_and_prefixless_secret() {
        let sig = sign_standard(SECRET, "msg_1", NOW, b"{}");
        check("msg_1", &NOW.to_string(), &sig, NOW).unwrap();
        // The same key without the prefix (how hookrun shows secrets) verifies too.
        let bare = SECRET.strip_prefix(SECRET_PREFIX).unwrap();
        assert_eq!(sign_standard(bare, "msg_1", NOW, b"{}"), sig);
    }

    #[test]
    fn matches_the_published_reference_vector() {
        let body = br#"{"test": 2432232314}"#;
        let sig = sign_standard(SECRET, "msg_p5jXN8AQM9LWM0D4loKWxJek", NOW, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn unknown_versions_are_skipped_but_v1_is_required() {
        let sig = sign_standard(SECRET, "m", NOW, b"{}");
        check("m", &NOW.to_string(), &format!("v1a,abc {sig}"), NOW).unwrap();
        let err = check("m", &NOW.to_string(), "v1a,abc v2,def", NOW).unwrap_err();
        assert!(
            matches!(err, SignatureError::UnsupportedAlgorithm { .. }),
            "{err}"
        );
        let err = check("m", &NOW.to_string(), "v1, v1,!!", NOW).unwrap_err();
        assert!(
            matches!(err, SignatureError::MalformedHeader { .. }),
            "{err}"
        );
    }

    #[test]
    fn timestamp_problems_are_reported_after_a_valid_signature() {
        let sig = sign_standard(SECRET, "m", NOW, b"{}");
        let stale = check("m", &NOW.to_string(), &sig, NOW + 301).unwrap_err();
        assert!(matches!(
            stale,
            SignatureError::TimestampStale { age_s: 301, .. }
        ));
        let future = check("m", &NOW.to_string(), &sig, NOW - 301).unwrap_err();
        assert!(matches!(
            future,
            SignatureError::TimestampInFuture { ahead_s: 301, .. }
        ));
        let bad = check("m", "soon", &sig, NOW).unwrap_err();
        assert!(matches!(
            bad,
            SignatureError::MalformedHeader {
                header: HEADER_TIMESTAMP,
                ..
            }
        ));
    }

    #[test]
    fn each_header_is_required_by_name() {
        let h = [(HEADER_ID, "m"), (HEADER_TIMESTAMP, "1")];
        let err = verify(SCHEME, &[SECRET], &h, b"{}", NOW, 300).unwrap_err();
        assert_eq!(
            err,
            SignatureError::MissingHeader {
                header: HEADER_SIGNATURE,
                scheme: SCHEME
            }
        );
        assert!(
            err.to_string().contains("missing webhook-signature header"),
            "{err}"
        );
    }
}
