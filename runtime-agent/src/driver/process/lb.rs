//! The stage's load balancer on loopback: one address per stage, routing by app, behind the stage's [`super::edge`].
//!
//! `http://{lb}/{tenant}/{app}/{path}` goes to `/{path}` on a ready replica of that app,
//! round-robin. A replica that refuses the connection is skipped and the next one tried, so a
//! replica that just died costs no request. No ready replica (all starting, or not ready, say
//! their database is down) → 503 at once, with `Retry-After: 1`. An unknown app → 404, but only
//! once the agent has applied its first full read of the desired state ([`Routes::set_synced`]);
//! before that it may be an app the agent has not started yet: the request waits for that read
//! up to [`HOLD_WHILE_STARTING`], then gets 503 "starting".
//!
//! The driver starts serving only after it has adopted what runs and probed it once, so an
//! app that kept running across an agent restart is never answered 404.
//!
//! Scale to zero: an app whose policy lets it go to zero ([`crate::activity`]) and has no
//! ready replica is not answered 503: the request is held (at most [`MAX_HELD`] per app), the
//! agent is asked to wake the app (once, however many wait), and the request goes to the first
//! replica ready, or gets 503 with `Retry-After` after [`WAKE_WAIT`]. Every routed request is
//! noted as the app's last, and counts as one until it is answered
//! ([`crate::activity::AppActivity::begin`]): its idle window runs from there.
//!
//! Canary: an app whose podgroup runs a canary has two sets of replicas ([`Route`]): each
//! request goes to the canary or the baseline by the canary's weight
//! ([`crate::canary::to_canary`]: exactly its share of every hundred requests, or by client
//! address when sticky), its answer says which release gave it (`x-neo-release`), and its
//! status and time are recorded per release ([`crate::canary::Figures`]) for the agent to
//! judge the step.
//!
//! Serving TLS, it still takes plain HTTP from loopback: the replicas of its stage read their
//! producers through it (`NEO_PRODUCERS=http://127.0.0.1:{port}/{tenant}/{app}`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use neo_protocol::envelope::now_ms;

use super::edge::refusal::Refusal;
use super::edge::{AppLimits, Edge, guard, headers};
use crate::activity::{Activity, AppActivity, WakeCall};
use crate::canary::{Canaries, Figures};

/// How long a draining load balancer lets the connections it accepted last send their
/// request before it closes the idle ones.
pub const DRAIN_SETTLE: Duration = Duration::from_secs(1);

/// How long a request for an app without a route waits for the agent's first full read of
/// the desired state (a standby's: of the active agent's state file).
pub const HOLD_WHILE_STARTING: Duration = Duration::from_secs(3);

pub use crate::activity::{MAX_HELD, WAKE_WAIT};

/// Ready replicas per `(tenant, app)`.
#[derive(Default)]
pub struct Routes {
    table: RwLock<HashMap<(String, String), Arc<Backends>>>,
    /// Each app's edge limits, from its stage settings.
    limits: RwLock<HashMap<(String, String), AppLimits>>,
    /// The agent has applied the whole desired state once: an app not in `table` is unknown.
    synced: AtomicBool,
    /// Wakes the requests waiting for `synced`.
    synced_now: tokio::sync::Notify,
    /// Wakes the requests waiting for an app's first ready replica.
    ready_now: tokio::sync::Notify,
    /// The apps' requests (scale to zero).
    activity: Arc<Activity>,
    /// The apps' canary figures.
    canaries: Arc<Canaries>,
}

/// Where an app's requests go: its ready replicas, and a canary's beside them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Route {
    /// The ready replicas of the release (and of one being replaced by a rollout).
    pub addrs: Vec<SocketAddr>,
    /// A canary taking a share of the requests.
    pub canary: Option<CanaryRoute>,
}

/// A canary's part of a [`Route`].
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryRoute {
    /// Its release.
    pub release: u32,
    /// The release it is compared with (the one `Route::addrs` run).
    pub baseline: u32,
    /// Its ready replicas.
    pub addrs: Vec<SocketAddr>,
    /// Its share of the requests, in percent.
    pub weight: u32,
    /// Keep each client on one release.
    pub sticky: bool,
}

