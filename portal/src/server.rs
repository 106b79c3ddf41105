//! The portal's HTTP(S) server: its routes, the security headers of every answer, and TLS.
//!
//! | Route | |
//! |---|---|
//! | `GET /login`, `POST /login` | sign in (`Identity.Login`); the token goes into the session cookie |
//! | `POST /logout` | sign out (`Identity.Logout` revokes the token) |
//! | `GET /` | the pipeline board (`Runtime.Status`, the tenant's stages) |
//! | `GET /board` | the board's table alone (htmx refreshes it) |
//! | `GET /live?after=SEQ` | the tenant's deployment events as Server-Sent Events |
//! | `GET /promote?app=&stage=` | a promotion's confirmation (`Deployments.Impact`) |
//! | `POST /promote` | promote (`Deployments.Promote`) |
//! | `GET /assets/{file}` | the stylesheet and htmx |
//!
//! Every `POST` needs the CSRF value ([`crate::session`]); without it: 403. Every answer carries
//! a Content-Security-Policy without inline script or style, `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use neo_gateway::api;
use neo_gateway::auth::Action;
use neo_protocol::pb::Role;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::{Code, Status};

use crate::gateway::{AsUser, Gateway};
use crate::pages::{board, layout, login, promote};
use crate::session::{self, CSRF, SESSION, Visitor};

/// The Content-Security-Policy of every answer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How the portal serves.
#[derive(Clone)]
pub struct PortalConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Serve TLS with this configuration; `None`: plain HTTP (loopback tests only: the session
    /// cookie is `Secure`, so a browser keeps it only over HTTPS or on localhost).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for PortalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why the portal could not start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The address could not be bound.
    #[error("portal: binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running portal.
pub struct Portal {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

struct App {
    gateway: Gateway,
}

impl Portal {
    /// Binds and serves the portal over `gateway`.
    ///
    /// # Errors
    /// [`PortalError::Bind`] when the address cannot be bound.
    pub async fn start(config: PortalConfig, gateway: Gateway) -> Result<Self, PortalError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| PortalError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| PortalError::Bind {
            addr: config.listen,
            source,
        })?;
        let app = router(Arc::new(App { gateway }));
        let (stop, stopped) = oneshot::channel();
        let tls = config.tls.clone();
        let task = tokio::spawn(serve(listener, app, tls, stopped));
        tracing::info!(%addr, tls = config.tls.is_some(), "portal serving");
        Ok(Self {
            addr,
            tls: config.tls.is_some(),
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The portal's URL (`https://…` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting and ends the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until `stopped`, each served on its own task (its TLS handshake within
/// 10 s).
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "portal: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let served = match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(%peer, "portal: TLS handshake failed");
                        return;
                    };
                    builder
                        .serve_connection_with_upgrades(
                            hyper_util::rt::TokioIo::new(stream),
                            service,
                        )
                        .await
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "portal: connection ended with an error");
            }
        });
    }
}

fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(board_page))
        .route("/board", get(board_table))
        .route("/live", get(live))
        .route("/login", get(login_page).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/promote", get(promote_page).post(promote))
        .route("/assets/{name}", get(asset))
        .layer(axum::middleware::map_response(secure))
        .with_state(app)
}

