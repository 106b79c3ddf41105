//! What a pod's and a Deployment's status mean for Neo: replica phases and rollouts, as pure functions.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use neo_protocol::pb;

use super::objects::{self, CONTAINER};
use crate::driver::{Observed, PodgroupKey, Rollout};

/// Waiting reasons after which the container will not run without a change (or only after a
/// back-off that ends in the same state).
const FAILING_REASONS: [&str; 10] = [
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
];

/// The replica a pod is, as Neo reports it; `None` for a pod without a name.
///
/// The id is the pod name, the address its IP, the release comes from its `dev.neo/release`
/// label and the digest from its image reference (`host/repo@sha256:…`). Usage (CPU, memory)
/// is left at zero: it comes from the metrics API, not from the pod.
pub fn replica_status(pod: &Pod) -> Option<pb::ReplicaStatus> {
    let id = pod.metadata.name.clone()?;
    let (phase, reason) = phase(pod);
    let status = pod.status.as_ref();
    let image_digest = pod
        .spec
        .as_ref()
        .and_then(|spec| {
            spec.containers
                .iter()
                .find(|c| c.name == CONTAINER)
                .or(spec.containers.first())
        })
        .and_then(|c| c.image.as_deref())
        .and_then(|image| image.split_once('@'))
        .map(|(_, digest)| digest.to_owned())
        .unwrap_or_default();
    Some(pb::ReplicaStatus {
        id,
        release: objects::release_from_labels(pod.metadata.labels.as_ref()),
        image_digest,
        phase: phase as i32,
        address: status.and_then(|s| s.pod_ip.clone()).unwrap_or_default(),
        started_ms: status.and_then(|s| s.start_time.as_ref()).map_or(0, millis),
        reason,
        cpu_millis: 0.0,
        memory_bytes: 0,
    })
}

/// A pod's phase and the reason for it (empty when there is nothing to say).
///
/// - terminating, or exited for good (pod phase `Succeeded`): Stopped;
/// - pod phase `Failed`, or the container waiting for a reason that will not resolve itself
///   (`CrashLoopBackOff`, `ImagePullBackOff`, …): Failed, with that reason;
/// - the container just exited and is about to restart, the node lost (phase `Unknown`), or
///   running but no longer ready after having been ready since it started: Unhealthy;
/// - the Ready condition true: Ready;
/// - otherwise (pending, creating, running but not yet ready): Starting.
///
/// "Ready since it started" is read from the Ready condition: if it last changed after the
/// container started, the container was ready and lost it; if it last changed before, the
/// container has not been ready yet.
pub fn phase(pod: &Pod) -> (pb::ReplicaPhase, String) {
    use pb::ReplicaPhase::{Failed, Ready, Starting, Stopped, Unhealthy};
    if pod.metadata.deletion_timestamp.is_some() {
        return (Stopped, "Terminating".to_owned());
    }
    let Some(status) = pod.status.as_ref() else {
        return (Starting, String::new());
    };
    match status.phase.as_deref() {
        Some("Succeeded") => return (Stopped, status.reason.clone().unwrap_or_default()),
        Some("Failed") => return (Failed, failed_reason(status)),
        Some("Unknown") => {
            return (
                Unhealthy,
                status
                    .reason
                    .clone()
                    .unwrap_or_else(|| "Unknown".to_owned()),
            );
        }
        _ => {}
    }
    let ready = condition(status, "Ready");
    let Some(container) = container_status(status) else {
        let reason = condition(status, "PodScheduled")
            .filter(|c| c.status == "False")
            .and_then(|c| c.reason.clone())
            .unwrap_or_default();
        return (Starting, reason);
    };
    let state = container.state.as_ref();
    if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
        let reason = waiting.reason.clone().unwrap_or_default();
        if FAILING_REASONS.contains(&reason.as_str()) {
            return (Failed, reason);
        }
        return (Starting, reason);
    }
    if let Some(terminated) = state.and_then(|s| s.terminated.as_ref()) {
        let reason = terminated
            .reason
            .clone()
            .unwrap_or_else(|| format!("exited with code {}", terminated.exit_code));
        return (Unhealthy, reason);
    }
    if ready.is_some_and(|c| c.status == "True") {
        return (Ready, String::new());
    }
    let started = state
        .and_then(|s| s.running.as_ref())
        .and_then(|r| r.started_at.as_ref());
    let lost_readiness = ready
        .and_then(|c| c.last_transition_time.as_ref())
        .zip(started)
        .is_some_and(|(changed, started)| changed.0 > started.0);
    if lost_readiness {
        return (Unhealthy, "NotReady".to_owned());
    }
    (Starting, String::new())
}

