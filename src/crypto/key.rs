//! The master key that seals secrets at rest, its id, and its file in the data dir.
//!
//! Each sealed value names the key that sealed it by [`KeyId`], so after a key
//! rotation hookrun can tell "sealed with an old key I still have" from "sealed with
//! a key I was never given" and say so, instead of a bare decryption failure.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

use super::{CryptoError, random_bytes};

pub const KEY_LEN: usize = 32;

/// File name of the generated master key inside the data dir.
pub const MASTER_KEY_FILE: &str = "master.key";

/// Short public id of a master key: 16 hex characters of a domain-separated SHA-256
/// of the key (safe to show: the key has 256 bits of entropy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    fn of(bytes: &[u8; KEY_LEN]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"hookrun master key id\0")
            .chain_update(bytes)
            .finalize();
        KeyId(hex::encode(&digest[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A 32-byte XChaCha20-Poly1305 key. Its Debug output shows only the key id.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            id: KeyId::of(&bytes),
            bytes,
        }
    }

    /// Parses standard base64 (surrounding whitespace ignored) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let invalid = |reason: String| CryptoError::InvalidMasterKey {
            context: String::new(),
            reason,
        };
        let decoded = STANDARD
            .decode(text.trim())
            .map_err(|e| invalid(format!("but it is not base64 ({e})")))?;
        let bytes: [u8; KEY_LEN] = decoded
            .try_into()
            .map_err(|d: Vec<u8>| invalid(format!("but it decodes to {} bytes", d.len())))?;
        Ok(Self::from_bytes(bytes))
    }

    pub fn generate() -> Self {
        Self::from_bytes(random_bytes())
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &"<redacted>")
            .finish()
    }
}

/// The decrypt-only keys of `HOOKRUN_MASTER_KEY_OLD` (already split on commas); an
/// invalid entry is an error naming its position (never its value).
pub fn parse_old_keys(entries: &[String]) -> Result<Vec<MasterKey>, CryptoError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            MasterKey::from_base64(entry).map_err(|e| match e {
                CryptoError::InvalidMasterKey { reason, .. } => CryptoError::InvalidMasterKey {
                    context: format!(" in HOOKRUN_MASTER_KEY_OLD (entry {})", i + 1),
                    reason,
                },
                other => other,
            })
        })
        .collect()
}

/// Reads the base64 master key at `path`, or creates the file (mode 0600, parent
/// directories as needed) with a fresh key. Returns the key and whether it was created.
/// `create_new` makes two processes starting at once agree on one key: the loser
/// of the race reads the winner's file.
pub fn load_or_create_master_key_file(path: &Path) -> Result<(MasterKey, bool), CryptoError> {
    let io = |source| CryptoError::Io {
        path: path.to_owned(),
        source,
    };
    match read(path) {
        Err(CryptoError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
        other => return other.map(|key| (key, false)),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let key = MasterKey::generate();
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(mut file) => {
            file.write_all(format!("{}\n", key.to_base64()).as_bytes())
                .map_err(io)?;
            file.sync_all().map_err(io)?;
            Ok((key, true))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => read(path).map(|key| (key, false)),
        Err(e) => Err(io(e)),
    }
}

fn read(path: &Path) -> Result<MasterKey, CryptoError> {
    let text = fs::read_to_string(path).map_err(|source| CryptoError::Io {
        path: path.to_owned(),
        source,
    })?;
    if let Ok(meta) = fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(path = %path.display(), "master key file is readable by other users; chmod 600 it");
    }
    MasterKey::from_base64(&text).map_err(|e| match e {
        CryptoError::InvalidMasterKey { reason, .. } => CryptoError::InvalidMasterKey {
            context: format!(" in {}", path.display()),
            reason,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_32_bytes_of_base64() {
        let key = MasterKey::generate();
        let parsed = MasterKey::from_base64(&format!(" {}\n", key.to_base64())).unwrap();
        assert_eq!(parsed.bytes(), key.bytes());
        assert_eq!(parsed.id(), key.id());
        let short = MasterKey::from_base64(&STANDARD.encode([0u8; 16])).unwrap_err();
        assert!(
            short
                .to_string()
                .contains("exactly 32 bytes, but it decodes to 16 bytes"),
            "{short}"
        );
        let garbage = MasterKey::from_base64("not base64!").unwrap_err();
        assert!(garbage.to_string().contains("not base64"), "{garbage}");
    }

    #[test]
    fn key_ids_are_short_stable_and_distinct() {
        let a = MasterKey::from_bytes([1; KEY_LEN]);
        assert_eq!(a.id(), MasterKey::from_bytes([1; KEY_LEN]).id());
        assert_ne!(a.id(), MasterKey::from_bytes([2; KEY_LEN]).id());
        assert_eq!(a.id().as_str().len(), 16);
        assert!(a.id().as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn old_keys_parse_in_order_and_errors_name_the_entry_not_the_value() {
        let (a, b) = (MasterKey::generate(), MasterKey::generate());
        let keys = parse_old_keys(&[a.to_base64(), b.to_base64()]).unwrap();
        assert_eq!(
            keys.iter().map(|k| k.id().clone()).collect::<Vec<_>>(),
            [a.id().clone(), b.id().clone()]
        );
        let err = parse_old_keys(&[a.to_base64(), "c2hvcnQ=".into()]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("HOOKRUN_MASTER_KEY_OLD (entry 2)"), "{msg}");
        assert!(!msg.contains("c2hvcnQ="), "{msg}");
        assert!(parse_old_keys(&[]).unwrap().is_empty());
    }

    #[test]
    fn debug_never_prints_the_key() {
        let key = MasterKey::from_bytes([7; KEY_LEN]);
        let debug = format!("{key:?}");
        assert!(
            debug.contains("redacted") && debug.contains(key.id().as_str()),
            "{debug}"
        );
        assert!(
            !debug.contains(&key.to_base64()) && !debug.contains("7, 7"),
            "{debug}"
        );
    }

    #[test]
    fn key_file_is_created_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/data").join(MASTER_KEY_FILE);
        let (created, was_created) = load_or_create_master_key_file(&path).unwrap();
        assert!(was_created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (loaded, was_created) = load_or_create_master_key_file(&path).unwrap();
        assert!(!was_created);
        assert_eq!(loaded.id(), created.id());
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MASTER_KEY_FILE);
        fs::write(&path, "dG9vIHNob3J0").unwrap();
        let err = load_or_create_master_key_file(&path).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("32 bytes"), "{err}");
    }
}
