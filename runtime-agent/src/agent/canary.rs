//! Canary steps: for each desired podgroup with a canary, a step starts when the canary has a
//! ready replica in the stage's load balancer (its figures start afresh then) and, after the
//! canary's `step_seconds`, the figures of both releases go to the deployment as
//! `RecordCanaryStep`; the deployment judges them (advance, complete, roll back) and the new
//! step comes back in the desired state, starting the next one. A step the deployment finds
//! too thin (fewer requests than its policy's minimum) is sent again after another
//! `step_seconds`, the figures still growing; one the deployment refuses otherwise (it moved
//! past it) is not sent again. A canary whose replicas cannot start is aborted
//! with the driver's reason.
//!
//! Every [`CANARY_CHECK`] while some canary runs (a walk of the desired state in memory;
//! nothing is sent before a step is due); the driver is asked whether a canary cannot start
//! every [`FAILURE_CHECK`] (on Kubernetes that is a read of the API server).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use neo_protocol::{AppName, EntityRef, TenantName, pb};
use tokio::time::Instant;

use super::Ctx;
use super::report::command_scope;
use crate::canary::Canaries;
use crate::driver::PodgroupKey;

/// How often running canaries are looked at.
pub const CANARY_CHECK: Duration = Duration::from_secs(1);

/// How often the driver is asked whether a running canary cannot start.
pub const FAILURE_CHECK: Duration = Duration::from_secs(5);

/// The deployment's rule for a step with fewer requests than its policy's minimum.
const TOO_FEW: &str = "canary.too_few_requests";

/// How long a step's report waits before it is sent again when the platform was out of reach.
const RETRY: Duration = Duration::from_secs(1);

/// Where one podgroup's canary step is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Step {
    release: u32,
    step: u32,
    /// When the step's report is due (none: the canary does not serve yet).
    due: Option<Instant>,
    /// Reports of this step sent and answered so far (each try of one report has one id).
    sent: u32,
    /// The abort of a canary that cannot start was recorded.
    aborted: bool,
}

impl Step {
    fn of(canary: &pb::DesiredCanary) -> Self {
        Self {
            release: canary.release,
            step: canary.step,
            due: None,
            sent: 0,
            aborted: false,
        }
    }
}

/// Times and reports the steps of every running canary (see the module doc).
pub(crate) async fn canary_loop(ctx: Arc<Ctx>) {
    // None: the driver measures nothing (Kubernetes): steps advance by hand, but a canary
    // that cannot start is still aborted.
    let canaries = ctx.driver.canaries();
    let mut steps: HashMap<PodgroupKey, Step> = HashMap::new();
    let mut failed = HashMap::new();
    let mut failures_read: Option<Instant> = None;
    let mut tick = tokio::time::interval(CANARY_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let running: Vec<(PodgroupKey, pb::DesiredCanary)> = {
            let desired = ctx.desired.lock().await;
            let Some(desired) = desired.as_ref() else {
                continue;
            };
            desired
                .iter()
                .filter(|(key, d)| !d.removed && ctx.config.serves(&key.tenant))
                .filter_map(|(key, d)| Some((key.clone(), d.canary.clone()?)))
                .collect()
        };
        steps.retain(|key, _| running.iter().any(|(k, _)| k == key));
        // What the driver said of a canary that ended is not said of the next one.
        failed.retain(|key, _| steps.contains_key(key));
        if running.is_empty() {
            continue;
        }
        if failures_read.is_none_or(|at| at.elapsed() >= FAILURE_CHECK) {
            failed = failed_canaries(&ctx).await;
            failures_read = Some(Instant::now());
        }
        for (key, canary) in running {
            let step = steps.entry(key.clone()).or_insert_with(|| {
                failed.remove(&key);
                Step::of(&canary)
            });
            if step.release != canary.release {
                failed.remove(&key);
            }
            if (step.release, step.step) != (canary.release, canary.step) {
                *step = Step::of(&canary);
            }
            match failed.get(&key) {
                Some(reason) if !step.aborted => {
                    step.aborted = abort(&ctx, &key, canary.release, reason).await;
                }
                Some(_) => {}
                None => {
                    if let Some(canaries) = &canaries {
                        weigh(&ctx, canaries, &key, &canary, step).await;
                    }
                }
            }
        }
    }
}

