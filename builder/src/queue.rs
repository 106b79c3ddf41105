//! The build work queue: JetStream stream `NEO_BUILD_QUEUE` (work-queue retention) of build
//! jobs, and the enqueuer that fills it from `BuildRequested` events.
//!
//! A job is taken by one worker of the durable pull consumer `build-workers`. The worker holds a
//! lease of [`QueueConfig::lease`]: it reports progress while it builds; a worker that dies stops
//! reporting, the lease runs out, and the job is delivered to another worker, which takes the
//! started attempt over. After [`QueueConfig::max_deliveries`] lost leases the build is failed,
//! so no build stays "started" forever. An outage of what a build needs (S3, the registry, the
//! platform) is no lost lease: the worker keeps the lease and retries with backoff for
//! [`QueueConfig::retry_for`] before it fails the build naming the outage.
//!
//! A worker waits for its next job with [`next_job`]: a long poll that the server ends after
//! [`PULL_EXPIRY`], renewed, and made again after a reconnection (a restarted server never saw
//! the old pull), so an idle worker costs one request per period and never waits for ever.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use neo_protocol::pb::{self, build_event::Event};
use neo_protocol::{EntityKind, subjects};
use prost::Message;
use serde::{Deserialize, Serialize};

/// The work-queue stream.
pub const QUEUE_STREAM: &str = "NEO_BUILD_QUEUE";
/// Its subjects: `neo.buildq.{tenant}.{build_id}`.
pub const QUEUE_SUBJECTS: &str = "neo.buildq.>";
/// The durable consumer every worker pulls from.
pub const WORKERS_CONSUMER: &str = "build-workers";
/// The durable consumer of `BuildRequested` events that enqueues jobs.
pub const ENQUEUER_CONSUMER: &str = "build-enqueuer";

/// The subject of one build's job.
pub fn job_subject(tenant: &str, build_id: &str) -> String {
    format!("neo.buildq.{tenant}.{build_id}")
}

/// One build to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildJob {
    /// The tenant.
    pub tenant: String,
    /// `{app}_r{revision}`.
    pub build_id: String,
    /// The app.
    pub app: String,
    /// The revision.
    pub revision: u32,
    /// The model's content digest.
    pub revision_digest: String,
    /// The attempt the job is for.
    pub attempt: u32,
    /// The stream sequence of the `BuildRequested` event: the cause of the worker's commands.
    #[serde(default)]
    pub requested_sequence: u64,
}

/// Lease and retry settings of the queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueConfig {
    /// How long a worker may go without reporting progress before its job is redelivered.
    pub lease: Duration,
    /// Deliveries of one job before the build is failed (the last delivery fails it).
    pub max_deliveries: i64,
    /// How long a worker retries a build through an outage of S3, the registry or the platform
    /// (with backoff, keeping its lease) before it fails the build with the outage as reason.
    pub retry_for: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            max_deliveries: 4,
            retry_for: Duration::from_secs(600),
        }
    }
}

/// How long one pull for a job waits on the server before it is renewed.
pub const PULL_EXPIRY: Duration = Duration::from_secs(30);

/// How often a waiting pull checks whether the client reconnected meanwhile (a local counter,
/// no network).
const RECONNECT_CHECK: Duration = Duration::from_secs(1);

/// Waits for the next job on `consumer`: a pull of one message that expires after
/// [`PULL_EXPIRY`]. `None` when it expired with no job, or when `client` reconnected while it
/// waited (the server that had the pull is gone): the caller pulls again.
///
/// # Errors
/// When the pull cannot be sent or the server answers it with an error.
pub async fn next_job(
    consumer: &jetstream::consumer::PullConsumer,
    client: &async_nats::Client,
) -> Result<Option<jetstream::Message>, QueueError> {
    let stats = client.statistics();
    let connects = stats.connects.load(Ordering::Relaxed);
    let mut batch = consumer
        .batch()
        .max_messages(1)
        .expires(PULL_EXPIRY)
        .messages()
        .await
        .map_err(err)?;
    let reconnected = async {
        loop {
            tokio::time::sleep(RECONNECT_CHECK).await;
            if stats.connects.load(Ordering::Relaxed) != connects {
                return;
            }
        }
    };
    tokio::select! {
        msg = batch.next() => msg.transpose().map_err(err),
        () = reconnected => {
            tracing::info!("reconnected to NATS; pulling for a build job again");
            Ok(None)
        }
    }
}

