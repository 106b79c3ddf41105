//! A release's confirmation (a promotion, a deploy or a rollback): what would be released,
//! what impact analysis finds (blockers, warnings, missing settings, data changes), and the
//! form that releases it (with force when something blocks it; for a promotion onto a stage
//! that runs a release, the choice to roll it out as a canary); a refusal from the gateway is
//! shown above the form.

use maud::{Markup, html};
use neo_gateway::api;
use neo_protocol::pb;

use super::layout;

/// Which release is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Promote the current release of `from`, the previous stage.
    Promote {
        /// The stage promoted from.
        from: String,
    },
    /// Deploy a revision's build.
    Deploy,
    /// Roll back to an earlier release.
    Rollback {
        /// The release restored.
        to_release: u32,
    },
}

impl Kind {
    /// The verb, capitalised.
    pub fn verb(&self) -> &'static str {
        match self {
            Kind::Promote { .. } => "Promote",
            Kind::Deploy => "Deploy",
            Kind::Rollback { .. } => "Roll back",
        }
    }

    /// Where its form posts.
    pub fn action(&self) -> &'static str {
        match self {
            Kind::Promote { .. } => "/promote",
            Kind::Deploy => "/deploy",
            Kind::Rollback { .. } => "/rollback",
        }
    }
}

/// What the confirmation shows.
#[derive(Debug, Clone)]
pub struct Confirm {
    /// Which release.
    pub kind: Kind,
    /// The app.
    pub app: String,
    /// The stage released on.
    pub stage: String,
    /// The revision released.
    pub revision: u32,
    /// What impact analysis finds.
    pub impact: api::ImpactReport,
    /// The CSRF value the form carries.
    pub csrf: String,
    /// Why the last attempt was refused.
    pub refused: Option<String>,
    /// A promotion's choice to roll out as a canary (absent: not offered).
    pub canary: Option<CanaryOffer>,
}

/// A promotion offered as a canary: it needs a release on the stage to compare with.
#[derive(Debug, Clone, Default)]
pub struct CanaryOffer {
    /// The release it would be compared with (the stage's current one).
    pub baseline: u32,
    /// The stage's canary policy (absent: the platform's default).
    pub policy: Option<pb::CanaryPolicy>,
    /// Whether the box is ticked (the refused attempt asked for a canary).
    pub checked: bool,
}

impl CanaryOffer {
    /// What rolling out as a canary does, in a line.
    pub fn explanation(&self) -> String {
        let steps = match &self.policy {
            Some(p) => format!(
                "{} % of the traffic, a step every {} s (this stage's canary policy)",
                p.steps
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" %, then "),
                p.step_seconds
            ),
            None => "a growing share of the traffic, step by step (the platform's default canary policy)"
                .to_owned(),
        };
        format!(
            "It runs beside v{} and takes {steps}; it is rolled back by itself if its errors or latency are worse.",
            self.baseline
        )
    }
}

/// The confirmation page's title.
pub fn title(c: &Confirm) -> String {
    format!("{} {}", c.kind.verb(), c.app)
}

/// The confirmation page's body.
pub fn confirm(c: &Confirm) -> Markup {
    let blocked = !c.impact.blockers.is_empty();
    html! {
        @match &c.kind {
            Kind::Promote { from } => {
                h1 { "Promote " (c.app) " to " (c.stage) }
                p { "Revision " (c.revision) ", as it runs on " (from) ", replaces what runs on " (c.stage) "." }
            }
            Kind::Deploy => {
                h1 { "Deploy " (c.app) " revision " (c.revision) " to " (c.stage) }
                p { "Its build replaces what runs on " (c.stage) "." }
            }
            Kind::Rollback { to_release } => {
                h1 { "Roll " (c.app) " on " (c.stage) " back to v" (to_release) }
                p { "Release v" (to_release) "'s image (revision " (c.revision) ") runs again, as a new release." }
            }
        }
        (layout::form_error("release-error", c.refused.as_deref()))
        section #impact {
            h2 { "Impact" }
            @if c.impact.blockers.is_empty() && c.impact.warnings.is_empty() {
                p #impact-clear { "Nothing would break: no blockers, no warnings." }
            }
            @for (kind, findings) in [("Blocker", &c.impact.blockers), ("Warning", &c.impact.warnings)] {
                @if !findings.is_empty() {
                    ul class=(kind.to_lowercase()) {
                        @for f in findings.iter() {
                            li {
                                strong { (kind) } " · "
                                @if !f.consumer_app.is_empty() { (f.consumer_app) " r" (f.consumer_revision) ": " }
                                (f.message)
                            }
                        }
                    }
                }
            }
            @if !c.impact.data_changes.is_empty() {
                h3 { "What its migration does to the data" }
                ul.data {
                    @for d in &c.impact.data_changes {
                        li {
                            (d.entity) @if !d.field.is_empty() { "." (d.field) } ": " (d.message)
                            @if d.loses_data { " " strong { "(loses data)" } }
                        }
                    }
                }
            }
        }
        form.confirm method="post" action=(c.kind.action()) {
            input type="hidden" name="csrf" value=(c.csrf);
            input type="hidden" name="app" value=(c.app);
            input type="hidden" name="stage" value=(c.stage);
            @match &c.kind {
                Kind::Deploy => { input type="hidden" name="revision" value=(c.revision); }
                Kind::Rollback { to_release } => { input type="hidden" name="release" value=(to_release); }
                Kind::Promote { .. } => {}
            }
            @if let Some(offer) = &c.canary {
                label for="canary" {
                    input #canary type="checkbox" name="canary" value="1" checked[offer.checked]
                        aria-describedby="canary-hint";
                    " Roll out as a canary"
                }
                p.hint #canary-hint { (offer.explanation()) }
            }
            @if blocked {
                label for="force" {
                    input #force type="checkbox" name="force" value="1";
                    " " (c.kind.verb()) " anyway (the force and the blockers are recorded)"
                }
            }
            button #confirm type="submit" { (c.kind.verb()) }
            " " a href="/" { "Cancel" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirm(kind: Kind, canary: Option<CanaryOffer>) -> Confirm {
        Confirm {
            kind,
            app: "catalog".into(),
            stage: "test".into(),
            revision: 2,
            impact: api::ImpactReport::default(),
            csrf: "c5rf".into(),
            refused: None,
            canary,
        }
    }

    #[test]
    fn a_promotion_may_roll_out_as_a_canary_under_the_stages_steps() {
        let offer = CanaryOffer {
            baseline: 3,
            policy: Some(pb::CanaryPolicy {
                steps: vec![10, 25, 50],
                step_seconds: 120,
                ..Default::default()
            }),
            checked: false,
        };
        let promote = Kind::Promote { from: "dev".into() };
        let html = super::confirm(&confirm(promote, Some(offer))).into_string();
        assert!(
            html.contains("type=\"checkbox\" name=\"canary\" value=\"1\""),
            "{html}"
        );
        assert!(html.contains("Roll out as a canary"), "{html}");
        assert!(
            html.contains(
                "beside v3 and takes 10 %, then 25 %, then 50 % of the traffic, a step every 120 s"
            ),
            "{html}"
        );
        let deploy = super::confirm(&confirm(Kind::Deploy, None)).into_string();
        assert!(!deploy.contains("name=\"canary\""), "{deploy}");
    }
}
