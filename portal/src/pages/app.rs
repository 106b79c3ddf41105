//! An app: its revisions (author, message, digest, resolved dependencies) with a deploy for the
//! built ones, its builds, per stage its releases (origin, rollout, a canary's phase or outcome
//! with its judged steps; a rollback to an earlier one; refreshed in place when the tenant's
//! deployments change) with links to its settings, logs, metrics and history, and its scale
//! policies (a form for who may change them).

use std::collections::BTreeMap;

use maud::{Markup, html};
use neo_gateway::api;
use neo_protocol::pb;

use super::board::{rollout_word, short_digest};
use super::{canary, layout};
use crate::respond::{Refusal, encode};

/// One stage of the app.
#[derive(Debug, Clone, Default)]
pub struct Stage {
    /// The stage.
    pub name: String,
    /// Its releases, newest first.
    pub releases: Vec<pb::Release>,
    /// What runs there (absent until the podgroup exists).
    pub status: Option<api::PodgroupStatus>,
    /// Whether the user may release and scale here.
    pub may_release: bool,
}

/// What the app page shows.
#[derive(Debug, Clone, Default)]
pub struct AppPage {
    /// The app.
    pub app: String,
    /// Its description.
    pub description: String,
    /// Its revisions, newest first.
    pub revisions: Vec<pb::Revision>,
    /// Its builds by revision.
    pub builds: BTreeMap<u32, api::Build>,
    /// The tenant's stages, in order.
    pub stages: Vec<Stage>,
    /// The CSRF value the forms carry.
    pub csrf: String,
    /// A refused scale policy: the stage and why.
    pub refused: Option<(String, Refusal)>,
    /// The newest event the page shows (its live part follows the ones after).
    pub after: u64,
}

/// The page's body.
pub fn page(p: &AppPage) -> Markup {
    let deployable: Vec<&Stage> = p.stages.iter().filter(|s| s.may_release).collect();
    html! {
        h1 { (p.app) }
        @if !p.description.is_empty() { p.description { (p.description) } }
        nav.stages aria-label="Stages" {
            @for s in &p.stages { a href=(format!("#stage-{}", s.name)) { (s.name) } " " }
        }
        section #revisions {
            h2 { "Revisions" }
            @if p.revisions.is_empty() { p.none { "No revision yet: " code { "neo publish" } " one." } }
            @else {
                div.scroll { table.grid {
                    thead { tr {
                        th scope="col" { "#" } th scope="col" { "Author" } th scope="col" { "Message" }
                        th scope="col" { "Digest" } th scope="col" { "Dependencies" } th scope="col" { "Build" }
                    } }
                    tbody {
                        @for r in &p.revisions {
                            @let build = p.builds.get(&r.number);
                            tr id=(format!("revision-{}", r.number)) {
                                td { (r.number) }
                                td { (r.author) }
                                td { (r.message) }
                                td.digest title=(r.digest) { (short_digest(&r.digest)) }
                                td { (dependencies(&r.dependencies)) }
                                td {
                                    @if let Some(b) = build {
                                        a href=(format!("/builds/{}", encode(&b.id))) { (build_word(b)) }
                                        @if is_built(b) && !deployable.is_empty() {
                                            form.inline method="get" action="/deploy" {
                                                input type="hidden" name="app" value=(p.app);
                                                input type="hidden" name="revision" value=(r.number);
                                                label.visually-hidden for=(format!("deploy-{}", r.number)) { "Stage" }
                                                select id=(format!("deploy-{}", r.number)) name="stage" {
                                                    @for s in &deployable { option value=(s.name) { (s.name) } }
                                                }
                                                button type="submit" { "Deploy…" }
                                            }
                                        }
                                    } @else { span.none { "not built" } }
                                }
                            }
                        }
                    }
                } }
            }
        }
        section #releases {
            h2 { "Releases" }
            div #releases-live hx-ext="sse" sse-connect=(format!("/live?after={}", p.after))
                hx-get=(format!("/apps/{}/releases", encode(&p.app))) hx-trigger="sse:changed" hx-swap="innerHTML" {
                (releases(p))
            }
        }
        section #scale {
            h2 { "Scale policies" }
            @for s in &p.stages {
                h3 id=(format!("scale-{}", s.name)) { "On " (s.name) }
                (scale(p, s))
            }
        }
    }
}

/// Every stage's releases: the part of the page refreshed when the tenant's deployments
/// change.
pub fn releases(p: &AppPage) -> Markup {
    html! { @for s in &p.stages { (stage(p, s)) } }
}

fn is_built(b: &api::Build) -> bool {
    b.state
        .as_ref()
        .is_some_and(|s| s.status == pb::BuildStatus::Succeeded as i32)
}

/// A build's status as a word.
pub fn build_word(b: &api::Build) -> &'static str {
    let status = b.state.as_ref().map_or(0, |s| s.status);
    match pb::BuildStatus::try_from(status) {
        Ok(pb::BuildStatus::Requested) => "requested",
        Ok(pb::BuildStatus::Started) => "building",
        Ok(pb::BuildStatus::Succeeded) => "built",
        Ok(pb::BuildStatus::Failed) => "failed",
        Ok(pb::BuildStatus::Cancelled) => "cancelled",
        _ => "unknown",
    }
}

