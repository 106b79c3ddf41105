//! The pipeline board and the live stream that refreshes it.

use axum::extract::RawQuery;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use neo_gateway::api;
use tonic::Status;

use super::{SignedIn, csrf_of};
use crate::gateway::AsUser;
use crate::pages::{board, layout};
use crate::respond::{failure, html, now_ms, query, redirect};

/// The board of the signed-in user's tenant: the Runtime's status of every app and stage,
/// with the canary of each stage's newest release.
///
/// # Errors
/// The gateway's refusal.
pub async fn load(user: &AsUser, who: &layout::Who) -> Result<board::Board, Status> {
    let (stages, status) = tokio::try_join!(user.stages(&who.tenant), async {
        user.runtime()
            .status(api::StatusRequest {
                tenant: who.tenant.clone(),
                ..Default::default()
            })
            .await
    })?;
    Ok(board::Board::new(
        stages,
        status.into_inner(),
        who,
        now_ms(),
    ))
}

/// `GET /`: the board, live.
pub async fn page(signed: SignedIn) -> Response {
    board_page(&signed, None, StatusCode::OK).await
}

/// The board page answered with `code`, with `refused` (an attempt to end a canary) above the
/// forms of its cell.
pub async fn board_page(
    SignedIn { user, who, visitor }: &SignedIn,
    refused: Option<board::Refused>,
    code: StatusCode,
) -> Response {
    if who.tenant.is_empty() {
        return redirect("/tenants", &[]);
    }
    let (_, cookies) = csrf_of(visitor);
    match load(user, who).await {
        Ok(mut b) => {
            b.refused = refused;
            let after = b
                .apps
                .values()
                .flat_map(|stages| stages.values())
                .map(|s| s.deployment_sequence.max(s.podgroup_sequence))
                .max()
                .unwrap_or(0);
            let body = html! {
                h1 { "Pipeline of " (who.tenant) }
                (board::live(&b, after))
            };
            html(code, layout::page("Board", Some(who), body), &cookies)
        }
        Err(status) => failure(&status),
    }
}

/// `GET /board`: the board's table alone.
pub async fn table(SignedIn { user, who, .. }: SignedIn) -> Response {
    match load(&user, &who).await {
        Ok(b) => html(StatusCode::OK, board::table(&b), &[]),
        Err(status) => failure(&status),
    }
}

/// `GET /live?after=SEQ`.
pub async fn live(SignedIn { user, who, .. }: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let after = query(raw.as_deref())
        .get("after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    crate::live::changes(user, who.tenant, after).into_response()
}
