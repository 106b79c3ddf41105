//! Reactors: durable JetStream consumers that turn events into commands.
//!
//! A [`Reactor`] is pure: it *returns* the commands an event calls for. The runner feeds it
//! from a durable consumer and dispatches what it returns. Each command id is derived from the
//! triggering event's stream sequence, so a redelivered event does nothing twice.
//!
//! Only a domain rejection ends a reaction. An infrastructure failure (NATS, the event store,
//! a read model's database) leaves the event unacknowledged: it comes back after
//! [`retry_delay`], which grows with each delivery, until the reaction goes through.
//!
//! - [`podgroups`]: a deployment's first release creates the podgroup of that app and stage.
//! - [`canary`]: a canary's steps and end reach the podgroup (its share of the traffic).
//! - [`publish`]: 1-Click Publish: a published revision is built, then deployed.
//! - [`desired`]: a podgroup's changes are published as its stage's desired state.
//! - [`tenants`]: a tenant's new quota or deletion reaches the desired states of all its podgroups.

pub mod canary;
pub mod desired;
pub mod podgroups;
pub mod publish;
pub mod tenants;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use bytes::Bytes;
use futures::StreamExt;
use neo_protocol::pb::{self, ErrorCode};
use neo_protocol::{EntityRef, subjects};
use neo_telemetry::trace;
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::platform::Platform;
use crate::stored::StoredMessage;

/// A command a reactor wants run.
#[derive(Debug, Clone, PartialEq)]
pub struct Reaction {
    /// The entity to command.
    pub entity: EntityRef,
    /// The encoded `{Kind}Command` for that entity's kind.
    pub command: Bytes,
}

/// A reactor could not read an event.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reactor}: cannot react to event {sequence}: {reason}")]
pub struct ReactorError {
    /// The reactor.
    pub reactor: &'static str,
    /// The event's sequence.
    pub sequence: u64,
    /// Why.
    pub reason: String,
    /// A passing failure (NATS unavailable): the event is delivered again later. Otherwise the
    /// event can never be read and is skipped.
    pub transient: bool,
}

/// Turns events into commands.
#[async_trait::async_trait]
pub trait Reactor: Send + Sync + 'static {
    /// The durable consumer's name (stable: renaming it replays every event).
    fn name(&self) -> &'static str;
    /// The event subjects it consumes.
    fn filter(&self) -> String;
    /// The commands `event` calls for (none is fine).
    /// (Async so a reactor may consult read models, as impact analysis does; most don't.)
    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError>;
}

/// The command envelope of the `index`-th reaction to `event`: its id is derived from the
/// reactor and the event, and the event is its cause.
pub fn reaction_request(
    reactor: &str,
    event: &StoredMessage,
    index: usize,
    command: Bytes,
) -> pb::CommandRequest {
    pb::CommandRequest {
        command_id: format!("{reactor}:{}:{index}", event.sequence),
        correlation_id: event.meta.correlation_id.clone(),
        causation_id: format!("evt:{}", event.sequence),
        principal: format!("reactor:{reactor}"),
        command,
        traceparent: event.meta.traceparent.clone().unwrap_or_default(),
        want_state: false,
        lease: None,
    }
}

/// What to do with a delivered event after dispatching its reactions.
enum Verdict {
    Done,
    Retry(String),
}

/// Runs `reactor` on `event` in a `reaction` span, the child of the event's `traceparent`; the
/// commands it sends carry this span's `traceparent`, so the trace goes on through them.
async fn process(platform: &Platform, reactor: &dyn Reactor, event: &StoredMessage) -> Verdict {
    let span = tracing::info_span!(
        "reaction",
        reactor = reactor.name(),
        entity = %event.entity,
        event_type = %event.meta.event_type,
        sequence = event.sequence,
    );
    let incoming = event.meta.traceparent.as_deref().unwrap_or_default();
    trace::set_parent(&span, incoming);
    let traceparent = trace::traceparent_or(&span, incoming);
    react_and_dispatch(platform, reactor, event, &traceparent)
        .instrument(span)
        .await
}

