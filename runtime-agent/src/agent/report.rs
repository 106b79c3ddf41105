//! What the agent tells the platform: rollouts, health reports, metrics and observations.
//!
//! A rollout is recorded on the deployment only when the driver says every new replica is
//! ready (or the release cannot start); command ids derive from the podgroup, release and
//! outcome, so a restarted agent repeating itself changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use neo_builder::platform::PlatformError;
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{EntityRef, pb};
use prost::Message;
use tracing::Instrument as _;

use super::{Shared, wait};
use crate::driver::logline::now_ms;
use crate::driver::{Observed, PodgroupKey, Rollout};

/// What was last reported for one podgroup.
#[derive(Default)]
struct Reported {
    /// (release, status) of the last rollout recorded.
    rollout: Option<(u32, i32)>,
    /// The replicas' (id, phase, release) and the desired count at the last health report.
    health: Vec<(String, i32, u32)>,
    desired: u32,
    health_at: Option<Instant>,
    metrics_at: Option<Instant>,
}

/// Observes the driver every `observe_every` (sooner on a change) and reports.
pub(crate) async fn report_loop(shared: Arc<Shared>) {
    let mut reported: HashMap<PodgroupKey, Reported> = HashMap::new();
    loop {
        wait(shared.config.observe_every, &shared.changed).await;
        let Some(desired) = shared.desired.lock().await.clone() else {
            continue;
        };
        let observed = match shared.driver.observe().await {
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
            neo_protocol::trace::set_parent(&span, &wanted.traceparent);
            report_rollout(&shared, wanted, &observed, state)
                .instrument(span)
                .await;
            report_health(&shared, wanted, &observed, state).await;
            report_metrics(&shared, wanted, &observed, state).await;
        }
        reported.retain(|key, _| desired.contains_key(key));
    }
}

async fn report_rollout(
    shared: &Shared,
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
    match shared
        .platform
        .command(&entity, &id, &cause, &shared.principal(), &command)
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

async fn report_health(
    shared: &Shared,
    wanted: &pb::DesiredPodgroup,
    observed: &Observed,
    state: &mut Reported,
) {
    let fingerprint: Vec<(String, i32, u32)> = observed
        .replicas
        .iter()
        .map(|r| (r.id.clone(), r.phase, r.release))
        .collect();
    let due = state
        .health_at
        .is_none_or(|at| at.elapsed() >= shared.config.report_every);
    if !due && fingerprint == state.health && wanted.replicas == state.desired {
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
        agent: shared.config.name.clone(),
        url: shared
            .config
            .lb_url
            .as_ref()
            .map(|lb| format!("{lb}/{}/{}/", observed.key.tenant, observed.key.app))
            .unwrap_or_default(),
    };
    let subject = subjects::runtime(&tenant, &stage, &app, Channel::Health.as_str());
    if publish(shared, subject, report.encode_to_vec()).await {
        state.health = fingerprint;
        state.desired = wanted.replicas;
        state.health_at = Some(Instant::now());
    }
}

async fn report_metrics(
    shared: &Shared,
    wanted: &pb::DesiredPodgroup,
    observed: &Observed,
    state: &mut Reported,
) {
    if state
        .metrics_at
        .is_some_and(|at| at.elapsed() < shared.config.metrics_every)
    {
        return;
    }
    let Some((tenant, app, stage)) = observed.key.names() else {
        return;
    };
    state.metrics_at = Some(Instant::now());
    let ready: Vec<&pb::ReplicaStatus> = observed
        .replicas
        .iter()
        .filter(|r| r.phase() == pb::ReplicaPhase::Ready)
        .collect();
    let observation = observation(&ready, super::resources(wanted));
    let report = pb::MetricsReport {
        tenant: observed.key.tenant.clone(),
        app: observed.key.app.clone(),
        stage: observed.key.stage.clone(),
        observation: Some(observation),
        replicas: observed.replicas.clone(),
    };
    let subject = subjects::runtime(&tenant, &stage, &app, Channel::Metrics.as_str());
    publish(shared, subject, report.encode_to_vec()).await;
    if observation.ready_replicas == 0 {
        return;
    }
    let entity = EntityRef::podgroup(&tenant, &app, &stage);
    let command = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::Observe(pb::Observe {
            observation: Some(observation),
        })),
    };
    let id = format!("observe:{}:{}", command_scope(&entity), observation.at_ms);
    let cause = format!("evt:{}", wanted.sequence);
    if let Err(e) = shared
        .platform
        .command(&entity, &id, &cause, &shared.principal(), &command)
        .await
    {
        log_refusal(&observed.key, "observation", &e);
    }
}

/// `{tenant}.{id}`: the part of the agent's command ids naming the entity (ids allow letters,
/// digits, `-`, `_`, `:` and `.`, and are unique across tenants).
pub(crate) fn command_scope(entity: &EntityRef) -> String {
    format!("{}.{}", entity.tenant, entity.id)
}

fn log_refusal(key: &PodgroupKey, what: &str, e: &PlatformError) {
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
pub(crate) async fn publish(shared: &Shared, subject: String, payload: Vec<u8>) -> bool {
    let sent = match shared
        .js
        .publish(subject.clone(), Bytes::from(payload))
        .await
    {
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
