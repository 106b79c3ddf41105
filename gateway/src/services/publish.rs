//! 1-Click Publish: upload → revision → build → deploy, streamed step by step.
//!
//! The gateway only uploads the content and records the revision with its target stage; the
//! rest is the platform's reactor chain (build on publish, deploy on build). The gateway follows
//! the chain's events (from the revision's sequence on, so nothing is missed) and the build's
//! log, and turns them into [`api::PublishProgress`] messages until the deploy, a failed build
//! or a blocked deploy ends the publish.

use std::sync::Arc;

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::{Stream, StreamExt};
use neo_protocol::pb::{self, app_command::Command, build_event, deployment_event};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, subjects};
use prost::Message;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::{Ctx, app, resume, stage, tenant};
use crate::api::{self, PublishProgress, PublishStep, publish_request::Part};
use crate::auth::Action;
use crate::error::{refused, unavailable};
use crate::upload;

/// The server stream of a publish.
pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<PublishProgress, Status>> + Send>>;

/// How long a publish follows the chain before giving up on it (the chain goes on).
const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

fn part(m: api::PublishRequest) -> upload::Part<api::PublishHeader> {
    match m.part {
        Some(Part::Header(h)) => upload::Part::Header(h),
        Some(Part::Chunk(c)) => upload::Part::Chunk(c),
        None => upload::Part::Empty,
    }
}

fn progress(step: PublishStep, message: impl Into<String>) -> PublishProgress {
    PublishProgress {
        step: step as i32,
        message: message.into(),
        ..Default::default()
    }
}

/// Runs a publish.
///
/// # Errors
/// Before streaming: bad header, permission, unknown tenant or stage, upload limits, storage
/// or platform outages. Content identical to the latest revision resumes that revision's
/// publish ([`resume`]) instead of creating a revision.
pub async fn publish(
    ctx: &Arc<Ctx>,
    request: Request<Streaming<api::PublishRequest>>,
) -> Result<Response<ProgressStream>, Status> {
    let principal = ctx.authenticate(&request)?;
    let mut stream = request.into_inner();
    let header = upload::header(&mut stream, part).await?;
    let t = tenant("header.tenant", &header.tenant)?;
    let a = app("header.app", &header.app)?;
    principal.authorize(Some(&t), Action::Develop)?;
    let (tenant_state, _) = ctx.tenant_state(&t).await?;
    let s = if header.stage.is_empty() {
        let first = tenant_state.stages.first().ok_or_else(|| {
            refused(
                "publish.no_stage",
                format!("tenant `{t}` has no stage to publish to"),
            )
        })?;
        stage("header.stage", first)?
    } else {
        stage("header.stage", &header.stage)?
    };
    principal.authorize(Some(&t), ctx.release_action(&t, &s).await?)?;
    let content = upload::content(&mut stream, ctx.max_upload_bytes, part).await?;

    ensure_app(ctx, &t, &a, principal.user()).await?;
    let stored = upload::store(&ctx.revisions, &t, content).await?;
    let mut uploaded = progress(
        PublishStep::Uploaded,
        format!(
            "uploaded {} ({} bytes{})",
            stored.digest,
            stored.size,
            if stored.created {
                ""
            } else {
                ", content already stored"
            }
        ),
    );
    uploaded.digest.clone_from(&stored.digest);
    uploaded.size = stored.size;

    let command = pb::AppCommand {
        command: Some(Command::CreateRevision(pb::CreateRevision {
            digest: stored.digest.clone(),
            size: stored.size,
            author: principal.user().to_owned(),
            message: header.message,
            dependencies: Vec::new(),
            deploy_to: s.to_string(),
        })),
    };
    let created = ctx
        .bus
        .command(&EntityRef::app(&t, &a), principal.user(), &command)
        .await;
    let accepted = match created {
        Ok(accepted) => accepted,
        Err(e) if rule_of(&e) == Some("revision.unchanged") => {
            return resumed(ctx, principal.user(), (&t, &a, &s), uploaded).await;
        }
        Err(e) => return Err(e),
    };
    let (revision, sequence) = accepted
        .events
        .iter()
        .find_map(
            |e| match pb::AppEvent::decode(e.payload.clone()).ok()?.event {
                Some(pb::app_event::Event::RevisionCreated(r)) => Some((r.revision?, e.sequence)),
                _ => None,
            },
        )
        .ok_or_else(|| Status::internal("the platform accepted the revision but returned none"))?;
    tracing::info!(tenant = %t, app = %a, revision = revision.number, stage = %s, "publish started");
    let mut created = progress(
        PublishStep::RevisionCreated,
        format!("revision {} of {a}", revision.number),
    );
    created.revision = revision.number;
    created.digest = revision.digest.clone();
    created.sequence = sequence;
    follow(
        ctx,
        (&t, &a, &s),
        revision.number,
        sequence,
        [uploaded, created],
    )
    .await
}