/// The ready replicas of one app, the round-robin position, and the app's requests (kept
/// with the route, so a request finds them without a second lookup).
pub struct Backends {
    route: Route,
    next: AtomicUsize,
    activity: Arc<AppActivity>,
    /// With a canary: its round-robin position, the requests split so far, its figures.
    canary: Option<Split>,
}

/// The canary side of [`Backends`].
struct Split {
    next: AtomicUsize,
    requests: AtomicU64,
    figures: Arc<Figures>,
}

impl Backends {
    /// Whether any replica (of the release or a serving canary) is ready.
    fn any_ready(&self) -> bool {
        !self.route.addrs.is_empty()
            || self
                .route
                .canary
                .as_ref()
                .is_some_and(|c| !c.addrs.is_empty())
    }

    /// The replicas a request from `client` goes to, their round-robin position, and the
    /// canary's release when it is the canary's.
    fn pick(&self, client: IpAddr) -> (&[SocketAddr], &AtomicUsize, Option<u32>) {
        let baseline = (self.route.addrs.as_slice(), &self.next);
        let (Some(canary), Some(split)) = (&self.route.canary, &self.canary) else {
            return (baseline.0, baseline.1, None);
        };
        let n = split.requests.fetch_add(1, Ordering::Relaxed);
        let to_canary = !canary.addrs.is_empty()
            && (self.route.addrs.is_empty()
                || crate::canary::to_canary(canary.weight, canary.sticky, client, n));
        if to_canary {
            (&canary.addrs, &split.next, Some(canary.release))
        } else {
            (baseline.0, baseline.1, None)
        }
    }
}

impl Routes {
    /// Sets the ready replicas of an app (none removes the route).
    pub fn set(&self, tenant: &str, app: &str, addrs: Vec<SocketAddr>) {
        self.set_route(
            tenant,
            app,
            Route {
                addrs,
                canary: None,
            },
        );
    }

    /// Sets where an app's requests go: its ready replicas and its canary's.
    pub fn set_route(&self, tenant: &str, app: &str, mut route: Route) {
        route.addrs.sort();
        if let Some(canary) = route.canary.as_mut() {
            canary.addrs.sort();
        }
        let key = (tenant.to_owned(), app.to_owned());
        let Ok(mut table) = self.table.write() else {
            return;
        };
        if table.get(&key).is_some_and(|b| b.route == route) {
            return;
        }
        let canary = route.canary.as_ref().map(|c| {
            let figures = self.canaries.app(tenant, app);
            figures.set_serving(!c.addrs.is_empty());
            Split {
                next: AtomicUsize::new(0),
                requests: AtomicU64::new(0),
                figures,
            }
        });
        if canary.is_none() {
            self.canaries.forget(tenant, app);
        }
        let backends = Backends {
            route,
            next: AtomicUsize::new(0),
            activity: self.activity.app(tenant, app),
            canary,
        };
        let ready = backends.any_ready();
        table.insert(key, Arc::new(backends));
        if ready {
            drop(table);
            self.ready_now.notify_waiters();
        }
    }

    /// The apps' canary figures, shared with the agent (its canary steps).
    pub fn canaries(&self) -> Arc<Canaries> {
        self.canaries.clone()
    }