async fn react_and_dispatch(
    platform: &Platform,
    reactor: &dyn Reactor,
    event: &StoredMessage,
    traceparent: &str,
) -> Verdict {
    let reactions = match reactor.react(event).await {
        Ok(r) => r,
        Err(e) if e.transient => return Verdict::Retry(e.to_string()),
        Err(e) => {
            tracing::error!(error = %e, "skipping an event the reactor cannot read");
            return Verdict::Done;
        }
    };
    for (index, reaction) in reactions.into_iter().enumerate() {
        let mut request = reaction_request(reactor.name(), event, index, reaction.command);
        request.traceparent = traceparent.to_owned();
        let reply = platform.dispatch(&reaction.entity, request).await;
        if let Some(pb::command_reply::Result::Error(e)) = reply.result {
            match ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal) {
                ErrorCode::Unavailable
                | ErrorCode::Aborted
                | ErrorCode::Internal
                | ErrorCode::Unspecified => {
                    return Verdict::Retry(e.message);
                }
                _ => tracing::warn!(reactor = reactor.name(), entity = %reaction.entity,
                    rule = %e.rule, message = %e.message, "reaction refused; not retrying"),
            }
        }
    }
    Verdict::Done
}

/// How long an event whose reaction failed for want of infrastructure waits before it comes
/// back, after its `delivered`-th delivery: 0.5 s, doubling, at most 10 s, so a service that
/// returns is noticed within 10 s and an outage costs a few messages a minute.
pub fn retry_delay(delivered: i64) -> Duration {
    let doublings = u32::try_from(delivered.saturating_sub(1).clamp(0, 16)).unwrap_or(16);
    (Duration::from_millis(500) * 2u32.pow(doublings)).min(Duration::from_secs(10))
}

/// Runs every reactor of a platform process (`neo serve`, and the test stacks standing in for
/// it): the Runtime's desired states, podgroups from releases, and 1-Click Publish (build on
/// publish; deploy on build, assessed for impact when the platform has consumers attached); and
/// the follower of tenant deletions ([`crate::platform::deleted::follow`]). The desired-state
/// reactor publishes into `NEO_DESIRED`, which must exist.
pub fn run_platform(js: &jetstream::Context, platform: &Arc<Platform>) -> Vec<JoinHandle<()>> {
    let reactors: [Arc<dyn Reactor>; 6] = [
        Arc::new(desired::DesiredOnPodgroupChange::new(
            js.clone(),
            platform.clone(),
        )),
        Arc::new(tenants::DesiredOnTenantChange::new(js.clone())),
        Arc::new(podgroups::PodgroupOnFirstRelease),
        Arc::new(canary::PodgroupFollowsCanary::new(platform.clone())),
        Arc::new(publish::BuildOnPublish),
        Arc::new(publish::DeployOnBuild),
    ];
    reactors
        .into_iter()
        .map(|reactor| run(js.clone(), platform.clone(), reactor))
        .chain([crate::platform::deleted::follow(
            js.clone(),
            platform.clone(),
        )])
        .collect()
}

/// Runs `reactor` on its durable consumer until the returned task is aborted. Survives NATS
/// outages by re-attaching to the consumer.
pub fn run(
    js: jetstream::Context,
    platform: Arc<Platform>,
    reactor: Arc<dyn Reactor>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = consume(&js, &platform, reactor.as_ref()).await {
                tracing::warn!(reactor = reactor.name(), error = %e, "reactor detached; retrying");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn consume(
    js: &jetstream::Context,
    platform: &Platform,
    reactor: &dyn Reactor,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let stream = js.get_stream_no_info(subjects::EVENTS_STREAM).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            reactor.name(),
            pull::Config {
                durable_name: Some(reactor.name().to_owned()),
                filter_subject: reactor.filter(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(msg) = messages.next().await {
        let msg = msg?;
        if let Ok(info) = msg.info() {
            neo_telemetry::metrics::global()
                .consumer_lag
                .get_or_create(&neo_telemetry::metrics::ConsumerLabel {
                    consumer: reactor.name().to_owned(),
                })
                .set(i64::try_from(info.pending).unwrap_or(i64::MAX));
        }
        let verdict = match StoredMessage::from_message(&msg) {
            Ok(event) => process(platform, reactor, &event).await,
            Err(reason) => {
                tracing::error!(reactor = reactor.name(), subject = %msg.subject, %reason,
                    "skipping a malformed event");
                Verdict::Done
            }
        };
        let ack = match verdict {
            Verdict::Done => AckKind::Ack,
            Verdict::Retry(reason) => {
                let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
                let delay = retry_delay(delivered);
                tracing::warn!(reactor = reactor.name(), %reason, delivered, ?delay,
                    "reaction failed; will retry");
                AckKind::Nak(Some(delay))
            }
        };
        msg.ack_with(ack).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_half_a_second_to_ten() {
        let delays: Vec<u128> = (1..=8).map(|d| retry_delay(d).as_millis()).collect();
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]
        );
        assert_eq!(retry_delay(0).as_millis(), 500);
        assert_eq!(retry_delay(i64::MAX).as_millis(), 10_000);
    }
}
