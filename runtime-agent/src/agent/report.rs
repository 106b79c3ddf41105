//! What the agent tells the platform: rollouts, health reports, metrics and observations.
//!
//! A rollout is recorded on the deployment only when the driver says every new replica is
//! ready (or the release cannot start); command ids derive from the podgroup, release and
//! outcome, so a restarted agent repeating itself changes nothing.
//!
//! Reports follow change, so an idle fleet costs next to nothing (each `Observe` is a
//! `MetricsObserved` event in the log, forever):
//!
//! - **Health** when a replica appears, goes, or changes phase or release, when the desired
//!   count changes, or when usage moved (below); otherwise every `report_every` (60 s).
//! - **Usage** (the metrics report and the podgroup's `Observe`) is averaged over every
//!   observation of the driver since the last weighing (the driver's samples cover one probe
//!   period each, a few clock ticks: alone they jump by whole points), weighed every
//!   `metrics_every` (5 s) and sent when [`worth_sending`] finds a reason: the ready count or
//!   the desired state changed (a release, a scaling, new resources or a new policy), CPU or
//!   memory moved by [`USAGE_STEP`] points of the allocation, or the podgroup runs more than
//!   one replica, so the autoscaler may scale it in (the desired state does not carry the
//!   policy's min, so a min above one keeps that cadence too); otherwise every
//!   `heartbeat_every` (60 s).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use neo_client::ClientError;
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{EntityRef, pb};
use prost::Message;
use tracing::Instrument as _;

use super::{Ctx, wait};
use crate::driver::logline::now_ms;
use crate::driver::{Observed, PodgroupKey, Rollout};

/// The least move of CPU or memory, in points of the allocation, that is sent at once.
pub const USAGE_STEP: f64 = 5.0;

/// What was last reported for one podgroup.
#[derive(Default)]
struct Reported {
    /// (release, status) of the last rollout recorded.
    rollout: Option<(u32, i32)>,
    /// The replicas' (id, phase, release) and the desired count at the last health report.
    health: Vec<(String, i32, u32)>,
    desired: u32,
    health_at: Option<Instant>,
    /// Usage observed since the last weighing.
    usage: Usage,
    /// When usage was last weighed.
    weighed_at: Option<Instant>,
    /// The usage last sent.
    sent: Option<Sent>,
}

/// Usage sent to the platform: the observation, when, and the desired state it was sent under.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    /// What was sent.
    pub observation: pb::Observation,
    /// When.
    pub at: Instant,
    /// The stream sequence of the desired state then.
    pub sequence: u64,
}

/// Why usage is sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Nothing was sent for this podgroup yet.
    First,
    /// The count of ready replicas changed.
    Ready,
    /// The desired state changed: a release, a scaling, new resources or a new policy.
    Desired,
    /// CPU or memory moved by at least [`USAGE_STEP`] points.
    Moved,
    /// More than one replica is desired: the autoscaler's scale-in needs observations.
    ScaledOut,
    /// `heartbeat_every` passed.
    Heartbeat,
}

/// Whether usage `now` is worth sending, given what was `sent` last, the `desired` state and
/// the `heartbeat` period; `None`: not now.
pub fn worth_sending(
    sent: Option<&Sent>,
    now: &pb::Observation,
    desired: &pb::DesiredPodgroup,
    heartbeat: Duration,
) -> Option<Why> {
    let Some(sent) = sent else {
        return Some(Why::First);
    };
    let last = &sent.observation;
    if now.ready_replicas != last.ready_replicas {
        Some(Why::Ready)
    } else if desired.sequence != sent.sequence {
        Some(Why::Desired)
    } else if (now.cpu_percent - last.cpu_percent).abs() >= USAGE_STEP
        || (now.memory_percent - last.memory_percent).abs() >= USAGE_STEP
    {
        Some(Why::Moved)
    } else if desired.replicas > 1 {
        Some(Why::ScaledOut)
    } else if sent.at.elapsed() >= heartbeat {
        Some(Why::Heartbeat)
    } else {
        None
    }
}

/// The usage of a podgroup's ready replicas summed over the observations of a period.
#[derive(Debug, Default, Clone, Copy)]
pub struct Usage {
    cpu: f64,
    memory: f64,
    samples: u32,
}

impl Usage {
    /// Adds one observation (one without ready replicas says nothing about usage).
    pub fn add(&mut self, observation: &pb::Observation) {
        if observation.ready_replicas > 0 {
            self.cpu += observation.cpu_percent;
            self.memory += observation.memory_percent;
            self.samples += 1;
        }
    }

