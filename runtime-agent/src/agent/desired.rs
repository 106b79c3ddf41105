//! The stage's desired podgroups: a full read of `NEO_DESIRED` (last message per subject) at
//! start and every `resync_every`, and a durable consumer for changes in between.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::{StreamExt, TryStreamExt};
use neo_protocol::{pb, subjects};
use prost::Message;

use super::{Ctx, key_of};

/// Reads every desired podgroup of the stage again, every `resync_every`.
pub(crate) async fn resync_loop(ctx: Arc<Ctx>) {
    loop {
        match read_all(&ctx).await {
            Ok(mut all) => {
                tracing::debug!(podgroups = all.len(), "desired state resynced");
                let mut desired = ctx.desired.lock().await;
                if let Some(known) = desired.as_ref() {
                    keep_newer(&mut all, known);
                }
                *desired = Some(all);
                drop(desired);
                ctx.converge.notify_one();
                tokio::time::sleep(ctx.config.resync_every).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the desired state; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Keeps in `read` the states of `known` newer than what the read found: the consumer may
/// have applied a change while the read ran (a resync must not put an app back in an older
/// state, say at zero replicas just after it was woken).
fn keep_newer(
    read: &mut BTreeMap<crate::driver::PodgroupKey, pb::DesiredPodgroup>,
    known: &BTreeMap<crate::driver::PodgroupKey, pb::DesiredPodgroup>,
) {
    for (key, state) in read.iter_mut() {
        if let Some(newer) = known.get(key).filter(|k| k.sequence > state.sequence) {
            state.clone_from(newer);
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn read_all(
    ctx: &Ctx,
) -> Result<BTreeMap<crate::driver::PodgroupKey, pb::DesiredPodgroup>, Error> {
    let stream = ctx.js.get_stream(subjects::DESIRED_STREAM).await?;
    let filter = subjects::desired_stage(&ctx.config.stage);
    let names: Vec<(String, usize)> = stream
        .info_with_subjects(&filter)
        .await?
        .try_collect()
        .await?;
    let mut all = BTreeMap::new();
    for (subject, _) in names {
        // `neo.desired.{stage}.{tenant}.{app}`: another tenant's state is not even read.
        let tenant = subjects::split_desired(&subject).map_or("", |(_, tenant, _)| tenant);
        if !ctx.config.serves(tenant) {
            continue;
        }
        let message = stream.direct_get_last_for_subject(subject.clone()).await?;
        match decode(&ctx.config, &message.payload) {
            Some(desired) => {
                all.insert(key_of(&desired), desired);
            }
            None => tracing::warn!(%subject, "skipping an unreadable desired state"),
        }
    }
    Ok(all)
}

/// A desired state this agent serves, or `None` (undecodable, another stage or tenant).
fn decode(config: &super::AgentConfig, payload: &[u8]) -> Option<pb::DesiredPodgroup> {
    let desired = pb::DesiredPodgroup::decode(payload).ok()?;
    (desired.stage == config.stage.as_str() && config.serves(&desired.tenant)).then_some(desired)
}

/// The agent's durable consumer on `NEO_DESIRED`, shared by the agents of one lease (only the
/// active one pulls): named `agent-{stage}-{stage}` (`agent-{stage}-{group}-{stage}` in a
/// lease group), filtered to the stage. Where the agent's NATS user may not create consumers,
/// an operator creates this one beforehand (`neo nats-provision`) and the agent only pulls
/// from it.
pub fn durable(config: &super::AgentConfig) -> pull::Config {
    let stage = &config.stage;
    let name = if config.lease_group.is_empty() {
        format!("agent-{stage}-{stage}")
    } else {
        format!("agent-{stage}-{}-{stage}", config.lease_group)
    };
    pull::Config {
        durable_name: Some(name),
        filter_subject: subjects::desired_stage(&config.stage),
        deliver_policy: DeliverPolicy::LastPerSubject,
        ack_policy: AckPolicy::Explicit,
        ack_wait: Duration::from_secs(30),
        ..Default::default()
    }
}

/// Follows changes on the agent's durable consumer.
pub(crate) async fn consume_loop(ctx: Arc<Ctx>) {
    loop {
        if let Err(e) = consume(&ctx).await {
            tracing::warn!(error = %e, "desired-state consumer detached; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume(ctx: &Ctx) -> Result<(), Error> {
    let stream = ctx.js.get_stream(subjects::DESIRED_STREAM).await?;
    let durable = durable(&ctx.config);
    let name = durable.durable_name.clone().unwrap_or_default();
    let consumer: pull::Stream = stream
        .get_or_create_consumer(&name, durable)
        .await?
        .messages()
        .await?;
    let mut messages = consumer;
    while let Some(message) = messages.next().await {
        let message = message?;
        if let Some(desired) = decode(&ctx.config, &message.payload) {
            let key = key_of(&desired);
            let mut all = ctx.desired.lock().await;
            if let Some(all) = all.as_mut() {
                let newer = all
                    .get(&key)
                    .is_none_or(|known| known.sequence <= desired.sequence);
                if newer {
                    tracing::debug!(podgroup = %key, release = desired.release,
                        replicas = desired.replicas, "desired state changed");
                    all.insert(key, desired);
                }
            }
            ctx.converge.notify_one();
        }
        message.ack().await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::PodgroupKey;

    fn state(app: &str, sequence: u64, replicas: u32) -> (PodgroupKey, pb::DesiredPodgroup) {
        let key = PodgroupKey {
            tenant: "acme".into(),
            app: app.into(),
            stage: "dev".into(),
        };
        let desired = pb::DesiredPodgroup {
            sequence,
            replicas,
            ..pb::DesiredPodgroup::default()
        };
        (key, desired)
    }

    #[test]
    fn a_resync_keeps_what_the_consumer_applied_while_it_read() {
        // The read found shop at zero (sequence 7); the consumer applied its wake (8) meanwhile.
        let mut read = BTreeMap::from([state("shop", 7, 0), state("cart", 5, 2)]);
        let known = BTreeMap::from([state("shop", 8, 1), state("cart", 4, 1), state("old", 3, 1)]);
        keep_newer(&mut read, &known);
        assert_eq!(read[&state("shop", 0, 0).0].replicas, 1, "the wake stays");
        assert_eq!(
            read[&state("cart", 0, 0).0].replicas,
            2,
            "the read is newer"
        );
        assert!(
            !read.contains_key(&state("old", 0, 0).0),
            "what the read lacks is gone"
        );
    }
}
