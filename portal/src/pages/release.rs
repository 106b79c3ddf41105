//! A release's confirmation (a promotion, a deploy or a rollback): what would be released,
//! what impact analysis finds (blockers, warnings, missing settings, data changes), and the
//! form that releases it (with force when something blocks it); a refusal from the gateway is
//! shown above the form.

use maud::{Markup, html};
use neo_gateway::api;

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