    /// The apps' requests, shared with the agent (scale to zero).
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Waits up to `within` for an app to have a ready replica; its replicas then.
    async fn wait_ready(&self, tenant: &str, app: &str, within: Duration) -> Option<Arc<Backends>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.ready_now.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(ready) = self.get(tenant, app).filter(|b| b.any_ready()) {
                return Some(ready);
            }
            tokio::time::timeout_at(deadline, notified).await.ok()?;
        }
    }

    /// Forgets an app.
    pub fn remove(&self, tenant: &str, app: &str) {
        let key = (tenant.to_owned(), app.to_owned());
        if let Ok(mut table) = self.table.write() {
            table.remove(&key);
        }
        self.activity.forget(tenant, app);
        self.canaries.forget(tenant, app);
        if let Ok(mut limits) = self.limits.write() {
            limits.remove(&key);
        }
    }

    /// Sets an app's edge limits.
    pub fn set_limits(&self, tenant: &str, app: &str, limits: AppLimits) {
        if let Ok(mut all) = self.limits.write() {
            all.insert((tenant.to_owned(), app.to_owned()), limits);
        }
    }

    /// An app's edge limits (the edge's defaults where it has none).
    pub fn limits(&self, tenant: &str, app: &str) -> AppLimits {
        self.limits
            .read()
            .ok()
            .and_then(|all| all.get(&(tenant.to_owned(), app.to_owned())).copied())
            .unwrap_or_default()
    }

    /// Says that every desired app has been applied once, so an app without a route is not one
    /// the agent is about to start.
    pub fn set_synced(&self) {
        if !self.synced.swap(true, Ordering::Relaxed) {
            tracing::info!("load balancer: desired state loaded");
            self.synced_now.notify_waiters();
        }
    }

    /// Waits up to `within` for [`Routes::set_synced`]; whether it came.
    pub async fn wait_synced(&self, within: Duration) -> bool {
        let notified = self.synced_now.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.is_synced() {
            return true;
        }
        tokio::time::timeout(within, notified).await.is_ok() || self.is_synced()
    }

    /// The ready replicas of an app (none when it has no route).
    pub fn backends(&self, tenant: &str, app: &str) -> Vec<SocketAddr> {
        self.get(tenant, app)
            .map(|b| b.route.addrs.clone())
            .unwrap_or_default()
    }

    /// Forgets every app not in `keep`.
    pub fn retain(&self, keep: &std::collections::BTreeSet<(String, String)>) {
        if let Ok(mut table) = self.table.write() {
            table.retain(|key, _| keep.contains(key));
        }
        self.activity
            .retain(|tenant, app| keep.contains(&(tenant.to_owned(), app.to_owned())));
        self.canaries
            .retain(|tenant, app| keep.contains(&(tenant.to_owned(), app.to_owned())));
        if let Ok(mut limits) = self.limits.write() {
            limits.retain(|key, _| keep.contains(key));
        }
    }

    /// Whether [`Routes::set_synced`] was called.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    fn get(&self, tenant: &str, app: &str) -> Option<Arc<Backends>> {
        self.table
            .read()
            .ok()?
            .get(&(tenant.to_owned(), app.to_owned()))
            .cloned()
    }
}

/// The body of a request or answer passed through (read whole first).
pub(crate) type Body = Full<Bytes>;

/// Serves the load balancer on `listener`, behind `edge`, until the task is aborted.
pub fn serve(listener: TcpListener, routes: Arc<Routes>, edge: Arc<Edge>) -> JoinHandle<()> {
    Balancer::serve(listener, routes, edge).task
}

/// A serving load balancer that can stop without failing a request (see [`Balancer::drain`]).
pub struct Balancer {
    task: JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Watches every connection (taken by [`Balancer::drain`]).
    connections: Arc<std::sync::Mutex<Option<GracefulShutdown>>>,
}