fn dependencies(deps: &[pb::Dependency]) -> Markup {
    html! {
        @if deps.is_empty() { span.none { "none" } }
        @for d in deps {
            div {
                (d.producer_app) " r" (d.producer_revision) ": " (d.entity)
                @if !d.fields.is_empty() { " (" (d.fields.join(", ")) ")" }
            }
        }
    }
}

fn origin(r: &pb::Release) -> String {
    match pb::ReleaseOrigin::try_from(r.origin) {
        Ok(pb::ReleaseOrigin::Deploy) => format!("deployed revision {}", r.revision),
        Ok(pb::ReleaseOrigin::Promotion) => match &r.promoted_from {
            Some(from) => format!("promoted from {} v{}", from.stage, from.number),
            None => "promoted".to_owned(),
        },
        Ok(pb::ReleaseOrigin::Rollback) => format!("rolled back to v{}", r.rolled_back_to),
        Ok(pb::ReleaseOrigin::Config) => "settings changed".to_owned(),
        _ => "unknown".to_owned(),
    }
}

fn stage(p: &AppPage, s: &Stage) -> Markup {
    // The deployment's current release: the newest, but after a canary rolled back, its
    // baseline.
    let current = s
        .status
        .as_ref()
        .map(|st| st.release)
        .filter(|r| *r > 0)
        .or_else(|| s.releases.first().map(|r| r.number))
        .unwrap_or(0);
    let app = encode(&p.app);
    let stage = encode(&s.name);
    html! {
        section.stage id=(format!("stage-{}", s.name)) {
            h3 { "On " (s.name) }
            p.links {
                a href=(format!("/apps/{app}/{stage}/settings")) { "Settings and secrets" } " · "
                a href=(format!("/logs?app={app}&stage={stage}")) { "Logs" } " · "
                a href=(format!("/metrics?app={app}&stage={stage}")) { "Metrics" } " · "
                a href=(format!("/audit?kind=deployment&id={app}_{stage}")) { "History" }
            }
            @if s.releases.is_empty() { p.none { "Nothing released here yet." } }
            @else {
                div.scroll { table.grid {
                    thead { tr {
                        th scope="col" { "Release" } th scope="col" { "Origin" } th scope="col" { "Revision" }
                        th scope="col" { "Image" } th scope="col" { "Rollout" } th scope="col" { "Notes" }
                        @if s.may_release { th scope="col" { span.visually-hidden { "Actions" } } }
                    } }
                    tbody {
                        @for r in &s.releases {
                            tr id=(format!("release-{}-{}", s.name, r.number)) {
                                td { "v" (r.number) @if r.number == current { " " strong { "(current)" } } }
                                td { (origin(r)) }
                                td { (r.revision) }
                                td.digest title=(r.image_digest) { (short_digest(&r.image_digest)) }
                                td class=(format!("rollout {}", rollout_word(r.rollout))) {
                                    (rollout_word(r.rollout))
                                    @if !r.rollout_reason.is_empty() { ": " (r.rollout_reason) }
                                }
                                td {
                                    @if let Some(c) = &r.canary {
                                        div class=(format!("canary {}", canary::phase_word(c))) {
                                            div.canary-summary { (canary::summary(r.number, c)) }
                                            (canary::steps(r.number, c))
                                        }
                                    }
                                    @if r.forced { div { strong { "forced" } " over: " (r.forced_blockers.join("; ")) } }
                                    @for change in &r.data_changes { div { "migrated " (change) } }
                                }
                                @if s.may_release {
                                    td {
                                        @if r.number != current {
                                            a.action href=(format!("/rollback?app={app}&stage={stage}&release={}", r.number)) {
                                                "Roll back to v" (r.number)
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

fn scale(p: &AppPage, s: &Stage) -> Markup {
    let Some(status) = &s.status else {
        return html! { p.none { "It has not run here yet." } };
    };
    let policy = status.policy.unwrap_or_default();
    let refused = p
        .refused
        .as_ref()
        .filter(|(stage, _)| *stage == s.name)
        .map(|(_, r)| r);
    let id = |field: &str| format!("{}-{field}", s.name);
    let fields = [
        ("min_replicas", "Minimum replicas", policy.min_replicas),
        ("max_replicas", "Maximum replicas", policy.max_replicas),
        (
            "target_cpu_percent",
            "Target CPU %",
            policy.target_cpu_percent,
        ),
        (
            "target_memory_percent",
            "Target memory %",
            policy.target_memory_percent,
        ),
        (
            "scale_down_window_s",
            "Scale-down window (s)",
            policy.scale_down_window_s,
        ),
        (
            "idle_to_zero_s",
            "Scale to zero after idle (s; 0: never)",
            policy.idle_to_zero_s,
        ),
    ];
    html! {
        p { (status.ready) "/" (status.desired) " replicas ready" }
        @if s.may_release {
            form.fields method="post" action=(format!("/apps/{}/{}/scale", encode(&p.app), encode(&s.name))) {
                input type="hidden" name="csrf" value=(p.csrf);
                (layout::form_error(&format!("scale-{}-error", s.name), Refusal::general(refused, &fields.map(|f| f.0)).as_deref()))
                @for (name, label, value) in fields {
                    div.field {
                        label for=(id(name)) { (label) }
                        input id=(id(name)) type="number" min="0" name=(name) value=(value) required;
                        (layout::field_error(name, Refusal::about(refused, name).as_deref()))
                    }
                }
                button type="submit" { "Set the policy" }
            }
        } @else {
            dl.policy {
                @for (_, label, value) in fields { dt { (label) } dd { (value) } }
            }
        }
    }
}
