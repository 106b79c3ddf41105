//! Build configuration and metadata in JetStream KV.
//!
//! - `neo_build_meta`, key `{tenant}.{build_id}`: one JSON document per build (the last
//!   attempt): worker, timings per step, bundle digest, bytes uploaded, outcome.
//! - `neo_build_config`, key `registry`: where workers push images, written by the platform at
//!   start so a worker started elsewhere needs only NATS and S3.

use std::collections::BTreeMap;
use std::time::Instant;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use crate::queue::BuildJob;
use crate::worker::Success;

/// The build metadata bucket.
pub const META_BUCKET: &str = "neo_build_meta";
/// The build configuration bucket.
pub const CONFIG_BUCKET: &str = "neo_build_config";

/// KV refused.
#[derive(Debug, thiserror::Error)]
#[error("build metadata: {0}")]
pub struct MetaError(pub String);

fn err(e: impl std::fmt::Display) -> MetaError {
    MetaError(e.to_string())
}

/// What one build attempt did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildMeta {
    /// The attempt.
    pub attempt: u32,
    /// The worker.
    pub worker: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339, empty while running.
    pub finished_at: String,
    /// succeeded or failed.
    pub outcome: String,
    /// Milliseconds per step: fetch, validate, resolve, compile, push.
    pub steps_ms: BTreeMap<String, f64>,
    /// The bundle layer's digest.
    pub bundle_digest: String,
    /// Bytes the push uploaded.
    pub uploaded_bytes: u64,
    /// The image, when built.
    pub image_ref: String,
}

impl BuildMeta {
    /// The metadata of an attempt that starts now.
    pub fn started(job: &BuildJob, worker: &str) -> Self {
        Self {
            attempt: job.attempt,
            worker: worker.to_owned(),
            started_at: now(),
            ..Self::default()
        }
    }

    /// Records the duration of `step`, which began at `since`.
    pub fn step(&mut self, step: &str, since: &Instant) {
        self.steps_ms
            .insert(step.to_owned(), since.elapsed().as_secs_f64() * 1e3);
    }

    /// Records the end of the attempt.
    pub fn finish(&mut self, outcome: &str, success: Option<&Success>) {
        self.finished_at = now();
        self.outcome = outcome.to_owned();
        if let Some(s) = success {
            self.image_ref.clone_from(&s.image_ref);
        }
    }
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Where workers push images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySettings {
    /// `host[:port]`.
    pub host: String,
    /// Plain HTTP.
    pub insecure: bool,
    /// Repository prefix.
    pub prefix: String,
}

async fn bucket(js: &jetstream::Context, name: &str, what: &str) -> Result<kv::Store, MetaError> {
    neo_client::streams::ensure_bucket(
        js,
        kv::Config {
            bucket: name.to_owned(),
            description: what.to_owned(),
            history: 5,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await
    .map_err(err)
}

/// The build metadata bucket.
#[derive(Clone)]
pub struct MetaStore {
    meta: kv::Store,
    config: kv::Store,
}

impl MetaStore {
    /// Opens (or creates) both buckets.
    ///
    /// # Errors
    /// When JetStream refuses.
    pub async fn open(js: &jetstream::Context) -> Result<Self, MetaError> {
        Ok(Self {
            meta: bucket(js, META_BUCKET, "Neo build metadata, per build").await?,
            config: bucket(js, CONFIG_BUCKET, "Neo build configuration").await?,
        })
    }

    /// Writes a build's metadata.
    ///
    /// # Errors
    /// When KV refuses.
    pub async fn put(
        &self,
        tenant: &str,
        build_id: &str,
        meta: &BuildMeta,
    ) -> Result<(), MetaError> {
        let value = serde_json::to_vec(meta).map_err(err)?;
        self.meta
            .put(format!("{tenant}.{build_id}"), value.into())
            .await
            .map_err(err)?;
        Ok(())
    }

    /// A build's metadata, if recorded.
    ///
    /// # Errors
    /// When KV refuses or the document is unreadable.
    pub async fn get(&self, tenant: &str, build_id: &str) -> Result<Option<BuildMeta>, MetaError> {
        match self
            .meta
            .get(format!("{tenant}.{build_id}"))
            .await
            .map_err(err)?
        {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(err),
            None => Ok(None),
        }
    }

    /// Publishes where workers push images, trying again (from 0.1 s, doubling up to 5 s) for
    /// as long as JetStream cannot store it: on a cluster, a bucket just created may refuse its
    /// first write ("no stream found") until every node knows its stream.
    ///
    /// # Errors
    /// When the settings cannot be written as JSON.
    pub async fn set_registry(&self, settings: &RegistrySettings) -> Result<(), MetaError> {
        let value: bytes::Bytes = serde_json::to_vec(settings).map_err(err)?.into();
        let longest = std::time::Duration::from_secs(5);
        let mut waits = neo_client::retry::doubling(std::time::Duration::from_millis(100), longest);
        while let Err(e) = self.config.put("registry", value.clone()).await {
            tracing::warn!(error = %e, "cannot publish the registry settings yet; trying again");
            tokio::time::sleep(waits.next().unwrap_or(longest)).await;
        }
        Ok(())
    }

    /// Where workers push images, if the platform published it.
    ///
    /// # Errors
    /// When KV refuses or the document is unreadable.
    pub async fn registry(&self) -> Result<Option<RegistrySettings>, MetaError> {
        match self.config.get("registry").await.map_err(err)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(err),
            None => Ok(None),
        }
    }
}
