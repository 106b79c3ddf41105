//! The pipeline board: every app of the tenant × its stages in order, each cell the stage's
//! current release (revision, image), its rollout, ready/desired replicas, the agent's last
//! report and why a replica is not ready; a promotion offered where the user's role may make
//! it. The board part is re-fetched (`/board`) when the tenant's deployments change.

use std::collections::BTreeMap;

use maud::{Markup, html};
use neo_gateway::api;
use neo_gateway::auth::Action;
use neo_protocol::pb;

use super::layout::Who;
use crate::respond::encode;

/// Whether `who` may deploy, promote or roll back on `stage` of `stages` (the gateway's own
/// rule: the first stage needs less).
pub fn may_release(who: &Who, stages: &[String], stage: &str) -> bool {
    let action = if stages.first().is_some_and(|s| s == stage) {
        Action::ReleaseFirstStage
    } else {
        Action::ReleaseLaterStage
    };
    who.platform_admin || action.allowed_for(who.role)
}

/// What the board shows.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// The tenant's stages, in order.
    pub stages: Vec<String>,
    /// App → stage → its status there.
    pub apps: BTreeMap<String, BTreeMap<String, api::PodgroupStatus>>,
    /// Whether the user may release (deploy, promote, roll back) on each stage, in order.
    pub may_release: Vec<bool>,
    /// Now, Unix ms (for the age of the reports).
    pub now_ms: u64,
}

impl Board {
    /// The board of `stages` from a `Runtime.Status` answer, for `who`.
    pub fn new(stages: Vec<String>, status: api::StatusResponse, who: &Who, now_ms: u64) -> Self {
        let mut apps: BTreeMap<String, BTreeMap<String, api::PodgroupStatus>> = BTreeMap::new();
        for podgroup in status.podgroups {
            apps.entry(podgroup.app.clone())
                .or_default()
                .insert(podgroup.stage.clone(), podgroup);
        }
        let may_release = stages
            .iter()
            .map(|stage| may_release(who, &stages, stage))
            .collect();
        Self {
            stages,
            apps,
            may_release,
            now_ms,
        }
    }
}

/// The live part of the board page: re-fetched from `/board` on each `changed` event of
/// `/live` (deployment events after `after`, the newest the board shows).
pub fn live(board: &Board, after: u64) -> Markup {
    html! {
        div #board hx-ext="sse" sse-connect=(format!("/live?after={after}")) hx-get="/board"
            hx-trigger="sse:changed" hx-swap="innerHTML" {
            (table(board))
        }
    }
}

