//! A real S3 endpoint for tests: the embedded s3s endpoint on a free loopback port, serving a
//! temporary directory, and a revision store connected to it.

use anyhow::Context as _;
use neo_revisions::{EmbeddedS3, RevisionStore};
use tempfile::TempDir;

/// The bucket tests store revisions in.
pub const BUCKET: &str = "neo-revisions";

/// An S3 endpoint and a store using it; stopped when dropped.
pub struct S3 {
    /// The endpoint.
    pub server: EmbeddedS3,
    /// A store connected to it.
    pub store: RevisionStore,
    /// The directory it serves (removed last).
    pub dir: TempDir,
}

impl S3 {
    /// Starts the endpoint and connects a store (creating the bucket).
    pub async fn start() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("neo-s3-").tempdir()?;
        let server = EmbeddedS3::start(dir.path(), 0)
            .await
            .context("starting the embedded S3 endpoint")?;
        let store = RevisionStore::connect(&server.config(BUCKET))
            .await
            .context("connecting to the embedded S3 endpoint")?;
        Ok(Self { server, store, dir })
    }
}
