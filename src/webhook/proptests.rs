//! Property tests over everything in `webhook/` that reads sender-controlled input:
//! the three signature-header parsers (through `verify`), the replay-window checks,
//! delivery-id extraction and the nesting-depth guard. None may panic on any input,
//! and what they accept must be what they promise.

use proptest::prelude::*;

use super::headers::delivery_id_for;
use super::signature::{check_timestamp, parse_timestamp};
use super::{
    DELIVERY_ID_HEADERS, GITHUB_SIGNATURE_HEADER, MAX_DELIVERY_ID_LEN, STANDARD_ID_HEADER,
    STANDARD_SIGNATURE_HEADER, STANDARD_TIMESTAMP_HEADER, STRIPE_SIGNATURE_HEADER, SignatureScheme,
    check_depth, delivery_id, sign_github, sign_standard, sign_stripe, verify,
};
use crate::domain::DeliveryId;

/// Header values: anything, and things shaped like each scheme's header (so the
/// parsers get past their first checks and into the interesting branches).
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ ]*(sha256|SHA256|sha1|md5)?[ ]*=?[ ]*[0-9a-fA-Fz ]{0,70}",
        "(t=[0-9+-]{0,22},?|v1=[0-9a-f]{0,66},?|v0=[a-z]*,?|[a-z]*=?,?| ,){0,6}",
        "((v1|v1a|v2)?,?[A-Za-z0-9+/=]{0,48}[ ]?){0,4}",
    ]
}

fn scheme() -> impl Strategy<Value = SignatureScheme> {
    prop::sample::select(SignatureScheme::ALL.to_vec())
}

proptest! {
    #[test]
    fn verify_never_panics_on_any_headers(
        scheme in scheme(),
        values in prop::collection::vec(header_value(), 0..4),
        names in prop::collection::vec(prop::sample::select(vec![
            GITHUB_SIGNATURE_HEADER, STRIPE_SIGNATURE_HEADER, STANDARD_ID_HEADER,
            STANDARD_TIMESTAMP_HEADER, STANDARD_SIGNATURE_HEADER, "X-Other",
        ]), 0..4),
        body in prop::collection::vec(any::<u8>(), 0..64),
        secrets in prop::collection::vec(any::<String>(), 0..3),
        now in any::<i64>(),
        tolerance in any::<u64>(),
    ) {
        let headers: Vec<(&str, &str)> =
            names.iter().zip(&values).map(|(n, v)| (*n, v.as_str())).collect();
        let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let _ = verify(scheme, &secrets, &headers, &body, now, tolerance);
    }

    #[test]
    fn whatever_hookrun_signs_verifies(
        body in prop::collection::vec(any::<u8>(), 0..256),
        secret in "[A-Za-z0-9+/]{4,64}|whsec_[A-Za-z0-9+/]{4,44}|.{1,40}",
        msg_id in "[!-~]{1,64}",
        ts in 0i64..4_000_000_000,
    ) {
        let github = [(GITHUB_SIGNATURE_HEADER, sign_github(&secret, &body))];
        prop_assert!(verify(SignatureScheme::Github, &[&secret], &github, &body, ts, 300).is_ok());
        let stripe = [(STRIPE_SIGNATURE_HEADER, sign_stripe(&secret, ts, &body))];
        prop_assert!(verify(SignatureScheme::Stripe, &[&secret], &stripe, &body, ts, 300).is_ok());
        let standard = [
            (STANDARD_ID_HEADER, msg_id.clone()),
            (STANDARD_TIMESTAMP_HEADER, ts.to_string()),
            (STANDARD_SIGNATURE_HEADER, sign_standard(&secret, &msg_id, ts, &body)),
        ];
        prop_assert!(verify(SignatureScheme::Standard, &[&secret], &standard, &body, ts, 300).is_ok());
        // One flipped byte of the body fails every scheme.
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[0] ^= 1;
            prop_assert!(verify(SignatureScheme::Github, &[&secret], &github, &changed, ts, 300).is_err());
            prop_assert!(verify(SignatureScheme::Stripe, &[&secret], &stripe, &changed, ts, 300).is_err());
            prop_assert!(verify(SignatureScheme::Standard, &[&secret], &standard, &changed, ts, 300).is_err());
        }
    }

    #[test]
    fn timestamps_parse_only_as_digits_and_windows_never_overflow(
        raw in any::<String>(),
        ts in any::<i64>(),
        now in any::<i64>(),
        tolerance in any::<u64>(),
    ) {
        if let Ok(parsed) = parse_timestamp("h", &raw) {
            prop_assert!(raw.bytes().all(|b| b.is_ascii_digit()) && parsed >= 0);
        }
        let inside = (i128::from(now) - i128::from(ts)).abs() <= i128::from(tolerance);
        prop_assert_eq!(check_timestamp(ts, now, tolerance).is_ok(), inside);
    }

    #[test]
    fn delivery_ids_are_always_valid_or_absent(
        scheme in scheme(),
        values in prop::collection::vec(any::<String>(), 0..4),
    ) {
        let names = DELIVERY_ID_HEADERS.iter().cycle();
        let headers: Vec<(&str, &str)> = names.zip(&values).map(|(n, v)| (*n, v.as_str())).collect();
        if let Some(id) = delivery_id(&headers) {
            prop_assert!((1..=MAX_DELIVERY_ID_LEN).contains(&id.len()));
            prop_assert!(DeliveryId::parse(&id).is_ok());
        }
        // The Standard Webhooks id is returned as sent, and parsing it never panics.
        if let Some(id) = delivery_id_for(scheme, &headers) {
            let _ = DeliveryId::parse(&id);
        }
    }

    #[test]
    fn the_depth_guard_never_panics_and_is_monotonic(
        body in prop::collection::vec(prop_oneof![
            Just(b'['), Just(b']'), Just(b'{'), Just(b'}'), Just(b'"'), Just(b'\\'), any::<u8>(),
        ], 0..512),
        depth in 0usize..80,
    ) {
        if check_depth(&body, depth).is_ok() {
            prop_assert!(check_depth(&body, depth + 1).is_ok());
        }
        // Whatever the guard lets through, serde parses without exhausting the stack.
        if check_depth(&body, 64).is_ok() {
            let _ = serde_json::from_slice::<serde_json::Value>(&body);
        }
    }

    #[test]
    fn nesting_within_the_limit_passes_and_beyond_fails(depth in 0usize..200) {
        let body = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        prop_assert_eq!(check_depth(body.as_bytes(), 64).is_ok(), depth <= 64);
    }
}