impl Balancer {
    /// Serves the load balancer on `listener`, behind `edge`.
    pub fn serve(listener: TcpListener, routes: Arc<Routes>, edge: Arc<Edge>) -> Self {
        let client: Client<HttpConnector, Body> =
            Client::builder(TokioExecutor::new()).build_http();
        let acceptor = edge.config.tls.clone().map(TlsAcceptor::from);
        let connections = Arc::new(std::sync::Mutex::new(Some(GracefulShutdown::new())));
        let watching = connections.clone();
        let (stop, mut stopping) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    // Only a drain stops it (a dropped handle does not: see [`serve`]).
                    Ok(()) = stopping.changed() => break,
                };
                let (stream, peer) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "load balancer accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = Connection {
                    routes: routes.clone(),
                    client: client.clone(),
                    edge: edge.clone(),
                    peer: peer.ip(),
                    watcher: watching
                        .lock()
                        .ok()
                        .and_then(|g| g.as_ref().map(GracefulShutdown::watcher)),
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    match acceptor {
                        None => connection.serve(stream, false).await,
                        Some(acceptor) => {
                            let timeout = connection.edge.config.header_timeout;
                            if peer.ip().is_loopback() && !starts_tls(&stream, timeout).await {
                                // The stage's own replicas (and anything else on this machine)
                                // may speak plain HTTP on loopback: a consumer reading its
                                // producer through `NEO_PRODUCERS`.
                                connection.serve(stream, false).await;
                                return;
                            }
                            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                                Ok(Ok(tls)) => connection.serve(tls, true).await,
                                Ok(Err(e)) => {
                                    tracing::debug!(client = %peer, error = %e,
                                        "TLS handshake failed");
                                }
                                Err(_) => {
                                    Refusal::new(StatusCode::REQUEST_TIMEOUT, "slow_handshake", "")
                                        .record(&connection.edge.config.stage, peer.ip(), "");
                                }
                            }
                        }
                    }
                });
            }
            // Dropping the listener here: the address's other load balancer (the stage's
            // other agent) takes every new connection.
        });
        Self {
            task,
            stop,
            connections,
        }
    }

    /// Stops taking connections, lets every request in flight finish (idle keep-alive
    /// connections are closed), and returns once they did or after `within`. A connection
    /// accepted just before has [`DRAIN_SETTLE`] to send its request (its TLS handshake
    /// included) before idle connections are closed, so it is answered rather than cut.
    pub async fn drain(self, within: Duration) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
        tokio::time::sleep(DRAIN_SETTLE.min(within)).await;
        let connections = self.connections.lock().ok().and_then(|mut g| g.take());
        if let Some(connections) = connections
            && tokio::time::timeout(within, connections.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("load balancer: requests still in flight at the drain's deadline");
        }
    }

    /// Stops at once (what a killed agent's load balancer does).
    pub fn abort(&self) {
        self.task.abort();
    }
}

/// Whether a connection opens with a TLS handshake (its first byte is a handshake record,
/// 0x16), waiting up to `within` for it; a connection that sends nothing counts as TLS (the
/// handshake's own timeout then answers it).
async fn starts_tls(stream: &tokio::net::TcpStream, within: Duration) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(within, stream.peek(&mut first)).await {
        Ok(Ok(1)) => first[0] == 0x16,
        _ => true,
    }
}

/// One client connection.
struct Connection {
    routes: Arc<Routes>,
    client: Client<HttpConnector, Body>,
    edge: Arc<Edge>,
    peer: IpAddr,
    /// Tells the connection to finish when the load balancer drains (none: draining already).
    watcher: Option<Watcher>,
}

