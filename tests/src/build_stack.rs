//! The whole Build Service for end-to-end tests, on real servers: nats-server, Postgres (read
//! models), docker-registry, the embedded S3 endpoint, the platform with its publish reactors
//! and build enqueuer, build workers, and the gateway with impact analysis.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_actors::projections::Projections;
use neo_actors::reactor;
use neo_builder::queue::QueueConfig;
use neo_builder::worker::{self, WorkerConfig, WorkerContext};
use neo_gateway::api;
use neo_harness::{PostgresServer, RegistryServer};
use neo_image::{BaseImage, Registry, RegistryConfig};
use neo_model::impact::Consumers;
use tokio::task::JoinHandle;

use crate::gateway::Stack;

/// Repository prefix in the test registry.
pub const PREFIX: &str = "neo";

/// Every server and task of the Build Service; all stopped when dropped.
pub struct BuildStack {
    /// NATS, the platform, the gateway, S3.
    pub stack: Stack,
    /// The read models' Postgres.
    pub postgres: PostgresServer,
    /// The read models.
    pub projections: Arc<Projections>,
    /// The OCI registry.
    pub registry: RegistryServer,
    /// A registry client (for pulling images back).
    pub images: Arc<Registry>,
    /// The base layers workers build on.
    pub base: Arc<BaseImage>,
    /// Reactors, enqueuer, projection runner, in-process workers.
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for BuildStack {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A small stand-in for the apphost binary as the base layer (tests check the bundle layer;
/// the runtime tests use the real apphost).
pub fn base_image() -> anyhow::Result<BaseImage> {
    let dir = std::env::temp_dir().join("neo-test-apphost");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("apphost");
    std::fs::write(&path, b"#!/bin/sh\necho apphost\n")?;
    Ok(BaseImage::from_apphost(&path)?)
}

/// An example app's folder.
pub fn example(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../examples")
    .join(name)
}

/// A copy of example `name` with its manifest edited by `edit`.
///
/// # Errors
/// When the example cannot be read or the copy written.
pub fn edited(name: &str, edit: impl Fn(String) -> String) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let project = neo_builder::project::Project::from_dir(&example(name))?;
    for (path, content) in project.files() {
        let target = dir.path().join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let content = if path == "neo.toml" {
            edit(String::from_utf8(content.clone())?).into_bytes()
        } else {
            content.clone()
        };
        std::fs::write(target, content)?;
    }
    Ok(dir)
}

impl BuildStack {
    /// Starts everything, with `workers` build workers in this process.
    pub async fn start(workers: usize) -> anyhow::Result<Self> {
        Self::start_with(workers, QueueConfig::default()).await
    }

    /// Starts everything with the given queue settings.
    pub async fn start_with(workers: usize, queue: QueueConfig) -> anyhow::Result<Self> {
        Self::start_on(workers, queue, base_image()?).await
    }

    /// Starts everything, building images on `base`; desired podgroups are published for
    /// agents (the Runtime streams exist).
    pub async fn start_on(
        workers: usize,
        queue: QueueConfig,
        base: BaseImage,
    ) -> anyhow::Result<Self> {
        Self::start_on_core(crate::Core::start().await?, workers, queue, base).await
    }

    /// Like [`BuildStack::start_on`] on `core` (secured: each component as its own user).
    pub async fn start_on_core(
        core: crate::Core,
        workers: usize,
        queue: QueueConfig,
        base: BaseImage,
    ) -> anyhow::Result<Self> {
        let postgres = PostgresServer::start().await?;
        postgres.create_database("neo").await?;
        let projections = Arc::new(Projections::connect(&postgres.url("neo")).await?);
        let consumers: Arc<dyn Consumers> = projections.clone();
        let stack = Stack::start_on_core(core, Some(consumers)).await?;
        let registry = RegistryServer::start().await?;
        let images = Arc::new(Registry::new(RegistryConfig {
            host: registry.host(),
            insecure: true,
            prefix: PREFIX.into(),
            credentials: None,
        }));
        let base = Arc::new(base);
        let platform = stack.platform.platform.clone();
        let js = stack.platform.store.context().clone();
        neo_runtime_agent::streams::ensure(&js, neo_runtime_agent::streams::Retention::default())
            .await?;
        let mut tasks = reactor::run_platform(&js, &platform);
        tasks.push(neo_builder::queue::run_enqueuer(js.clone()));
        tasks.push(projections.run(js.clone()));
        let mut this = Self {
            stack,
            postgres,
            projections,
            registry,
            images,
            base,
            tasks: Vec::new(),
        };
        for _ in 0..workers {
            tasks.push(this.worker(queue, Duration::ZERO).await?);
        }
        this.tasks = tasks;
        Ok(this)
    }

    /// Starts one more in-process worker.
    pub async fn worker(
        &self,
        queue: QueueConfig,
        step_delay: Duration,
    ) -> anyhow::Result<JoinHandle<()>> {
        let context = WorkerContext {
            nats: self.stack.core.connect_as("build-worker").await?,
            revisions: self.stack.s3.store.clone(),
            registry: self.images.clone(),
            base: self.base.clone(),
        };
        let config = WorkerConfig {
            queue,
            step_delay,
            ..WorkerConfig::default()
        };
        Ok(worker::spawn(context, config).await?)
    }

    /// Publishes a folder to the tenant's first stage and collects every progress message.
    pub async fn publish(
        &self,
        token: &str,
        tenant: &str,
        dir: &Path,
    ) -> anyhow::Result<Vec<api::PublishProgress>> {
        let project = neo_builder::project::Project::from_dir(dir)?;
        let model = neo_model::load(&project)
            .map_err(|d| anyhow::anyhow!("example does not load: {d:?}"))?;
        self.publish_bytes(token, tenant, &model.name, project.pack())
            .await
    }

    /// Publishes a folder to the tenant's first stage: its `Deployed` step.
    ///
    /// # Errors
    /// When the publish fails, or ends without deploying (every step in the error).
    pub async fn publish_deployed(
        &self,
        token: &str,
        tenant: &str,
        dir: &Path,
    ) -> anyhow::Result<api::PublishProgress> {
        let progress = self.publish(token, tenant, dir).await?;
        step(&progress, api::PublishStep::Deployed)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("{} not deployed: {progress:#?}", dir.display()))
    }

    /// Publishes packed content as `app`.
    pub async fn publish_bytes(
        &self,
        token: &str,
        tenant: &str,
        app: &str,
        content: Vec<u8>,
    ) -> anyhow::Result<Vec<api::PublishProgress>> {
        publish_to(&self.stack, token, tenant, app, content).await
    }
}

/// Publishes packed content as `app` through `stack`'s gateway to the tenant's first stage and
/// collects every progress message (a free function, so a test can restart the stack's other
/// servers meanwhile).
pub async fn publish_to(
    stack: &Stack,
    token: &str,
    tenant: &str,
    app: &str,
    content: Vec<u8>,
) -> anyhow::Result<Vec<api::PublishProgress>> {
    publish_with(stack.apps(token), tenant, app, content).await
}

/// Publishes packed content as `app` with `client` (an authorised `Apps` client) to the
/// tenant's first stage and collects every progress message.
pub async fn publish_with(
    mut client: api::apps_client::AppsClient<crate::gateway::Authed>,
    tenant: &str,
    app: &str,
    content: Vec<u8>,
) -> anyhow::Result<Vec<api::PublishProgress>> {
    let mut messages = vec![api::PublishRequest {
        part: Some(api::publish_request::Part::Header(api::PublishHeader {
            tenant: tenant.into(),
            app: app.into(),
            message: "published by a test".into(),
            stage: String::new(),
        })),
    }];
    for chunk in content.chunks(64 * 1024) {
        messages.push(api::PublishRequest {
            part: Some(api::publish_request::Part::Chunk(chunk.to_vec().into())),
        });
    }
    let mut stream = client
        .publish(futures::stream::iter(messages))
        .await?
        .into_inner();
    let mut progress = Vec::new();
    let deadline = Duration::from_secs(60);
    while let Some(p) = tokio::time::timeout(deadline, stream.message())
        .await
        .context("publish progress stalled")??
    {
        progress.push(p);
    }
    Ok(progress)
}

/// The progress message of `step`, if any.
pub fn step(
    progress: &[api::PublishProgress],
    step: api::PublishStep,
) -> Option<&api::PublishProgress> {
    progress.iter().find(|p| p.step == step as i32)
}
