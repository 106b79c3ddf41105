//! The stored records: a tenant's sealed data keys and one sealed secret, as versioned serde JSON
//! with bytes in base64 (pure).

use serde::{Deserialize, Serialize};

use crate::crypto::{KeyId, NONCE_LEN, Sealed};
use crate::error::{SecretsError, json_reason};

/// The `format` of every record written by this version.
pub const FORMAT: u32 = 1;

/// The bucket of tenants' data keys; key `{tenant}`.
pub const TENANT_KEYS_BUCKET: &str = "neo_tenant_keys";
/// The bucket of sealed secrets; key `{tenant}.{app}.{stage}.{name}`.
pub const SECRETS_BUCKET: &str = "neo_secrets";

/// Value of `neo_tenant_keys.{tenant}`: every data key version still in use, each sealed by a
/// key-encryption key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TenantKeys {
    pub format: u32,
    /// The version new values are sealed with.
    pub current: u32,
    /// Every version still in use (at least `current`).
    pub keys: Vec<SealedDek>,
}

/// One sealed data key version.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealedDek {
    pub version: u32,
    /// The id of the key-encryption key that sealed it.
    pub kek_id: String,
    pub created_at_ms: u64,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

impl SealedDek {
    pub fn new(version: u32, kek_id: &KeyId, sealed: Sealed, created_at_ms: u64) -> Self {
        SealedDek {
            version,
            kek_id: kek_id.to_string(),
            created_at_ms,
            nonce: sealed.nonce.to_vec(),
            sealed: sealed.ciphertext,
        }
    }

    pub fn kek_id(&self) -> KeyId {
        KeyId::from_stored(self.kek_id.clone())
    }

    pub fn sealed(&self) -> Option<Sealed> {
        Some(Sealed {
            nonce: self.nonce.as_slice().try_into().ok()?,
            ciphertext: self.sealed.clone(),
        })
    }
}

/// Value of `neo_secrets.{tenant}.{app}.{stage}.{name}`: one sealed value, or the tombstone an
/// unset leaves so that versions keep counting up.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SecretRecord {
    pub format: u32,
    /// 1 for the first value, +1 for every later one.
    pub version: u64,
    pub changed_at_ms: u64,
    pub changed_by: String,
    /// Set on a tombstone: the secret with `version` was removed at `changed_at_ms`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<SealedValue>,
}

/// The sealed value of a secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealedValue {
    /// The data key version that sealed it.
    pub dek_version: u32,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

impl SealedValue {
    pub fn new(dek_version: u32, sealed: Sealed) -> Self {
        SealedValue {
            dek_version,
            nonce: sealed.nonce.to_vec(),
            ciphertext: sealed.ciphertext,
        }
    }

    pub fn sealed(&self) -> Option<Sealed> {
        let nonce: [u8; NONCE_LEN] = self.nonce.as_slice().try_into().ok()?;
        Some(Sealed {
            nonce,
            ciphertext: self.ciphertext.clone(),
        })
    }
}

impl TenantKeys {
    pub fn decode(bytes: &[u8], tenant: &str) -> Result<Self, SecretsError> {
        let corrupt = |reason: String| SecretsError::Corrupt {
            bucket: TENANT_KEYS_BUCKET,
            key: tenant.to_owned(),
            reason,
        };
        let record: TenantKeys =
            serde_json::from_slice(bytes).map_err(|e| corrupt(json_reason(&e)))?;
        if record.format != FORMAT {
            return Err(corrupt(format!("unknown format {}", record.format)));
        }
        if !record.keys.iter().any(|k| k.version == record.current) {
            return Err(corrupt(format!(
                "the current version {} is not among its keys",
                record.current
            )));
        }
        Ok(record)
    }

    pub fn get(&self, version: u32) -> Option<&SealedDek> {
        self.keys.iter().find(|k| k.version == version)
    }
}

impl SecretRecord {
    pub fn decode(bytes: &[u8], key: &str) -> Result<Self, SecretsError> {
        let corrupt = |reason: String| SecretsError::Corrupt {
            bucket: SECRETS_BUCKET,
            key: key.to_owned(),
            reason,
        };
        let record: SecretRecord =
            serde_json::from_slice(bytes).map_err(|e| corrupt(json_reason(&e)))?;
        if record.format != FORMAT {
            return Err(corrupt(format!("unknown format {}", record.format)));
        }
        if record.removed == record.sealed.is_some() {
            return Err(corrupt(
                "a record holds a value exactly when it is not removed".into(),
            ));
        }
        Ok(record)
    }
}

/// Encodes a record (infallible for these types; an error would be a bug, reported as corrupt).
pub(crate) fn encode<T: Serialize>(
    record: &T,
    bucket: &'static str,
    key: &str,
) -> Result<bytes::Bytes, SecretsError> {
    serde_json::to_vec(record)
        .map(bytes::Bytes::from)
        .map_err(|e| SecretsError::Corrupt {
            bucket,
            key: key.to_owned(),
            reason: json_reason(&e),
        })
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text)
            .map_err(|_| serde::de::Error::custom("invalid base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value() -> SecretRecord {
        SecretRecord {
            format: FORMAT,
            version: 3,
            changed_at_ms: 1_700_000_000_000,
            changed_by: "user:alice".into(),
            removed: false,
            sealed: Some(SealedValue {
                dek_version: 2,
                nonce: vec![1; NONCE_LEN],
                ciphertext: vec![9, 8, 7],
            }),
        }
    }

    #[test]
    fn secret_records_are_flat_json_with_base64_bytes() {
        let bytes = encode(&value(), SECRETS_BUCKET, "k").unwrap();
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["format"], 1);
        assert_eq!(json["version"], 3);
        assert_eq!(json["dek_version"], 2);
        assert_eq!(json["ciphertext"], "CQgH");
        assert!(json.get("removed").is_none());
        let back = SecretRecord::decode(&bytes, "k").unwrap();
        assert_eq!(back.sealed.unwrap().ciphertext, vec![9, 8, 7]);
    }

    #[test]
    fn tombstones_round_trip_and_inconsistent_records_are_refused() {
        let tomb = SecretRecord {
            removed: true,
            sealed: None,
            ..value()
        };
        let bytes = encode(&tomb, SECRETS_BUCKET, "k").unwrap();
        let back = SecretRecord::decode(&bytes, "k").unwrap();
        assert!(back.removed && back.sealed.is_none());
        let both = SecretRecord {
            removed: true,
            ..value()
        };
        let bytes = encode(&both, SECRETS_BUCKET, "k").unwrap();
        assert!(SecretRecord::decode(&bytes, "k").is_err());
    }

    #[test]
    fn malformed_records_are_described_without_quoting_them() {
        let bytes = br#"{"format":1,"version":"s3cret-VALUE","changed_at_ms":1}"#;
        let err = SecretRecord::decode(bytes, "k").unwrap_err().to_string();
        assert!(!err.contains("s3cret"), "{err}");
        let err = SecretRecord::decode(
            br#"{"format":2,"version":1,"changed_at_ms":1,"changed_by":"x","removed":true}"#,
            "k",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown format 2"), "{err}");
    }
}