    /// The average over the period as an observation of `ready` replicas now, and a new period.
    pub fn take(&mut self, ready: u32) -> pb::Observation {
        let n = f64::from(self.samples.max(1));
        let observation = pb::Observation {
            at_ms: now_ms(),
            ready_replicas: ready,
            cpu_percent: (self.cpu / n * 10.0).round() / 10.0,
            memory_percent: (self.memory / n * 10.0).round() / 10.0,
        };
        *self = Self::default();
        observation
    }
}

/// Observes the driver every `observe_every` (sooner on a change) and reports.
pub(crate) async fn report_loop(ctx: Arc<Ctx>) {
    let mut reported: HashMap<PodgroupKey, Reported> = HashMap::new();
    loop {
        wait(ctx.config.observe_every, &ctx.changed).await;
        let Some(desired) = ctx.desired.lock().await.clone() else {
            continue;
        };
        let observed = match ctx.driver.observe().await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "cannot observe the driver");
                continue;
            }
        };
        for observed in observed {
            let Some(wanted) = desired.get(&observed.key).filter(|d| !d.removed) else {
                continue;
            };
            let state = reported.entry(observed.key.clone()).or_default();
            // The rollout's command continues the trace of the change that asked for it.
            let span = tracing::info_span!("agent.rollout", podgroup = %observed.key);
            neo_telemetry::trace::set_parent(&span, &wanted.traceparent);
            report_rollout(&ctx, wanted, &observed, state)
                .instrument(span)
                .await;
            let serving = ready(&observed);
            state
                .usage
                .add(&observation(&serving, super::resources(wanted)));
            let sent = report_metrics(&ctx, wanted, &observed, serving.len(), state).await;
            report_health(&ctx, wanted, &observed, state, sent == Some(Why::Moved)).await;
        }
        reported.retain(|key, _| desired.contains_key(key));
    }
}

async fn report_rollout(
    ctx: &Ctx,
    wanted: &pb::DesiredPodgroup,
    observed: &Observed,
    state: &mut Reported,
) {
    if observed.release != wanted.release || wanted.release == 0 {
        return;
    }
    let (status, reason) = match &observed.rollout {
        Rollout::Progressing => return,
        Rollout::Succeeded => (pb::RolloutStatus::Succeeded, String::new()),
        Rollout::Failed(reason) => (pb::RolloutStatus::Failed, reason.clone()),
    };
    let outcome = (wanted.release, i32::from(status));
    if state.rollout == Some(outcome) {
        return;
    }
    let Some((tenant, app, stage)) = observed.key.names() else {
        return;
    };
    let entity = EntityRef::deployment(&tenant, &app, &stage);
    let command = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::RecordRollout(
            pb::RecordRollout {
                release: wanted.release,
                status: status.into(),
                reason: reason.clone(),
            },
        )),
    };
    let id = format!(
        "rollout:{}:{}:{}",
        command_scope(&entity),
        wanted.release,
        status.as_str_name()
    );
    let cause = format!("evt:{}", wanted.sequence);
    match ctx
        .platform
        .command(&entity, &id, &cause, &ctx.principal(), &command)
        .await
    {
        Ok(_) => {
            tracing::info!(podgroup = %observed.key, release = wanted.release,
                status = status.as_str_name(), %reason, "rollout recorded");
            state.rollout = Some(outcome);
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(podgroup = %observed.key, error = %e, "cannot record the rollout yet");
        }
        Err(e) => {
            // Refused (say, a newer release exists): nothing to retry.
            tracing::info!(podgroup = %observed.key, error = %e, "rollout not recorded");
            state.rollout = Some(outcome);
        }
    }
}

/// The ready replicas of `observed`.
fn ready(observed: &Observed) -> Vec<&pb::ReplicaStatus> {
    observed
        .replicas
        .iter()
        .filter(|r| r.phase() == pb::ReplicaPhase::Ready)
        .collect()
}

