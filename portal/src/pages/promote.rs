//! A promotion's confirmation: what would be promoted, what impact analysis finds (blockers,
//! warnings, missing settings, data changes), and the form that promotes (with force when
//! something blocks it); a refusal from the gateway is shown above the form.

use maud::{Markup, html};
use neo_gateway::api;

/// What the confirmation shows.
#[derive(Debug, Clone)]
pub struct Confirm {
    /// The app.
    pub app: String,
    /// The stage promoted into.
    pub stage: String,
    /// The stage promoted from, and its current release's revision.
    pub from: String,
    /// The revision promoted.
    pub revision: u32,
    /// What impact analysis finds.
    pub impact: api::ImpactReport,
    /// The CSRF value the form carries.
    pub csrf: String,
    /// Why the last attempt was refused.
    pub refused: Option<String>,
}

/// The confirmation page's body.
pub fn confirm(c: &Confirm) -> Markup {
    let blocked = !c.impact.blockers.is_empty();
    html! {
        h1 { "Promote " (c.app) " to " (c.stage) }
        p { "Revision " (c.revision) ", as it runs on " (c.from) ", replaces what runs on " (c.stage) "." }
        @if let Some(refused) = &c.refused {
            p.error role="alert" #promote-error { (refused) }
        }
        section #impact {
            h2 { "Impact" }
            @if c.impact.blockers.is_empty() && c.impact.warnings.is_empty() {
                p #impact-clear { "Nothing would break: no blockers, no warnings." }
            }
            @for (kind, findings) in [("Blocker", &c.impact.blockers), ("Warning", &c.impact.warnings)] {
                @if !findings.is_empty() {
                    ul class=(kind.to_lowercase()) {
                        @for f in findings.iter() {
                            li { strong { (kind) } " · " (f.consumer_app) " r" (f.consumer_revision) ": " (f.message) }
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
        form.confirm method="post" action="/promote" {
            input type="hidden" name="csrf" value=(c.csrf);
            input type="hidden" name="app" value=(c.app);
            input type="hidden" name="stage" value=(c.stage);
            @if blocked {
                label for="force" {
                    input #force type="checkbox" name="force" value="1";
                    " Promote anyway (the force and the blockers are recorded)"
                }
            }
            button #confirm type="submit" { "Promote" }
            " " a href="/" { "Cancel" }
        }
    }
}
