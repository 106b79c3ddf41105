//! A release's canary: where it is, and the figures of each judged step.

use neo_protocol::pb::{self, CanaryPhase};
use serde_json::{Value, json};

/// The canary of `release` in a few words (`-` when it is not one).
pub fn canary_text(release: &pb::Release) -> String {
    let Some(canary) = &release.canary else {
        return "-".to_owned();
    };
    let steps = canary.policy.as_ref().map_or(0, |p| p.steps.len());
    match canary.phase() {
        CanaryPhase::Running => format!(
            "step {} of {steps}: {} % of the traffic, v{} the rest",
            canary.step + 1,
            canary.weight,
            canary.baseline
        ),
        CanaryPhase::Completed => format!("completed: {}", canary.outcome),
        CanaryPhase::RolledBack => {
            format!("rolled back to v{}: {}", canary.baseline, canary.outcome)
        }
        CanaryPhase::Unspecified => "-".to_owned(),
    }
}

/// Each judged step, one line each: share, then requests, errors and p95 of both releases.
pub fn step_lines(canary: &pb::Canary) -> Vec<String> {
    canary
        .steps
        .iter()
        .map(|s| {
            let figures = |f: Option<&pb::ReleaseFigures>| {
                let f = f.cloned().unwrap_or_default();
                format!(
                    "{} requests, {} errors, p95 {:.0} ms",
                    f.requests, f.errors, f.p95_ms
                )
            };
            format!(
                "step {} at {} %: canary {}; baseline {}",
                s.step + 1,
                s.weight,
                figures(s.canary.as_ref()),
                figures(s.baseline.as_ref())
            )
        })
        .collect()
}

/// The canary of a release as JSON (null when it is not one).
pub fn canary_json(release: &pb::Release) -> Value {
    let Some(canary) = &release.canary else {
        return Value::Null;
    };
    let figures = |f: Option<&pb::ReleaseFigures>| {
        let f = f.cloned().unwrap_or_default();
        json!({"requests": f.requests, "errors": f.errors, "p95_ms": f.p95_ms})
    };
    json!({
        "phase": match canary.phase() {
            CanaryPhase::Running => "running",
            CanaryPhase::Completed => "completed",
            CanaryPhase::RolledBack => "rolled_back",
            CanaryPhase::Unspecified => "unspecified",
        },
        "baseline": canary.baseline,
        "step": canary.step,
        "weight": canary.weight,
        "outcome": canary.outcome,
        "steps": canary.steps.iter().map(|s| json!({
            "step": s.step,
            "weight": s.weight,
            "canary": figures(s.canary.as_ref()),
            "baseline": figures(s.baseline.as_ref()),
        })).collect::<Vec<_>>(),
    })
}
