//! The pipeline board: every app of the tenant × its stages in order, each cell the stage's
//! current release (revision, image), its rollout, ready/desired replicas, the agent's last
//! report and why a replica is not ready; a promotion offered where the user's role may make
//! it. The board part is re-fetched (`/board`) when the tenant's deployments change.

use std::collections::BTreeMap;

use maud::{Markup, html};
use neo_gateway::api;
use neo_protocol::pb;

/// What the board shows.
#[derive(Debug, Clone, Default)]
pub struct Board {
    /// The tenant's stages, in order.
    pub stages: Vec<String>,
    /// App → stage → its status there.
    pub apps: BTreeMap<String, BTreeMap<String, api::PodgroupStatus>>,
    /// Whether the user may promote into later stages.
    pub may_promote: bool,
    /// Now, Unix ms (for the age of the reports).
    pub now_ms: u64,
}

impl Board {
    /// The board of `stages` from a `Runtime.Status` answer.
    pub fn new(
        stages: Vec<String>,
        status: api::StatusResponse,
        may_promote: bool,
        now_ms: u64,
    ) -> Self {
        let mut apps: BTreeMap<String, BTreeMap<String, api::PodgroupStatus>> = BTreeMap::new();
        for podgroup in status.podgroups {
            apps.entry(podgroup.app.clone())
                .or_default()
                .insert(podgroup.stage.clone(), podgroup);
        }
        Self {
            stages,
            apps,
            may_promote,
            now_ms,
        }
    }
}

/// The live part of the board page: re-fetched from `/board` on each `changed` event of
/// `/live` (deployment events after `after`, the newest the board shows).
pub fn live(board: &Board, after: u64) -> Markup {
    html! {
        div #board hx-ext="sse" sse-connect=(format!("/live?after={after}")) hx-get="/board"
            hx-trigger="sse:changed throttle:500ms" hx-swap="innerHTML" {
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
                            th scope="row" { (app) }
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
    let promotable = board.may_promote
        && before.is_some_and(|b| here.is_none_or(|h| h.image_digest != b.image_digest));
    html! {
        @match here {
            None => { span.none { "not deployed" } }
            Some(s) => {
                div.release { "v" (s.release) " · revision " (s.revision) }
                div.digest title=(s.image_digest) { (short_digest(&s.image_digest)) }
                div class=(format!("rollout {}", rollout_word(s.rollout))) {
                    (rollout_word(s.rollout))
                    @if !s.rollout_reason.is_empty() { ": " (s.rollout_reason) }
                }
                div.replicas { (s.ready) "/" (s.desired) " ready" }
                div.reported { (reported(board.now_ms, s.reported_ms)) }
                @for replica in s.replicas.iter().filter(|r| {
                    r.phase != pb::ReplicaPhase::Ready as i32 && !r.reason.is_empty()
                }) {
                    div.why { (replica.id) ": " (replica.reason) }
                }
            }
        }
        @if promotable {
            a.action href=(format!("/promote?app={app}&stage={stage}")) {
                "Promote to " (stage)
            }
        }
    }
}

/// `sha256:` and the first 12 hex digits.
fn short_digest(digest: &str) -> &str {
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
        let board = Board::new(stages.clone(), response.clone(), true, 12_000);
        let html = table(&board).into_string();
        assert!(html.contains("v1 · revision 1"), "{html}");
        assert!(html.contains("1/1 ready"), "{html}");
        assert!(html.contains("reported 3 s ago"), "{html}");
        assert!(
            html.contains("href=\"/promote?app=catalog&amp;stage=test\""),
            "{html}"
        );
        assert!(html.contains("not deployed"), "{html}");
        let viewer = Board::new(stages, response, false, 12_000);
        assert!(!table(&viewer).into_string().contains("Promote"));
    }
}
