//! The audit pages: history, why, state at, and the hash-chain verification.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::Response;
use neo_gateway::api;
use tonic::Status;

use super::{SignedIn, required};
use crate::pages::{audit, layout, logs};
use crate::respond::{failure, html, query};

/// `GET /audit?kind=&id=&after=`: the picker, and the entity's events when one is named.
pub async fn history(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let kind = params
        .get("kind")
        .cloned()
        .unwrap_or_else(|| "app".to_owned());
    let id = params.get("id").cloned().unwrap_or_default();
    let mut found = None;
    if !id.is_empty() {
        let request = api::HistoryRequest {
            tenant: signed.who.tenant.clone(),
            kind: kind.clone(),
            entity_id: id.clone(),
            after_sequence: params
                .get("after")
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            limit: 200,
        };
        match signed.user.events().history(request).await {
            Ok(h) => found = Some(h.into_inner()),
            Err(status) => return failure(&status),
        }
    }
    html(
        StatusCode::OK,
        layout::page(
            "Audit",
            Some(&signed.who),
            audit::history(&kind, &id, found.as_ref()),
        ),
        &[],
    )
}

/// `GET /audit/why?seq=`.
pub async fn why(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let sequence = match required(&params, "seq").and_then(|s| {
        s.parse::<u64>()
            .map_err(|_| Status::invalid_argument("seq: not a stream sequence"))
    }) {
        Ok(s) => s,
        Err(status) => return failure(&status),
    };
    let request = api::WhyRequest {
        tenant: signed.who.tenant.clone(),
        sequence,
    };
    match signed.user.events().why(request).await {
        Ok(answer) => html(
            StatusCode::OK,
            layout::page(
                "Why",
                Some(&signed.who),
                audit::why(sequence, &answer.into_inner()),
            ),
            &[],
        ),
        Err(status) => failure(&status),
    }
}

/// `GET /audit/state?kind=&id=&seq=` or `&at=` (UTC).
pub async fn state_at(signed: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let asked = (|| {
        let kind = required(&params, "kind")?.to_owned();
        let id = required(&params, "id")?.to_owned();
        let sequence = params.get("seq").and_then(|s| s.parse().ok()).unwrap_or(0);
        let time_ms = match params.get("at").filter(|a| !a.is_empty()) {
            Some(at) => {
                logs::parse_time(at).map_err(|m| Status::invalid_argument(format!("at: {m}")))?
            }
            None => 0,
        };
        Ok::<_, Status>((kind, id, sequence, time_ms))
    })();
    let (kind, id, sequence, time_ms) = match asked {
        Ok(asked) => asked,
        Err(status) => return failure(&status),
    };
    let request = api::StateAtRequest {
        tenant: signed.who.tenant.clone(),
        kind: kind.clone(),
        entity_id: id.clone(),
        sequence,
        time_ms,
    };
    let words = match (sequence, time_ms) {
        (0, 0) => "now".to_owned(),
        (0, at) => format!("at {} UTC", logs::time_of(at)),
        (seq, _) => format!("after event {seq}"),
    };
    match signed.user.events().state_at(request).await {
        Ok(answer) => html(
            StatusCode::OK,
            layout::page(
                "State",
                Some(&signed.who),
                audit::state(&kind, &id, &answer.into_inner(), &words),
            ),
            &[],
        ),
        Err(status) => failure(&status),
    }
}

/// `GET /audit/verify`: the tenant's hash chain, checked by the gateway.
pub async fn verify(signed: SignedIn) -> Response {
    let request = api::VerifyRequest {
        tenant: signed.who.tenant.clone(),
    };
    match signed.user.events().verify(request).await {
        Ok(r) => html(
            StatusCode::OK,
            layout::page(
                "Verification",
                Some(&signed.who),
                audit::verified(&signed.who.tenant, &r.into_inner()),
            ),
            &[],
        ),
        Err(status) => failure(&status),
    }
}
