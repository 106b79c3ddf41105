//! Tenants' data keys: creating, opening, rotating (new data key), re-keying (new key-encryption
//! key) and shredding (destroying the data key and the records it sealed).

use std::collections::BTreeMap;

use neo_protocol::TenantName;

use super::{Latest, MAX_ATTEMPTS, SecretStore, Written, conflict, now_ms, open_value};
use crate::crypto::{DataKey, KeyId, aad_secret};
use crate::error::SecretsError;
use crate::names::parse_secret_key;
use crate::record::{
    FORMAT, SECRETS_BUCKET, SealedDek, SealedValue, SecretRecord, TENANT_KEYS_BUCKET, TenantKeys,
    encode,
};

/// What [`SecretStore::rotate_tenant_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// The tenant.
    pub tenant: TenantName,
    /// The data key version now sealing every secret.
    pub new_version: u32,
    /// The versions dropped from the tenant's key record.
    pub dropped_versions: Vec<u32>,
    /// How many secret records were re-sealed.
    pub resealed: usize,
}

/// What [`SecretStore::rekey`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RekeyReport {
    /// The key-encryption key every data key is now sealed with.
    pub primary: KeyId,
    /// How many tenants hold data keys.
    pub tenants: usize,
    /// How many data key versions were re-sealed.
    pub resealed: usize,
    /// How many were already sealed with the primary key.
    pub already_current: usize,
}

/// What [`SecretStore::shred_tenant`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShredReport {
    /// The tenant.
    pub tenant: TenantName,
    /// Whether the tenant had a data key to destroy.
    pub had_data_key: bool,
    /// How many secret records (values and tombstones) were purged.
    pub secrets_purged: usize,
}

/// The state of a tenant's key record.
pub(super) enum KeyState {
    /// Never written: the tenant has had no secret.
    Never,
    /// Purged by [`SecretStore::shred_tenant`].
    Destroyed,
    /// The sealed data keys at `revision`.
    Present { revision: u64, record: TenantKeys },
}

impl SecretStore {
    pub(super) async fn tenant_keys(&self, tenant: &TenantName) -> Result<KeyState, SecretsError> {
        Ok(match self.latest(&self.keys, tenant.as_str()).await? {
            Latest::Absent => KeyState::Never,
            Latest::Erased { .. } => KeyState::Destroyed,
            Latest::Value { revision, value } => KeyState::Present {
                revision,
                record: TenantKeys::decode(&value, tenant.as_str())?,
            },
        })
    }

    /// Opens data key `version` of `record`; `key` names the secret that needs it (for errors).
    pub(super) fn open_dek(
        &self,
        tenant: &TenantName,
        record: &TenantKeys,
        version: u32,
        key: &str,
    ) -> Result<DataKey, SecretsError> {
        let sealed_dek =
            record
                .get(version)
                .ok_or_else(|| SecretsError::DataKeyVersionMissing {
                    tenant: tenant.to_string(),
                    key: key.to_owned(),
                    dek_version: version,
                })?;
        let sealed = sealed_dek.sealed().ok_or_else(|| SecretsError::Corrupt {
            bucket: TENANT_KEYS_BUCKET,
            key: tenant.to_string(),
            reason: format!("the nonce of data key version {version} has the wrong length"),
        })?;
        self.keyring
            .open_dek(tenant.as_str(), version, &sealed_dek.kek_id(), &sealed)
    }

    fn open_all(
        &self,
        tenant: &TenantName,
        record: &TenantKeys,
    ) -> Result<BTreeMap<u32, DataKey>, SecretsError> {
        record
            .keys
            .iter()
            .map(|k| {
                Ok((
                    k.version,
                    self.open_dek(tenant, record, k.version, tenant.as_str())?,
                ))
            })
            .collect()
    }

