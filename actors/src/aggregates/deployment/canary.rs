//! Canary releases of the deployment: a promotion with `canary` rolls out beside the current
//! release (its baseline) taking a growing share of the traffic, step by step; the stage's
//! agent measures each step and the deployment judges it ([`crate::canary::judge`]) and records
//! the verdict with the figures that decided it.
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `canary.policy` | invalid | a canary policy is missing or malformed (the field names the part) |
//! | `canary.no_baseline` | precondition | a canary promotion on a stage without a current release to compare with |
//! | `canary.running` | precondition | a new release (deploy, promotion, rollback, settings, secrets) while a canary runs |
//! | `canary.not_running` | precondition | a step, abort or completion for a release that is not a running canary |
//! | `canary.step` | precondition | a step other than the canary's current one |
//! | `canary.too_few_requests` | precondition | a step with fewer requests than the policy's `min_requests`: it runs on |
//!
//! While a canary runs the deployment's current release is the canary; a rollback (by a
//! failed step or by hand) makes the baseline current again.

use neo_protocol::pb::{self, CanaryPhase, deployment_event::Event};

use super::Rules;
use crate::aggregate::Rejection;
use crate::canary::{self, Verdict};

impl Rules<'_> {
    /// The canary running now, if one is.
    pub(super) fn running_canary(&self) -> Option<(&pb::Release, &pb::Canary)> {
        canary::running(self)
    }

    /// Refuses a new release while a canary runs.
    pub(super) fn no_running_canary(&self) -> Result<(), Rejection> {
        match self.running_canary() {
            Some((release, _)) => Err(Rejection::precondition(
                "canary.running",
                format_args!(
                    "release v{} is rolling out as a canary: complete or abort it first",
                    release.number
                ),
            )),
            None => Ok(()),
        }
    }

    /// The canary of a promotion: the stage's policy (or the default), its first step, the
    /// current release as the baseline.
    pub(super) fn start_canary(&self) -> Result<pb::Canary, Rejection> {
        let Some(baseline) = self.current_release() else {
            return Err(Rejection::precondition(
                "canary.no_baseline",
                format_args!(
                    "stage {} has no release to compare a canary with: promote without canary",
                    self.stage
                ),
            ));
        };
        let policy = self
            .canary_policy
            .clone()
            .unwrap_or_else(canary::default_policy);
        Ok(pb::Canary {
            baseline: baseline.number,
            step: 0,
            weight: policy.steps.first().copied().unwrap_or(100),
            policy: Some(policy),
            phase: CanaryPhase::Running.into(),
            outcome: String::new(),
            steps: Vec::new(),
        })
    }

    pub(super) fn set_canary_policy(&self, set: pb::SetCanaryPolicy) -> Result<Event, Rejection> {
        let Some(policy) = set.policy else {
            return Err(Rejection::invalid(
                "canary.policy",
                "set_canary_policy.policy",
                "set_canary_policy needs a policy",
            ));
        };
        canary::check_policy(&policy).map_err(|(part, message)| {
            Rejection::invalid(
                "canary.policy",
                format!("set_canary_policy.policy.{part}"),
                message,
            )
        })?;
        Ok(Event::CanaryPolicySet(pb::CanaryPolicySet {
            policy: Some(policy),
        }))
    }

    /// The running canary `release`, else `canary.not_running`.
    fn canary_of(&self, release: u32) -> Result<&pb::Canary, Rejection> {
        match self.running_canary() {
            Some((r, c)) if r.number == release => Ok(c),
            _ => Err(Rejection::precondition(
                "canary.not_running",
                format_args!("release v{release} is not a running canary"),
            )),
        }
    }

    /// Judges a measured step and records the verdict.
    pub(super) fn record_canary_step(
        &self,
        record: pb::RecordCanaryStep,
    ) -> Result<Event, Rejection> {
        let release = record.release;
        let running = self.canary_of(release)?;
        if record.step != running.step {
            return Err(Rejection::precondition(
                "canary.step",
                format_args!(
                    "release v{release} is at step {}, not {}",
                    running.step, record.step
                ),
            ));
        }
        let policy = running
            .policy
            .clone()
            .unwrap_or_else(canary::default_policy);
        let baseline = record.baseline.unwrap_or_default();
        let measured = record.canary.unwrap_or_default();
        let judged = pb::CanaryStep {
            step: running.step,
            weight: running.weight,
            baseline: Some(baseline),
            canary: Some(measured),
        };
        Ok(
            match canary::judge(&policy, running.step, &baseline, &measured) {
                Verdict::Wait(why) => {
                    return Err(Rejection::precondition("canary.too_few_requests", why));
                }
                Verdict::Advance {
                    step,
                    weight,
                    reason,
                } => Event::CanaryAdvanced(pb::CanaryAdvanced {
                    release,
                    step,
                    weight,
                    judged: Some(judged),
                    reason,
                }),
                Verdict::Complete(reason) => Event::CanaryCompleted(pb::CanaryCompleted {
                    release,
                    reason: format!("every step passed; the last: {reason}"),
                    judged: Some(judged),
                }),
                Verdict::RollBack(reason) => Event::CanaryRolledBack(pb::CanaryRolledBack {
                    release,
                    baseline: running.baseline,
                    reason,
                    judged: Some(judged),
                }),
            },
        )
    }

    /// Rolls a running canary back by hand.
    pub(super) fn abort_canary(&self, abort: pb::AbortCanary) -> Result<Event, Rejection> {
        let running = self.canary_of(abort.release)?;
        let why = abort.reason.trim();
        Ok(Event::CanaryRolledBack(pb::CanaryRolledBack {
            release: abort.release,
            baseline: running.baseline,
            reason: if why.is_empty() {
                "aborted".to_owned()
            } else {
                format!("aborted: {why}")
            },
            judged: None,
        }))
    }

    /// Promotes a running canary at once.
    pub(super) fn complete_canary(&self, complete: pb::CompleteCanary) -> Result<Event, Rejection> {
        let running = self.canary_of(complete.release)?;
        Ok(Event::CanaryCompleted(pb::CanaryCompleted {
            release: complete.release,
            reason: format!(
                "promoted at once at step {} ({} %)",
                running.step, running.weight
            ),
            judged: None,
        }))
    }
}

/// Folds a canary event into the state.
pub(super) fn apply(state: &mut pb::DeploymentState, event: &Event) {
    fn canary_of(state: &mut pb::DeploymentState, number: u32) -> Option<&mut pb::Canary> {
        state
            .releases
            .iter_mut()
            .find(|r| r.number == number)
            .and_then(|r| r.canary.as_mut())
    }
    match event {
        Event::CanaryPolicySet(e) => state.canary_policy.clone_from(&e.policy),
        Event::CanaryAdvanced(e) => {
            if let Some(canary) = canary_of(state, e.release) {
                canary.step = e.step;
                canary.weight = e.weight;
                canary.steps.extend(e.judged);
            }
        }
        Event::CanaryCompleted(e) => {
            if let Some(canary) = canary_of(state, e.release) {
                canary.weight = 100;
                canary.phase = CanaryPhase::Completed.into();
                canary.outcome.clone_from(&e.reason);
                canary.steps.extend(e.judged);
            }
        }
        Event::CanaryRolledBack(e) => {
            if let Some(canary) = canary_of(state, e.release) {
                canary.weight = 0;
                canary.phase = CanaryPhase::RolledBack.into();
                canary.outcome.clone_from(&e.reason);
                canary.steps.extend(e.judged);
            }
            state.current = e.baseline;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