/// The domain rule a refusal names (its `neo-rule` metadata).
fn rule_of(status: &Status) -> Option<&str> {
    status
        .metadata()
        .get(crate::error::RULE_METADATA)
        .and_then(|v| v.to_str().ok())
}

/// The publish of content identical to the latest revision: finishes that revision's publish
/// (see [`resume`]).
async fn resumed(
    ctx: &Arc<Ctx>,
    user: &str,
    (t, a, s): (&TenantName, &AppName, &StageName),
    uploaded: PublishProgress,
) -> Result<Response<ProgressStream>, Status> {
    let (state, _) = ctx.bus.state::<pb::AppState>(&EntityRef::app(t, a)).await?;
    let revision =
        state.revisions.last().cloned().ok_or_else(|| {
            Status::internal("the app refused an unchanged revision but has none")
        })?;
    tracing::info!(tenant = %t, app = %a, revision = revision.number, stage = %s, "publish resumed");
    let mut first = progress(PublishStep::RevisionCreated, String::new());
    first.revision = revision.number;
    first.digest = revision.digest.clone();
    match resume::resume(ctx, user, (t, a, s), &revision).await? {
        resume::Resumed::AlreadyDeployed {
            release,
            image_digest,
        } => {
            first.message = format!(
                "revision {} of {a} is unchanged (content already published)",
                revision.number
            );
            let mut done = progress(
                PublishStep::Deployed,
                format!("already deployed to {s} as release v{release}"),
            );
            done.stage = s.to_string();
            done.release = release;
            done.revision = revision.number;
            done.image_digest = image_digest;
            done.build_id = EntityRef::build(t, a, revision.number).id.to_string();
            let items = [uploaded, first, done].map(Ok);
            Ok(Response::new(Box::pin(futures::stream::iter(items))))
        }
        resume::Resumed::Follow { message, after } => {
            first.message = message;
            first.sequence = after;
            follow(ctx, (t, a, s), revision.number, after, [uploaded, first]).await
        }
    }
}

/// Streams `first`, then the chain's progress for `revision` after stream sequence `after`.
async fn follow(
    ctx: &Arc<Ctx>,
    (t, a, s): (&TenantName, &AppName, &StageName),
    revision: u32,
    after: u64,
    first: [PublishProgress; 2],
) -> Result<Response<ProgressStream>, Status> {
    let build = EntityRef::build(t, a, revision);
    let events = follow_events(ctx, t, a, s, &build, after).await?;
    let logs = follow_log(ctx, t, &build).await?;
    let (tx, rx) = mpsc::channel(64);
    let context = Chain {
        build_id: build.id.to_string(),
        stage: s.to_string(),
        revision,
    };
    tokio::spawn(async move {
        for p in first {
            if tx.send(Ok(p)).await.is_err() {
                return;
            }
        }
        let relay = relay(events, logs, &context, &tx);
        if tokio::time::timeout(FOLLOW_LIMIT, relay).await.is_err() {
            let _ = tx
                .send(Err(Status::deadline_exceeded(
                    "stopped following the publish; it goes on: watch the build and deployment",
                )))
                .await;
        }
    });
    Ok(Response::new(Box::pin(
        tokio_stream::wrappers::ReceiverStream::new(rx),
    )))
}

/// Creates the app unless it exists.
async fn ensure_app(ctx: &Ctx, t: &TenantName, a: &AppName, user: &str) -> Result<(), Status> {
    let entity = EntityRef::app(t, a);
    let (state, _) = ctx.bus.state::<pb::AppState>(&entity).await?;
    if state.exists {
        return Ok(());
    }
    let create = pb::AppCommand {
        command: Some(Command::Create(pb::CreateApp {
            description: String::new(),
        })),
    };
    match ctx.bus.command(&entity, user, &create).await {
        Ok(_) => Ok(()),
        // Created concurrently by another publish: fine.
        Err(e) if e.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(e) if e.code() == tonic::Code::FailedPrecondition && e.message().contains("exist") => {
            Ok(())
        }
        Err(e) => Err(e),
    }
}

type Messages = Pin<
    Box<
        dyn Stream<
                Item = Result<
                    async_nats::jetstream::Message,
                    async_nats::jetstream::consumer::pull::OrderedError,
                >,
            > + Send,
    >,
>;

/// The build's and the stage deployment's events after `sequence`.
async fn follow_events(
    ctx: &Ctx,
    t: &TenantName,
    a: &AppName,
    s: &StageName,
    build: &EntityRef,
    sequence: u64,
) -> Result<Messages, Status> {
    let stream = ctx
        .js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable(format!("event stream unavailable: {e}")))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subjects: vec![
                subjects::entity_events(build),
                subjects::entity_events(&EntityRef::deployment(t, a, s)),
            ],
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: sequence + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot follow the publish: {e}")))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable(format!("cannot follow the publish: {e}")))?;
    Ok(Box::pin(messages))
}

