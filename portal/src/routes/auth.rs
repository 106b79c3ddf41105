//! Signing in and out, switching to another of the user's tenants, and the static files.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use neo_gateway::api;

use super::{CheckedForm, Shared, csrf_of};
use crate::pages::{layout, login};
use crate::respond::{self, forged, form, html, http_status, redirect};
use crate::session::{self, SESSION, Visitor};

/// The session cookie holding `answer`'s token until it expires.
fn session_cookie(answer: &api::LoginResponse) -> String {
    let now = i64::try_from(respond::now_ms() / 1000).unwrap_or(i64::MAX);
    let max_age = u64::try_from(answer.expires_at.saturating_sub(now)).unwrap_or(0);
    session::set_cookie(SESSION, &answer.token, Some(max_age))
}

/// `GET /login`.
pub async fn login_page(headers: HeaderMap) -> Response {
    let visitor = Visitor::from_headers(&headers);
    let (csrf, cookies) = csrf_of(&visitor);
    html(
        StatusCode::OK,
        layout::page("Sign in", None, login::form(&csrf, "", "", None)),
        &cookies,
    )
}

/// `POST /login`: the gateway's token into the session cookie, or the form again with why.
pub async fn login(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let visitor = Visitor::from_headers(&headers);
    let fields = form(&body);
    if !visitor.csrf_matches(fields.get("csrf").map(String::as_str)) {
        return forged();
    }
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let request = api::LoginRequest {
        user: field("user"),
        password: field("password"),
        tenant: field("tenant"),
    };
    match shared.gateway.anonymous().login(request).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            // A platform admin signed in without a tenant starts from the tenants.
            let to = if answer.tenant.is_empty() {
                "/tenants"
            } else {
                "/"
            };
            redirect(to, &[session_cookie(&answer)])
        }
        Err(status) => {
            let csrf = visitor.csrf.clone().unwrap_or_default();
            let form = login::form(
                &csrf,
                &field("user"),
                &field("tenant"),
                Some(status.message()),
            );
            html(
                http_status(&status),
                layout::page("Sign in", None, form),
                &[],
            )
        }
    }
}

/// `POST /logout`: the gateway ends the user's sessions; the cookie goes.
pub async fn logout(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let visitor = Visitor::from_headers(&headers);
    if !visitor.csrf_matches(form(&body).get("csrf").map(String::as_str)) {
        return forged();
    }
    if let Some(token) = &visitor.token
        && let Ok(user) = shared.gateway.as_user(token)
        && let Err(status) = user.identity().logout(api::LogoutRequest::default()).await
    {
        tracing::debug!(%status, "portal: sign-out not recorded by the gateway");
    }
    redirect("/login", &[session::set_cookie(SESSION, "", Some(0))])
}

/// `POST /switch`: a token for another of the user's tenants replaces the session's.
pub async fn switch(CheckedForm { signed, fields }: CheckedForm) -> Response {
    let tenant = fields.get("tenant").cloned().unwrap_or_default();
    match signed
        .user
        .identity()
        .switch_tenant(api::SwitchTenantRequest { tenant })
        .await
    {
        Ok(answer) => redirect("/", &[session_cookie(&answer.into_inner())]),
        Err(status) => respond::failure(&status),
    }
}

/// `GET /assets/{name}`.
pub async fn asset(Path(name): Path<String>) -> Response {
    match crate::assets::get(&name) {
        Some((content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