/// The board's table.
pub fn table(board: &Board) -> Markup {
    html! {
        @if board.apps.is_empty() {
            p #board-empty { "No app is deployed yet: " code { "neo publish" } " one." }
        } @else {
            table.board {
                thead {
                    tr {
                        th scope="col" { "App" }
                        @for stage in &board.stages { th scope="col" { (stage) } }
                    }
                }
                tbody {
                    @for (app, stages) in &board.apps {
                        tr {
                            th scope="row" { a href=(format!("/apps/{}", encode(app))) { (app) } }
                            @for (i, stage) in board.stages.iter().enumerate() {
                                td id=(format!("cell-{app}-{stage}")) {
                                    (cell(board, app, stages, i, stage))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn cell(
    board: &Board,
    app: &str,
    stages: &BTreeMap<String, api::PodgroupStatus>,
    index: usize,
    stage: &str,
) -> Markup {
    let here = stages.get(stage).filter(|s| s.release > 0);
    let before = index
        .checked_sub(1)
        .and_then(|i| board.stages.get(i))
        .and_then(|s| stages.get(s))
        .filter(|s| s.release > 0);
    let promotable = board.may_release.get(index).copied().unwrap_or(false)
        && before.is_some_and(|b| here.is_none_or(|h| h.image_digest != b.image_digest));
    html! {
        // The column's stage, for narrow screens where the cells stack without their header.
        div.stage-label { (stage) }
        @match here {
            None => { span.none { "not deployed" } }
            Some(s) => {
                div.release { "v" (s.release) " · revision " (s.revision) }
                div.digest title=(s.image_digest) { (short_digest(&s.image_digest)) }
                div class=(format!("rollout {}", rollout_word(s.rollout))) {
                    (rollout_word(s.rollout))
                    @if !s.rollout_reason.is_empty() { ": " (s.rollout_reason) }
                }
                @if s.desired == 0 && s.policy.is_some_and(|p| p.idle_to_zero_s > 0) {
                    div.replicas { "asleep at zero replicas: the next request wakes it" }
                } @else {
                    div.replicas { (s.ready) "/" (s.desired) " ready" }
                }
                div.reported { (reported(board.now_ms, s.reported_ms)) }
                @for replica in s.replicas.iter().filter(|r| {
                    r.phase != pb::ReplicaPhase::Ready as i32 && !r.reason.is_empty()
                }) {
                    div.why { (replica.id) ": " (replica.reason) }
                }
                @if !s.replicas.is_empty() {
                    div.replica-links {
                        "Replicas: "
                        @for r in &s.replicas {
                            a href=(format!("/logs?app={}&stage={}&replica={}", encode(app), encode(stage), encode(&r.id))) { (r.id) } " "
                        }
                    }
                }
                div.links {
                    a href=(format!("/logs?app={}&stage={}", encode(app), encode(stage))) { "Logs" }
                    " · "
                    a href=(format!("/metrics?app={}&stage={}", encode(app), encode(stage))) { "Metrics" }
                    " · "
                    a href=(format!("/apps/{}#stage-{}", encode(app), encode(stage))) { "Releases" }
                }
            }
        }
        @if promotable {
            a.action href=(format!("/promote?app={}&stage={}", encode(app), encode(stage))) {
                "Promote to " (stage)
            }
        }
    }
}

/// `sha256:` and the first 12 hex digits.
pub fn short_digest(digest: &str) -> &str {
    digest.get(..19).unwrap_or(digest)
}

/// A rollout status as a word.
pub fn rollout_word(status: i32) -> &'static str {
    match pb::RolloutStatus::try_from(status) {
        Ok(pb::RolloutStatus::Pending) => "pending",
        Ok(pb::RolloutStatus::Succeeded) => "succeeded",
        Ok(pb::RolloutStatus::Failed) => "failed",
        _ => "unknown",
    }
}

/// How long ago the agent reported.
fn reported(now_ms: u64, at_ms: u64) -> String {
    if at_ms == 0 {
        return "no report yet".to_owned();
    }
    let seconds = now_ms.saturating_sub(at_ms) / 1000;
    match seconds {
        0..60 => format!("reported {seconds} s ago"),
        60..3600 => format!("reported {} min ago", seconds / 60),
        _ => format!("reported {} h ago", seconds / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(app: &str, stage: &str, release: u32, digest: &str) -> api::PodgroupStatus {
        api::PodgroupStatus {
            app: app.into(),
            stage: stage.into(),
            release,
            revision: 1,
            image_digest: digest.into(),
            rollout: pb::RolloutStatus::Succeeded as i32,
            desired: 1,
            ready: 1,
            reported_ms: 9_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_release_on_dev_is_offered_to_test_only_to_who_may_promote() {
        let response = api::StatusResponse {
            podgroups: vec![status("catalog", "dev", 1, "sha256:aaaaaaaaaaaaaaaaaaaa")],
        };
        let stages = vec!["dev".to_owned(), "test".to_owned()];
        let devops = who(pb::Role::Devops);
        let board = Board::new(stages.clone(), response.clone(), &devops, 12_000);
        let html = table(&board).into_string();
        assert!(html.contains("v1 · revision 1"), "{html}");
        assert!(html.contains("1/1 ready"), "{html}");
        assert!(html.contains("reported 3 s ago"), "{html}");
        assert!(
            html.contains("href=\"/promote?app=catalog&amp;stage=test\""),
            "{html}"
        );
        assert!(html.contains("not deployed"), "{html}");
        let viewer = Board::new(
            stages.clone(),
            response.clone(),
            &who(pb::Role::Viewer),
            12_000,
        );
        assert!(!table(&viewer).into_string().contains("Promote"));
        // A developer releases on the first stage only.
        let developer = Board::new(stages, response, &who(pb::Role::Developer), 12_000);
        assert_eq!(developer.may_release, vec![true, false]);
        assert!(!table(&developer).into_string().contains("Promote"));
    }

    fn who(role: pb::Role) -> Who {
        Who {
            user: "u".into(),
            tenant: "acme".into(),
            role,
            platform_admin: false,
            csrf: String::new(),
        }
    }
}
