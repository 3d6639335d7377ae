//! Signature schemes, their errors, and the single `verify` entry point.
//!
//! The per-scheme parsing and signing lives in `github.rs`, `standard.rs` and
//! `stripe.rs`; this file owns what they share: the scheme enum stored per agent,
//! the error type whose messages are returned to webhook senders (so each one says
//! what to fix), HMAC helpers and the replay-window check.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::headers::Headers;
use super::{github, standard, stripe};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// Replay window for timestamped schemes, in seconds, past and future.
pub const DEFAULT_TOLERANCE_S: u64 = 300;

/// How an agent's webhooks are signed. Stored per agent by its lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureScheme {
    /// `X-Hub-Signature-256: sha256=<hex>` (GitHub, and the seed system's senders).
    #[default]
    Github,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
    /// `Stripe-Signature: t=…,v1=…`.
    Stripe,
}

impl SignatureScheme {
    pub const ALL: [SignatureScheme; 3] = [Self::Github, Self::Standard, Self::Stripe];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Standard => "standard",
            Self::Stripe => "stripe",
        }
    }

    /// The header that carries the signature.
    pub const fn signature_header(self) -> &'static str {
        match self {
            Self::Github => super::github::HEADER,
            Self::Standard => super::standard::HEADER_SIGNATURE,
            Self::Stripe => super::stripe::HEADER,
        }
    }

    /// A stored secret (base64) as senders of this scheme expect to see it: Standard
    /// Webhooks libraries take `whsec_<base64>`; the others use the text as it is.
    /// The prefix only marks the format (the key is the same decoded bytes), so the
    /// secret itself never changes with the scheme; only how it is shown does.
    pub fn display_secret(self, secret: &str) -> String {
        match self {
            Self::Standard if !secret.starts_with("whsec_") => format!("whsec_{secret}"),
            _ => secret.to_owned(),
        }
    }

    /// What a sender must do, appended to mismatch errors.
    const fn mismatch_hint(self) -> &'static str {
        match self {
            Self::Github => "send it as X-Hub-Signature-256: sha256=<hex>",
            Self::Standard => {
                "signed content is \"{webhook-id}.{webhook-timestamp}.{body}\", the key is the \
                 base64-decoded secret, send it as webhook-signature: v1,<base64>"
            }
            Self::Stripe => {
                "signed content is \"{t}.{body}\", send it as Stripe-Signature: t=<unix seconds>,v1=<hex>"
            }
        }
    }
}

impl fmt::Display for SignatureScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown scheme name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown signature scheme {0:?}: expected one of github, standard, stripe")]
pub struct UnknownScheme(pub String);

impl FromStr for SignatureScheme {
    type Err = UnknownScheme;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|scheme| scheme.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownScheme(s.to_owned()))
    }
}

/// Why a delivery's signature was rejected. Messages go back to the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "missing {header} header: this agent verifies {scheme} webhook signatures and every delivery must be signed"
    )]
    MissingHeader {
        header: &'static str,
        scheme: SignatureScheme,
    },
    #[error("the {header} header was sent {count} times: send it exactly once")]
    DuplicateHeader { header: &'static str, count: usize },
    #[error("malformed {header} header: {reason}")]
    MalformedHeader {
        header: &'static str,
        reason: String,
    },
    #[error(
        "unsupported signature algorithm {found:?} in the {header} header: only {expected} is accepted"
    )]
    UnsupportedAlgorithm {
        header: &'static str,
        found: String,
        expected: &'static str,
    },
    #[error(
        "webhook timestamp is {age_s} s in the past, beyond the {tolerance_s} s tolerance: \
         sign each delivery when sending it (late replays are rejected) and check the sender's clock"
    )]
    TimestampStale { age_s: u64, tolerance_s: u64 },
    #[error(
        "webhook timestamp is {ahead_s} s in the future, beyond the {tolerance_s} s tolerance: \
         check the sender's clock"
    )]
    TimestampInFuture { ahead_s: u64, tolerance_s: u64 },
    #[error(
        "signature mismatch: compute HMAC-SHA256 over the exact raw request body as sent (not \
         re-serialized JSON) with this agent's webhook secret; {}",
        .scheme.mismatch_hint()
    )]
    Mismatch { scheme: SignatureScheme },
}

/// Verifies one delivery. `secrets` are all currently valid secrets of the agent
/// (current and, during rotation, previous); any one of them may match. `now_unix`
/// and `tolerance_s` bound the replay window of timestamped schemes (ignored by
/// `github`, which carries no timestamp).
pub fn verify(
    scheme: SignatureScheme,
    secrets: &[&str],
    headers: &dyn Headers,
    body: &[u8],
    now_unix: i64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    match scheme {
        SignatureScheme::Github => github::verify(secrets, headers, body),
        SignatureScheme::Standard => {
            standard::verify(secrets, headers, body, now_unix, tolerance_s)
        }
        SignatureScheme::Stripe => stripe::verify(secrets, headers, body, now_unix, tolerance_s),
    }
}