    /// The tenant's current data key, created (version 1) if it has none.
    pub(super) async fn current_dek(
        &self,
        tenant: &TenantName,
    ) -> Result<(u32, DataKey), SecretsError> {
        for _ in 0..MAX_ATTEMPTS {
            let latest = self.latest(&self.keys, tenant.as_str()).await?;
            if let Latest::Value { value, .. } = &latest {
                let record = TenantKeys::decode(value, tenant.as_str())?;
                let dek = self.open_dek(tenant, &record, record.current, tenant.as_str())?;
                return Ok((record.current, dek));
            }
            let dek = DataKey::generate()?;
            let (kek_id, sealed) = self.keyring.seal_dek(tenant.as_str(), 1, &dek)?;
            let record = TenantKeys {
                format: FORMAT,
                current: 1,
                keys: vec![SealedDek::new(1, &kek_id, sealed, now_ms())],
            };
            let bytes = encode(&record, TENANT_KEYS_BUCKET, tenant.as_str())?;
            if let Written::Ok = self
                .write(&self.keys, tenant.as_str(), latest.revision(), bytes)
                .await?
            {
                tracing::info!(%tenant, dek_version = 1, %kek_id, "created the tenant's data key");
                return Ok((1, dek));
            }
        }
        Err(conflict(TENANT_KEYS_BUCKET, tenant.to_string()))
    }

    /// The tenant's current data key version, if it has a data key.
    pub(super) async fn current_dek_version(
        &self,
        tenant: &TenantName,
    ) -> Result<Option<u32>, SecretsError> {
        Ok(match self.tenant_keys(tenant).await? {
            KeyState::Present { record, .. } => Some(record.current),
            KeyState::Never | KeyState::Destroyed => None,
        })
    }

    /// Rotates a tenant's data key: adds a new version, re-seals every secret of the tenant
    /// under it, then drops the old versions.
    ///
    /// # Guarantees
    ///
    /// Readers keep working throughout: every record names its data key version, and the key
    /// record holds every version until no record uses it. Each record is rewritten with a
    /// compare-and-set, so a concurrent [`SecretStore::set`] is never lost (and re-seals itself
    /// under the new version if it raced the rotation). If it fails midway, every secret is
    /// still readable and running it again completes it.
    ///
    /// # Errors
    ///
    /// [`SecretsError::NoDataKey`], [`SecretsError::DataKeyDestroyed`], a data key that does
    /// not open (nothing is written then), [`SecretsError::Conflict`],
    /// [`SecretsError::JetStream`].
    pub async fn rotate_tenant_key(
        &self,
        tenant: &TenantName,
    ) -> Result<RotationReport, SecretsError> {
        let new_version = self.add_dek_version(tenant).await?;
        let mut resealed = 0;
        for _ in 0..MAX_ATTEMPTS {
            let count = self.reseal_tenant(tenant, new_version).await?;
            resealed += count;
            if count == 0 {
                break;
            }
        }
        let mut dropped_versions = Vec::new();
        for attempt in 0.. {
            if attempt == MAX_ATTEMPTS {
                return Err(conflict(TENANT_KEYS_BUCKET, tenant.to_string()));
            }
            let KeyState::Present {
                revision,
                mut record,
            } = self.tenant_keys(tenant).await?
            else {
                return Err(SecretsError::DataKeyDestroyed {
                    tenant: tenant.to_string(),
                });
            };
            if record.current != new_version {
                // A later rotation took over; it drops what is left.
                break;
            }
            dropped_versions = record
                .keys
                .iter()
                .map(|k| k.version)
                .filter(|v| *v != new_version)
                .collect();
            if dropped_versions.is_empty() {
                break;
            }
            record.keys.retain(|k| k.version == new_version);
            let bytes = encode(&record, TENANT_KEYS_BUCKET, tenant.as_str())?;
            if let Written::Ok = self
                .write(&self.keys, tenant.as_str(), Some(revision), bytes)
                .await?
            {
                break;
            }
        }
        tracing::info!(%tenant, new_version, ?dropped_versions, resealed, "rotated the tenant's data key");
        Ok(RotationReport {
            tenant: tenant.clone(),
            new_version,
            dropped_versions,
            resealed,
        })
    }

    /// Adds a new data key version and makes it current; every existing version must open
    /// first.
    async fn add_dek_version(&self, tenant: &TenantName) -> Result<u32, SecretsError> {
        for _ in 0..MAX_ATTEMPTS {
            let (revision, mut record) = match self.tenant_keys(tenant).await? {
                KeyState::Present { revision, record } => (revision, record),
                KeyState::Never => {
                    return Err(SecretsError::NoDataKey {
                        tenant: tenant.to_string(),
                    });
                }
                KeyState::Destroyed => {
                    return Err(SecretsError::DataKeyDestroyed {
                        tenant: tenant.to_string(),
                    });
                }
            };
            self.open_all(tenant, &record)?;
            let version = record.keys.iter().map(|k| k.version).max().unwrap_or(0) + 1;
            let dek = DataKey::generate()?;
            let (kek_id, sealed) = self.keyring.seal_dek(tenant.as_str(), version, &dek)?;
            record
                .keys
                .push(SealedDek::new(version, &kek_id, sealed, now_ms()));
            record.current = version;
            let bytes = encode(&record, TENANT_KEYS_BUCKET, tenant.as_str())?;
            if let Written::Ok = self
                .write(&self.keys, tenant.as_str(), Some(revision), bytes)
                .await?
            {
                tracing::info!(%tenant, dek_version = version, %kek_id, "added a data key version");
                return Ok(version);
            }
        }
        Err(conflict(TENANT_KEYS_BUCKET, tenant.to_string()))
    }