/// JetStream refused to set up or use the queue.
#[derive(Debug, thiserror::Error)]
#[error("build queue: {0}")]
pub struct QueueError(pub String);

fn err(e: impl std::fmt::Display) -> QueueError {
    QueueError(e.to_string())
}

/// Creates (or updates) the queue stream and the workers' consumer.
///
/// # Errors
/// When JetStream refuses.
pub async fn ensure(
    js: &jetstream::Context,
    config: QueueConfig,
) -> Result<jetstream::consumer::PullConsumer, QueueError> {
    let stream = neo_client::streams::ensure_stream(
        js,
        stream::Config {
            name: QUEUE_STREAM.into(),
            subjects: vec![QUEUE_SUBJECTS.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            description: Some("Neo build jobs, one per build attempt".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(err)?;
    let consumer_config = pull::Config {
        durable_name: Some(WORKERS_CONSUMER.into()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: config.lease,
        max_deliver: config.max_deliveries,
        description: Some("Neo build workers".into()),
        ..Default::default()
    };
    // Create, or update the lease and retries of the existing consumer.
    match stream.create_consumer(consumer_config).await {
        Ok(consumer) => Ok(consumer),
        Err(e) => {
            tracing::warn!(error = %e, "cannot update the build workers' consumer; using it as is");
            stream.get_consumer(WORKERS_CONSUMER).await.map_err(err)
        }
    }
}

/// Publishes one job, deduplicated by build and attempt.
///
/// # Errors
/// When JetStream does not acknowledge it.
pub async fn enqueue(js: &jetstream::Context, job: &BuildJob) -> Result<(), QueueError> {
    let payload = serde_json::to_vec(job).map_err(err)?;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Msg-Id",
        format!("{}.{}.{}", job.tenant, job.build_id, job.attempt).as_str(),
    );
    js.publish_with_headers(
        job_subject(&job.tenant, &job.build_id),
        headers,
        payload.into(),
    )
    .await
    .map_err(err)?
    .await
    .map_err(err)?;
    Ok(())
}

/// The job a `BuildRequested` event (at stream `sequence`) calls for.
pub fn job_for(subject: &str, sequence: u64, payload: &[u8]) -> Option<BuildJob> {
    let (entity, event_type) = subjects::parse_event(subject).ok()?;
    if entity.kind != EntityKind::Build || event_type != "BuildRequested" {
        return None;
    }
    let Some(Event::Requested(requested)) = pb::BuildEvent::decode(payload).ok()?.event else {
        return None;
    };
    Some(BuildJob {
        tenant: entity.tenant.to_string(),
        build_id: entity.id.to_string(),
        app: requested.app,
        revision: requested.revision,
        revision_digest: requested.revision_digest,
        attempt: requested.attempt,
        requested_sequence: sequence,
    })
}

/// Follows `BuildRequested` events on a durable consumer and enqueues a job for each, until the
/// task is aborted. Survives NATS outages by re-attaching.
pub fn run_enqueuer(js: jetstream::Context) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = enqueue_requested(&js).await {
                tracing::warn!(error = %e, "build enqueuer detached; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn enqueue_requested(js: &jetstream::Context) -> Result<(), QueueError> {
    let events = js
        .get_stream_no_info(subjects::EVENTS_STREAM)
        .await
        .map_err(err)?;
    let consumer: jetstream::consumer::PullConsumer = events
        .get_or_create_consumer(
            ENQUEUER_CONSUMER,
            pull::Config {
                durable_name: Some(ENQUEUER_CONSUMER.into()),
                filter_subject: subjects::kind_event_type(EntityKind::Build, "BuildRequested"),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ..Default::default()
            },
        )
        .await
        .map_err(err)?;
    let mut messages = consumer.messages().await.map_err(err)?;
    while let Some(msg) = messages.next().await {
        let msg = msg.map_err(err)?;
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        match job_for(msg.subject.as_str(), sequence, &msg.payload) {
            Some(job) => {
                if let Err(e) = enqueue(js, &job).await {
                    tracing::warn!(error = %e, build = %job.build_id, "cannot enqueue; will retry");
                    msg.ack_with(jetstream::AckKind::Nak(Some(Duration::from_secs(1))))
                        .await
                        .map_err(err)?;
                    continue;
                }
                tracing::info!(tenant = %job.tenant, build = %job.build_id, attempt = job.attempt, "build enqueued");
            }
            None => {
                tracing::error!(subject = %msg.subject, "skipping an unreadable BuildRequested event")
            }
        }
        msg.ack().await.map_err(err)?;
    }
    Ok(())
}
