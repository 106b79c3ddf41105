//! A release's canary as the pages show it: where it is (its step and share of the traffic, or
//! how it ended), each judged step's figures for both releases, and the forms that end a
//! running one by hand (abort, promote now).

use maud::{Markup, html};
use neo_protocol::pb::{self, CanaryPhase};

/// The canary's phase as a word (also its CSS class).
pub fn phase_word(canary: &pb::Canary) -> &'static str {
    match canary.phase() {
        CanaryPhase::Running => "running",
        CanaryPhase::Completed => "completed",
        CanaryPhase::RolledBack => "rolled-back",
        CanaryPhase::Unspecified => "unknown",
    }
}

/// Where the canary of release `number` is, in a line: "canary v4: step 1 of 2, 10 % of
/// traffic (v3 the rest)" while it runs, else how it ended and why.
pub fn summary(number: u32, canary: &pb::Canary) -> String {
    match canary.phase() {
        CanaryPhase::Running => {
            let steps = canary.policy.as_ref().map_or(0, |p| p.steps.len());
            format!(
                "canary v{number}: step {} of {steps}, {} % of traffic (v{} the rest)",
                canary.step + 1,
                canary.weight,
                canary.baseline
            )
        }
        CanaryPhase::Completed => format!("canary v{number} completed: {}", canary.outcome),
        CanaryPhase::RolledBack => format!(
            "canary v{number} rolled back to v{}: {}",
            canary.baseline, canary.outcome
        ),
        CanaryPhase::Unspecified => format!("canary v{number}"),
    }
}

/// What one release answered in a step: "120 requests, 2 errors, p95 35 ms".
pub fn figures(f: Option<&pb::ReleaseFigures>) -> String {
    let f = f.cloned().unwrap_or_default();
    format!(
        "{} requests, {} errors, p95 {:.0} ms",
        f.requests, f.errors, f.p95_ms
    )
}

/// A judged step of the canary of release `number`: its share, then both releases' figures.
pub fn step(number: u32, canary: &pb::Canary, judged: &pb::CanaryStep) -> Markup {
    html! {
        "step " (judged.step + 1) " at " (judged.weight) " %: "
        "v" (number) " " (figures(judged.canary.as_ref())) "; "
        "v" (canary.baseline) " " (figures(judged.baseline.as_ref()))
    }
}

/// Every judged step, in order (or that none was judged yet).
pub fn steps(number: u32, canary: &pb::Canary) -> Markup {
    html! {
        @if canary.steps.is_empty() {
            div.none { "no step judged yet" }
        } @else {
            ol.canary-steps {
                @for judged in &canary.steps { li { (step(number, canary, judged)) } }
            }
        }
    }
}

/// The last judged step (or that none was judged yet).
pub fn last_step(number: u32, canary: &pb::Canary) -> Markup {
    html! {
        @match canary.steps.last() {
            Some(judged) => { div.canary-step { "last judged " (step(number, canary, judged)) } }
            None => { div.none { "no step judged yet" } }
        }
    }
}

/// Where "Abort canary" posts.
pub const ABORT: &str = "/canary/abort";
/// Where "Promote now" posts.
pub const PROMOTE_NOW: &str = "/canary/promote";

/// The forms that end the running canary `release` of `app` on `stage` by hand: abort (the
/// baseline takes all the traffic again) and promote now (the canary takes all of it).
pub fn end_forms(app: &str, stage: &str, release: u32, csrf: &str) -> Markup {
    let form = |action: &str, class: &str, label: &str| {
        html! {
            form.inline method="post" action=(action) {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="app" value=(app);
                input type="hidden" name="stage" value=(stage);
                input type="hidden" name="release" value=(release);
                button class=(class) type="submit"
                    aria-label=(format!("{label} of {app} on {stage}")) { (label) }
            }
        }
    };
    html! {
        div.canary-actions {
            (form(ABORT, "secondary", "Abort canary"))
            (form(PROMOTE_NOW, "", "Promote now"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(phase: CanaryPhase) -> pb::Canary {
        pb::Canary {
            baseline: 3,
            step: 1,
            weight: 50,
            policy: Some(pb::CanaryPolicy {
                steps: vec![10, 50],
                ..Default::default()
            }),
            phase: phase.into(),
            outcome: "aborted: slow".into(),
            steps: vec![pb::CanaryStep {
                step: 0,
                weight: 10,
                baseline: Some(pb::ReleaseFigures {
                    requests: 200,
                    errors: 1,
                    p95_ms: 31.4,
                }),
                canary: Some(pb::ReleaseFigures {
                    requests: 25,
                    errors: 0,
                    p95_ms: 28.6,
                }),
            }],
        }
    }

    #[test]
    fn a_running_canary_says_its_step_and_share_and_an_ended_one_why() {
        assert_eq!(
            summary(4, &canary(CanaryPhase::Running)),
            "canary v4: step 2 of 2, 50 % of traffic (v3 the rest)"
        );
        assert_eq!(
            summary(4, &canary(CanaryPhase::RolledBack)),
            "canary v4 rolled back to v3: aborted: slow"
        );
        let last = last_step(4, &canary(CanaryPhase::Running)).into_string();
        assert!(
            last.contains(
                "step 1 at 10 %: v4 25 requests, 0 errors, p95 29 ms; v3 200 requests, 1 errors, p95 31 ms"
            ),
            "{last}"
        );
    }

    #[test]
    fn the_end_forms_carry_the_csrf_value_and_the_release() {
        let forms = end_forms("catalog", "test", 4, "c5rf").into_string();
        assert_eq!(forms.matches("value=\"c5rf\"").count(), 2, "{forms}");
        assert!(forms.contains("action=\"/canary/abort\""), "{forms}");
        assert!(forms.contains("action=\"/canary/promote\""), "{forms}");
        assert!(forms.contains("name=\"release\" value=\"4\""), "{forms}");
    }
}
