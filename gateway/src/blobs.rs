//! Uploaded revision content, stored content-addressed (`sha256-{hex}`) in the JetStream
//! object store `neo_revisions`: the same content is stored once. (The Build Service issue
//! moves this to S3 behind the same interface.)

use async_nats::jetstream::{self, object_store};
use tonic::Status;

use crate::error::unavailable;

/// The object store bucket of revision content.
pub const REVISIONS_BUCKET: &str = "neo_revisions";

/// Content-addressed revision blobs.
#[derive(Clone)]
pub struct Blobs {
    store: object_store::ObjectStore,
}

impl Blobs {
    /// Opens (or creates) the bucket.
    ///
    /// # Errors
    /// A message when JetStream refuses.
    pub async fn open(client: &async_nats::Client) -> Result<Self, String> {
        let js = jetstream::new(client.clone());
        let store = match js.get_object_store(REVISIONS_BUCKET).await {
            Ok(s) => s,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: REVISIONS_BUCKET.into(),
                    description: Some("Neo revision content, keyed by sha256".into()),
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?,
        };
        Ok(Self { store })
    }

    /// Stores `content` under its digest `sha256:{hex}`, unless already there.
    ///
    /// # Errors
    /// `UNAVAILABLE` when the object store does not answer.
    pub async fn put(&self, digest: &str, content: &[u8]) -> Result<(), Status> {
        let name = digest.replace(':', "-");
        if self.store.info(&name).await.is_ok() {
            return Ok(());
        }
        let mut reader = content;
        self.store
            .put(name.as_str(), &mut reader)
            .await
            .map_err(|e| unavailable(format!("cannot store revision content: {e}")))?;
        Ok(())
    }
}