/// The security headers of every answer.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// An HTML answer with `status`, setting `cookies`.
fn html_response(status: StatusCode, markup: Markup, cookies: &[String]) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `303 See Other` to `to`, setting `cookies`.
fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The HTTP status of a gRPC refusal.
fn http_status(status: &Status) -> StatusCode {
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The CSRF value of this visitor, and the cookie setting it when it is new.
fn csrf_of(visitor: &Visitor) -> (String, Vec<String>) {
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

/// A form's fields.
fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A query's parameters.
fn query(raw: Option<&str>) -> HashMap<String, String> {
    form(raw.unwrap_or_default().as_bytes())
}

/// A refused form: 403, saying why.
fn forged() -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        layout::page(
            "Refused",
            None,
            layout::error(
                "This form is missing its CSRF value or it does not match your session: reload the page and try again.",
            ),
        ),
        &[],
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The signed-in user: their clients and who they are; otherwise the answer to give (to the
/// sign-in page, the cookie cleared when the gateway refused the token).
async fn signed_in(app: &App, visitor: &Visitor) -> Result<(AsUser, layout::Who), Response> {
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
    let user = app.gateway.as_user(token).map_err(|_| to_login(true))?;
    let me = match user.identity().who_am_i(api::WhoAmIRequest {}).await {
        Ok(me) => me.into_inner(),
        Err(status) if status.code() == Code::Unauthenticated => return Err(to_login(true)),
        Err(status) => return Err(failure(&status)),
    };
    let (csrf, _) = csrf_of(visitor);
    let who = layout::Who {
        user: me.user,
        tenant: me.tenant,
        role: Role::try_from(me.role).unwrap_or(Role::Unspecified),
        csrf,
    };
    Ok((user, who))
}

/// The signed-in user of a request (their clients, who they are, their cookies); otherwise
/// the request is answered as [`signed_in`] says (the sign-in page).
struct SignedIn {
    user: AsUser,
    who: layout::Who,
    visitor: Visitor,
}

impl axum::extract::FromRequestParts<Arc<App>> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        app: &Arc<App>,
    ) -> Result<Self, Response> {
        let visitor = Visitor::from_headers(&parts.headers);
        let (user, who) = signed_in(app, &visitor).await?;
        Ok(Self { user, who, visitor })
    }
}

/// A page saying what the gateway refused.
fn failure(status: &Status) -> Response {
    html_response(
        http_status(status),
        layout::page("Error", None, layout::error(status.message())),
        &[],
    )
}

async fn login_page(headers: HeaderMap) -> Response {
    let visitor = Visitor::from_headers(&headers);
    let (csrf, cookies) = csrf_of(&visitor);
    html_response(
        StatusCode::OK,
        layout::page("Sign in", None, login::form(&csrf, "", "", None)),
        &cookies,
    )
}

async fn login(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
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
    match app.gateway.anonymous().login(request).await {
        Ok(answer) => {
            let answer = answer.into_inner();
            let now = i64::try_from(now_ms() / 1000).unwrap_or(i64::MAX);
            let max_age = u64::try_from(answer.expires_at.saturating_sub(now)).unwrap_or(0);
            redirect(
                "/",
                &[session::set_cookie(SESSION, &answer.token, Some(max_age))],
            )
        }
        Err(status) => {
            let csrf = visitor.csrf.clone().unwrap_or_default();
            let form = login::form(
                &csrf,
                &field("user"),
                &field("tenant"),
                Some(status.message()),
            );
            html_response(
                http_status(&status),
                layout::page("Sign in", None, form),
                &[],
            )
        }
    }
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Response {
    let visitor = Visitor::from_headers(&headers);
    if !visitor.csrf_matches(form(&body).get("csrf").map(String::as_str)) {
        return forged();
    }
    if let Some(token) = &visitor.token
        && let Ok(user) = app.gateway.as_user(token)
        && let Err(status) = user.identity().logout(api::LogoutRequest::default()).await
    {
        tracing::debug!(%status, "portal: sign-out not recorded by the gateway");
    }
    redirect("/login", &[session::set_cookie(SESSION, "", Some(0))])
}

/// The board of the signed-in user's tenant.
async fn load_board(user: &AsUser, who: &layout::Who) -> Result<board::Board, Status> {
    let tenant = user
        .tenants()
        .get_tenant(api::GetTenantRequest {
            tenant: who.tenant.clone(),
        })
        .await?
        .into_inner();
    let status = user
        .runtime()
        .status(api::StatusRequest {
            tenant: who.tenant.clone(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let may_promote = Action::ReleaseLaterStage.allowed_for(who.role);
    let stages = tenant.state.map(|s| s.stages).unwrap_or_default();
    Ok(board::Board::new(stages, status, may_promote, now_ms()))
}

async fn board_page(SignedIn { user, who, visitor }: SignedIn) -> Response {
    let (_, cookies) = csrf_of(&visitor);
    match load_board(&user, &who).await {
        Ok(b) => {
            let after = b
                .apps
                .values()
                .flat_map(|stages| stages.values())
                .map(|s| s.deployment_sequence)
                .max()
                .unwrap_or(0);
            let body = html! {
                h1 { "Pipeline of " (who.tenant) }
                (board::live(&b, after))
            };
            html_response(
                StatusCode::OK,
                layout::page("Board", Some(&who), body),
                &cookies,
            )
        }
        Err(status) => failure(&status),
    }
}

async fn board_table(SignedIn { user, who, .. }: SignedIn) -> Response {
    match load_board(&user, &who).await {
        Ok(b) => html_response(StatusCode::OK, board::table(&b), &[]),
        Err(status) => failure(&status),
    }
}

async fn live(SignedIn { user, who, .. }: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let after = query(raw.as_deref())
        .get("after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0);
    crate::live::changes(user, who.tenant, after).into_response()
}

/// The confirmation of promoting `app` into `stage`: the previous stage's current release and
/// what impact analysis finds for its revision.
async fn confirmation(
    user: &AsUser,
    who: &layout::Who,
    app: &str,
    stage: &str,
    refused: Option<String>,
) -> Result<promote::Confirm, Status> {
    let b = load_board(user, who).await?;
    let index = b
        .stages
        .iter()
        .position(|s| s == stage)
        .ok_or_else(|| Status::not_found(format!("{} has no stage {stage}", who.tenant)))?;
    let from = index
        .checked_sub(1)
        .and_then(|i| b.stages.get(i))
        .ok_or_else(|| {
            Status::failed_precondition(format!("{stage} is the first stage: deploy to it instead"))
        })?
        .clone();
    let source = b
        .apps
        .get(app)
        .and_then(|stages| stages.get(&from))
        .filter(|s| s.release > 0)
        .ok_or_else(|| {
            Status::failed_precondition(format!("{app} has no release on {from} to promote"))
        })?;
    let impact = user
        .deployments()
        .impact(api::ImpactRequest {
            tenant: who.tenant.clone(),
            app: app.to_owned(),
            stage: stage.to_owned(),
            revision: source.revision,
        })
        .await?
        .into_inner();
    Ok(promote::Confirm {
        app: app.to_owned(),
        stage: stage.to_owned(),
        from,
        revision: source.revision,
        impact,
        csrf: who.csrf.clone(),
        refused,
    })
}

async fn promote_page(SignedIn { user, who, .. }: SignedIn, RawQuery(raw): RawQuery) -> Response {
    let params = query(raw.as_deref());
    let (Some(name), Some(stage)) = (params.get("app"), params.get("stage")) else {
        return failure(&Status::invalid_argument("app and stage are needed"));
    };
    match confirmation(&user, &who, name, stage, None).await {
        Ok(c) => {
            let title = format!("Promote {name}");
            html_response(
                StatusCode::OK,
                layout::page(&title, Some(&who), promote::confirm(&c)),
                &[],
            )
        }
        Err(status) => failure(&status),
    }
}

async fn promote(SignedIn { user, who, visitor }: SignedIn, body: Bytes) -> Response {
    let fields = form(&body);
    if !visitor.csrf_matches(fields.get("csrf").map(String::as_str)) {
        return forged();
    }
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let (name, stage) = (field("app"), field("stage"));
    let request = api::PromoteRequest {
        tenant: who.tenant.clone(),
        app: name.clone(),
        stage: stage.clone(),
        force: field("force") == "1",
    };
    let refused = match user.deployments().promote(request).await {
        Ok(_) => return redirect("/", &[]),
        Err(status) => status,
    };
    match confirmation(
        &user,
        &who,
        &name,
        &stage,
        Some(refused.message().to_owned()),
    )
    .await
    {
        Ok(c) => html_response(
            http_status(&refused),
            layout::page("Promote", Some(&who), promote::confirm(&c)),
            &[],
        ),
        Err(_) => failure(&refused),
    }
}

async fn asset(Path(name): Path<String>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusals_map_to_http_statuses() {
        assert_eq!(
            http_status(&Status::permission_denied("")),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            http_status(&Status::failed_precondition("")),
            StatusCode::CONFLICT
        );
        assert_eq!(
            http_status(&Status::unauthenticated("")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            http_status(&Status::unavailable("")),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
