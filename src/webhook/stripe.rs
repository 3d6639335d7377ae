//! Stripe-style signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=…][,v0=…]`,
//! signed content `{t}.{body}`, key = the secret's text bytes (including `whsec_`).
//!
//! Several `v1` entries are allowed (Stripe sends one per active secret); `v0` and
//! unknown entries are ignored. As with Standard Webhooks, the signature is checked
//! before the replay window.

use hmac::Mac as _;

use super::headers::{self, Headers};
use super::signature::{
    SignatureError, SignatureScheme, any_matches, check_timestamp, mac_of, parse_timestamp,
};

pub const HEADER: &str = "Stripe-Signature";

const SCHEME: SignatureScheme = SignatureScheme::Stripe;

pub(crate) fn verify(
    secrets: &[&str],
    headers: &dyn Headers,
    body: &[u8],
    now_unix: i64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let value = headers::required(headers, HEADER, SCHEME)?;
    let parsed = parse(value)?;
    let matched = secrets.iter().any(|secret| {
        // Sign the timestamp exactly as sent, so e.g. leading zeros cannot break it.
        let mac = mac_of(secret.as_bytes(), &[parsed.raw_ts.as_bytes(), b".", body]);
        any_matches(&mac, &parsed.v1)
    });
    if !matched {
        return Err(SignatureError::Mismatch { scheme: SCHEME });
    }
    check_timestamp(parsed.ts, now_unix, tolerance_s)
}

struct Parsed<'a> {
    raw_ts: &'a str,
    ts: i64,
    v1: Vec<Vec<u8>>,
}

fn parse(value: &str) -> Result<Parsed<'_>, SignatureError> {
    let malformed = |reason: &str| SignatureError::MalformedHeader {
        header: HEADER,
        reason: reason.to_owned(),
    };
    let mut raw_ts = None;
    let mut v1_seen = false;
    let mut v1 = Vec::new();
    let mut others = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(malformed(
                "expected comma-separated key=value items: t=<unix seconds>,v1=<hex>",
            ));
        };
        match k {
            "t" if raw_ts.is_some() => return Err(malformed("t= appears more than once")),
            "t" => raw_ts = Some(v),
            "v1" => {
                v1_seen = true;
                if let Ok(bytes) = hex::decode(v)
                    && bytes.len() == 32
                {
                    v1.push(bytes);
                }
            }
            other => others.push(other.to_owned()),
        }
    }
    let raw_ts = raw_ts.ok_or_else(|| malformed("missing t=<unix seconds>"))?;
    let ts = parse_timestamp(HEADER, raw_ts)?;
    if !v1_seen {
        return Err(SignatureError::UnsupportedAlgorithm {
            header: HEADER,
            found: others.join(","),
            expected: "v1 (v1=<hex HMAC-SHA256>)",
        });
    }
    if v1.is_empty() {
        return Err(malformed("no v1= value is 64 hex characters"));
    }
    Ok(Parsed { raw_ts, ts, v1 })
}

/// The `Stripe-Signature` value (`t=…,v1=<hex>`) for one delivery.
pub fn sign_stripe(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = mac_of(secret.as_bytes(), &[ts.as_bytes(), b".", body]);
    format!("t={ts},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::verify;

    const SECRET: &str = "whsec_stripe_test_secret_123";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"charge.succeeded"}"#;
    const T: i64 = 1_700_000_000;

    fn check(secrets: &[&str], header: &str, now: i64) -> Result<(), SignatureError> {
        verify(SCHEME, secrets, &[(HEADER, header)], BODY, now, 300)
    }

    #[test]
    fn matches_the_shared_vector_and_round_trips() {
        let sig = sign_stripe(SECRET, T, BODY);
        assert_eq!(
            sig,
            "t=1700000000,v1=63a43be643a7975b54b996548ec6df580612f1bcae766218b8adc9346c3a8fd0"
        );
        check(&[SECRET], &sig, T + 30).unwrap();
    }

    #[test]
    fn any_v1_entry_and_any_secret_may_match() {
        let old = sign_stripe("old", T, BODY);
        let new = sign_stripe(SECRET, T, BODY);
        let header = format!("{},v1={},v0=abc", new, &old[old.find("v1=").unwrap() + 3..]);
        check(&["old"], &header, T).unwrap();
        check(&[SECRET], &header, T).unwrap();
        assert_eq!(
            check(&["other"], &header, T),
            Err(SignatureError::Mismatch { scheme: SCHEME })
        );
    }

    #[test]
    fn stale_and_future_timestamps_fail() {
        let sig = sign_stripe(SECRET, T, BODY);
        assert!(matches!(
            check(&[SECRET], &sig, T + 301),
            Err(SignatureError::TimestampStale { .. })
        ));
        assert!(matches!(
            check(&[SECRET], &sig, T - 301),
            Err(SignatureError::TimestampInFuture { .. })
        ));
    }

    #[test]
    fn malformed_headers_say_what_is_wrong() {
        let cases = [
            ("v1=00", "missing t="),
            ("t=1,t=2,v1=00", "more than once"),
            ("t=1,v1=zz", "64 hex"),
            ("garbage", "key=value"),
            ("t=x,v1=00", "unix seconds"),
        ];
        for (header, expect) in cases {
            let err = check(&[SECRET], header, T).unwrap_err();
            assert!(err.to_string().contains(expect), "{header}: {err}");
        }
        let err = check(&[SECRET], "t=1,v0=abc", T).unwrap_err();
        assert!(err.to_string().contains("only v1"), "{err}");
    }
}
