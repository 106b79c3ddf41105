//! The publishes of `neo bench recovery`: made again until they report the release (the
//! same content resumes a publish whose progress stream an outage cut), and when the release
//! was recorded.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use neo_gateway::api::{PublishStep, apps_client::AppsClient};
use neo_protocol::envelope::EventMeta;
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb, subjects};
use prost::Message as _;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use super::{HEAL_TIMEOUT, TENANT};
use crate::build::publish_request;

/// A publish progress stream silent this long is taken as cut (and the publish made again).
const STALL: Duration = Duration::from_secs(30);
/// The pause before a cut publish is made again.
const RETRY: Duration = Duration::from_millis(200);

/// A publish's release, and when the publish reported it.
pub(super) struct Deployed {
    /// When the publish reported it.
    pub(super) seen: Instant,
    /// The stage.
    pub(super) stage: String,
    /// The release number.
    pub(super) release: u32,
}

/// When `deployed`'s release was recorded: the time of its `ReleaseCreated` event (the
/// deployment's last one).
pub(super) async fn released_at(
    js: &async_nats::jetstream::Context,
    app: &str,
    deployed: &Deployed,
) -> anyhow::Result<SystemTime> {
    let entity = EntityRef::deployment(
        &TenantName::new(TENANT)?,
        &AppName::new(app)?,
        &StageName::new(&deployed.stage)?,
    );
    let message = js
        .get_stream(subjects::EVENTS_STREAM)
        .await?
        .get_last_raw_message_by_subject(&subjects::event(&entity, "ReleaseCreated"))
        .await
        .context("reading the release's event")?;
    let number = match pb::DeploymentEvent::decode(message.payload)?.event {
        Some(pb::deployment_event::Event::ReleaseCreated(created)) => {
            created.release.map(|r| r.number)
        }
        _ => None,
    };
    anyhow::ensure!(
        number == Some(deployed.release),
        "the last release of {app} on {} is {number:?}, not {}",
        deployed.stage,
        deployed.release
    );
    let meta = EventMeta::from_headers(|n| message.headers.get(n).map(|v| v.as_str()))
        .context("the release's event has no readable time")?;
    Ok(UNIX_EPOCH + Duration::from_millis(meta.time_ms))
}

/// Waits until the publish reports `step`.
pub(super) async fn reached(
    steps: &mut mpsc::UnboundedReceiver<PublishStep>,
    step: PublishStep,
) -> anyhow::Result<()> {
    let waiting = async {
        while let Some(seen) = steps.recv().await {
            if seen == step {
                return Ok(());
            }
        }
        anyhow::bail!("the publish ended before {step:?}")
    };
    tokio::time::timeout(HEAL_TIMEOUT, waiting)
        .await
        .map_err(|_| anyhow::anyhow!("no {step:?} within {HEAL_TIMEOUT:?}"))?
}

/// Publishes `content` as `app` until a publish stream reports the release (a stream cut by
/// an outage is made again: the same content resumes the publish).
pub(super) async fn publish_until_deployed(
    mut apps: AppsClient<Channel>,
    bearer: String,
    app: String,
    content: Vec<u8>,
    steps: mpsc::UnboundedSender<PublishStep>,
) -> anyhow::Result<Deployed> {
    let started = Instant::now();
    loop {
        let cut = match follow(&mut apps, &bearer, &app, &content, &steps).await {
            Ok(Ok(deployed)) => return Ok(deployed),
            Ok(Err(why)) => anyhow::bail!("the publish of {app} failed: {why}"),
            Err(cut) => cut,
        };
        if started.elapsed() > HEAL_TIMEOUT {
            return Err(cut.context(format!("{app} not deployed within {HEAL_TIMEOUT:?}")));
        }
        eprintln!("publish of {app}: {cut:#}; publishing again");
        tokio::time::sleep(RETRY).await;
    }
}

/// One publish call followed to its end: the release, or why the publish failed; an error
/// when the stream was refused or cut first.
async fn follow(
    apps: &mut AppsClient<Channel>,
    bearer: &str,
    app: &str,
    content: &[u8],
    steps: &mpsc::UnboundedSender<PublishStep>,
) -> anyhow::Result<Result<Deployed, String>> {
    let mut stream = apps
        .publish(publish_request(bearer, app, content)?)
        .await?
        .into_inner();
    loop {
        let progress = tokio::time::timeout(STALL, stream.message())
            .await
            .map_err(|_| anyhow::anyhow!("no progress for {STALL:?}"))??
            .context("the progress stream ended before an outcome")?;
        let step = PublishStep::try_from(progress.step).unwrap_or(PublishStep::Unspecified);
        // The receiver is gone only when nobody waits for a step any more.
        let _ = steps.send(step);
        match step {
            PublishStep::Deployed => {
                return Ok(Ok(Deployed {
                    seen: Instant::now(),
                    stage: progress.stage,
                    release: progress.release,
                }));
            }
            PublishStep::BuildFailed | PublishStep::DeployRefused => {
                return Ok(Err(progress.message));
            }
            _ => {}
        }
    }
}