/// Sends a health report when a replica or the desired count changed, when usage `moved`
/// (the report carries each replica's), or at the heartbeat.
async fn report_health(
    ctx: &Ctx,
    wanted: &pb::DesiredPodgroup,
    observed: &Observed,
    state: &mut Reported,
    moved: bool,
) {
    let unchanged = observed
        .replicas
        .iter()
        .map(|r| (r.id.as_str(), r.phase, r.release))
        .eq(state.health.iter().map(|(id, p, r)| (id.as_str(), *p, *r)));
    let due = state
        .health_at
        .is_none_or(|at| at.elapsed() >= ctx.config.report_every);
    if !due && !moved && unchanged && wanted.replicas == state.desired {
        return;
    }
    let Some((tenant, app, stage)) = observed.key.names() else {
        return;
    };
    let report = pb::HealthReport {
        tenant: observed.key.tenant.clone(),
        app: observed.key.app.clone(),
        stage: observed.key.stage.clone(),
        release: wanted.release,
        image_digest: wanted.image_digest.clone(),
        desired: wanted.replicas,
        replicas: observed.replicas.clone(),
        at_ms: now_ms(),
        agent: ctx.config.name.clone(),
        url: ctx
            .config
            .lb_url
            .as_ref()
            .map(|lb| format!("{lb}/{}/{}/", observed.key.tenant, observed.key.app))
            .unwrap_or_default(),
    };
    let subject = subjects::runtime(&tenant, &stage, &app, Channel::Health.as_str());
    if publish(ctx, subject, report.encode_to_vec()).await {
        state.health = observed
            .replicas
            .iter()
            .map(|r| (r.id.clone(), r.phase, r.release))
            .collect();
        state.desired = wanted.replicas;
        state.health_at = Some(Instant::now());
    }
}

/// Every `metrics_every`, weighs the usage averaged since the last time and, when it is
/// [`worth_sending`], sends the metrics report and (with a ready replica) the podgroup's
/// `Observe`; returns why it sent.
async fn report_metrics(
    ctx: &Ctx,
    wanted: &pb::DesiredPodgroup,
    observed: &Observed,
    ready: usize,
    state: &mut Reported,
) -> Option<Why> {
    if state
        .weighed_at
        .is_some_and(|at| at.elapsed() < ctx.config.metrics_every)
    {
        return None;
    }
    let (tenant, app, stage) = observed.key.names()?;
    state.weighed_at = Some(Instant::now());
    let observation = state.usage.take(u32::try_from(ready).unwrap_or(u32::MAX));
    let why = worth_sending(
        state.sent.as_ref(),
        &observation,
        wanted,
        ctx.config.heartbeat_every,
    )?;
    let sent = Sent {
        observation,
        at: Instant::now(),
        sequence: wanted.sequence,
    };
    let report = pb::MetricsReport {
        tenant: observed.key.tenant.clone(),
        app: observed.key.app.clone(),
        stage: observed.key.stage.clone(),
        observation: Some(observation),
        replicas: observed.replicas.clone(),
    };
    let subject = subjects::runtime(&tenant, &stage, &app, Channel::Metrics.as_str());
    publish(ctx, subject, report.encode_to_vec()).await;
    if observation.ready_replicas == 0 {
        state.sent = Some(sent);
        return Some(why);
    }
    let entity = EntityRef::podgroup(&tenant, &app, &stage);
    let command = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::Observe(pb::Observe {
            observation: Some(observation),
        })),
    };
    let id = format!("observe:{}:{}", command_scope(&entity), observation.at_ms);
    let cause = format!("evt:{}", wanted.sequence);
    match ctx
        .platform
        .command(&entity, &id, &cause, &ctx.principal(), &command)
        .await
    {
        Ok(_) => state.sent = Some(sent),
        // Sent again at the next weighing.
        Err(e) if e.is_transient() => log_refusal(&observed.key, "observation", &e),
        Err(e) => {
            log_refusal(&observed.key, "observation", &e);
            state.sent = Some(sent);
        }
    }
    tracing::debug!(podgroup = %observed.key, ?why, "usage sent");
    Some(why)
}

/// `{tenant}.{id}`: the part of the agent's command ids naming the entity (ids allow letters,
/// digits, `-`, `_`, `:` and `.`, and are unique across tenants).
pub(crate) fn command_scope(entity: &EntityRef) -> String {
    format!("{}.{}", entity.tenant, entity.id)
}

fn log_refusal(key: &PodgroupKey, what: &str, e: &ClientError) {
    tracing::warn!(podgroup = %key, error = %e, "{what} not recorded");
}