impl Connection {
    /// Serves HTTP/1.1 or HTTP/2 on `io` (over TLS when `tls`) with the edge's header limits
    /// and timeouts.
    async fn serve<I>(self, io: I, tls: bool)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let config = &self.edge.config;
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_buf_size(config.max_header_bytes.max(8192) + 1024);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(config.max_header_bytes).unwrap_or(u32::MAX));
        let mut this = self;
        let watcher = this.watcher.take();
        let this = Arc::new(this);
        let service = hyper::service::service_fn({
            let this = this.clone();
            move |request| {
                let this = this.clone();
                async move { Ok::<_, Infallible>(this.answer(request, tls).await) }
            }
        });
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let served = match watcher {
            Some(watcher) => watcher.watch(connection).await,
            None => connection.await,
        };
        if let Err(e) = served {
            // What hyper itself refused before a request existed: headers too slow or too big.
            let refused = e.downcast_ref::<hyper::Error>().and_then(|e| {
                if e.is_timeout() {
                    Some((StatusCode::REQUEST_TIMEOUT, "slow_headers"))
                } else if e.is_parse_too_large() {
                    Some((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "header_size"))
                } else {
                    None
                }
            });
            match refused {
                Some((status, reason)) => Refusal::new(status, reason, e.to_string()).record(
                    &this.edge.config.stage,
                    this.peer,
                    "",
                ),
                None => {
                    tracing::debug!(client = %this.peer, error = %e, "load balancer connection ended");
                }
            }
        }
    }

    /// The answer to one request: refused at the edge, or routed; with security headers.
    async fn answer(&self, request: Request<Incoming>, tls: bool) -> Response<Body> {
        // A URI shares its bytes: routing reads it and a refusal's log line names its path
        // while the request itself moves on, without copying the path.
        let uri = request.uri().clone();
        let mut response = match self.admit(request, &uri, tls).await {
            Ok(response) => response,
            Err(refusal) => {
                refusal.record(&self.edge.config.stage, self.peer, uri.path());
                refusal.response()
            }
        };
        headers::secure_response(response.headers_mut(), tls);
        response
    }

    /// Applies the edge's rules, then routes (`uri` is the request's, which the caller keeps).
    async fn admit(
        &self,
        request: Request<Incoming>,
        uri: &hyper::Uri,
        tls: bool,
    ) -> Result<Response<Body>, Refusal> {
        let edge = &self.edge;
        let config = &edge.config;
        let now = Instant::now();
        edge.rates
            .clients
            .take(&self.peer, config.per_client, now)
            .map_err(|wait| too_many("rate_client", "this address", wait))?;
        let (mut head, body) = request.into_parts();
        guard::check(&head, config.max_headers, config.max_header_bytes)?;
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut parts = path_and_query.trim_start_matches('/').splitn(3, '/');
        let (Some(tenant), Some(app)) = (parts.next(), parts.next()) else {
            return Ok(plain(StatusCode::NOT_FOUND, "use /{tenant}/{app}/…".into()));
        };
        let (tenant, app) = (
            tenant.to_owned(),
            app.split('?').next().unwrap_or("").to_owned(),
        );
        let rest = format!("/{}", parts.next().unwrap_or(""));
        let mut backends = self.routes.get(&tenant, &app);
        if backends.is_none()
            && !self.routes.is_synced()
            && self.routes.wait_synced(HOLD_WHILE_STARTING).await
        {
            backends = self.routes.get(&tenant, &app);
        }
        let Some(backends) = backends else {
            if !self.routes.is_synced() {
                return Ok(plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the stage's agent is starting: try again in a moment".into(),
                ));
            }
            return Ok(plain(
                StatusCode::NOT_FOUND,
                format!("no app {app} of {tenant} on this stage"),
            ));
        };
        let limits = self.routes.limits(&tenant, &app);
        edge.rates
            .apps
            .take(
                &(tenant.clone(), app.clone()),
                limits.rate.unwrap_or(config.per_app),
                now,
            )
            .map_err(|wait| too_many("rate_app", "this app", wait))?;
        let activity = backends.activity.clone();
        let now = now_ms();
        let _answering = activity.begin(now);
        let backends = if backends.any_ready() {
            backends
        } else if activity.may_sleep() {
            let call = WakeCall {
                tenant: tenant.clone(),
                app: app.clone(),
                cause: format!("request {} {}", head.method, uri.path()),
                at_ms: now,
            };
            let ready = self.routes.wait_ready(&tenant, &app, WAKE_WAIT);
            match self
                .routes
                .activity
                .hold_until_awake(&activity, call, ready)
                .await
            {
                Ok(ready) => ready,
                Err(text) => return Ok(plain(StatusCode::SERVICE_UNAVAILABLE, text)),
            }
        } else {
            return Ok(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{app} has no ready replica (starting, or not ready: see `neo status`): \
                     try again in a moment"
                ),
            ));
        };
        let max_body = limits.max_body_bytes.unwrap_or(config.max_body_bytes);
        let too_large = |what: String| {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_size",
                format!("{what}; {app} accepts at most {max_body} bytes"),
            )
            .closing()
        };
        let declared = head
            .headers
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if let Some(length) = declared.filter(|l| *l > max_body) {
            return Err(too_large(format!("a body of {length} bytes")));
        }
        let body =
            match tokio::time::timeout(config.body_timeout, Limited::new(body, max_body).collect())
                .await
            {
                Ok(Ok(b)) => b.to_bytes(),
                Ok(Err(e)) if e.is::<LengthLimitError>() => {
                    return Err(too_large("the body is larger".into()));
                }
                Ok(Err(e)) => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "body",
                        format!("request body: {e}"),
                    )
                    .closing());
                }
                Err(_) => {
                    return Err(Refusal::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "slow_body",
                        format!("the body did not arrive within {:?}", config.body_timeout),
                    )
                    .closing());
                }
            };
        let host = head
            .headers
            .get(hyper::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or_else(|| head.uri.authority().map(|a| a.as_str().to_owned()));
        headers::strip_hop_by_hop(&mut head.headers);
        head.headers.remove(hyper::header::HOST);
        headers::forwarded(&mut head.headers, self.peer, tls, host.as_deref());
        let (addrs, next, canary) = backends.pick(self.peer);
        let started = Instant::now();
        let mut response = forward(&self.client, addrs, next, &app, head, &rest, body).await;
        if let Some(split) = &backends.canary {
            let status = response.status().as_u16();
            split
                .figures
                .record(canary.is_some(), status, started.elapsed());
            let baseline = backends.route.canary.as_ref().map_or(0, |c| c.baseline);
            let release = canary.unwrap_or(baseline);
            if let Ok(value) = hyper::header::HeaderValue::from_str(&release.to_string()) {
                response.headers_mut().insert("x-neo-release", value);
            }
        }
        Ok(response)
    }
}

