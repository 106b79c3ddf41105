//! Keys and sealing: key-encryption keys ([`Kek`], [`Keyring`]), data keys ([`DataKey`]) and
//! XChaCha20-Poly1305 with associated data naming what each ciphertext is (pure, no I/O but
//! reading key files).

use std::fmt;
use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::SecretsError;

/// Length of every key (key-encryption and data keys): 256 bits.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce.
pub const NONCE_LEN: usize = 24;

/// The public id of a key-encryption key: 16 hex digits of sha256 over a domain-separated
/// encoding of the key. Safe to print and store; it reveals nothing usable about the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    fn of(key: &[u8; KEY_LEN]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"neo/kek-id/v1\0");
        hasher.update(key);
        let digest = hasher.finalize();
        KeyId(hex::encode(&digest[..8]))
    }

    /// Wraps an id read from a record (not checked against any key).
    pub fn from_stored(id: impl Into<String>) -> Self {
        KeyId(id.into())
    }

    /// The id as hex.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key-encryption key: 32 bytes that seal tenants' data keys. Wiped on drop; its `Debug`
/// shows only the id.
#[derive(Clone)]
pub struct Kek {
    id: KeyId,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let key = Zeroizing::new(bytes);
        Kek {
            id: KeyId::of(&key),
            key,
        }
    }

    /// A new random key.
    pub fn generate() -> Result<Self, SecretsError> {
        Ok(Kek::from_bytes(*random_key()?))
    }

    /// Parses a key written as 64 hex digits or as base64 (standard or URL-safe, padded or
    /// not) of 32 bytes; surrounding whitespace is ignored. The error never quotes the text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("it is empty".into());
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if text.len().is_multiple_of(2) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            if text.len() == 2 * KEY_LEN && hex::decode_to_slice(text, &mut bytes[..]).is_ok() {
                return Ok(Kek::from_bytes(*bytes));
            }
            return Err(format!(
                "the key decodes to {} bytes of hex; a key-encryption key is {KEY_LEN} bytes \
                 (64 hex digits or 44 base64 characters)",
                text.len() / 2
            ));
        }
        let engines = [
            &base64::engine::general_purpose::STANDARD,
            &base64::engine::general_purpose::STANDARD_NO_PAD,
            &base64::engine::general_purpose::URL_SAFE,
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(decoded) = engine.decode(text).map(Zeroizing::new) {
                if decoded.len() == KEY_LEN {
                    bytes.copy_from_slice(&decoded);
                    return Ok(Kek::from_bytes(*bytes));
                }
                return Err(format!(
                    "the key decodes to {} bytes; a key-encryption key is {KEY_LEN} bytes \
                     (64 hex digits or 44 base64 characters)",
                    decoded.len()
                ));
            }
        }
        Err(format!(
            "it is neither 64 hex digits nor base64 of {KEY_LEN} bytes ({} characters found)",
            text.len()
        ))
    }

    /// Reads a key from a file (see [`Kek::parse`] for the format).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SecretsError> {
        let path = path.as_ref();
        let err = |reason: String| SecretsError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| err("the file is not text (expected hex or base64)".into()))?;
        Kek::parse(text).map_err(err)
    }

    /// Reads a key from an environment variable (see [`Kek::parse`] for the format).
    pub fn from_env(var: &str) -> Result<Self, SecretsError> {
        let err = |reason: String| SecretsError::KeyEnv {
            var: var.to_owned(),
            reason,
        };
        let text = Zeroizing::new(std::env::var(var).map_err(|e| err(e.to_string()))?);
        Kek::parse(&text).map_err(err)
    }

    /// Generates a random key and writes it, hex-encoded, to a new file with mode 0600; refuses
    /// to overwrite an existing file.
    pub fn generate_file(path: impl AsRef<Path>) -> Result<Self, SecretsError> {
        let path = path.as_ref();
        let err = |reason: String| SecretsError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        let kek = Kek::generate()?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                err("the file already exists; refusing to overwrite a key".into())
            } else {
                err(e.to_string())
            }
        })?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(&kek.key[..])));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| err(e.to_string()))?;
        tracing::info!(path = %path.display(), kek_id = %kek.id, "generated a key-encryption key");
        Ok(kek)
    }

    /// The key's public id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, SecretsError> {
        seal(&self.key, aad, plaintext)
    }

    fn open(&self, aad: &[u8], sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.key, aad, sealed)
    }
}

/// The key-encryption keys a process holds: the primary seals, every key opens.
///
/// Rotation of the key-encryption key: start every process with `[new primary, old]`, run
/// [`crate::SecretStore::rekey`], then restart them with the new key alone.
#[derive(Debug, Clone)]
pub struct Keyring {
    primary: Kek,
    previous: Vec<Kek>,
}

impl Keyring {
    /// A keyring of one key.
    pub fn new(primary: Kek) -> Self {
        Keyring {
            primary,
            previous: Vec::new(),
        }
    }