/// The app container's status (or the first container's).
fn container_status(status: &PodStatus) -> Option<&ContainerStatus> {
    let statuses = status.container_statuses.as_ref()?;
    statuses
        .iter()
        .find(|c| c.name == CONTAINER)
        .or(statuses.first())
}

/// The pod condition of type `kind`.
fn condition<'a>(status: &'a PodStatus, kind: &str) -> Option<&'a PodCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == kind)
}

/// Why a pod failed: its own reason, else its container's termination reason.
fn failed_reason(status: &PodStatus) -> String {
    if let Some(reason) = status.reason.clone() {
        return reason;
    }
    container_status(status)
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .and_then(|t| t.reason.clone())
        .unwrap_or_else(|| "Failed".to_owned())
}

/// How the rollout of a Deployment's current spec is going.
///
/// Until the Deployment controller has seen the latest spec (`observedGeneration` below
/// `generation`) it is Progressing, whatever older conditions say. Then it is Failed when the
/// `Progressing` condition is false (`ProgressDeadlineExceeded`), Succeeded when every desired
/// replica runs the current template and is ready and no other replica is left, else Progressing.
pub fn rollout(deployment: &Deployment) -> Rollout {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|spec| spec.replicas)
        .unwrap_or(1);
    let Some(status) = deployment.status.as_ref() else {
        return Rollout::Progressing;
    };
    if status.observed_generation.unwrap_or(0) < generation {
        return Rollout::Progressing;
    }
    let stalled = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing" && c.status == "False");
    if let Some(stalled) = stalled {
        let reason = stalled.reason.as_deref().unwrap_or("Progressing=False");
        return Rollout::Failed(match stalled.message.as_deref() {
            Some(message) if !message.is_empty() => format!("{reason}: {message}"),
            _ => reason.to_owned(),
        });
    }
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    if updated == desired && ready == desired && total == desired {
        Rollout::Succeeded
    } else {
        Rollout::Progressing
    }
}

/// A podgroup's Deployments and pods as an [`Observed`] podgroup: `main` is its own Deployment
/// (its release and rollout; `None` when only a canary's is left: release 0, Progressing),
/// `canary` its canary's ([`canary_failure`]).
///
/// `pods` may hold pods of other podgroups: only those labelled with `key` are taken, the
/// canary's among them (each replica's release is its pod's).
pub fn observed(
    key: PodgroupKey,
    main: Option<&Deployment>,
    canary: Option<&Deployment>,
    pods: &[Pod],
) -> Observed {
    let mut replicas: Vec<pb::ReplicaStatus> = pods
        .iter()
        .filter(|pod| pod_key(pod).as_ref() == Some(&key))
        .filter_map(replica_status)
        .collect();
    replicas.sort_by(|a, b| a.id.cmp(&b.id));
    Observed {
        release: main.map_or(0, |d| {
            objects::release_from_labels(d.metadata.labels.as_ref())
        }),
        replicas,
        rollout: main.map_or(Rollout::Progressing, rollout),
        key,
        canary_failed: canary.and_then(canary_failure),
    }
}

/// Why a canary's pods cannot start, as its Deployment says it: its rollout failed (the
/// `Progressing` condition false, `ProgressDeadlineExceeded`), as the release's rollout is
/// judged ([`rollout`]); `None` while it progresses or runs.
pub fn canary_failure(canary: &Deployment) -> Option<String> {
    match rollout(canary) {
        Rollout::Failed(reason) => Some(format!(
            "canary release {} cannot start: {reason}",
            objects::release_from_labels(canary.metadata.labels.as_ref())
        )),
        Rollout::Progressing | Rollout::Succeeded => None,
    }
}

/// The podgroup a pod belongs to, from its labels.
pub fn pod_key(pod: &Pod) -> Option<PodgroupKey> {
    objects::key_from_labels(pod.metadata.labels.as_ref())
}

/// Unix milliseconds of an API time (0 before the epoch).
pub fn millis(time: &Time) -> u64 {
    u64::try_from(time.0.as_millisecond()).unwrap_or(0)
}