/// The podgroups whose desired canary cannot start, with the driver's reason.
async fn failed_canaries(ctx: &Ctx) -> HashMap<PodgroupKey, String> {
    match ctx.driver.observe().await {
        Ok(observed) => observed
            .into_iter()
            .filter_map(|o| Some((o.key, o.canary_failed?)))
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot observe the driver for canaries");
            HashMap::new()
        }
    }
}

/// Starts the step once the canary serves; reports it when due.
async fn weigh(
    ctx: &Ctx,
    canaries: &Canaries,
    key: &PodgroupKey,
    canary: &pb::DesiredCanary,
    step: &mut Step,
) {
    let figures = canaries.app(&key.tenant, &key.app);
    let now = Instant::now();
    let length = Duration::from_secs(u64::from(canary.step_seconds.max(1)));
    let Some(due) = step.due else {
        if figures.serving() {
            figures.restart();
            step.due = Some(now + length);
            tracing::info!(podgroup = %key, release = canary.release, step = canary.step,
                weight = canary.weight, "canary step started");
        }
        return;
    };
    if now < due {
        return;
    }
    let Some(entity) = deployment(ctx, key) else {
        return;
    };
    let (baseline, measured) = figures.read();
    let command = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::RecordCanaryStep(
            pb::RecordCanaryStep {
                release: canary.release,
                step: canary.step,
                baseline: Some(baseline),
                canary: Some(measured),
            },
        )),
    };
    let id = format!(
        "canary:{}:{}:{}:{}",
        command_scope(&entity),
        canary.release,
        canary.step,
        step.sent
    );
    match ctx
        .platform
        .command(&entity, &id, &id, &ctx.principal(), &command)
        .await
    {
        Ok(_) => {
            tracing::info!(podgroup = %key, release = canary.release, step = canary.step,
                "canary step reported");
            step.sent += 1;
            step.due = Some(now + length);
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(podgroup = %key, error = %e, "cannot report the canary step yet");
            step.due = Some(now + RETRY);
        }
        Err(e) if e.rule() == Some(TOO_FEW) => {
            tracing::info!(podgroup = %key, error = %e, "canary step not judged yet; runs on");
            step.sent += 1;
            step.due = Some(now + length);
        }
        Err(e) => {
            // A step the deployment moved past, or a canary it ended: the desired state
            // brings the next step or the end; nothing more to send for this one.
            tracing::info!(podgroup = %key, error = %e, "canary step not judged");
            step.sent += 1;
            step.due = Some(now + Duration::from_secs(3600));
        }
    }
}

/// Aborts a canary that cannot start; whether the deployment answered (either way).
async fn abort(ctx: &Ctx, key: &PodgroupKey, release: u32, reason: &str) -> bool {
    let Some(entity) = deployment(ctx, key) else {
        return true;
    };
    let command = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::AbortCanary(
            pb::AbortCanary {
                release,
                reason: reason.to_owned(),
            },
        )),
    };
    let id = format!("canary-abort:{}:{release}", command_scope(&entity));
    match ctx
        .platform
        .command(&entity, &id, &id, &ctx.principal(), &command)
        .await
    {
        Ok(_) => {
            tracing::warn!(podgroup = %key, release, %reason, "canary aborted: it cannot start");
            true
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(podgroup = %key, error = %e, "cannot abort the canary yet");
            false
        }
        Err(e) => {
            tracing::info!(podgroup = %key, error = %e, "canary abort not recorded");
            true
        }
    }
}

/// The deployment of a podgroup's app and stage.
fn deployment(ctx: &Ctx, key: &PodgroupKey) -> Option<EntityRef> {
    let (Ok(tenant), Ok(app)) = (TenantName::new(&key.tenant), AppName::new(&key.app)) else {
        return None;
    };
    Some(EntityRef::deployment(&tenant, &app, &ctx.config.stage))
}