    /// Adds a previous key, which opens data keys but never seals them.
    pub fn with_previous(mut self, kek: Kek) -> Self {
        if kek.id != self.primary.id && !self.previous.iter().any(|k| k.id == kek.id) {
            self.previous.push(kek);
        }
        self
    }

    /// A keyring whose primary key is read from a file (see [`Kek::parse`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, SecretsError> {
        Ok(Keyring::new(Kek::from_file(path)?))
    }

    /// A keyring whose primary key is read from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, SecretsError> {
        Ok(Keyring::new(Kek::from_env(var)?))
    }

    /// A keyring with a new random primary key, written to a new file (mode 0600).
    pub fn generate_file(path: impl AsRef<Path>) -> Result<Self, SecretsError> {
        Ok(Keyring::new(Kek::generate_file(path)?))
    }

    /// The primary key's id.
    pub fn primary_id(&self) -> &KeyId {
        &self.primary.id
    }

    /// The ids of every key held, primary first.
    pub fn ids(&self) -> Vec<KeyId> {
        self.keys().map(|k| k.id.clone()).collect()
    }

    fn keys(&self) -> impl Iterator<Item = &Kek> {
        std::iter::once(&self.primary).chain(self.previous.iter())
    }

    /// Seals `tenant`'s data key version `dek_version` under the primary key.
    pub(crate) fn seal_dek(
        &self,
        tenant: &str,
        dek_version: u32,
        dek: &DataKey,
    ) -> Result<(KeyId, Sealed), SecretsError> {
        let sealed = self
            .primary
            .seal(aad_dek(tenant, dek_version).as_bytes(), &dek.0[..])?;
        Ok((self.primary.id.clone(), sealed))
    }

    /// Opens a data key sealed by the key with id `kek_id`.
    pub(crate) fn open_dek(
        &self,
        tenant: &str,
        dek_version: u32,
        kek_id: &KeyId,
        sealed: &Sealed,
    ) -> Result<DataKey, SecretsError> {
        let kek =
            self.keys()
                .find(|k| &k.id == kek_id)
                .ok_or_else(|| SecretsError::UnknownKek {
                    tenant: tenant.to_owned(),
                    dek_version,
                    kek_id: kek_id.to_string(),
                    held: self
                        .ids()
                        .iter()
                        .map(KeyId::as_str)
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
        let authentication = || SecretsError::KekAuthentication {
            tenant: tenant.to_owned(),
            dek_version,
            kek_id: kek_id.to_string(),
        };
        let plain = kek
            .open(aad_dek(tenant, dek_version).as_bytes(), sealed)
            .ok_or_else(authentication)?;
        let bytes: [u8; KEY_LEN] = plain[..].try_into().map_err(|_| authentication())?;
        Ok(DataKey(Zeroizing::new(bytes)))
    }
}

/// A tenant's data key: 32 random bytes that seal its secret values. Wiped on drop.
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new random data key from the operating system's generator.
    pub fn generate() -> Result<Self, SecretsError> {
        Ok(DataKey(random_key()?))
    }

    /// Seals a value under this key, bound to `aad`.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<Sealed, SecretsError> {
        seal(&self.0, aad.as_bytes(), plaintext)
    }

    /// Opens a value sealed under this key with the same `aad`; `None` when authentication
    /// fails (wrong key, wrong `aad`, or altered bytes).
    pub fn open(&self, aad: &str, sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
        open(&self.0, aad.as_bytes(), sealed)
    }
}

/// A ciphertext and the random nonce it was sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The 24-byte random nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The ciphertext with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

/// The associated data of a tenant's data key version: `neo/dek/v1/{tenant}/{dek_version}`.
pub fn aad_dek(tenant: &str, dek_version: u32) -> String {
    format!("neo/dek/v1/{tenant}/{dek_version}")
}

/// The associated data of a secret value:
/// `neo/secret/v1/{tenant}/{app}/{stage}/{name}/{version}/{dek_version}`.
pub fn aad_secret(
    tenant: &str,
    app: &str,
    stage: &str,
    name: &str,
    version: u64,
    dek_version: u32,
) -> String {
    format!("neo/secret/v1/{tenant}/{app}/{stage}/{name}/{version}/{dek_version}")
}

fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, SecretsError> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(|e| {
        SecretsError::Crypto(format!("the system random number generator failed: {e}"))
    })?;
    Ok(key)
}

fn seal(key: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Result<Sealed, SecretsError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| {
        SecretsError::Crypto(format!("the system random number generator failed: {e}"))
    })?;
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        // Encryption fails only for inputs beyond the cipher's limits (~256 GiB).
        .map_err(|_| SecretsError::Crypto("the cipher refused the input".into()))?;
    Ok(Sealed { nonce, ciphertext })
}

fn open(key: &[u8; KEY_LEN], aad: &[u8], sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(key));
    cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

#[cfg(test)]
mod tests;
