//! [`SecretStore`]: sealed secrets and tenants' data keys in two JetStream KV buckets; set,
//! unset, list and reveal here, key rotation, re-keying and shredding in [`keys`].

mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv::{self, Operation};
use futures::TryStreamExt as _;
use neo_protocol::{AppName, StageName, TenantName};
use zeroize::Zeroizing;

pub use keys::{RekeyReport, RotationReport, ShredReport};

use crate::crypto::{DataKey, Keyring, aad_secret};
use crate::error::SecretsError;
use crate::names::{SecretName, parse_secret_key, secret_key, validate_principal};
use crate::record::{
    FORMAT, SECRETS_BUCKET, SealedValue, SecretRecord, TENANT_KEYS_BUCKET, encode,
};

/// The largest secret value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 * 1024;
/// How many times a write is retried when another writer changed the record first.
const MAX_ATTEMPTS: u32 = 10;

/// A write to `key` of `bucket` that lost to other writers [`MAX_ATTEMPTS`] times.
fn conflict(bucket: &'static str, key: String) -> SecretsError {
    SecretsError::Conflict {
        bucket,
        key,
        attempts: MAX_ATTEMPTS,
    }
}

/// What is known about one secret, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The tenant.
    pub tenant: TenantName,
    /// The app.
    pub app: AppName,
    /// The stage.
    pub stage: StageName,
    /// The secret's name.
    pub name: SecretName,
    /// 1 for the first value, +1 for every later one (an unset does not reset it).
    pub version: u64,
    /// When the value was set, in ms since the Unix epoch.
    pub changed_at_ms: u64,
    /// Who set it.
    pub changed_by: String,
}

/// A decrypted secret. Its value is wiped on drop and never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct RevealedSecret {
    /// The secret's version.
    pub version: u64,
    /// The value in clear.
    pub value: Zeroizing<String>,
}

impl fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevealedSecret")
            .field("version", &self.version)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// The encrypted secrets store.
///
/// - Bucket `neo_tenant_keys`, key `{tenant}`: the tenant's data key versions, each sealed
///   (XChaCha20-Poly1305) by a key-encryption key of the [`Keyring`] and naming its id.
/// - Bucket `neo_secrets`, key `{tenant}.{app}.{stage}.{name}`: the secret's version, who
///   changed it and when, the data key version, nonce and ciphertext. An unset leaves a
///   tombstone record (no value) holding the last version, so a later set continues from it.
///
/// Both buckets keep one revision per key. Every write is a compare-and-set on the key's
/// revision, retried a bounded number of times on conflict, so several platform processes can
/// share the buckets. Data keys are not cached: a shredded tenant is unreadable everywhere at
/// once.
pub struct SecretStore {
    keys: kv::Store,
    secrets: kv::Store,
    keyring: Keyring,
}

impl fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretStore")
            .field("keyring", &self.keyring.ids())
            .finish_non_exhaustive()
    }
}

/// The latest entry of one key, by what its last operation was.
enum Latest {
    /// The key was never written (or its markers are gone).
    Absent,
    /// The key was deleted or purged at `revision`.
    Erased { revision: u64 },
    /// The key holds `value` at `revision`.
    Value { revision: u64, value: bytes::Bytes },
}

impl Latest {
    fn revision(&self) -> Option<u64> {
        match self {
            Latest::Absent => None,
            Latest::Erased { revision } | Latest::Value { revision, .. } => Some(*revision),
        }
    }
}

/// What a compare-and-set write came to.
enum Written {
    Ok,
    Conflict,
}

impl SecretStore {
    /// Creates or binds the two buckets (with the installation's replicas,
    /// [`neo_client::streams::replicas`]) and returns the store.
    ///
    /// # Errors
    ///
    /// [`SecretsError::JetStream`] when a bucket can be neither bound nor created.
    pub async fn open(js: jetstream::Context, keyring: Keyring) -> Result<Self, SecretsError> {
        let keys = bucket(&js, TENANT_KEYS_BUCKET, "Neo: tenants' sealed data keys").await?;
        let secrets = bucket(&js, SECRETS_BUCKET, "Neo: sealed secret values").await?;
        tracing::info!(kek_ids = ?keyring.ids(), "secrets store opened");
        Ok(SecretStore {
            keys,
            secrets,
            keyring,
        })
    }

