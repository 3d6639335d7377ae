//! GitHub-style signatures: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(key, raw body)>`.
//!
//! Two key conventions exist for the same header and both must verify: GitHub keys
//! the HMAC with the secret's text bytes, the seed system's senders with the
//! base64-decoded secret (hookrun shows secrets base64-encoded). Trying both costs
//! one extra HMAC and does not weaken anything: both keys are the secret itself.

use hmac::Mac as _;

use super::headers::{self, Headers};
use super::signature::{SignatureError, SignatureScheme, any_matches, base64_key, mac_of};

pub const HEADER: &str = "X-Hub-Signature-256";

const EXPECTED: &str = "sha256 (X-Hub-Signature-256: sha256=<hex>)";

pub(crate) fn verify(
    secrets: &[&str],
    headers: &dyn Headers,
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = headers::required(headers, HEADER, SignatureScheme::Github)?;
    let signature = parse(value)?;
    let candidates = [signature];
    let matched = secrets
        .iter()
        .flat_map(|secret| keys(secret))
        .any(|key| any_matches(&mac_of(&key, &[body]), &candidates));
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch {
            scheme: SignatureScheme::Github,
        })
    }
}

/// `sha256=<hex>` (the prefix in any case, hex in either case) → the 32 MAC bytes.
fn parse(value: &str) -> Result<Vec<u8>, SignatureError> {
    let malformed = |reason: String| SignatureError::MalformedHeader {
        header: HEADER,
        reason,
    };
    let Some((algorithm, hex_mac)) = value.split_once('=') else {
        return Err(malformed("expected sha256=<64 hex characters>".into()));
    };
    if !algorithm.trim().eq_ignore_ascii_case("sha256") {
        return Err(SignatureError::UnsupportedAlgorithm {
            header: HEADER,
            found: algorithm.trim().to_owned(),
            expected: EXPECTED,
        });
    }
    let hex_mac = hex_mac.trim();
    match hex::decode(hex_mac) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        _ => Err(malformed(format!(
            "expected sha256= followed by 64 hex characters, got {} characters",
            hex_mac.len()
        ))),
    }
}

/// Candidate HMAC keys for one secret: its text bytes, then its decoded bytes.
fn keys(secret: &str) -> impl Iterator<Item = Vec<u8>> {
    std::iter::once(secret.as_bytes().to_vec()).chain(base64_key(secret))
}

/// `sha256=<lowercase hex>` as the seed system's senders compute it: keyed by the
/// base64-decoded secret, or by its text bytes when it is not base64.
pub fn sign_github(secret: &str, body: &[u8]) -> String {
    let key = base64_key(secret).unwrap_or_else(|| secret.as_bytes().to_vec());
    format!(
        "sha256={}",
        hex::encode(mac_of(&key, &[body]).finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::verify;

    const SEED_SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn check(secrets: &[&str], header: &str, body: &[u8]) -> Result<(), SignatureError> {
        verify(
            SignatureScheme::Github,
            secrets,
            &[(HEADER, header)],
            body,
            0,
            300,
        )
    }

    #[test]
    fn sign_then_verify_round_trips_with_either_key_convention() {
        let body = br#"{"a":1}"#;
        let sig = sign_github(SEED_SECRET, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64);
        check(&[SEED_SECRET], &sig, body).unwrap();
        // GitHub's own convention: the text bytes of the same secret.
        let text_mac = mac_of(SEED_SECRET.as_bytes(), &[body])
            .finalize()
            .into_bytes();
        let text_keyed = format!("sha256={}", hex::encode(text_mac));
        check(&[SEED_SECRET], &text_keyed, body).unwrap();
        // A non-base64 secret signs with its text bytes.
        check(&["not base64!"], &sign_github("not base64!", body), body).unwrap();
    }

    #[test]
    fn hex_case_and_whitespace_do_not_matter() {
        let sig = sign_github(SEED_SECRET, b"x");
        let upper = format!("  SHA256={}  ", sig[7..].to_uppercase());
        check(&[SEED_SECRET], &upper, b"x").unwrap();
    }

    #[test]
    fn any_of_several_secrets_may_match() {
        let sig = sign_github("previous", b"x");
        check(&["current", "previous"], &sig, b"x").unwrap();
        let err = check(&["current"], &sig, b"x").unwrap_err();
        assert_eq!(
            err,
            SignatureError::Mismatch {
                scheme: SignatureScheme::Github
            }
        );
        assert!(check(&[], &sig, b"x").is_err());
    }

    #[test]
    fn a_changed_body_is_a_mismatch() {
        let sig = sign_github(SEED_SECRET, b"{\"a\":1}");
        let err = check(&[SEED_SECRET], &sig, b"{\"a\": 1}").unwrap_err();
        assert!(err.to_string().contains("exact raw request body"), "{err}");
    }

    #[test]
    fn other_algorithms_are_refused_by_name() {
        let err = check(&[SEED_SECRET], "sha1=0123", b"x").unwrap_err();
        assert!(
            matches!(err, SignatureError::UnsupportedAlgorithm { ref found, .. } if found == "sha1")
        );
        assert!(err.to_string().contains("only sha256"), "{err}");
    }

    #[test]
    fn malformed_missing_and_duplicate_headers_are_distinct_errors() {
        for bad in ["", "sha256", "sha256=zz", "sha256=abcd"] {
            let err = check(&[SEED_SECRET], bad, b"x").unwrap_err();
            assert!(
                matches!(err, SignatureError::MalformedHeader { .. }),
                "{bad}: {err}"
            );
        }
        let err = verify(
            SignatureScheme::Github,
            &[SEED_SECRET],
            &[("Other", "v")],
            b"x",
            0,
            300,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("missing X-Hub-Signature-256"),
            "{err}"
        );
        let sig = sign_github(SEED_SECRET, b"x");
        let dup = [
            (HEADER, sig.as_str()),
            ("x-hub-signature-256", sig.as_str()),
        ];
        let err = verify(SignatureScheme::Github, &[SEED_SECRET], &dup, b"x", 0, 300).unwrap_err();
        assert!(
            matches!(err, SignatureError::DuplicateHeader { count: 2, .. }),
            "{err}"
        );
    }
}
