//! The revision store: content-addressed blobs in an S3 bucket, read back verified.

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use tracing::{debug, info, warn};

use crate::classify::{Call, chain, classify, status};
use crate::config::{S3Config, sdk_config};
use crate::digest::{content_digest, digest_of_hash, revision_key, sha256, tenant_prefix};
use crate::error::StorageError;

/// Keys asked for per ListObjectsV2 page (S3's maximum).
const LIST_PAGE_SIZE: i32 = 1000;

/// A blob as stored by [`RevisionStore::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// The content's length in bytes.
    pub size: u64,
    /// The S3 key it is stored under.
    pub key: String,
    /// `false` when the same content was already stored.
    pub created: bool,
}

/// Revision blobs of all tenants in one bucket, under `revisions/{tenant}/sha256/{hex}`.
///
/// Cloning is cheap: clones share the SDK client and its connection pool.
#[derive(Debug, Clone)]
pub struct RevisionStore {
    client: Client,
    bucket: String,
    /// The endpoint, for error messages.
    endpoint: String,
}

impl RevisionStore {
    /// Connects and creates the bucket when it is missing.
    ///
    /// # Guarantees
    /// On success the bucket exists and the credentials were accepted for it.
    ///
    /// # Errors
    /// [`StorageError::Unavailable`] when the endpoint does not answer,
    /// [`StorageError::AccessDenied`] when it rejects the credentials,
    /// [`StorageError::Service`] for other refusals (e.g. a bucket name taken by someone else).
    pub async fn connect(config: &S3Config) -> Result<RevisionStore, StorageError> {
        let store = RevisionStore {
            client: Client::from_conf(sdk_config(config)),
            bucket: config.bucket.clone(),
            endpoint: config
                .endpoint
                .clone()
                .unwrap_or_else(|| format!("AWS S3 in {}", config.region)),
        };
        store.ensure_bucket(&config.region).await?;
        info!(bucket = %store.bucket, endpoint = ?config.endpoint, "revision store connected");
        Ok(store)
    }