/// The build's log lines (a new build: every line is this build's).
async fn follow_log(ctx: &Ctx, t: &TenantName, build: &EntityRef) -> Result<Messages, Status> {
    let stream = ctx
        .js
        .get_stream(neo_builder::buildlog::LOG_STREAM)
        .await
        .map_err(|e| unavailable(format!("build log unavailable: {e}")))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: neo_builder::buildlog::log_subject(t.as_str(), build.id.as_str()),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot follow the build log: {e}")))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable(format!("cannot follow the build log: {e}")))?;
    Ok(Box::pin(messages))
}

/// What the relay is following.
struct Chain {
    build_id: String,
    stage: String,
    revision: u32,
}

/// Relays events and log lines as progress until the publish ends.
async fn relay(
    mut events: Messages,
    mut logs: Messages,
    chain: &Chain,
    tx: &mpsc::Sender<Result<PublishProgress, Status>>,
) {
    let mut logs_open = true;
    loop {
        let (item, end) = tokio::select! {
            next = events.next() => match next {
                Some(Ok(msg)) => match step(&msg, chain) {
                    Some((p, end)) => (Ok(p), end),
                    None => continue,
                },
                Some(Err(e)) => (Err(unavailable(format!("publish interrupted: {e}"))), true),
                None => (Err(unavailable("publish interrupted: the event stream ended")), true),
            },
            next = logs.next(), if logs_open => match next {
                Some(Ok(msg)) => match pb::BuildLogLine::decode(msg.payload.clone()) {
                    Ok(line) => {
                        let mut p = progress(PublishStep::BuildLog, line.text);
                        p.build_id.clone_from(&chain.build_id);
                        (Ok(p), false)
                    }
                    Err(_) => continue,
                },
                _ => {
                    logs_open = false;
                    continue;
                }
            },
        };
        if tx.send(item).await.is_err() || end {
            return;
        }
    }
}

/// The progress an event means, and whether it ends the publish.
fn step(msg: &async_nats::jetstream::Message, chain: &Chain) -> Option<(PublishProgress, bool)> {
    let (_, event_type) = subjects::parse_event(msg.subject.as_str()).ok()?;
    let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    let mut p = match event_type.as_str() {
        "BuildRequested" | "BuildStarted" | "BuildSucceeded" | "BuildFailed" | "BuildCancelled" => {
            build_step(pb::BuildEvent::decode(msg.payload.clone()).ok()?.event?)
        }
        "ReleaseCreated" | "DeployBlocked" => deploy_step(
            pb::DeploymentEvent::decode(msg.payload.clone())
                .ok()?
                .event?,
            chain,
        )?,
        _ => return None,
    };
    p.0.sequence = sequence;
    p.0.build_id.clone_from(&chain.build_id);
    p.0.revision = chain.revision;
    Some(p)
}

fn build_step(event: build_event::Event) -> (PublishProgress, bool) {
    match event {
        build_event::Event::Requested(e) => (
            progress(
                PublishStep::BuildRequested,
                format!("build requested (attempt {})", e.attempt),
            ),
            false,
        ),
        build_event::Event::Started(e) => (
            progress(
                PublishStep::BuildStarted,
                format!("build started by {}", e.worker),
            ),
            false,
        ),
        build_event::Event::Succeeded(e) => {
            let mut p = progress(
                PublishStep::BuildSucceeded,
                format!("built {}", e.image_ref),
            );
            p.image_digest = e.image_digest;
            p.image_ref = e.image_ref;
            (p, false)
        }
        build_event::Event::Failed(e) => {
            let mut p = progress(
                PublishStep::BuildFailed,
                format!("build failed: {}", e.reason),
            );
            p.diagnostics = e.diagnostics;
            (p, true)
        }
        build_event::Event::Cancelled(e) => (
            progress(
                PublishStep::BuildFailed,
                format!("build cancelled: {}", e.reason),
            ),
            true,
        ),
    }
}

fn deploy_step(event: deployment_event::Event, chain: &Chain) -> Option<(PublishProgress, bool)> {
    match event {
        deployment_event::Event::ReleaseCreated(e) => {
            let release = e.release?;
            if release.build_id != chain.build_id {
                return None;
            }
            let mut p = progress(
                PublishStep::Deployed,
                format!("deployed to {} as release v{}", chain.stage, release.number),
            );
            p.stage.clone_from(&chain.stage);
            p.release = release.number;
            p.image_digest = release.image_digest;
            Some((p, true))
        }
        deployment_event::Event::DeployBlocked(e) if e.build_id == chain.build_id => {
            let mut p = progress(
                PublishStep::DeployRefused,
                format!(
                    "not deployed to {}: it would break {}",
                    chain.stage,
                    e.blockers.join("; ")
                ),
            );
            p.stage.clone_from(&chain.stage);
            Some((p, true))
        }
        _ => None,
    }
}
