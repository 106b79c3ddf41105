//! The portal's routes, one module per part of the console, and what they share: the gateway
//! and the signed-in user of a request ([`SignedIn`]).
//!
//! | Route | |
//! |---|---|
//! | `GET /login`, `POST /login` | sign in (`Identity.Login`); the token goes into the session cookie |
//! | `POST /logout` | sign out (`Identity.Logout` revokes the token) |
//! | `POST /switch` | work in another of the user's tenants (`Identity.SwitchTenant`) |
//! | `GET /` | the pipeline board (`Runtime.Status`, the tenant's stages, the newest release of each later stage for its canary) |
//! | `GET /board` | the board's table alone (htmx refreshes it) |
//! | `GET /live?after=SEQ` | the tenant's deployment events as Server-Sent Events |
//! | `GET /promote`, `/deploy`, `/rollback` | a release's confirmation with its impact |
//! | `POST /promote`, `/deploy`, `/rollback` | make it (`Deployments.*`; a promotion with `canary=1` as a canary) |
//! | `POST /canary/abort`, `/canary/promote` | end the running canary of an app on a stage (`Deployments.EndCanary`) |
//! | `GET /apps/{app}` | an app: revisions, builds, releases per stage, scale policies |
//! | `GET /apps/{app}/releases` | the app's releases alone (htmx refreshes them) |
//! | `POST /apps/{app}/{stage}/scale` | set a scale policy |
//! | `GET /apps/{app}/{stage}/settings`, `POST …/settings`, `…/secrets` | settings and secrets |
//! | `GET /builds/{id}`, `/builds/{id}/log` | a build, and its log as Server-Sent Events |
//! | `GET /logs`, `/logs/tail` | log lines, filtered; their live tail |
//! | `GET /metrics` | CPU, memory and replicas over time, with the autoscaler's decisions |
//! | `GET /audit`, `/audit/why`, `/audit/state`, `/audit/verify` | an entity's history, an event's causes, a past state, the hash chain checked |
//! | `GET /members`, `POST /members` | the tenant's members and roles |
//! | `GET /tenants`, `POST /tenants` | the user's tenants to switch to; all of them and a new one for platform admins |
//! | `GET /assets/{file}` | the stylesheet and htmx |

pub mod app;
pub mod audit;
pub mod auth;
pub mod board;
pub mod canary;
pub mod logs;
pub mod metrics;
pub mod release;
pub mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use neo_gateway::api;
use neo_protocol::pb::Role;
use tonic::Code;

use crate::gateway::{AsUser, Gateway};
use crate::pages::canary as canary_page;
use crate::pages::layout;
use crate::respond::{self, failure, redirect};
use crate::session::{self, CSRF, SESSION, Visitor};

/// What every route shares.
pub struct Shared {
    /// The gateway.
    pub gateway: Gateway,
}

/// The routes over `shared`.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(board::page))
        .route("/board", get(board::table))
        .route("/live", get(board::live))
        .route("/login", get(auth::login_page).post(auth::login))
        .route("/logout", post(auth::logout))
        .route("/switch", post(auth::switch))
        .route(
            "/promote",
            get(release::promote_page).post(release::promote),
        )
        .route("/deploy", get(release::deploy_page).post(release::deploy))
        .route(canary_page::ABORT, post(canary::abort))
        .route(canary_page::PROMOTE_NOW, post(canary::promote_now))
        .route(
            "/rollback",
            get(release::rollback_page).post(release::rollback),
        )
        .route("/apps/{app}", get(app::page))
        .route("/apps/{app}/releases", get(app::releases))
        .route("/apps/{app}/{stage}/scale", post(app::scale))
        .route(
            "/apps/{app}/{stage}/settings",
            get(app::settings_page).post(app::change_setting),
        )
        .route("/apps/{app}/{stage}/secrets", post(app::change_secret))
        .route("/builds/{id}", get(app::build_page))
        .route("/builds/{id}/log", get(app::build_log))
        .route("/logs", get(logs::page))
        .route("/logs/tail", get(logs::tail))
        .route("/metrics", get(metrics::page))
        .route("/audit", get(audit::history))
        .route("/audit/why", get(audit::why))
        .route("/audit/state", get(audit::state_at))
        .route("/audit/verify", get(audit::verify))
        .route(
            "/members",
            get(tenants::members).post(tenants::change_member),
        )
        .route("/tenants", get(tenants::list).post(tenants::create))
        .route("/assets/{name}", get(auth::asset))
        .with_state(shared)
}