    /// The keyring this store seals and opens data keys with.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Sets a secret to `value`, sealed under the tenant's current data key (created on the
    /// tenant's first secret), and returns its new version.
    ///
    /// # Guarantees
    ///
    /// The new version is one more than the last one stored, tombstones included. Either the
    /// whole record is written or nothing is. If a tenant key rotation starts while the value is
    /// written, the value is re-sealed under the new data key.
    ///
    /// # Errors
    ///
    /// A bad principal ([`SecretsError::Name`]), a value over [`MAX_VALUE_LEN`], a data key
    /// that does not open ([`SecretsError::UnknownKek`], [`SecretsError::KekAuthentication`]),
    /// [`SecretsError::Conflict`] after repeated concurrent writes, [`SecretsError::JetStream`].
    pub async fn set(
        &self,
        tenant: &TenantName,
        app: &AppName,
        stage: &StageName,
        name: &SecretName,
        value: &str,
        by: &str,
    ) -> Result<SecretInfo, SecretsError> {
        validate_principal(by)?;
        let key = secret_key(tenant, app, stage, name);
        if value.len() > MAX_VALUE_LEN {
            return Err(SecretsError::ValueTooLarge {
                key,
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        // What this call wrote, once written: later attempts only re-seal that same version.
        let mut ours: Option<SecretInfo> = None;
        for _ in 0..MAX_ATTEMPTS {
            let (dek_version, dek) = self.current_dek(tenant).await?;
            let latest = self.latest(&self.secrets, &key).await?;
            let previous = match &latest {
                Latest::Value { value, .. } => Some(SecretRecord::decode(value, &key)?),
                _ => None,
            };
            let (version, changed_at_ms, changed_by) = match (&ours, &previous) {
                (None, Some(record)) => (record.version + 1, now_ms(), by.to_owned()),
                (None, None) => (1, now_ms(), by.to_owned()),
                (Some(info), Some(record)) if record.version == info.version && !record.removed => {
                    if record.sealed.as_ref().map(|v| v.dek_version) == Some(dek_version) {
                        // The rotation re-sealed it already.
                        return Ok(self.log_set(info.clone(), dek_version));
                    }
                    (info.version, info.changed_at_ms, info.changed_by.clone())
                }
                // A later set or unset superseded this value: it was written all the same.
                (Some(info), _) => return Ok(self.log_set(info.clone(), dek_version)),
            };
            let aad = aad_secret(
                tenant.as_str(),
                app.as_str(),
                stage.as_str(),
                name.as_str(),
                version,
                dek_version,
            );
            let record = SecretRecord {
                format: FORMAT,
                version,
                changed_at_ms,
                changed_by,
                removed: false,
                sealed: Some(SealedValue::new(
                    dek_version,
                    dek.seal(&aad, value.as_bytes())?,
                )),
            };
            let bytes = encode(&record, SECRETS_BUCKET, &key)?;
            if let Written::Conflict = self
                .write(&self.secrets, &key, latest.revision(), bytes)
                .await?
            {
                continue;
            }
            let info = SecretInfo {
                tenant: tenant.clone(),
                app: app.clone(),
                stage: stage.clone(),
                name: name.clone(),
                version,
                changed_at_ms: record.changed_at_ms,
                changed_by: record.changed_by,
            };
            // A rotation that began before this write might not have seen it: re-seal under
            // the rotation's data key rather than leave the value under one about to go.
            if self.current_dek_version(tenant).await? != Some(dek_version) {
                tracing::debug!(%tenant, %app, %stage, secret = %name, version, "re-sealing under the rotated data key");
                ours = Some(info);
                continue;
            }
            return Ok(self.log_set(info, dek_version));
        }
        Err(conflict(SECRETS_BUCKET, key))
    }

    fn log_set(&self, info: SecretInfo, dek_version: u32) -> SecretInfo {
        tracing::info!(
            tenant = %info.tenant,
            app = %info.app,
            stage = %info.stage,
            secret = %info.name,
            version = info.version,
            dek_version,
            by = %info.changed_by,
            "secret set"
        );
        info
    }

    /// Removes a secret and returns what it was, or `None` if it was not set.
    ///
    /// # Guarantees
    ///
    /// Leaves a tombstone holding the removed version (and who had set it), so a later
    /// [`SecretStore::set`] continues with the next version.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Conflict`], [`SecretsError::Corrupt`], [`SecretsError::JetStream`].
    pub async fn unset(
        &self,
        tenant: &TenantName,
        app: &AppName,
        stage: &StageName,
        name: &SecretName,
    ) -> Result<Option<SecretInfo>, SecretsError> {
        let key = secret_key(tenant, app, stage, name);
        for _ in 0..MAX_ATTEMPTS {
            let latest = self.latest(&self.secrets, &key).await?;
            let Latest::Value { value, .. } = &latest else {
                return Ok(None);
            };
            let record = SecretRecord::decode(value, &key)?;
            if record.removed {
                return Ok(None);
            }
            let tombstone = SecretRecord {
                format: FORMAT,
                version: record.version,
                changed_at_ms: now_ms(),
                changed_by: record.changed_by.clone(),
                removed: true,
                sealed: None,
            };
            let bytes = encode(&tombstone, SECRETS_BUCKET, &key)?;
            if let Written::Ok = self
                .write(&self.secrets, &key, latest.revision(), bytes)
                .await?
            {
                tracing::info!(%tenant, %app, %stage, secret = %name, version = record.version, "secret unset");
                return Ok(Some(SecretInfo {
                    tenant: tenant.clone(),
                    app: app.clone(),
                    stage: stage.clone(),
                    name: name.clone(),
                    version: record.version,
                    changed_at_ms: record.changed_at_ms,
                    changed_by: record.changed_by,
                }));
            }
        }
        Err(conflict(SECRETS_BUCKET, key))
    }

    /// The secrets of one app on one stage, by name; never their values.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Corrupt`], [`SecretsError::JetStream`].
    pub async fn list(
        &self,
        tenant: &TenantName,
        app: &AppName,
        stage: &StageName,
    ) -> Result<Vec<SecretInfo>, SecretsError> {
        let records = self.records(&format!("{tenant}.{app}.{stage}.*")).await?;
        Ok(records.into_iter().map(|(info, _)| info).collect())
    }

    /// Every secret of a tenant, ordered by app, stage and name; never their values.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Corrupt`], [`SecretsError::JetStream`].
    pub async fn list_tenant(&self, tenant: &TenantName) -> Result<Vec<SecretInfo>, SecretsError> {
        let records = self.records(&format!("{tenant}.>")).await?;
        Ok(records.into_iter().map(|(info, _)| info).collect())
    }

    /// Decrypts every secret of one app on one stage.
    ///
    /// # Guarantees
    ///
    /// Works during a tenant key rotation or a re-keying: records name their data key version
    /// and data keys name their key-encryption key; a version dropped between reading the
    /// secrets and the keys makes it read both again.
    ///
    /// # Errors
    ///
    /// [`SecretsError::DataKeyDestroyed`] after [`SecretStore::shred_tenant`];
    /// [`SecretsError::UnknownKek`] / [`SecretsError::KekAuthentication`] when the keyring does
    /// not open the tenant's data key; [`SecretsError::SecretAuthentication`] for an altered or
    /// moved record; [`SecretsError::JetStream`].
    pub async fn reveal(
        &self,
        tenant: &TenantName,
        app: &AppName,
        stage: &StageName,
    ) -> Result<BTreeMap<String, RevealedSecret>, SecretsError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.reveal_once(tenant, app, stage).await {
                Err(SecretsError::DataKeyVersionMissing { .. }) if attempt < MAX_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                other => return other,
            }
        }
    }

    async fn reveal_once(
        &self,
        tenant: &TenantName,
        app: &AppName,
        stage: &StageName,
    ) -> Result<BTreeMap<String, RevealedSecret>, SecretsError> {
        let records = self.records(&format!("{tenant}.{app}.{stage}.*")).await?;
        let deks = match self.tenant_keys(tenant).await? {
            keys::KeyState::Present { record, .. } => Some(record),
            keys::KeyState::Destroyed => {
                return Err(SecretsError::DataKeyDestroyed {
                    tenant: tenant.to_string(),
                });
            }
            keys::KeyState::Never => None,
        };
        let mut opened: BTreeMap<u32, DataKey> = BTreeMap::new();
        let mut out = BTreeMap::new();
        for (info, record) in records {
            let key = secret_key(tenant, app, stage, &info.name);
            let Some(sealed) = &record.sealed else {
                continue;
            };
            let Some(deks) = &deks else {
                // Secrets without any key record: the key is gone.
                return Err(SecretsError::DataKeyDestroyed {
                    tenant: tenant.to_string(),
                });
            };
            let dek = match opened.entry(sealed.dek_version) {
                std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(self.open_dek(tenant, deks, sealed.dek_version, &key)?)
                }
            };
            let value = open_value(tenant, app, stage, &info.name, record.version, sealed, dek)?;
            out.insert(
                info.name.to_string(),
                RevealedSecret {
                    version: record.version,
                    value,
                },
            );
        }
        tracing::debug!(%tenant, %app, %stage, count = out.len(), "secrets revealed");
        Ok(out)
    }

