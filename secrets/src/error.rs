//! [`SecretsError`]: every way the secrets store fails; no variant ever carries a value or key bytes.

use std::path::PathBuf;

use neo_protocol::NameError;

/// Why a secrets operation failed.
///
/// Messages name tenants, apps, stages, secret names, versions, files and key ids: never a
/// secret value, a data key or a key-encryption key, in clear or encoded. Errors from parsers
/// that could quote their input (serde, base64) are reduced to a position or a category before
/// they get here.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// A tenant, app, stage, secret name or principal was refused.
    #[error(transparent)]
    Name(#[from] NameError),

    /// A key-encryption key could not be read from its file.
    #[error("key-encryption key file `{path}`: {reason}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong (never the file's content).
        reason: String,
    },

    /// A key-encryption key could not be read from an environment variable.
    #[error("key-encryption key in environment variable `{var}`: {reason}")]
    KeyEnv {
        /// The variable.
        var: String,
        /// What was wrong (never the variable's content).
        reason: String,
    },

    /// The system's random number generator or the cipher failed.
    #[error("cryptography failed: {0}")]
    Crypto(String),

    /// A secret value is larger than the store accepts.
    #[error("the value of secret `{key}` is {len} bytes; the limit is {max}")]
    ValueTooLarge {
        /// The secret's key (`{tenant}.{app}.{stage}.{name}`).
        key: String,
        /// The value's length.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A tenant's data key was sealed with a key-encryption key that the keyring does not hold.
    #[error(
        "the data key of tenant `{tenant}` (version {dek_version}) was sealed with \
         key-encryption key {kek_id}, which this keyring does not hold (it holds {held})"
    )]
    UnknownKek {
        /// The tenant.
        tenant: String,
        /// The data key version.
        dek_version: u32,
        /// The id of the key-encryption key that sealed it.
        kek_id: String,
        /// The ids the keyring holds, comma-separated.
        held: String,
    },

    /// A data key did not open under the key-encryption key with the id it names.
    #[error(
        "the data key of tenant `{tenant}` (version {dek_version}), sealed with key-encryption \
         key {kek_id}, failed authentication: the key file is not the one that sealed it, or \
         the record was altered"
    )]
    KekAuthentication {
        /// The tenant.
        tenant: String,
        /// The data key version.
        dek_version: u32,
        /// The id of the key-encryption key tried.
        kek_id: String,
    },

    /// The tenant's data key was destroyed (crypto-shredded): its secrets are unreadable.
    #[error("tenant `{tenant}`'s data key was destroyed; its secrets are unreadable")]
    DataKeyDestroyed {
        /// The tenant.
        tenant: String,
    },

    /// The tenant has no data key yet (it never had a secret), so there is nothing to rotate.
    #[error("tenant `{tenant}` has no data key yet (it has never had a secret)")]
    NoDataKey {
        /// The tenant.
        tenant: String,
    },

    /// A secret names a data key version that the tenant's key record no longer holds.
    #[error(
        "secret `{key}` is sealed with data key version {dek_version} of tenant `{tenant}`, \
         which no longer exists; the secret is unreadable"
    )]
    DataKeyVersionMissing {
        /// The tenant.
        tenant: String,
        /// The secret's key (`{tenant}.{app}.{stage}.{name}`).
        key: String,
        /// The missing version.
        dek_version: u32,
    },

    /// A secret's ciphertext did not open under its data key.
    #[error(
        "secret `{key}` (version {version}) failed authentication: the record was altered or \
         moved, or its data key is not the one that sealed it"
    )]
    SecretAuthentication {
        /// The secret's key (`{tenant}.{app}.{stage}.{name}`).
        key: String,
        /// The secret's version.
        version: u64,
    },

    /// A stored record could not be understood.
    #[error("record `{key}` in bucket `{bucket}` is malformed: {reason}")]
    Corrupt {
        /// The bucket.
        bucket: &'static str,
        /// The key.
        key: String,
        /// What was wrong (a category and position, never content).
        reason: String,
    },

    /// Other writers kept changing the same record; the operation gave up.
    #[error(
        "`{key}` in bucket `{bucket}` kept changing under concurrent writers; gave up after {attempts} attempts"
    )]
    Conflict {
        /// The bucket.
        bucket: &'static str,
        /// The key.
        key: String,
        /// How many attempts were made.
        attempts: u32,
    },

    /// JetStream failed (connection, timeout, server error).
    #[error("JetStream {op} failed: {reason}")]
    JetStream {
        /// What was being done.
        op: String,
        /// The client's error.
        reason: String,
    },

    /// A secrets request over NATS failed or timed out.
    #[error("secrets request on `{subject}` failed: {reason}")]
    Request {
        /// The request subject.
        subject: String,
        /// What went wrong.
        reason: String,
    },

    /// The secrets service answered a request with an error.
    #[error("the secrets service refused the request on `{subject}`: {message}")]
    Remote {
        /// The request subject.
        subject: String,
        /// The service's error message.
        message: String,
    },
}

impl SecretsError {
    /// A [`SecretsError::JetStream`] for `op` from any displayable client error.
    pub(crate) fn js<E: std::fmt::Display>(op: impl Into<String>) -> impl FnOnce(E) -> Self {
        let op = op.into();
        move |err: E| SecretsError::JetStream {
            op,
            reason: err.to_string(),
        }
    }
}

/// Describes a serde_json error without quoting the input (its message may hold fragments of
/// it): the category and position only.
pub(crate) fn json_reason(err: &serde_json::Error) -> String {
    let category = match err.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "unexpected fields or types",
        serde_json::error::Category::Eof => "truncated",
    };
    format!("{category} at line {} column {}", err.line(), err.column())
}
