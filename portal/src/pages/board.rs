//! The pipeline board: every app of the tenant × its stages in order, each cell the stage's
//! current release (revision, image), its rollout, ready/desired replicas, the agent's last
//! report and why a replica is not ready; a promotion offered where the user's role may make
//! it. Where the stage's newest release rolled out as a canary: its step and share with the
//! last judged step's figures and, where the user may release, the forms that end it (or how
//! it ended). The board part is re-fetched (`/board`) when the tenant's deployments change.

use std::collections::BTreeMap;

use maud::{Markup, html};
use neo_gateway::api;
use neo_gateway::auth::Action;
use neo_protocol::pb;

use super::canary;
use super::layout::{self, Who};
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
    /// App × stage → the stage's newest release, where it rolled out as a canary.
    pub canaries: BTreeMap<(String, String), pb::Release>,
    /// The CSRF value the forms carry.
    pub csrf: String,
    /// The last attempt to end a canary, refused.
    pub refused: Option<Refused>,
}

/// An attempt to end a canary, refused: shown above the forms of its cell (above the table
/// when the board has no such cell).
#[derive(Debug, Clone, Default)]
pub struct Refused {
    /// The app.
    pub app: String,
    /// The stage.
    pub stage: String,
    /// What the gateway said.
    pub message: String,
}

impl Board {
    /// The board of `stages` from a `Runtime.Status` answer, for `who`.
    pub fn new(stages: Vec<String>, status: api::StatusResponse, who: &Who, now_ms: u64) -> Self {
        let mut apps: BTreeMap<String, BTreeMap<String, api::PodgroupStatus>> = BTreeMap::new();
        let mut canaries = BTreeMap::new();
        for mut podgroup in status.podgroups {
            if let Some(release) = podgroup.canary_release.take() {
                canaries.insert((podgroup.app.clone(), podgroup.stage.clone()), release);
            }
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
            canaries,
            csrf: who.csrf.clone(),
            refused: None,
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
    let unplaced = board.refused.as_ref().filter(|r| {
        !board
            .canaries
            .contains_key(&(r.app.clone(), r.stage.clone()))
    });
    html! {
        (layout::form_error("canary-error", unplaced.map(|r| r.message.as_str())))
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
                (canary_part(board, app, index, stage))
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

/// The canary of the stage's newest release, if it rolled out as one: while it runs, its step
/// and share, the last judged step and (where the user may release) the forms that end it;
/// once ended, how.
fn canary_part(board: &Board, app: &str, index: usize, stage: &str) -> Markup {
    let key = (app.to_owned(), stage.to_owned());
    let Some((release, canary)) = board
        .canaries
        .get(&key)
        .and_then(|r| Some((r, r.canary.as_ref()?)))
    else {
        return html! {};
    };
    let running = canary.phase() == pb::CanaryPhase::Running;
    let may_end = running && board.may_release.get(index).copied().unwrap_or(false);
    let refused = board
        .refused
        .as_ref()
        .filter(|r| r.app == app && r.stage == stage)
        .map(|r| r.message.as_str());
    html! {
        div class=(format!("canary {}", canary::phase_word(canary))) {
            div.canary-summary { (canary::summary(release.number, canary)) }
            @if running { (canary::last_step(release.number, canary)) }
            (layout::form_error(&format!("canary-error-{app}-{stage}"), refused))
            @if may_end { (canary::end_forms(app, stage, release.number, &board.csrf)) }
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

    fn canary_release(phase: pb::CanaryPhase) -> pb::Release {
        pb::Release {
            number: 2,
            canary: Some(pb::Canary {
                baseline: 1,
                step: 0,
                weight: 10,
                policy: Some(pb::CanaryPolicy {
                    steps: vec![10, 50],
                    ..Default::default()
                }),
                phase: phase.into(),
                outcome: "aborted".into(),
                steps: vec![pb::CanaryStep {
                    step: 0,
                    weight: 10,
                    baseline: Some(pb::ReleaseFigures {
                        requests: 90,
                        errors: 0,
                        p95_ms: 20.0,
                    }),
                    canary: Some(pb::ReleaseFigures {
                        requests: 10,
                        errors: 3,
                        p95_ms: 80.0,
                    }),
                }],
            }),
            ..Default::default()
        }
    }

    fn canary_board(role: pb::Role, phase: pb::CanaryPhase) -> Board {
        let response = api::StatusResponse {
            podgroups: vec![
                status("catalog", "dev", 2, "sha256:bbbbbbbbbbbbbbbbbbbb"),
                status("catalog", "test", 2, "sha256:bbbbbbbbbbbbbbbbbbbb"),
            ],
        };
        let stages = vec!["dev".to_owned(), "test".to_owned()];
        let mut board = Board::new(stages, response, &who(role), 12_000);
        board
            .canaries
            .insert(("catalog".into(), "test".into()), canary_release(phase));
        board
    }

    #[test]
    fn a_running_canary_shows_its_step_and_figures_and_who_may_release_may_end_it() {
        let board = canary_board(pb::Role::Devops, pb::CanaryPhase::Running);
        let html = table(&board).into_string();
        let cell = html
            .split("id=\"cell-catalog-test\"")
            .nth(1)
            .unwrap_or_default();
        assert!(
            cell.contains("canary v2: step 1 of 2, 10 % of traffic (v1 the rest)"),
            "{html}"
        );
        assert!(
            cell.contains(
                "v2 10 requests, 3 errors, p95 80 ms; v1 90 requests, 0 errors, p95 20 ms"
            ),
            "{html}"
        );
        assert!(
            cell.contains("Abort canary") && cell.contains("Promote now"),
            "{html}"
        );
        assert!(cell.contains("name=\"csrf\" value=\"c5rf\""), "{html}");
        let viewer = table(&canary_board(pb::Role::Viewer, pb::CanaryPhase::Running)).into_string();
        assert!(viewer.contains("canary v2: step 1"), "{viewer}");
        assert!(!viewer.contains("Abort canary"), "{viewer}");
    }

    #[test]
    fn an_ended_canary_says_how_and_offers_nothing_to_end() {
        let mut board = canary_board(pb::Role::Devops, pb::CanaryPhase::RolledBack);
        board.refused = Some(Refused {
            app: "catalog".into(),
            stage: "test".into(),
            message: "release v2 is not a running canary".into(),
        });
        let html = table(&board).into_string();
        assert!(
            html.contains("canary v2 rolled back to v1: aborted"),
            "{html}"
        );
        assert!(!html.contains("Abort canary"), "{html}");
        assert!(html.contains("id=\"canary-error-catalog-test\""), "{html}");
        assert!(!html.contains("id=\"canary-error\""), "{html}");
    }

    fn who(role: pb::Role) -> Who {
        Who {
            user: "u".into(),
            tenant: "acme".into(),
            role,
            platform_admin: false,
            csrf: "c5rf".into(),
        }
    }
}
