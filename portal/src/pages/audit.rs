//! Audit: an entity's history (who did what, when, with its command and cause), the "why" chain
//! of an event back to what started it, the entity's state at a chosen time or event, and the
//! tenant's hash-chain verification.

use maud::{Markup, html};
use neo_gateway::api;
use neo_protocol::pb;
use prost::Message;

use super::logs::time_of;
use crate::respond::encode;

/// The kinds of entity a tenant has.
pub const KINDS: [&str; 5] = ["tenant", "app", "build", "deployment", "podgroup"];

/// A recorded message (`neo.v1.{Kind}Event` or `{Kind}State`) as readable text.
pub fn describe(kind: &str, any: Option<&prost_types::Any>, state: bool) -> String {
    let Some(any) = any else {
        return String::new();
    };
    let bytes = any.value.as_slice();
    fn text<M: Message + Default + std::fmt::Debug>(bytes: &[u8]) -> String {
        M::decode(bytes).map_or_else(|e| format!("undecodable: {e}"), |m| format!("{m:#?}"))
    }
    match (kind, state) {
        ("tenant", false) => text::<pb::TenantEvent>(bytes),
        ("tenant", true) => text::<pb::TenantState>(bytes),
        ("app", false) => text::<pb::AppEvent>(bytes),
        ("app", true) => text::<pb::AppState>(bytes),
        ("build", false) => text::<pb::BuildEvent>(bytes),
        ("build", true) => text::<pb::BuildState>(bytes),
        ("deployment", false) => text::<pb::DeploymentEvent>(bytes),
        ("deployment", true) => text::<pb::DeploymentState>(bytes),
        ("podgroup", false) => text::<pb::PodgroupEvent>(bytes),
        ("podgroup", true) => text::<pb::PodgroupState>(bytes),
        _ => format!("{} ({} bytes)", any.type_url, bytes.len()),
    }
}

/// The entity picker.
pub fn picker(kind: &str, id: &str) -> Markup {
    html! {
        form.filters #audit-pick method="get" action="/audit" {
            div.field {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    @for k in KINDS { option value=(k) selected[k == kind] { (k) } }
                }
            }
            div.field {
                label for="id" { "Id" }
                input #id type="text" name="id" value=(id) placeholder="catalog, catalog_dev, catalog_r2…";
            }
            button type="submit" { "History" }
        }
    }
}

/// One event as a table row, with links to its causes and the state after it.
fn row(e: &api::Event) -> Markup {
    html! {
        tr id=(format!("event-{}", e.sequence)) {
            td { (e.sequence) }
            td { time { (time_of(e.time_ms)) } }
            td { (e.kind) " " (e.entity_id) }
            td { strong { (e.event_type) } }
            td { (e.who) }
            td {
                a href=(format!("/audit/why?seq={}", e.sequence)) { "why" } " · "
                a href=(format!("/audit/state?kind={}&id={}&seq={}", encode(&e.kind), encode(&e.entity_id), e.sequence)) { "state after" }
            }
            td { details { summary { "event" } pre { (describe(&e.kind, e.payload.as_ref(), false)) } } }
        }
    }
}

fn events(list: &[api::Event]) -> Markup {
    html! {
        div.scroll { table.grid.events {
            thead { tr {
                th scope="col" { "Seq" } th scope="col" { "Time (UTC)" } th scope="col" { "Entity" }
                th scope="col" { "Event" } th scope="col" { "Who" } th scope="col" { "Links" } th scope="col" { "Content" }
            } }
            tbody { @for e in list { (row(e)) } }
        } }
    }
}

/// The history page's body.
pub fn history(kind: &str, id: &str, found: Option<&api::HistoryResponse>) -> Markup {
    html! {
        h1 { "Audit" }
        (picker(kind, id))
        p.links {
            a href="/audit/verify" #verify-link { "Verify the tenant's hash chain" }
        }
        @if let Some(h) = found {
            h2 { "History of " (kind) " " (id) }
            @if h.events.is_empty() { p.none { "No event." } } @else { (events(&h.events)) }
            @if h.more {
                @if let Some(last) = h.events.last() {
                    p { a href=(format!("/audit?kind={}&id={}&after={}", encode(kind), encode(id), last.sequence)) { "Later events" } }
                }
            }
            h2 { "State at a time" }
            form.filters method="get" action="/audit/state" {
                input type="hidden" name="kind" value=(kind);
                input type="hidden" name="id" value=(id);
                div.field {
                    label for="at" { "At (UTC)" }
                    input #at type="datetime-local" step="1" name="at" required;
                }
                button type="submit" { "Show the state" }
            }
        }
    }
}

/// The why page's body.
pub fn why(sequence: u64, answer: &api::WhyResponse) -> Markup {
    html! {
        h1 { "Why event " (sequence) " happened" }
        p #why-root { "Started by " strong { (answer.root) } "." }
        (events(&answer.chain))
    }
}

/// The state page's body.
pub fn state(kind: &str, id: &str, answer: &api::StateAtResponse, asked: &str) -> Markup {
    html! {
        h1 { (kind) " " (id) " " (asked) }
        p { "After event " (answer.sequence) " · "
            a href=(format!("/audit?kind={}&id={}", encode(kind), encode(id))) { "history" } }
        pre #state { (describe(kind, answer.state.as_ref(), true)) }
    }
}

/// The verification page's body.
pub fn verified(tenant: &str, r: &api::VerifyResponse) -> Markup {
    html! {
        h1 { "Hash chain of " (tenant) }
        p #verify-summary {
            (r.events) " events of " (r.entities) " entities verified ("
            (r.unchained) " written before the chain, " (r.checkpoints) " checkpoints)"
        }
        @if r.problems.is_empty() {
            p.done #verify-ok { "No problem found: no event was modified, removed, reordered or copied." }
        } @else {
            p.error role="alert" { (r.problems.len()) " problems:" }
            ul #verify-problems { @for p in &r.problems { li { code { (p) } } } }
        }
    }
}