    /// The live (not removed) secret records whose keys match `filter` (a key pattern with
    /// wildcards), sorted by key.
    async fn records(&self, filter: &str) -> Result<Vec<(SecretInfo, SecretRecord)>, SecretsError> {
        let mut out = Vec::new();
        for key in self.keys_matching(&self.secrets, filter).await? {
            let Latest::Value { value, .. } = self.latest(&self.secrets, &key).await? else {
                continue;
            };
            let record = SecretRecord::decode(&value, &key)?;
            if record.removed {
                continue;
            }
            let Some((tenant, app, stage, name)) = parse_secret_key(&key) else {
                return Err(SecretsError::Corrupt {
                    bucket: SECRETS_BUCKET,
                    key,
                    reason: "the key is not `{tenant}.{app}.{stage}.{name}`".into(),
                });
            };
            let info = SecretInfo {
                tenant,
                app,
                stage,
                name,
                version: record.version,
                changed_at_ms: record.changed_at_ms,
                changed_by: record.changed_by.clone(),
            };
            out.push((info, record));
        }
        Ok(out)
    }

    /// The keys of `store` matching `filter` (which may hold `*` and `>`), sorted; includes
    /// keys whose last operation was a delete or purge.
    async fn keys_matching(
        &self,
        store: &kv::Store,
        filter: &str,
    ) -> Result<Vec<String>, SecretsError> {
        let subjects = store
            .stream
            .info_with_subjects(format!("{}{filter}", store.prefix))
            .await
            .map_err(SecretsError::js(format!(
                "listing keys of `{}`",
                store.name
            )))?;
        let mut keys: Vec<String> = subjects
            .map_ok(|(subject, _count)| subject)
            .try_collect::<Vec<String>>()
            .await
            .map_err(SecretsError::js(format!(
                "listing keys of `{}`",
                store.name
            )))?
            .into_iter()
            .filter_map(|subject| {
                subject
                    .strip_prefix(store.prefix.as_str())
                    .map(str::to_owned)
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// The latest entry of `key`.
    async fn latest(&self, store: &kv::Store, key: &str) -> Result<Latest, SecretsError> {
        let entry = store.entry(key).await.map_err(SecretsError::js(format!(
            "reading `{key}` from `{}`",
            store.name
        )))?;
        Ok(match entry {
            None => Latest::Absent,
            Some(entry) => match entry.operation {
                Operation::Put => Latest::Value {
                    revision: entry.revision,
                    value: entry.value,
                },
                Operation::Delete | Operation::Purge => Latest::Erased {
                    revision: entry.revision,
                },
            },
        })
    }

    /// Writes `bytes` to `key` if its latest revision is still `revision` (`None`: never written).
    async fn write(
        &self,
        store: &kv::Store,
        key: &str,
        revision: Option<u64>,
        bytes: bytes::Bytes,
    ) -> Result<Written, SecretsError> {
        let op = || format!("writing `{key}` to `{}`", store.name);
        match revision {
            None => match store.create(key, bytes).await {
                Ok(_) => Ok(Written::Ok),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(Written::Conflict),
                Err(e) => Err(SecretsError::js(op())(e)),
            },
            Some(revision) => match store.update(key, bytes, revision).await {
                Ok(_) => Ok(Written::Ok),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    Ok(Written::Conflict)
                }
                Err(e) => Err(SecretsError::js(op())(e)),
            },
        }
    }
}

/// Opens one secret value.
fn open_value(
    tenant: &TenantName,
    app: &AppName,
    stage: &StageName,
    name: &SecretName,
    version: u64,
    sealed: &SealedValue,
    dek: &DataKey,
) -> Result<Zeroizing<String>, SecretsError> {
    let key = secret_key(tenant, app, stage, name);
    let authentication = || SecretsError::SecretAuthentication {
        key: key.clone(),
        version,
    };
    let aad = aad_secret(
        tenant.as_str(),
        app.as_str(),
        stage.as_str(),
        name.as_str(),
        version,
        sealed.dek_version,
    );
    let ciphertext = sealed.sealed().ok_or_else(authentication)?;
    let plain = dek.open(&aad, &ciphertext).ok_or_else(authentication)?;
    let text = std::str::from_utf8(&plain).map_err(|_| authentication())?;
    Ok(Zeroizing::new(text.to_owned()))
}

/// Binds bucket `name`, creating it (history 1, file storage) with the installation's replicas
/// if it does not exist, raising its replicas if it has fewer.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    description: &str,
) -> Result<kv::Store, SecretsError> {
    neo_client::streams::ensure_bucket(
        js,
        kv::Config {
            bucket: name.to_owned(),
            description: description.to_owned(),
            history: 1,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await
    .map_err(SecretsError::js(format!("creating bucket `{name}`")))
}

pub(crate) use neo_protocol::envelope::now_ms;