/// A 429 for `reason`, with how long to wait.
fn too_many(reason: &'static str, whose: &str, wait: Duration) -> Refusal {
    Refusal::new(
        StatusCode::TOO_MANY_REQUESTS,
        reason,
        format!("too many requests from {whose}: slow down"),
    )
    .retry_after(wait.as_secs_f64().ceil() as u64)
}

/// A plain-text answer; a 503 says `Retry-After: 1`.
pub(crate) fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(text + "\n")));
    *response.status_mut() = status;
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            hyper::header::RETRY_AFTER,
            hyper::header::HeaderValue::from_static("1"),
        );
    }
    response
}

/// Sends the request to one of `addrs`, round-robin from `next`, skipping replicas that
/// refuse the connection.
pub(crate) async fn forward(
    client: &Client<HttpConnector, Body>,
    addrs: &[SocketAddr],
    next: &AtomicUsize,
    app: &str,
    mut head: hyper::http::request::Parts,
    rest: &str,
    body: Bytes,
) -> Response<Body> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    let count = addrs.len();
    let mut last_error = String::new();
    for attempt in 0..count {
        let addr = addrs[(start + attempt) % count];
        let Ok(uri) = format!("http://{addr}{rest}").parse::<hyper::Uri>() else {
            return plain(StatusCode::BAD_REQUEST, "malformed request".into());
        };
        let mut forward = Request::new(Full::new(body.clone()));
        *forward.method_mut() = head.method.clone();
        *forward.uri_mut() = uri;
        // The headers move to the last attempt; earlier ones (rarely more than one) copy them.
        *forward.headers_mut() = if attempt + 1 == count {
            std::mem::take(&mut head.headers)
        } else {
            head.headers.clone()
        };
        match client.request(forward).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                headers::strip_hop_by_hop(&mut parts.headers);
                return match body.collect().await {
                    Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
                    Err(e) => plain(StatusCode::BAD_GATEWAY, format!("{app}: {e}")),
                };
            }
            Err(e) if e.is_connect() => last_error = e.to_string(),
            Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("{app}: {e}")),
        }
    }
    plain(
        StatusCode::BAD_GATEWAY,
        format!("no replica of {app} answered: {last_error}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = client
            .get(format!("http://{addr}{path}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// A load balancer on loopback for dev, its address, routes and task.
    async fn start() -> (SocketAddr, Arc<Routes>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(Routes::default());
        let task = serve(
            listener,
            routes.clone(),
            Edge::new(super::super::edge::EdgeConfig::new("dev")),
        );
        (addr, routes, task)
    }

    #[tokio::test]
    async fn unknown_apps_wait_for_the_desired_state_then_are_503_or_404() {
        let (addr, routes, task) = start().await;

        // Before the agent's first read, a request waits for it, then is told to come back.
        let asked = Instant::now();
        let (status, body) = get(addr, "/acme/shop/api").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("starting"), "{body}");
        assert!(
            asked.elapsed() >= HOLD_WHILE_STARTING,
            "{:?}",
            asked.elapsed()
        );
        // A request held while the read is done is answered at once, as its outcome says.
        let held = tokio::spawn(get(addr, "/acme/shop/api"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        routes.set_synced();
        let answered = Instant::now();
        assert_eq!(held.await.unwrap().0, 404);
        assert!(answered.elapsed() < Duration::from_secs(1));

        routes.set("acme", "shop", Vec::new());
        let (status, body) = get(addr, "/acme/shop/api").await;
        assert_eq!(status, 503);
        assert!(body.contains("shop has no ready replica"), "{body}");
        task.abort();
    }

    /// A replica on loopback answering every request `200 hello`.
    async fn replica() -> SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer =
                        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello";
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        addr
    }

    #[tokio::test]
    async fn requests_for_an_app_at_zero_wait_for_one_wake_and_are_answered() {
        let (addr, routes, task) = start().await;
        routes.set_synced();
        routes.set("acme", "shop", Vec::new());
        routes.activity().set_idle_to_zero("acme", "shop", 60);

        let asked = now_ms();
        let waiting: Vec<_> = (0..8)
            .map(|i| {
                tokio::spawn(get(
                    addr,
                    if i == 0 {
                        "/acme/shop/api"
                    } else {
                        "/acme/shop/"
                    },
                ))
            })
            .collect();
        let activity = routes.activity();
        let mut calls = activity.calls.lock().await;
        let call = tokio::time::timeout(Duration::from_secs(5), calls.recv())
            .await
            .expect("a wake is asked")
            .expect("the channel is open");
        assert_eq!((call.tenant.as_str(), call.app.as_str()), ("acme", "shop"));
        assert!(
            call.cause.starts_with("request GET /acme/shop/"),
            "{}",
            call.cause
        );
        assert!(call.at_ms >= asked);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(calls.try_recv().is_err(), "one wake for eight requests");
        assert!(waiting.iter().all(|w| !w.is_finished()), "all held");

        routes.set("acme", "shop", vec![replica().await]);
        for held in waiting {
            assert_eq!(held.await.unwrap(), (200, "hello".to_owned()));
        }
        assert!(activity.last_request_ms("acme", "shop", 0) >= asked);

        // An app that never goes to zero is still told to come back.
        routes.set("acme", "cart", Vec::new());
        assert_eq!(get(addr, "/acme/cart/").await.0, 503);
        assert!(calls.try_recv().is_err(), "no wake for it");
        task.abort();
    }

    #[tokio::test]
    async fn a_canary_gets_its_weight_of_the_requests_and_both_releases_are_measured() {
        let (addr, routes, task) = start().await;
        routes.set_synced();
        let (baseline, canary) = (replica().await, replica().await);
        routes.set_route(
            "acme",
            "shop",
            Route {
                addrs: vec![baseline],
                canary: Some(CanaryRoute {
                    release: 4,
                    baseline: 3,
                    addrs: vec![canary],
                    weight: 25,
                    sticky: false,
                }),
            },
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut answered = std::collections::BTreeMap::new();
        for _ in 0..100 {
            let response = client
                .get(format!("http://{addr}/acme/shop/"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let release = response.headers()["x-neo-release"]
                .to_str()
                .unwrap()
                .to_owned();
            *answered.entry(release).or_insert(0) += 1;
        }
        assert_eq!(answered.get("4"), Some(&25), "{answered:?}");
        assert_eq!(answered.get("3"), Some(&75), "{answered:?}");
        let figures = routes.canaries().get("acme", "shop").unwrap();
        assert!(figures.serving());
        let (of_baseline, of_canary) = figures.read();
        assert_eq!((of_baseline.requests, of_canary.requests), (75, 25));
        assert_eq!(of_canary.errors, 0);
        // The canary ended: no split, no figures, no release header.
        routes.set("acme", "shop", vec![baseline]);
        assert!(routes.canaries().get("acme", "shop").is_none());
        let response = client
            .get(format!("http://{addr}/acme/shop/"))
            .send()
            .await
            .unwrap();
        assert!(!response.headers().contains_key("x-neo-release"));
        task.abort();
    }
}
