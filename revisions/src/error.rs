//! Errors of the revision store and the embedded S3 endpoint.

use thiserror::Error;

/// What can go wrong while storing, reading or serving revision blobs.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A digest is not `sha256:` followed by 64 lowercase hex digits.
    #[error("invalid digest {0:?}: expected \"sha256:\" and 64 lowercase hex digits")]
    InvalidDigest(String),
    /// A tenant name is empty or has characters other than `[a-z0-9-]`.
    #[error("invalid tenant {0:?}: expected a non-empty name of [a-z0-9-]")]
    InvalidTenant(String),
    /// No object is stored under the key.
    #[error("no blob at {key}")]
    NotFound {
        /// The S3 key that was looked up.
        key: String,
    },
    /// The stored bytes do not hash to the digest they are stored under.
    #[error("blob is corrupt: expected {expected}, read {actual}")]
    DigestMismatch {
        /// The digest the blob was asked for by.
        expected: String,
        /// The digest of the bytes that were read.
        actual: String,
    },
    /// The endpoint refused the credentials or the request (HTTP 403).
    #[error("S3 access denied: {0}")]
    AccessDenied(String),
    /// The endpoint could not be reached or did not answer in time; the message carries the
    /// SDK's error with its whole source chain.
    #[error("S3 endpoint unavailable: {0}")]
    Unavailable(String),
    /// The endpoint answered an operation with an error not covered above.
    #[error("S3 {operation} failed: {message}")]
    Service {
        /// The S3 operation, e.g. `PutObject`.
        operation: &'static str,
        /// The SDK's error with its source chain.
        message: String,
    },
    /// The embedded endpoint could not start (data directory, listening socket, randomness).
    #[error("embedded S3 endpoint: {0}")]
    Embedded(String),
}
