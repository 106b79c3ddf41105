//! A build worker: takes jobs from the work queue and turns a revision into an image.
//!
//! For each job: start (or take over) the attempt, fetch the revision from S3 and verify its
//! digest, validate the model, resolve each consumed entity to the producer's latest revision,
//! compile the bundle, push the image, and record success or failure with positioned
//! diagnostics. Every command id is derived from the build, attempt and step, so a worker that
//! retries a step after a crash or an outage does nothing twice. Output lines go to the build
//! log; timings and sizes to the build metadata bucket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use neo_client::{ClientError, PlatformClient};
use neo_image::{BaseImage, ImageSpec, Registry};
use neo_model::{self as model, Diagnostic, Model, compat};
use neo_protocol::pb::{self, BuildStatus, build_command::Command};
use neo_protocol::{AppName, EntityRef, TenantName};
use neo_revisions::{RevisionStore, StorageError};
use tokio::task::JoinHandle;

use crate::buildlog::BuildLog;
use crate::bundle;
use crate::meta::{BuildMeta, MetaStore};
use crate::project::Project;
use crate::queue::{self, BuildJob, QueueConfig};

/// What a worker needs.
#[derive(Clone)]
pub struct WorkerContext {
    /// NATS.
    pub nats: async_nats::Client,
    /// Revision content.
    pub revisions: RevisionStore,
    /// Where images go.
    pub registry: Arc<Registry>,
    /// The base layers.
    pub base: Arc<BaseImage>,
}

/// A worker's settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The worker's name, recorded in the build's events.
    pub name: String,
    /// Lease and retries.
    pub queue: QueueConfig,
    /// How long to wait for the platform to answer a command.
    pub command_timeout: Duration,
    /// A pause after each build step: zero in production; demos and failure tests use it to
    /// catch a build in the middle.
    pub step_delay: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: format!(
                "builder-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            queue: QueueConfig::default(),
            command_timeout: Duration::from_secs(10),
            step_delay: Duration::ZERO,
        }
    }
}

/// A worker could not start.
#[derive(Debug, thiserror::Error)]
#[error("build worker: {0}")]
pub struct WorkerError(pub String);

/// How one job ended.
enum Outcome {
    /// Recorded (success, failure or a stale job): acknowledge.
    Done,
    /// Something outside the build is down: let the job come back later.
    Retry(String),
}

/// Why a build attempt did not produce an image.
enum Failure {
    /// The build failed: record it.
    Build {
        reason: String,
        diagnostics: Vec<Diagnostic>,
    },
    /// A dependency (S3, the registry, the platform) is unavailable: retry the step.
    Transient(String),
    /// A dependency stayed unavailable for as long as the worker retries: the build fails
    /// with this reason (or, when the platform itself is out of reach, the job comes back).
    Outage(String),
}

impl Failure {
    fn build(reason: impl Into<String>) -> Self {
        Self::Build {
            reason: reason.into(),
            diagnostics: Vec::new(),
        }
    }
}

