//! `seal`/`open`: XChaCha20-Poly1305 with a random 24-byte nonce (large enough that
//! random nonces never collide in practice, so no nonce state has to be kept).
//!
//! Text form: `v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>` — self-describing,
//! so a value names its format and the key that sealed it, and fits a TEXT column.
//! The associated data (e.g. `agent:{id}:webhook_secret`) is authenticated but not
//! stored: a value copied to another row, or to another field, fails to open.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead as _, AeadCore as _, OsRng, Payload};
use chacha20poly1305::{KeyInit as _, XChaCha20Poly1305, XNonce};

use super::{CryptoError, KeyId, MasterKey};

const VERSION: &str = "v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals with the current key; opens with the current key or any old one.
#[derive(Debug, Clone)]
pub struct Sealer {
    current: MasterKey,
    /// Decrypt-only keys, kept during a key rotation until every value is resealed.
    old: Vec<MasterKey>,
}

impl Sealer {
    pub fn new(current: MasterKey) -> Self {
        Self {
            current,
            old: Vec::new(),
        }
    }

    pub fn with_old_keys(current: MasterKey, old: impl IntoIterator<Item = MasterKey>) -> Self {
        Self {
            current,
            old: old.into_iter().collect(),
        }
    }

    pub fn current_key_id(&self) -> &KeyId {
        self.current.id()
    }

    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> String {
        let cipher = XChaCha20Poly1305::new(self.current.bytes().into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption only fails for inputs beyond the AEAD's length limit (~256 GiB).
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .expect("plaintext within XChaCha20-Poly1305 limits");
        let mut data = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        data.extend_from_slice(&nonce);
        data.extend_from_slice(&ciphertext);
        format!(
            "{VERSION}.{}.{}",
            self.current.id(),
            URL_SAFE_NO_PAD.encode(data)
        )
    }

    pub fn open(&self, sealed: &str, aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let (key_id, data) = split(sealed)?;
        let key = self.key(key_id)?;
        let data = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|e| CryptoError::Malformed(format!("the data part is not base64url ({e})")))?;
        if data.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed(format!(
                "{} bytes is too short to be sealed data",
                data.len()
            )));
        }
        let (nonce, ciphertext) = data.split_at(NONCE_LEN);
        XChaCha20Poly1305::new(key.bytes().into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)
    }

    /// True when `sealed` was sealed with an old key and should be resealed.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        split(sealed).is_ok_and(|(key_id, _)| key_id != self.current.id().as_str())
    }

    fn key(&self, key_id: &str) -> Result<&MasterKey, CryptoError> {
        std::iter::once(&self.current)
            .chain(&self.old)
            .find(|k| k.id().as_str() == key_id)
            .ok_or_else(|| CryptoError::UnknownKey {
                key_id: key_id.to_owned(),
                current: self.current.id().clone(),
            })
    }
}

/// `v1.<key id>.<data>` → (key id, data).
fn split(sealed: &str) -> Result<(&str, &str), CryptoError> {
    let mut parts = sealed.trim().splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(VERSION), Some(key_id), Some(data)) if !key_id.is_empty() && !data.is_empty() => {
            Ok((key_id, data))
        }
        (Some(VERSION), _, _) => Err(CryptoError::Malformed("missing key id or data".into())),
        (Some(version), Some(_), Some(_)) if version.starts_with('v') => {
            Err(CryptoError::UnsupportedFormat(version.to_owned()))
        }
        _ => Err(CryptoError::Malformed("not a sealed value".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AAD: &[u8] = b"agent:a1:webhook_secret";

    fn sealer() -> Sealer {
        Sealer::new(MasterKey::generate())
    }

    #[test]
    fn round_trip_names_the_key_and_uses_fresh_nonces() {
        let s = sealer();
        let sealed = s.seal(b"secret value", AAD);
        assert!(
            sealed.starts_with(&format!("v1.{}.", s.current_key_id())),
            "{sealed}"
        );
        assert_eq!(s.open(&sealed, AAD).unwrap(), b"secret value");
        assert_ne!(
            s.seal(b"secret value", AAD),
            sealed,
            "nonces must be random"
        );
        assert_eq!(s.open(&s.seal(b"", AAD), AAD).unwrap(), b"");
        assert!(!s.needs_reseal(&sealed));
    }

    #[test]
    fn wrong_aad_fails() {
        let s = sealer();
        let sealed = s.seal(b"secret", AAD);
        let err = s.open(&sealed, b"agent:a2:webhook_secret").unwrap_err();
        assert!(matches!(err, CryptoError::Authentication), "{err}");
        assert!(err.to_string().contains("another record"), "{err}");
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let s = sealer();
        let sealed = s.seal(b"secret", AAD);
        let (prefix, data) = sealed.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(data).unwrap();
        for i in [0, NONCE_LEN, bytes.len() - 1] {
            bytes[i] ^= 1;
            let tampered = format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(&bytes));
            assert!(
                matches!(s.open(&tampered, AAD), Err(CryptoError::Authentication)),
                "byte {i}"
            );
            bytes[i] ^= 1;
        }
        let truncated = format!("{prefix}.{}", URL_SAFE_NO_PAD.encode(&bytes[..30]));
        assert!(matches!(
            s.open(&truncated, AAD),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn unknown_key_id_is_a_clear_error() {
        let sealed = sealer().seal(b"secret", AAD);
        let other = sealer();
        let err = other.open(&sealed, AAD).unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKey { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains(sealed.split('.').nth(1).unwrap())
                && msg.contains(other.current_key_id().as_str()),
            "{msg}"
        );
    }

    #[test]
    fn old_keys_decrypt_but_never_seal() {
        let old = MasterKey::generate();
        let sealed_before = Sealer::new(old.clone()).seal(b"secret", AAD);
        let rotated = Sealer::with_old_keys(MasterKey::generate(), [old.clone()]);
        assert_eq!(rotated.open(&sealed_before, AAD).unwrap(), b"secret");
        assert!(rotated.needs_reseal(&sealed_before));
        let resealed = rotated.seal(b"secret", AAD);
        assert!(!resealed.contains(old.id().as_str()));
        assert!(matches!(
            Sealer::new(old).open(&resealed, AAD),
            Err(CryptoError::UnknownKey { .. })
        ));
    }

    #[test]
    fn malformed_values_are_rejected() {
        let s = sealer();
        for bad in ["", "plain text", "v1.", "v1.abc", "v1..data", "v1.abc.!!!"] {
            let err = s.open(bad, AAD).unwrap_err();
            assert!(
                matches!(
                    err,
                    CryptoError::Malformed(_) | CryptoError::UnknownKey { .. }
                ),
                "{bad}: {err}"
            );
        }
        assert!(
            matches!(s.open("v2.abc.def", AAD), Err(CryptoError::UnsupportedFormat(v)) if v == "v2")
        );
    }
}