/// HMAC-SHA256 of the concatenation of `parts` (no copy of the body is made).
pub(crate) fn mac_of(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    // HMAC accepts keys of any length; the error type exists only for fixed-size MACs.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac
}

/// True when any candidate equals the MAC; each comparison is constant-time.
pub(crate) fn any_matches(mac: &HmacSha256, candidates: &[Vec<u8>]) -> bool {
    candidates
        .iter()
        .any(|c| mac.clone().verify_slice(c).is_ok())
}

/// The secret's base64-decoded bytes, when it is (non-empty) standard base64.
pub(crate) fn base64_key(secret: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.trim())
        .ok()
        .filter(|k| !k.is_empty())
}

/// Parses a unix-seconds timestamp (digits only: no sign, no fraction).
pub(crate) fn parse_timestamp(header: &'static str, raw: &str) -> Result<i64, SignatureError> {
    let malformed = || SignatureError::MalformedHeader {
        header,
        reason: format!("timestamp {raw:?} is not a whole number of unix seconds"),
    };
    if raw.is_empty() || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed());
    }
    raw.parse().map_err(|_| malformed())
}

/// Rejects timestamps outside `now ± tolerance` (both directions: a far-future
/// timestamp would otherwise extend the replay window).
pub(crate) fn check_timestamp(ts: i64, now: i64, tolerance_s: u64) -> Result<(), SignatureError> {
    let diff = i128::from(now) - i128::from(ts);
    let saturate = |d: i128| u64::try_from(d).unwrap_or(u64::MAX);
    if diff > i128::from(tolerance_s) {
        Err(SignatureError::TimestampStale {
            age_s: saturate(diff),
            tolerance_s,
        })
    } else if -diff > i128::from(tolerance_s) {
        Err(SignatureError::TimestampInFuture {
            ahead_s: saturate(-diff),
            tolerance_s,
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_names_round_trip() {
        for scheme in SignatureScheme::ALL {
            assert_eq!(scheme.as_str().parse::<SignatureScheme>().unwrap(), scheme);
            let json = serde_json::to_string(&scheme).unwrap();
            assert_eq!(json, format!("\"{scheme}\""));
            assert_eq!(
                serde_json::from_str::<SignatureScheme>(&json).unwrap(),
                scheme
            );
        }
        assert_eq!(
            " GitHub ".parse::<SignatureScheme>().unwrap(),
            SignatureScheme::Github
        );
        assert_eq!(SignatureScheme::default(), SignatureScheme::Github);
        assert!(
            "svix"
                .parse::<SignatureScheme>()
                .unwrap_err()
                .to_string()
                .contains("github, standard, stripe")
        );
    }

    #[test]
    fn timestamp_window_is_inclusive_and_says_which_side() {
        assert!(check_timestamp(1000, 1300, 300).is_ok());
        assert!(check_timestamp(1300, 1000, 300).is_ok());
        let stale = check_timestamp(1000, 1301, 300).unwrap_err();
        assert_eq!(
            stale,
            SignatureError::TimestampStale {
                age_s: 301,
                tolerance_s: 300
            }
        );
        assert!(stale.to_string().contains("301 s in the past"), "{stale}");
        let future = check_timestamp(1301, 1000, 300).unwrap_err();
        assert!(
            future.to_string().contains("301 s in the future"),
            "{future}"
        );
        assert!(check_timestamp(i64::MIN, i64::MAX, 300).is_err());
    }

    #[test]
    fn timestamps_must_be_plain_digits() {
        assert_eq!(parse_timestamp("h", "1614265330").unwrap(), 1_614_265_330);
        for bad in ["", "-5", "+5", "1.5", "abc", "99999999999999999999"] {
            assert!(
                matches!(
                    parse_timestamp("h", bad),
                    Err(SignatureError::MalformedHeader { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn mismatch_message_tells_the_sender_what_to_sign() {
        for scheme in SignatureScheme::ALL {
            let msg = SignatureError::Mismatch { scheme }.to_string();
            assert!(
                msg.contains("exact raw request body") && msg.contains("not re-serialized JSON"),
                "{msg}"
            );
            assert!(msg.contains("webhook secret"), "{msg}");
        }
    }

    #[test]
    fn base64_key_only_for_base64_secrets() {
        assert_eq!(base64_key("AAEC").unwrap(), vec![0, 1, 2]);
        assert!(base64_key("It's a Secret to Everybody").is_none());
        assert!(base64_key("").is_none());
    }
}
