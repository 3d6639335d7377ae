//! Generating and recognising secrets: webhook secrets (shown to senders, sealed at
//! rest) and tenant API keys (shown once; only a SHA-256 hash is stored, so a leaked
//! database does not leak usable keys — the key has 256 random bits, so a fast
//! unsalted hash is sufficient).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use sha2::{Digest as _, Sha256};

use super::random_bytes;

/// Prefix of tenant API keys, so a leaked key is recognisable (e.g. by secret scanners).
pub const API_KEY_PREFIX: &str = "hr_";

/// A new webhook secret: standard base64 of 32 random bytes (the seed system's
/// format; senders key their HMAC with the decoded bytes).
pub fn generate_webhook_secret() -> String {
    STANDARD.encode(random_bytes::<32>())
}

/// A new API key `hr_<base64url of 32 random bytes>` and the hash to store.
pub fn generate_api_key() -> (String, String) {
    let key = format!(
        "{API_KEY_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>())
    );
    let hash = hash_api_key(&key);
    (key, hash)
}

/// Lowercase hex SHA-256 of the key as presented.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Constant-time equality (for equal lengths; lengths of hashes are public anyway).
pub fn hashes_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    // Accumulate every difference instead of stopping at the first one; black_box
    // keeps the optimizer from turning the fold back into an early exit.
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secrets_are_base64_of_32_random_bytes() {
        let secret = generate_webhook_secret();
        assert_eq!(STANDARD.decode(&secret).unwrap().len(), 32);
        assert_ne!(secret, generate_webhook_secret());
    }

    #[test]
    fn api_keys_are_prefixed_and_hashed() {
        let (key, hash) = generate_api_key();
        assert!(key.starts_with(API_KEY_PREFIX));
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(&key[API_KEY_PREFIX.len()..])
                .unwrap()
                .len(),
            32
        );
        assert_eq!(hash, hash_api_key(&key));
        assert_eq!(hash.len(), 64);
        assert_ne!(generate_api_key().0, key);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash_api_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hashes_equal_compares_whole_strings() {
        assert!(hashes_equal("abc", "abc"));
        assert!(!hashes_equal("abc", "abd"));
        assert!(!hashes_equal("abc", "ab"));
        assert!(hashes_equal("", ""));
    }
}