    /// Re-seals every secret of the tenant not sealed with `target`; returns how many.
    async fn reseal_tenant(&self, tenant: &TenantName, target: u32) -> Result<usize, SecretsError> {
        let KeyState::Present { mut record, .. } = self.tenant_keys(tenant).await? else {
            return Err(SecretsError::DataKeyDestroyed {
                tenant: tenant.to_string(),
            });
        };
        let mut deks = self.open_all(tenant, &record)?;
        let mut count = 0;
        for key in self
            .keys_matching(&self.secrets, &format!("{tenant}.>"))
            .await?
        {
            let Some((_, app, stage, name)) = parse_secret_key(&key) else {
                continue;
            };
            for attempt in 0.. {
                if attempt == MAX_ATTEMPTS {
                    return Err(conflict(SECRETS_BUCKET, key));
                }
                let Latest::Value { revision, value } = self.latest(&self.secrets, &key).await?
                else {
                    break;
                };
                let mut secret = SecretRecord::decode(&value, &key)?;
                let Some(sealed) = &secret.sealed else {
                    break;
                };
                if sealed.dek_version == target {
                    break;
                }
                if !deks.contains_key(&sealed.dek_version) || !deks.contains_key(&target) {
                    // A version added after this pass began: read the key record again.
                    if let KeyState::Present { record: fresh, .. } =
                        self.tenant_keys(tenant).await?
                    {
                        record = fresh;
                        deks = self.open_all(tenant, &record)?;
                    }
                }
                let old = self.open_dek(tenant, &record, sealed.dek_version, &key)?;
                let new = deks
                    .get(&target)
                    .ok_or_else(|| SecretsError::DataKeyVersionMissing {
                        tenant: tenant.to_string(),
                        key: key.clone(),
                        dek_version: target,
                    })?;
                let plain = open_value(tenant, &app, &stage, &name, secret.version, sealed, &old)?;
                let aad = aad_secret(
                    tenant.as_str(),
                    app.as_str(),
                    stage.as_str(),
                    name.as_str(),
                    secret.version,
                    target,
                );
                secret.sealed = Some(SealedValue::new(target, new.seal(&aad, plain.as_bytes())?));
                let bytes = encode(&secret, SECRETS_BUCKET, &key)?;
                if let Written::Ok = self
                    .write(&self.secrets, &key, Some(revision), bytes)
                    .await?
                {
                    tracing::debug!(%tenant, %app, %stage, secret = %name, dek_version = target, "re-sealed");
                    count += 1;
                    break;
                }
            }
        }
        Ok(count)
    }

