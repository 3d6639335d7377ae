//! Sealing secrets at rest, and generating/hashing secrets.
//!
//! Webhook secrets and tenants' gateway keys must be readable by hookrun (to verify
//! and to call the gateway), so they are encrypted, not hashed: XChaCha20-Poly1305
//! under a 32-byte master key, with associated data naming the row they belong to.
//! API keys only need to be recognised, so only their SHA-256 is stored.
//!
//! - `key.rs`: [`MasterKey`], [`KeyId`], the master-key file in the data dir.
//! - `sealer.rs`: [`Sealer`] — `seal`/`open`, the `v1.<key id>.<data>` text form,
//!   decrypt-only old keys for key rotation.
//! - `secrets.rs`: webhook secret and API key generation, hashing, constant-time compare.

mod key;
mod sealer;
mod secrets;

use std::path::PathBuf;

pub use key::{
    KEY_LEN, KeyId, MASTER_KEY_FILE, MasterKey, load_or_create_master_key_file, parse_old_keys,
};
pub use sealer::Sealer;
pub use secrets::{
    API_KEY_PREFIX, generate_api_key, generate_webhook_secret, hash_api_key, hashes_equal,
};

/// Why a key could not be loaded or a sealed value could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "invalid master key{context}: expected the base64 of exactly 32 bytes, {reason} \
         (generate one with `openssl rand -base64 32`)"
    )]
    InvalidMasterKey { context: String, reason: String },
    #[error("malformed sealed value: {0} (expected v1.<key id>.<base64url data>)")]
    Malformed(String),
    #[error("sealed value uses format {0:?}; this version of hookrun only reads v1")]
    UnsupportedFormat(String),
    #[error(
        "value was sealed with master key {key_id}, which is not configured (current key: {current}); \
         configure that key as the master key or as an old decrypt-only key"
    )]
    UnknownKey { key_id: String, current: KeyId },
    #[error(
        "sealed value failed authentication: it was tampered with, or it belongs to another record \
         (associated data mismatch)"
    )]
    Authentication,
    #[error("master key file {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Fills a buffer from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    use chacha20poly1305::aead::OsRng;
    use chacha20poly1305::aead::rand_core::RngCore as _;
    let mut bytes = [0u8; N];
    OsRng.fill_bytes(&mut bytes);
    bytes
}