/// The CSRF value of this visitor, and the cookie setting it when it is new.
pub fn csrf_of(visitor: &Visitor) -> (String, Vec<String>) {
    if let Some(csrf) = &visitor.csrf {
        return (csrf.clone(), Vec::new());
    }
    match session::new_csrf() {
        Ok(csrf) => {
            let cookie = session::set_cookie(CSRF, &csrf, None);
            (csrf, vec![cookie])
        }
        Err(e) => {
            tracing::error!(error = %e, "portal: no random CSRF value");
            (String::new(), Vec::new())
        }
    }
}

/// The signed-in user of a request: their clients, who they are and their cookies. Otherwise
/// the request is answered with the sign-in page (the cookie cleared when the gateway refused
/// the token).
pub struct SignedIn {
    /// The gateway's services as the user.
    pub user: AsUser,
    /// Who they are.
    pub who: layout::Who,
    /// Their cookies.
    pub visitor: Visitor,
}

/// A form the signed-in user sent with their session's CSRF value: its fields. Otherwise the
/// request is answered 403 (or with the sign-in page, as [`SignedIn`] says). It reads the body:
/// a handler takes it last.
pub struct CheckedForm {
    /// Who sent it.
    pub signed: SignedIn,
    /// Its fields (the last of a repeated name wins).
    pub fields: std::collections::HashMap<String, String>,
}

impl axum::extract::FromRequest<Arc<Shared>> for CheckedForm {
    type Rejection = axum::response::Response;

    async fn from_request(
        request: axum::extract::Request,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::FromRequestParts as _;
        use axum::response::IntoResponse as _;
        let (mut parts, body) = request.into_parts();
        let signed = SignedIn::from_request_parts(&mut parts, shared).await?;
        let request = axum::extract::Request::from_parts(parts, body);
        let body = axum::body::Bytes::from_request(request, shared)
            .await
            .map_err(|rejection| rejection.into_response())?;
        let fields = respond::form(&body);
        if !signed
            .visitor
            .csrf_matches(fields.get("csrf").map(String::as_str))
        {
            return Err(respond::forged());
        }
        Ok(Self { signed, fields })
    }
}

impl axum::extract::FromRequestParts<Arc<Shared>> for SignedIn {
    type Rejection = axum::response::Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        shared: &Arc<Shared>,
    ) -> Result<Self, Self::Rejection> {
        let visitor = Visitor::from_headers(&parts.headers);
        let to_login = |clear: bool| {
            let cookies = if clear {
                vec![session::set_cookie(SESSION, "", Some(0))]
            } else {
                Vec::new()
            };
            redirect("/login", &cookies)
        };
        let Some(token) = &visitor.token else {
            return Err(to_login(false));
        };
        let user = shared.gateway.as_user(token).map_err(|_| to_login(true))?;
        let me = match user.identity().who_am_i(api::WhoAmIRequest {}).await {
            Ok(me) => me.into_inner(),
            Err(status) if status.code() == Code::Unauthenticated => return Err(to_login(true)),
            Err(status) => return Err(failure(&status)),
        };
        let (csrf, _) = csrf_of(&visitor);
        let who = layout::Who {
            user: me.user,
            tenant: me.tenant,
            role: Role::try_from(me.role).unwrap_or(Role::Unspecified),
            platform_admin: me.platform_admin,
            csrf,
        };
        Ok(Self { user, who, visitor })
    }
}

/// A required query parameter or form field, else `INVALID_ARGUMENT` naming it.
pub fn required<'a>(
    params: &'a std::collections::HashMap<String, String>,
    name: &str,
) -> Result<&'a str, tonic::Status> {
    params
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| tonic::Status::invalid_argument(format!("{name}: required")))
}
