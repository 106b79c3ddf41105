//! The encrypted secrets store: secret values sealed with a per-tenant data key, data keys
//! sealed by a key-encryption key read from a file or the environment.
//!
//! - Values are sealed with XChaCha20-Poly1305 under the tenant's data key (32 random bytes);
//!   every ciphertext is bound by associated data to what it is
//!   (`neo/secret/v1/{tenant}/{app}/{stage}/{name}/{version}/{dek_version}`,
//!   `neo/dek/v1/{tenant}/{dek_version}`), so a ciphertext moved to another tenant, name or
//!   version does not open.
//! - A tenant key rotation re-seals every secret under a new data key while readers keep
//!   working; a re-keying re-seals every data key under a new key-encryption key.
//! - Shredding a tenant purges its data key: its secrets are unreadable everywhere.
//! - No value, data key or key-encryption key appears in a record, an error or a log line in
//!   clear; plaintexts are held in [`zeroize::Zeroizing`] buffers.
//!
//! # Layout
//!
//! - [`crypto`]: [`Kek`], [`Keyring`] (from a file or the environment), [`DataKey`], sealing
//!   with associated data (pure).
//! - [`names`]: [`SecretName`] and the KV keys built from validated names (pure).
//! - `record`: the stored JSON records of both buckets (pure).
//! - [`store`]: [`SecretStore`] on two JetStream KV buckets: set, unset, list, reveal; its
//!   `keys` submodule rotates, re-keys and shreds tenants' data keys.
//! - [`serve`]: the responder for agents' requests on `neo.secrets.{stage}.{tenant}.{app}` and
//!   the agent's [`fetch_stage_secrets`].
//! - [`error`]: [`SecretsError`], one variant per way things fail.

pub mod crypto;
pub mod error;
pub mod names;
mod record;
pub mod serve;
pub mod store;

pub use crypto::{DataKey, Kek, KeyId, Keyring};
pub use error::SecretsError;
pub use names::SecretName;
pub use record::{SECRETS_BUCKET, TENANT_KEYS_BUCKET};
pub use serve::{fetch_stage_secrets, serve_stage_requests};
pub use store::{
    MAX_VALUE_LEN, RekeyReport, RevealedSecret, RotationReport, SecretInfo, SecretStore,
    ShredReport,
};