    /// Re-seals every tenant's data key versions under the keyring's primary key-encryption
    /// key (rotation of the key-encryption key).
    ///
    /// # Guarantees
    ///
    /// Every data key is opened first (with any key of the keyring); if one fails, nothing is
    /// written and that error is returned. Each tenant's record is then rewritten with a
    /// compare-and-set; secrets themselves are not touched. Processes holding either the old or
    /// the new key-encryption key keep reading throughout if they hold both.
    ///
    /// # Assumptions
    ///
    /// Every process that may create data keys already seals with the new primary key, so no
    /// data key sealed with the old one appears after this runs.
    ///
    /// # Errors
    ///
    /// [`SecretsError::UnknownKek`], [`SecretsError::KekAuthentication`],
    /// [`SecretsError::Corrupt`], [`SecretsError::Conflict`], [`SecretsError::JetStream`].
    pub async fn rekey(&self) -> Result<RekeyReport, SecretsError> {
        let primary = self.keyring.primary_id().clone();
        // 1. Open every data key; write nothing if one fails.
        let mut plan = Vec::new();
        for key in self.keys_matching(&self.keys, ">").await? {
            let tenant = TenantName::new(key.as_str()).map_err(|_| SecretsError::Corrupt {
                bucket: TENANT_KEYS_BUCKET,
                key: key.clone(),
                reason: "the key is not a tenant name".into(),
            })?;
            if let KeyState::Present { revision, record } = self.tenant_keys(&tenant).await? {
                let deks = self.open_all(&tenant, &record)?;
                plan.push((tenant, revision, record, deks));
            }
        }
        // 2. Re-seal those not sealed with the primary key.
        let mut report = RekeyReport {
            primary: primary.clone(),
            tenants: plan.len(),
            resealed: 0,
            already_current: 0,
        };
        for (tenant, mut revision, mut record, mut deks) in plan {
            for attempt in 0.. {
                if attempt == MAX_ATTEMPTS {
                    return Err(conflict(TENANT_KEYS_BUCKET, tenant.to_string()));
                }
                let stale = record
                    .keys
                    .iter()
                    .filter(|k| k.kek_id != primary.as_str())
                    .count();
                if stale == 0 {
                    report.already_current += record.keys.len();
                    break;
                }
                let mut resealed = record.clone();
                for sealed_dek in &mut resealed.keys {
                    let dek = deks.get(&sealed_dek.version).ok_or_else(|| {
                        SecretsError::Crypto("a data key vanished while re-keying".into())
                    })?;
                    let (kek_id, sealed) =
                        self.keyring
                            .seal_dek(tenant.as_str(), sealed_dek.version, dek)?;
                    *sealed_dek = SealedDek::new(
                        sealed_dek.version,
                        &kek_id,
                        sealed,
                        sealed_dek.created_at_ms,
                    );
                }
                let bytes = encode(&resealed, TENANT_KEYS_BUCKET, tenant.as_str())?;
                if let Written::Ok = self
                    .write(&self.keys, tenant.as_str(), Some(revision), bytes)
                    .await?
                {
                    tracing::info!(%tenant, versions = record.keys.len(), kek_id = %primary, "re-sealed the tenant's data keys");
                    report.resealed += stale;
                    report.already_current += record.keys.len() - stale;
                    break;
                }
                // Changed meanwhile (a rotation or a new tenant key): read and open it again.
                match self.tenant_keys(&tenant).await? {
                    KeyState::Present {
                        revision: fresh_revision,
                        record: fresh,
                    } => {
                        deks = self.open_all(&tenant, &fresh)?;
                        revision = fresh_revision;
                        record = fresh;
                    }
                    KeyState::Never | KeyState::Destroyed => break,
                }
            }
        }
        tracing::info!(kek_id = %primary, tenants = report.tenants, resealed = report.resealed, "re-keyed the data keys");
        Ok(report)
    }

    /// Destroys a tenant's data key (crypto-shredding), then purges its secret records.
    ///
    /// # Guarantees
    ///
    /// The key record is purged, not merely deleted: no earlier revision of it remains in the
    /// bucket's stream, only a purge marker. From then on every read of the tenant's secrets
    /// fails with [`SecretsError::DataKeyDestroyed`] in every process (data keys are never
    /// cached). Idempotent: running it again purges whatever records are left. A later
    /// [`SecretStore::set`] for a tenant of the same name creates a fresh data key.
    ///
    /// # Errors
    ///
    /// [`SecretsError::JetStream`].
    pub async fn shred_tenant(&self, tenant: &TenantName) -> Result<ShredReport, SecretsError> {
        let had_data_key = matches!(self.tenant_keys(tenant).await, Ok(KeyState::Present { .. }));
        self.keys
            .purge(tenant.as_str())
            .await
            .map_err(SecretsError::js(format!(
                "purging the data key of `{tenant}`"
            )))?;
        tracing::warn!(%tenant, "destroyed the tenant's data key");
        let mut secrets_purged = 0;
        for key in self
            .keys_matching(&self.secrets, &format!("{tenant}.>"))
            .await?
        {
            if let Latest::Value { .. } = self.latest(&self.secrets, &key).await? {
                self.secrets
                    .purge(&key)
                    .await
                    .map_err(SecretsError::js(format!("purging `{key}`")))?;
                secrets_purged += 1;
            }
        }
        tracing::info!(%tenant, secrets_purged, "purged the tenant's secret records");
        Ok(ShredReport {
            tenant: tenant.clone(),
            had_data_key,
            secrets_purged,
        })
    }
}