impl Failure {
    fn reason(&self) -> &str {
        match self {
            Self::Build { reason, .. } | Self::Transient(reason) | Self::Outage(reason) => reason,
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        if e.is_transient() {
            Self::Transient(e.to_string())
        } else {
            Self::build(e.to_string())
        }
    }
}

fn storage_failure(what: &str, e: StorageError) -> Failure {
    match e {
        StorageError::Unavailable(_) => Failure::Transient(format!("{what}: {e}")),
        e => Failure::build(format!("{what}: {e}")),
    }
}

/// Starts a worker pulling from the queue until the returned task is aborted. It re-attaches
/// after NATS outages.
///
/// # Errors
/// When the queue, the log stream or the metadata bucket cannot be set up.
pub async fn spawn(
    context: WorkerContext,
    config: WorkerConfig,
) -> Result<JoinHandle<()>, WorkerError> {
    let js = jetstream::new(context.nats.clone());
    queue::ensure(&js, config.queue)
        .await
        .map_err(|e| WorkerError(e.to_string()))?;
    crate::buildlog::ensure(&js).await.map_err(WorkerError)?;
    let meta = MetaStore::open(&js)
        .await
        .map_err(|e| WorkerError(e.to_string()))?;
    let worker = Arc::new(Worker {
        platform: PlatformClient::nats(context.nats.clone(), config.command_timeout),
        js,
        context,
        meta,
        config,
    });
    tracing::info!(worker = %worker.config.name, "build worker ready");
    Ok(tokio::spawn(async move {
        loop {
            if let Err(e) = worker.pull().await {
                tracing::warn!(worker = %worker.config.name, error = %e, "build worker detached; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
}

struct Worker {
    context: WorkerContext,
    platform: PlatformClient,
    js: jetstream::Context,
    meta: MetaStore,
    config: WorkerConfig,
}

impl Worker {
    async fn pull(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let consumer = queue::ensure(&self.js, self.config.queue).await?;
        loop {
            // One job at a time: a worker's lease covers exactly the job it is building.
            let Some(msg) = queue::next_job(&consumer, &self.context.nats).await? else {
                continue;
            };
            let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
            let outcome = match serde_json::from_slice::<BuildJob>(&msg.payload) {
                Ok(job) => self.with_lease(&msg, &job, delivered).await,
                Err(e) => {
                    tracing::error!(subject = %msg.subject, error = %e, "dropping an unreadable build job");
                    Outcome::Done
                }
            };
            match outcome {
                Outcome::Done => msg.double_ack().await?,
                Outcome::Retry(reason) => {
                    tracing::warn!(worker = %self.config.name, %reason, "build interrupted; it will be retried");
                    msg.ack_with(AckKind::Nak(Some(Duration::from_secs(2))))
                        .await?;
                }
            }
        }
    }

    /// Runs `step` until it succeeds or fails for good. An outage (a transient failure) is
    /// retried with backoff for the queue's `retry_for` (see [`Self::wait_out`]).
    async fn through_outages<T, F, Fut>(
        &self,
        what: &str,
        log: Option<&BuildLog>,
        mut step: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut outage = Outage::new(self.config.queue.retry_for);
        loop {
            match step().await {
                Err(Failure::Transient(reason)) => {
                    self.wait_out(&mut outage, what, reason, log).await?;
                }
                other => return other,
            }
        }
    }

    /// One wait of a step retried through an outage: notes the reason (in `log` too, so the
    /// user following the build sees it) and sleeps the next delay. When the delays are spent,
    /// the outage is the failure ([`Failure::Outage`]).
    async fn wait_out(
        &self,
        outage: &mut Outage,
        what: &str,
        reason: String,
        log: Option<&BuildLog>,
    ) -> Result<(), Failure> {
        let Some(delay) = outage.delays.next() else {
            return Err(Failure::Outage(format!(
                "{what}: {reason} (retried for {} s)",
                outage.started.elapsed().as_secs()
            )));
        };
        tracing::warn!(worker = %self.config.name, %reason, ?delay, "{what}: outage; retrying");
        if let Some(log) = log {
            log.line(
                "warn",
                format!("{what}: {reason}; retrying in {:.1} s", delay.as_secs_f64()),
            )
            .await;
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Runs the job while reporting progress, so the lease stays ours while we work.
    async fn with_lease(
        &self,
        msg: &jetstream::Message,
        job: &BuildJob,
        delivered: i64,
    ) -> Outcome {
        let interval = (self.config.queue.lease / 3).max(Duration::from_millis(100));
        let heartbeat = async {
            #[allow(clippy::infinite_loop)]
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = msg.ack_with(AckKind::Progress).await {
                    tracing::warn!(error = %e, "cannot extend the build lease");
                }
            }
        };
        tokio::select! {
            outcome = self.run_job(job, delivered) => outcome,
            never = heartbeat => never,
        }
    }

    async fn run_job(&self, job: &BuildJob, delivered: i64) -> Outcome {
        let entity = match build_entity(job) {
            Ok(e) => e,
            Err(reason) => {
                tracing::error!(build = %job.build_id, %reason, "dropping a malformed build job");
                return Outcome::Done;
            }
        };
        let read = self
            .through_outages("reading the build", None, || async {
                Ok(self.platform.state::<pb::BuildState>(&entity).await?)
            })
            .await;
        let state = match read {
            Ok((state, _)) => state,
            Err(e) => return Outcome::Retry(e.reason().to_owned()),
        };
        let status = state.status();
        let live = matches!(status, BuildStatus::Requested | BuildStatus::Started);
        if state.attempt != job.attempt || !live {
            tracing::info!(build = %job.build_id, attempt = job.attempt, status = ?status,
                "skipping a job whose attempt is over");
            return Outcome::Done;
        }
        let log = BuildLog::new(self.js.clone(), &job.tenant, &job.build_id, job.attempt);
        let id = |step: &str| {
            format!(
                "build:{}:{}:{}:{step}",
                job.tenant, job.build_id, job.attempt
            )
        };
        if delivered >= self.config.queue.max_deliveries {
            let reason = format!(
                "abandoned: the workers building attempt {} lost their lease {} times",
                job.attempt,
                delivered - 1
            );
            log.end("error", &reason).await;
            let fail = fail_command(job.attempt, reason, Vec::new());
            return self.record(&entity, &id("abandon"), job, &fail).await;
        }
        let takeover = status == BuildStatus::Started;
        let start = Command::Start(pb::StartBuild {
            attempt: job.attempt,
            worker: self.config.name.clone(),
            takeover,
        });
        let start_id = id(&format!("start-{delivered}"));
        let started = self
            .through_outages("starting the build", Some(&log), || async {
                self.platform
                    .command(
                        &entity,
                        &start_id,
                        &cause(job),
                        &self.principal(),
                        &command(start.clone()),
                    )
                    .await
                    .map_err(Failure::from)
            })
            .await;
        match started {
            Ok(_) => {}
            Err(Failure::Build { reason, .. }) => {
                tracing::warn!(build = %job.build_id, %reason, "cannot start the build; dropping the job");
                return Outcome::Done;
            }
            Err(e) => return Outcome::Retry(e.reason().to_owned()),
        }
        if takeover {
            log.line(
                "warn",
                format!(
                    "{} takes over: the previous worker lost its lease",
                    self.config.name
                ),
            )
            .await;
        }
        log.line(
            "info",
            format!(
                "{} builds {} revision {} (attempt {})",
                self.config.name, job.app, job.revision, job.attempt
            ),
        )
        .await;
        let started = Instant::now();
        let mut meta = BuildMeta::started(job, &self.config.name);
        let mut outage = Outage::new(self.config.queue.retry_for);
        let result = loop {
            match self.build(job, &log, &mut meta).await {
                Err(Failure::Transient(reason)) => {
                    if let Err(e) = self
                        .wait_out(&mut outage, "building", reason, Some(&log))
                        .await
                    {
                        break Err(e);
                    }
                }
                other => break other,
            }
        };
        let (cmd, outcome_line) = match result {
            Ok(success) => {
                let line = format!("attempt {} succeeded", job.attempt);
                meta.finish("succeeded", Some(&success));
                (
                    command(Command::Succeed(pb::SucceedBuild {
                        attempt: job.attempt,
                        image_digest: success.image_digest,
                        image_ref: success.image_ref,
                        dependencies: success.dependencies,
                        exposes: success.exposes,
                        needs: Some(success.needs),
                        entities: success.entities,
                    })),
                    ("info", line),
                )
            }
            Err(Failure::Transient(reason) | Failure::Outage(reason)) => {
                meta.finish("failed", None);
                let line = format!("attempt {} failed: {reason}", job.attempt);
                (
                    fail_command(job.attempt, reason, Vec::new()),
                    ("error", line),
                )
            }
            Err(Failure::Build {
                reason,
                diagnostics,
            }) => {
                for d in &diagnostics {
                    log.line("error", d.to_string()).await;
                }
                meta.finish("failed", None);
                let line = format!("attempt {} failed: {reason}", job.attempt);
                (
                    fail_command(job.attempt, reason, diagnostics),
                    ("error", line),
                )
            }
        };
        if let Err(e) = self.meta.put(&job.tenant, &job.build_id, &meta).await {
            tracing::warn!(build = %job.build_id, error = %e, "cannot write build metadata");
        }
        let outcome = self.record(&entity, &id("finish"), job, &cmd).await;
        if matches!(outcome, Outcome::Done) {
            let m = neo_telemetry::metrics::global();
            let ended = if meta.outcome == "succeeded" {
                "succeeded"
            } else {
                "failed"
            };
            m.builds
                .get_or_create(&neo_telemetry::metrics::OutcomeLabel { outcome: ended })
                .inc();
            m.build_seconds.observe(started.elapsed().as_secs_f64());
        }
        if matches!(outcome, Outcome::Done) {
            log.end(outcome_line.0, outcome_line.1).await;
        }
        outcome
    }

    async fn pause(&self) {
        if !self.config.step_delay.is_zero() {
            tokio::time::sleep(self.config.step_delay).await;
        }
    }

    fn principal(&self) -> String {
        format!("worker:{}", self.config.name)
    }

    async fn record(
        &self,
        entity: &EntityRef,
        id: &str,
        job: &BuildJob,
        cmd: &pb::BuildCommand,
    ) -> Outcome {
        let recorded = self
            .through_outages("recording the outcome", None, || async {
                self.platform
                    .command(entity, id, &cause(job), &self.principal(), cmd)
                    .await
                    .map_err(Failure::from)
            })
            .await;
        match recorded {
            Ok(_) => Outcome::Done,
            Err(Failure::Build { reason, .. }) => {
                tracing::warn!(%entity, %reason, "the build refused the outcome");
                Outcome::Done
            }
            Err(e) => Outcome::Retry(e.reason().to_owned()),
        }
    }

    async fn build(
        &self,
        job: &BuildJob,
        log: &BuildLog,
        meta: &mut BuildMeta,
    ) -> Result<Success, Failure> {
        let clock = Instant::now();
        let content = self
            .context
            .revisions
            .get(&job.tenant, &job.revision_digest)
            .await
            .map_err(|e| storage_failure("cannot read the revision", e))?;
        let project = Project::unpack(&content)
            .map_err(|e| Failure::build(format!("the revision is not a packed project: {e}")))?;
        log.line(
            "info",
            format!(
                "fetched {} ({} bytes, {} files)",
                job.revision_digest,
                content.len(),
                project.files().len()
            ),
        )
        .await;
        meta.step("fetch", &clock);
        self.pause().await;

        let clock = Instant::now();
        let model = model::load(&project).map_err(|diagnostics| Failure::Build {
            reason: format!("the model has {} error(s)", diagnostics.len()),
            diagnostics,
        })?;
        log.line(
            "info",
            format!(
                "model valid: {} entities, {} screens, {} consumed",
                model.entities.len(),
                model.screens.len(),
                model.consumes.len()
            ),
        )
        .await;
        meta.step("validate", &clock);
        self.pause().await;

        let clock = Instant::now();
        let dependencies = self.resolve(job, &model, log).await?;
        meta.step("resolve", &clock);

        let clock = Instant::now();
        let bundle = bundle::compile(&model, &project, &dependencies);
        let layer = bundle.layer();
        log.line(
            "info",
            format!(
                "compiled bundle: {} files, layer {} ({} bytes)",
                bundle.files().len(),
                layer.digest,
                layer.tar_gz.len()
            ),
        )
        .await;
        meta.step("compile", &clock);
        self.pause().await;
        meta.bundle_digest.clone_from(&layer.digest);

        let clock = Instant::now();
        let spec = ImageSpec {
            tenant: &job.tenant,
            app: &job.app,
            revision: job.revision,
            revision_digest: &job.revision_digest,
        };
        let pushed = self
            .context
            .registry
            .push_app(&spec, &self.context.base, &layer)
            .await
            .map_err(|e| Failure::Transient(e.to_string()))?;
        log.line(
            "info",
            format!(
                "pushed {} ({} bytes uploaded)",
                pushed.reference, pushed.uploaded_bytes
            ),
        )
        .await;
        meta.step("push", &clock);
        meta.uploaded_bytes = pushed.uploaded_bytes;
        Ok(Success {
            image_digest: pushed.digest,
            image_ref: pushed.reference,
            dependencies,
            exposes: model.exposes(),
            needs: model.needs(),
            entities: model.schema(),
        })
    }

    /// Resolves every consumed entity to the producer's latest revision. All problems are
    /// reported together.
    async fn resolve(
        &self,
        job: &BuildJob,
        model: &Model,
        log: &BuildLog,
    ) -> Result<Vec<pb::Dependency>, Failure> {
        let mut producers: BTreeMap<String, Result<(u32, Vec<pb::ExposedEntity>), String>> =
            BTreeMap::new();
        let mut dependencies = Vec::new();
        let mut diagnostics = Vec::new();
        for consume in &model.consumes {
            if !producers.contains_key(&consume.app) {
                let producer = self.producer(&job.tenant, &consume.app).await?;
                producers.insert(consume.app.clone(), producer);
            }
            match producers.get(&consume.app) {
                Some(Ok((revision, exposes))) => {
                    match compat::resolve(consume, *revision, exposes) {
                        Ok(dependency) => {
                            log.line(
                                "info",
                                format!(
                                    "{} uses {}.{} from revision {}",
                                    job.app, consume.app, consume.entity, revision
                                ),
                            )
                            .await;
                            dependencies.push(dependency);
                        }
                        Err(d) => diagnostics.push(d),
                    }
                }
                Some(Err(reason)) => diagnostics.push(consume.at.diagnostic(reason.clone())),
                None => {}
            }
        }
        if diagnostics.is_empty() {
            Ok(dependencies)
        } else {
            Err(Failure::Build {
                reason: format!(
                    "{} consumed entit{} cannot be resolved",
                    diagnostics.len(),
                    if diagnostics.len() == 1 { "y" } else { "ies" }
                ),
                diagnostics,
            })
        }
    }

    /// The latest revision of `app` and what it exposes, or why it cannot be used.
    async fn producer(
        &self,
        tenant: &str,
        app: &str,
    ) -> Result<Result<(u32, Vec<pb::ExposedEntity>), String>, Failure> {
        let (Ok(t), Ok(a)) = (TenantName::new(tenant), AppName::new(app)) else {
            return Ok(Err(format!("`{app}` is not a valid app name")));
        };
        let (state, _) = self
            .platform
            .state::<pb::AppState>(&EntityRef::app(&t, &a))
            .await?;
        let Some(latest) = state.revisions.last().filter(|_| state.exists) else {
            return Ok(Err(format!(
                "app `{app}` does not exist in tenant `{tenant}` or has no revision"
            )));
        };
        let content = self
            .context
            .revisions
            .get(tenant, &latest.digest)
            .await
            .map_err(|e| storage_failure("cannot read a producer's revision", e))?;
        let producer = Project::unpack(&content)
            .map_err(|e| e.to_string())
            .and_then(|p| {
                model::load(&p).map_err(|d| {
                    format!(
                        "app `{app}` revision {} has an invalid model ({} error(s))",
                        latest.number,
                        d.len()
                    )
                })
            });
        Ok(producer.map(|m| (latest.number, m.exposes())))
    }
}

/// What a successful build produced.
pub struct Success {
    /// The manifest digest.
    pub image_digest: String,
    /// `host/repo@digest`.
    pub image_ref: String,
    /// The resolved dependencies.
    pub dependencies: Vec<pb::Dependency>,
    /// What the revision exposes.
    pub exposes: Vec<pb::ExposedEntity>,
    /// What it needs from a stage (settings without a default, secrets).
    pub needs: pb::ConfigNeeds,
    /// Every entity with its fields and types.
    pub entities: Vec<pb::ExposedEntity>,
}

/// An outage a step is being retried through: when it began, and the delays left.
struct Outage {
    started: Instant,
    delays: Box<dyn Iterator<Item = Duration> + Send>,
}

impl Outage {
    fn new(retry_for: Duration) -> Self {
        Self {
            started: Instant::now(),
            delays: Box::new(crate::outage::delays(retry_for)),
        }
    }
}

/// The causation of a worker's commands: the `BuildRequested` event of its job.
fn cause(job: &BuildJob) -> String {
    if job.requested_sequence == 0 {
        String::new()
    } else {
        format!("evt:{}", job.requested_sequence)
    }
}

fn build_entity(job: &BuildJob) -> Result<EntityRef, String> {
    EntityRef::parse(&job.tenant, "build", &job.build_id).map_err(|e| e.to_string())
}

fn command(command: Command) -> pb::BuildCommand {
    pb::BuildCommand {
        command: Some(command),
    }
}

fn fail_command(attempt: u32, reason: String, diagnostics: Vec<Diagnostic>) -> pb::BuildCommand {
    command(Command::Fail(pb::FailBuild {
        attempt,
        reason,
        diagnostics: diagnostics.into_iter().map(Into::into).collect(),
    }))
}
