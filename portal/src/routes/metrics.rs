//! The metrics page: a podgroup's recorded events over a window, read from its state at the
//! window's start (`Events.StateAt`) and its history after it (`Events.History`).

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use neo_gateway::api;
use neo_protocol::pb;
use prost::Message;
use tonic::Status;

use super::SignedIn;
use crate::gateway::AsUser;
use crate::pages::layout;
use crate::pages::metrics::{self, MetricsPage, SPANS, Series};
use crate::respond::{failure, html, now_ms, query};

/// The most history pages (of 1,000 events) one chart reads.
const MAX_PAGES: usize = 20;

/// The series of podgroup `id` over `(from_ms, to_ms)`.
async fn series(user: &AsUser, tenant: &str, id: &str, from_ms: u64) -> Result<Series, Status> {
    let at_start = user
        .events()
        .state_at(api::StateAtRequest {
            tenant: tenant.to_owned(),
            kind: "podgroup".to_owned(),
            entity_id: id.to_owned(),
            sequence: 0,
            time_ms: from_ms,
        })
        .await?
        .into_inner();
    let desired = at_start
        .state
        .and_then(|any| pb::PodgroupState::decode(any.value.as_slice()).ok())
        .map_or(0, |s| s.desired);
    let mut series = Series::starting(from_ms, desired);
    let mut after = at_start.sequence;
    for _ in 0..MAX_PAGES {
        let page = user
            .events()
            .history(api::HistoryRequest {
                tenant: tenant.to_owned(),
                kind: "podgroup".to_owned(),
                entity_id: id.to_owned(),
                after_sequence: after,
                limit: 1000,
            })
            .await?
            .into_inner();
        for event in &page.events {
            after = after.max(event.sequence);
            let decoded = event
                .payload
                .as_ref()
                .and_then(|any| pb::PodgroupEvent::decode(any.value.as_slice()).ok());
            if let Some(decoded) = decoded {
                series.add(event.time_ms, &decoded);
            }
        }
        if !page.more {
            break;
        }
    }
    Ok(series)
}

/// `GET /metrics?podgroup={app}_{stage}&span=1h` (or `app=&stage=`).
pub async fn page(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let tenant = signed.who.tenant.clone();
    let status = signed
        .user
        .runtime()
        .status(api::StatusRequest {
            tenant: tenant.clone(),
            ..Default::default()
        })
        .await;
    let podgroups: Vec<(String, String)> = match status {
        Ok(s) => s
            .into_inner()
            .podgroups
            .into_iter()
            .filter(|p| p.podgroup_sequence > 0)
            .map(|p| (p.app, p.stage))
            .collect(),
        Err(status) => return failure(&status),
    };
    let picked = match (
        params.get("app"),
        params.get("stage"),
        params.get("podgroup"),
    ) {
        (Some(app), Some(stage), _) => Some((app.clone(), stage.clone())),
        (_, _, Some(id)) => id
            .split_once('_')
            .map(|(a, s)| (a.to_owned(), s.to_owned())),
        _ => podgroups.first().cloned(),
    };
    let span = params
        .get("span")
        .filter(|s| SPANS.iter().any(|(n, _)| n == s))
        .cloned()
        .unwrap_or_else(|| "1h".to_owned());
    let span_ms = SPANS
        .iter()
        .find(|(n, _)| *n == span)
        .map_or(3_600_000, |(_, ms)| *ms);
    let to_ms = now_ms();
    let from_ms = to_ms.saturating_sub(span_ms);
    let mut p = MetricsPage {
        podgroups,
        span,
        window: (from_ms, to_ms),
        ..Default::default()
    };
    if let Some((app, stage)) = picked {
        let id = format!("{app}_{stage}");
        match series(&signed.user, &tenant, &id, from_ms).await {
            Ok(s) => p.series = Some(s),
            Err(status) => return failure(&status),
        }
        (p.app, p.stage) = (app, stage);
    }
    html(
        StatusCode::OK,
        layout::page("Metrics", Some(&signed.who), metrics::page(&p)),
        &[],
    )
}
