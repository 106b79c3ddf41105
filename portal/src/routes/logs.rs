//! The logs page and its live tail.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use neo_gateway::api;
use tonic::Status;

use super::SignedIn;
use crate::pages::layout;
use crate::pages::logs::{self, Filters, LEVELS, LogsPage, PAGE_LINES};
use crate::respond::{Refusal, failure, html, http_status, now_ms, query};

/// How far back the page reads without a `since`.
const DEFAULT_SPAN_MS: u64 = 3_600_000;

/// The gateway request of `filters` (a refusal names the form's field).
fn request(tenant: &str, f: &Filters, follow: bool) -> Result<api::LogsRequest, (String, String)> {
    let min_level = if f.level.is_empty() {
        0
    } else {
        LEVELS
            .iter()
            .find(|(w, _)| *w == f.level)
            .map(|(_, l)| *l as i32)
            .ok_or_else(|| ("level".to_owned(), format!("`{}` is not a level", f.level)))?
    };
    let when = |field: &str, text: &str| {
        if text.is_empty() {
            Ok(0)
        } else {
            logs::parse_time(text).map_err(|m| (field.to_owned(), m))
        }
    };
    let since_ms = match when("since", &f.since)? {
        0 if follow => now_ms(),
        0 => now_ms().saturating_sub(DEFAULT_SPAN_MS),
        at => at,
    };
    Ok(api::LogsRequest {
        tenant: tenant.to_owned(),
        stage: f.stage.clone(),
        app: f.app.clone(),
        min_level,
        since_ms,
        until_ms: when("until", &f.until)?,
        text: f.text.clone(),
        follow,
        replica: f.replica.clone(),
    })
}

/// The first [`PAGE_LINES`] lines of `request`, and whether more matched.
///
/// # Errors
/// The gateway's refusal.
pub async fn first_page(
    user: &crate::gateway::AsUser,
    request: api::LogsRequest,
) -> Result<(Vec<neo_protocol::pb::LogLine>, bool), Status> {
    let mut stream = user.runtime().logs(request).await?.into_inner();
    let mut lines = Vec::new();
    while let Some(batch) = stream.message().await? {
        lines.extend(batch.lines);
        if lines.len() > PAGE_LINES {
            lines.truncate(PAGE_LINES);
            // Dropping the stream cancels the call: the rest is not read.
            return Ok((lines, true));
        }
    }
    Ok((lines, false))
}

/// `GET /logs?…`.
pub async fn page(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let filters = Filters::from_query(&query(raw.as_deref()));
    let stages = match signed.user.stages(&signed.who.tenant).await {
        Ok(stages) => stages,
        Err(status) => return failure(&status),
    };
    let mut p = LogsPage {
        filters,
        stages,
        tail_from: now_ms(),
        ..Default::default()
    };
    let mut code = StatusCode::OK;
    match request(&signed.who.tenant, &p.filters, false) {
        Ok(r) => match first_page(&signed.user, r).await {
            Ok((lines, more)) => (p.lines, p.more) = (lines, more),
            Err(status) => {
                code = http_status(&status);
                let refusal = Refusal::of(&status);
                let field = match refusal.field.as_str() {
                    "since_ms" => "since".to_owned(),
                    "until_ms" => "until".to_owned(),
                    other => other.to_owned(),
                };
                p.refused = Some((field, refusal.message));
            }
        },
        Err(refused) => {
            code = StatusCode::BAD_REQUEST;
            p.refused = Some(refused);
        }
    }
    html(
        code,
        layout::page("Logs", Some(&signed.who), logs::page(&p)),
        &[],
    )
}

/// `GET /logs/tail?…`: new matching lines as `lines` events (table rows), from now on.
pub async fn tail(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let filters = Filters::from_query(&params);
    let mut request = match request(&signed.who.tenant, &filters, true) {
        Ok(r) => r,
        Err((_, message)) => return failure(&Status::invalid_argument(message)),
    };
    // The page shows what came before it was read: the tail starts then.
    let from = params
        .get("from")
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(now_ms);
    request.since_ms = request.since_ms.max(from);
    match signed.user.runtime().logs(request).await {
        Ok(stream) => Sse::new(rows(stream.into_inner()))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
        Err(status) => failure(&status),
    }
}

fn rows(
    stream: tonic::Streaming<api::LogsResponse>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream
        .take_while(|r| futures::future::ready(r.is_ok()))
        .filter_map(|r| futures::future::ready(r.ok()))
        .map(|batch| {
            let html: String = batch
                .lines
                .iter()
                .map(|l| logs::row(l).into_string())
                .collect();
            Ok(Event::default().event("lines").data(html))
        })
}
