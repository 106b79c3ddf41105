//! The canary's judgement: from one measured step of a canary release and its baseline, whether
//! it advances, completes, rolls back or runs on. A pure function, like [`crate::autoscale`];
//! the deployment aggregate records its verdict with the figures that decided it, so `neo why`
//! explains a rollback.
//!
//! # Rules
//!
//! A step's figures are, for each release, the requests it answered, the errors among them
//! (answers 500 and over) and the 95th percentile of its answer times.
//!
//! 1. **Enough traffic.** With fewer than `min_requests` requests on the canary the step runs
//!    on ([`Verdict::Wait`]): a verdict on a handful of requests is noise.
//! 2. **Errors.** The canary's error rate may exceed the baseline's by at most
//!    `max_error_rate_increase` percentage points; more rolls it back. A baseline without
//!    requests counts as 0 %.
//! 3. **Latency.** With a baseline p95 above 0, the canary's p95 may be at most
//!    `max_p95_ratio` times it; more rolls it back.
//! 4. **Next.** Otherwise it advances to the next step's share, or completes after the last.

use neo_protocol::pb;

/// The release of `deployment` rolling out as a canary now, with its canary (none: no canary
/// runs).
pub fn running(deployment: &pb::DeploymentState) -> Option<(&pb::Release, &pb::Canary)> {
    deployment.releases.iter().rev().find_map(|r| {
        r.canary
            .as_ref()
            .filter(|c| c.phase() == pb::CanaryPhase::Running)
            .map(|c| (r, c))
    })
}

/// The policy of a stage without one (shared with the clients).
pub use neo_protocol::canary::default_policy;

/// The most steps a policy may have.
pub const MAX_STEPS: usize = 10;
/// The longest a step may run, in seconds (a day).
pub const MAX_STEP_S: u32 = 86_400;

/// What a step's figures decide.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Not enough to judge yet: the step runs on (why).
    Wait(String),
    /// The step passed: the canary takes the next step's share (why it passed).
    Advance {
        /// The next step (an index into the policy's steps).
        step: u32,
        /// Its share, in percent.
        weight: u32,
        /// Why the step passed.
        reason: String,
    },
    /// The last step passed: the canary takes all the traffic (why).
    Complete(String),
    /// A threshold was crossed: the baseline takes all the traffic again (why).
    RollBack(String),
}

/// The share of `figures`' requests that were errors, in percent (0 without requests).
pub fn error_rate(figures: &pb::ReleaseFigures) -> f64 {
    if figures.requests == 0 {
        0.0
    } else {
        figures.errors as f64 * 100.0 / figures.requests as f64
    }
}

/// Judges step `step` of a canary under `policy` (the rules of the module doc).
pub fn judge(
    policy: &pb::CanaryPolicy,
    step: u32,
    baseline: &pb::ReleaseFigures,
    canary: &pb::ReleaseFigures,
) -> Verdict {
    if canary.requests < u64::from(policy.min_requests) {
        return Verdict::Wait(format!(
            "{} request(s) of the {} a step needs",
            canary.requests, policy.min_requests
        ));
    }
    let (base_rate, rate) = (error_rate(baseline), error_rate(canary));
    if rate - base_rate > policy.max_error_rate_increase + 1e-9 {
        return Verdict::RollBack(format!(
            "error rate {rate:.1} % against {base_rate:.1} % on the baseline (at most +{:.1} points)",
            policy.max_error_rate_increase
        ));
    }
    if baseline.p95_ms > 0.0 && canary.p95_ms > policy.max_p95_ratio * baseline.p95_ms + 1e-9 {
        return Verdict::RollBack(format!(
            "p95 latency {:.1} ms against {:.1} ms on the baseline (at most ×{:.2})",
            canary.p95_ms, baseline.p95_ms, policy.max_p95_ratio
        ));
    }
    let passed = format!(
        "error rate {rate:.1} % against {base_rate:.1} %, p95 {:.1} ms against {:.1} ms, over {} request(s)",
        canary.p95_ms, baseline.p95_ms, canary.requests
    );
    let next = step.saturating_add(1);
    match policy.steps.get(next as usize) {
        Some(&weight) => Verdict::Advance {
            step: next,
            weight,
            reason: passed,
        },
        None => Verdict::Complete(passed),
    }
}

/// Why `policy` (given as `field`) is malformed, naming the part: `(field, message)`.
pub fn check_policy(policy: &pb::CanaryPolicy) -> Result<(), (&'static str, String)> {
    if policy.steps.is_empty() || policy.steps.len() > MAX_STEPS {
        return Err((
            "steps",
            format!(
                "a canary needs 1 to {MAX_STEPS} steps, not {}",
                policy.steps.len()
            ),
        ));
    }
    if let Some(bad) = policy.steps.iter().find(|s| !(1..=99).contains(*s)) {
        return Err((
            "steps",
            format!("a step's share is 1 to 99 percent, not {bad}"),
        ));
    }
    if policy.steps.windows(2).any(|w| w[0] >= w[1]) {
        return Err((
            "steps",
            format!("the steps must increase: {:?}", policy.steps),
        ));
    }
    if !(1..=MAX_STEP_S).contains(&policy.step_seconds) {
        return Err((
            "step_seconds",
            format!(
                "a step runs 1 to {MAX_STEP_S} s, not {}",
                policy.step_seconds
            ),
        ));
    }
    let increase = policy.max_error_rate_increase;
    if !(increase.is_finite() && (0.0..=100.0).contains(&increase)) {
        return Err((
            "max_error_rate_increase",
            format!("{increase} is not 0 to 100 percentage points"),
        ));
    }
    let ratio = policy.max_p95_ratio;
    if !(ratio.is_finite() && ratio >= 1.0) {
        return Err((
            "max_p95_ratio",
            format!("{ratio} is not a ratio of at least 1"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