    /// Creates the bucket unless HeadBucket finds it.
    async fn ensure_bucket(&self, region: &str) -> Result<(), StorageError> {
        let head = self.client.head_bucket().bucket(&self.bucket).send().await;
        let err = match head {
            Ok(_) => return Ok(()),
            Err(err) if status(&err) == Some(404) => err,
            Err(err) => return Err(classify(self.call("HeadBucket"), None, &err)),
        };
        debug!(bucket = %self.bucket, error = %chain(&err), "bucket missing, creating it");
        let mut create = self.client.create_bucket().bucket(&self.bucket);
        if region != "us-east-1" {
            let location = CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region))
                .build();
            create = create.create_bucket_configuration(location);
        }
        match create.send().await {
            Ok(_) => {
                info!(bucket = %self.bucket, "bucket created");
                Ok(())
            }
            // Someone else (another replica) created it in between.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(err) => Err(classify(self.call("CreateBucket"), None, &err)),
        }
    }

    /// Names a call for [`classify`].
    fn call(&self, operation: &'static str) -> Call<'_> {
        Call {
            operation,
            endpoint: &self.endpoint,
        }
    }

    /// The key a tenant's blob with `digest` is stored under: `revisions/{tenant}/sha256/{hex}`.
    ///
    /// # Errors
    /// [`StorageError::InvalidTenant`] unless `tenant` is non-empty `[a-z0-9-]`;
    /// [`StorageError::InvalidDigest`] unless `digest` is `sha256:` and 64 lowercase hex digits.
    pub fn key(tenant: &str, digest: &str) -> Result<String, StorageError> {
        revision_key(tenant, digest)
    }

    /// Stores content under its digest, unless the key already exists (HEAD first).
    ///
    /// # Guarantees
    /// Idempotent: storing the same content twice leaves one object and reports
    /// `created: false` the second time. The upload carries the sha256 so the endpoint can
    /// reject bytes damaged on the way.
    ///
    /// # Assumptions
    /// An object under a digest key holds that content; [`RevisionStore::get`] checks it.
    ///
    /// # Errors
    /// [`StorageError::InvalidTenant`], then those of the S3 calls (see [`StorageError`]).
    pub async fn put(&self, tenant: &str, content: Bytes) -> Result<StoredBlob, StorageError> {
        let hash = sha256(&content);
        let digest = digest_of_hash(&hash);
        let key = revision_key(tenant, &digest)?;
        let size = content.len() as u64;
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await;
        match head {
            Ok(existing) => {
                let stored_size = existing
                    .content_length()
                    .and_then(|n| u64::try_from(n).ok());
                if stored_size != Some(size) {
                    warn!(%key, size, ?stored_size, "stored blob has a different size than its content");
                }
                debug!(%key, size, "blob already stored");
                return Ok(StoredBlob {
                    digest,
                    size,
                    key,
                    created: false,
                });
            }
            Err(err) if status(&err) == Some(404) => {}
            Err(err) => return Err(classify(self.call("HeadObject"), Some(&key), &err)),
        }
        let length = i64::try_from(size).map_err(|_| StorageError::Service {
            operation: "PutObject",
            message: format!("content of {size} bytes is too large"),
        })?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_length(length)
            .content_type("application/octet-stream")
            .checksum_sha256(BASE64.encode(hash))
            .body(ByteStream::from(content))
            .send()
            .await
            .map_err(|err| classify(self.call("PutObject"), Some(&key), &err))?;
        info!(%key, size, "blob stored");
        Ok(StoredBlob {
            digest,
            size,
            key,
            created: true,
        })
    }

    /// Reads a blob and verifies its sha256 against `digest`.
    ///
    /// # Errors
    /// [`StorageError::InvalidTenant`] / [`StorageError::InvalidDigest`] for malformed input,
    /// [`StorageError::NotFound`] when no blob is stored under the key,
    /// [`StorageError::DigestMismatch`] when the stored bytes hash to something else,
    /// [`StorageError::Unavailable`] when the endpoint or the transfer fails.
    pub async fn get(&self, tenant: &str, digest: &str) -> Result<Bytes, StorageError> {
        let key = revision_key(tenant, digest)?;
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|err| classify(self.call("GetObject"), Some(&key), &err))?;
        let content = object
            .body
            .collect()
            .await
            .map_err(|err| {
                StorageError::Unavailable(format!(
                    "GetObject at {}: reading {key}: {}",
                    self.endpoint,
                    chain(&err)
                ))
            })?
            .into_bytes();
        let actual = content_digest(&content);
        if actual != digest {
            warn!(%key, %actual, "stored blob does not match its digest");
            return Err(StorageError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        debug!(%key, size = content.len(), "blob read");
        Ok(content)
    }

    /// Keys under `revisions/{tenant}/` in key order (paginated internally), for tests and
    /// tooling.
    ///
    /// # Errors
    /// [`StorageError::InvalidTenant`], then those of ListObjectsV2.
    pub async fn list(&self, tenant: &str) -> Result<Vec<String>, StorageError> {
        let prefix = tenant_prefix(tenant)?;
        let mut keys: Vec<String> = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&prefix)
                .max_keys(LIST_PAGE_SIZE)
                .set_continuation_token(continuation.take());
            // Stores that page without continuation tokens (s3s-fs) still honour StartAfter.
            if let Some(last) = keys.last() {
                request = request.start_after(last);
            }
            let page = request
                .send()
                .await
                .map_err(|err| classify(self.call("ListObjectsV2"), None, &err))?;
            let before = keys.len();
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            let progressed = keys.len() > before;
            continuation = page.next_continuation_token().map(str::to_owned);
            if !page.is_truncated().unwrap_or(false) || !progressed {
                break;
            }
        }
        Ok(keys)
    }
}
