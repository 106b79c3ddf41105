//! Revision blobs in S3: uploaded app revisions stored content-addressed through aws-sdk-s3,
//! and an embedded S3 endpoint (s3s + s3s-fs) for running without an S3 service.
//!
//! # Layout
//! - [`config`]: [`S3Config`] and the SDK client built from it (timeouts, retries, TLS).
//! - `digest`: sha256 digests, tenant names and the keys built from them (pure).
//! - [`revisions`]: [`RevisionStore`], put/get/list of blobs under
//!   `revisions/{tenant}/sha256/{hex}`.
//! - `classify`: the SDK's errors sorted into [`StorageError`]s.
//! - [`embedded`]: [`EmbeddedS3`], an S3 endpoint on loopback serving a directory.
//! - [`error`]: [`StorageError`], one variant per way things fail.

mod classify;
pub mod config;
mod digest;
pub mod embedded;
pub mod error;
pub mod revisions;

pub use config::S3Config;
pub use digest::content_digest;
pub use embedded::EmbeddedS3;
pub use error::StorageError;
pub use revisions::{RevisionStore, StoredBlob};