/// The averages over the ready replicas, as percentages of the allocation.
pub fn observation(ready: &[&pb::ReplicaStatus], resources: pb::Resources) -> pb::Observation {
    let count = ready.len();
    let (cpu, memory) = ready.iter().fold((0.0, 0.0), |(c, m), r| {
        #[allow(clippy::cast_precision_loss)]
        let bytes = r.memory_bytes as f64;
        (c + r.cpu_millis, m + bytes)
    });
    #[allow(clippy::cast_precision_loss)]
    let n = count.max(1) as f64;
    let cpu_percent = cpu / n / f64::from(resources.cpu_millis.max(1)) * 100.0;
    let memory_percent =
        memory / n / (f64::from(resources.memory_mib.max(1)) * 1_048_576.0) * 100.0;
    pb::Observation {
        at_ms: now_ms(),
        ready_replicas: u32::try_from(count).unwrap_or(u32::MAX),
        cpu_percent: (cpu_percent * 10.0).round() / 10.0,
        memory_percent: (memory_percent * 10.0).round() / 10.0,
    }
}

/// Publishes to JetStream and waits for the ack; false (logged) when it failed.
pub(crate) async fn publish(ctx: &Ctx, subject: String, payload: Vec<u8>) -> bool {
    let sent = match ctx.js.publish(subject.clone(), Bytes::from(payload)).await {
        Ok(ack) => tokio::time::timeout(Duration::from_secs(5), ack).await,
        Err(e) => {
            tracing::warn!(%subject, error = %e, "cannot publish");
            return false;
        }
    };
    match sent {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::warn!(%subject, error = %e, "not stored");
            false
        }
        Err(_) => {
            tracing::warn!(%subject, "no ack within 5s");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(ready: u32, cpu: f64, memory: f64) -> pb::Observation {
        pb::Observation {
            at_ms: 1,
            ready_replicas: ready,
            cpu_percent: cpu,
            memory_percent: memory,
        }
    }

    fn desired(replicas: u32, sequence: u64) -> pb::DesiredPodgroup {
        pb::DesiredPodgroup {
            replicas,
            sequence,
            ..Default::default()
        }
    }

    fn sent(observation: pb::Observation, ago: Duration, sequence: u64) -> Sent {
        Sent {
            observation,
            at: Instant::now() - ago,
            sequence,
        }
    }

    const HEARTBEAT: Duration = Duration::from_secs(60);

    #[test]
    fn an_idle_podgroup_is_sent_first_then_only_at_the_heartbeat() {
        let idle = usage(1, 1.2, 20.0);
        let one = desired(1, 7);
        assert_eq!(
            worth_sending(None, &idle, &one, HEARTBEAT),
            Some(Why::First)
        );
        let last = sent(usage(1, 3.0, 21.0), Duration::from_secs(5), 7);
        assert_eq!(worth_sending(Some(&last), &idle, &one, HEARTBEAT), None);
        let old = sent(usage(1, 3.0, 21.0), HEARTBEAT, 7);
        assert_eq!(
            worth_sending(Some(&old), &idle, &one, HEARTBEAT),
            Some(Why::Heartbeat)
        );
    }

    #[test]
    fn a_move_of_a_few_points_a_new_ready_count_or_desired_state_is_sent_at_once() {
        let last = sent(usage(1, 3.0, 20.0), Duration::from_secs(5), 7);
        let one = desired(1, 7);
        let cases = [
            (usage(1, 8.0, 20.0), &one, Some(Why::Moved)),
            (usage(1, 3.0, 15.0), &one, Some(Why::Moved)),
            (usage(1, 7.9, 24.9), &one, None),
            (usage(2, 3.0, 20.0), &one, Some(Why::Ready)),
            (usage(1, 3.0, 20.0), &desired(1, 9), Some(Why::Desired)),
            (usage(1, 3.0, 20.0), &desired(3, 7), Some(Why::ScaledOut)),
        ];
        for (now, wanted, why) in cases {
            assert_eq!(
                worth_sending(Some(&last), &now, wanted, HEARTBEAT),
                why,
                "{now:?}"
            );
        }
    }

    #[test]
    fn usage_is_averaged_over_the_period_and_starts_again() {
        let mut period = Usage::default();
        for cpu in [0.0, 16.0, 0.0, 16.0] {
            period.add(&usage(1, cpu, 10.0));
        }
        period.add(&usage(0, 90.0, 90.0)); // no ready replica: no usage
        let averaged = period.take(1);
        assert_eq!(
            (
                averaged.ready_replicas,
                averaged.cpu_percent,
                averaged.memory_percent
            ),
            (1, 8.0, 10.0)
        );
        let empty = period.take(0);
        assert_eq!((empty.cpu_percent, empty.memory_percent), (0.0, 0.0));
    }
}
