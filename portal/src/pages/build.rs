//! A build: its revision, status, worker, image and diagnostics, and its log; while it runs the
//! log streams in line by line (`/builds/{id}/log`, Server-Sent Events) and its status changes
//! when it ends.

use maud::{Markup, html};
use neo_gateway::api;
use neo_protocol::pb;

use super::app::build_word;
use crate::respond::encode;

/// Whether the build may still write to its log.
pub fn running(build: &api::Build) -> bool {
    let status = build.state.as_ref().map_or(0, |s| s.status);
    matches!(
        pb::BuildStatus::try_from(status),
        Ok(pb::BuildStatus::Requested | pb::BuildStatus::Started)
    )
}

/// The page's body: `lines` are the log so far (empty while it runs: the stream sends them).
pub fn page(build: &api::Build, lines: &[pb::BuildLogLine]) -> Markup {
    let state = build.state.clone().unwrap_or_default();
    let live = running(build);
    html! {
        h1 { "Build " (build.id) }
        dl.facts {
            dt { "App" } dd { a href=(format!("/apps/{}", encode(&state.app))) { (state.app) } }
            dt { "Revision" } dd { (state.revision) }
            dt { "Attempt" } dd { (state.attempt) }
            @if !state.worker.is_empty() { dt { "Worker" } dd { (state.worker) } }
            @if !state.image_ref.is_empty() { dt { "Image" } dd.digest { (state.image_ref) } }
            @if !state.reason.is_empty() { dt { "Reason" } dd { (state.reason) } }
        }
        @if !state.diagnostics.is_empty() {
            h2 { "Diagnostics" }
            ul.diagnostics #diagnostics {
                @for d in &state.diagnostics {
                    li { code { (d.file) ":" (d.line) ":" (d.column) } " " (d.message) }
                }
            }
        }
        h2 { "Log" }
        @if live {
            div #build-live hx-ext="sse" sse-connect=(format!("/builds/{}/log", encode(&build.id))) sse-close="end" {
                p { "Status: " strong #build-status sse-swap="end" { (build_word(build)) } }
                ol.log #build-log sse-swap="line" hx-swap="beforeend" aria-live="polite" {}
            }
        } @else {
            p { "Status: " strong #build-status { (build_word(build)) } }
            ol.log #build-log {
                @for l in lines { (line(l)) }
            }
        }
    }
}

/// One log line.
pub fn line(l: &pb::BuildLogLine) -> Markup {
    html! {
        li class=(format!("level-{}", l.level)) {
            time { (l.time) } " " span.level { (l.level) } " " (l.text)
        }
    }
}
