//! The stage's load balancer on loopback: one address per stage, routing by app.
//!
//! `http://{lb}/{tenant}/{app}/{path}` goes to `/{path}` on a ready replica of that app,
//! round-robin. A replica that refuses the connection is skipped and the next one tried, so a
//! replica that just died costs no request. No ready replica (all starting, or not ready, say
//! their database is down) → 503 at once, with `Retry-After: 1`. An unknown app → 404, but only
//! once the agent has applied its first full read of the desired state ([`Routes::set_synced`]);
//! before that it may be an app the agent has not started yet → 503 "starting".
//!
//! The driver starts serving only after it has adopted what runs and probed it once, so an
//! app that kept running across an agent restart is never answered 404.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The largest request body forwarded.
const MAX_BODY: usize = 8 << 20;

/// Ready replicas per `(tenant, app)`.
#[derive(Default)]
pub struct Routes {
    table: RwLock<HashMap<(String, String), Arc<Backends>>>,
    /// The agent has applied the whole desired state once: an app not in `table` is unknown.
    synced: AtomicBool,
}

/// The ready replicas of one app, and the round-robin position.
#[derive(Default)]
pub struct Backends {
    addrs: Vec<SocketAddr>,
    next: AtomicUsize,
}

impl Routes {
    /// Sets the ready replicas of an app (none removes the route).
    pub fn set(&self, tenant: &str, app: &str, mut addrs: Vec<SocketAddr>) {
        addrs.sort();
        let key = (tenant.to_owned(), app.to_owned());
        let Ok(mut table) = self.table.write() else {
            return;
        };
        if table.get(&key).is_some_and(|b| b.addrs == addrs) {
            return;
        }
        if addrs.is_empty() {
            table.insert(key, Arc::new(Backends::default()));
        } else {
            table.insert(
                key,
                Arc::new(Backends {
                    addrs,
                    next: AtomicUsize::new(0),
                }),
            );
        }
    }

    /// Forgets an app.
    pub fn remove(&self, tenant: &str, app: &str) {
        if let Ok(mut table) = self.table.write() {
            table.remove(&(tenant.to_owned(), app.to_owned()));
        }
    }

    /// Says that every desired app has been applied once, so an app without a route is not one
    /// the agent is about to start.
    pub fn set_synced(&self) {
        if !self.synced.swap(true, Ordering::Relaxed) {
            tracing::info!("load balancer: desired state loaded");
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

type Body = Full<Bytes>;

/// Serves the load balancer on `listener` until the task is aborted.
pub fn serve(listener: TcpListener, routes: Arc<Routes>) -> JoinHandle<()> {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "load balancer accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let routes = routes.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let routes = routes.clone();
                    let client = client.clone();
                    async move { Ok::<_, Infallible>(route(&routes, &client, request).await) }
                });
                let connection = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(e) = connection {
                    tracing::debug!(error = %e, "load balancer connection ended");
                }
            });
        }
    })
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
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

async fn route(
    routes: &Routes,
    client: &Client<HttpConnector, Body>,
    request: Request<Incoming>,
) -> Response<Body> {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut parts = path_and_query.trim_start_matches('/').splitn(3, '/');
    let (Some(tenant), Some(app)) = (parts.next(), parts.next()) else {
        return plain(StatusCode::NOT_FOUND, "use /{tenant}/{app}/…".into());
    };
    let (tenant, app) = (
        tenant.to_owned(),
        app.split('?').next().unwrap_or("").to_owned(),
    );
    let rest = format!("/{}", parts.next().unwrap_or(""));
    let Some(backends) = routes.get(&tenant, &app) else {
        if !routes.is_synced() {
            return plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "the stage's agent is starting: try again in a moment".into(),
            );
        }
        return plain(
            StatusCode::NOT_FOUND,
            format!("no app {app} of {tenant} on this stage"),
        );
    };
    if backends.addrs.is_empty() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{app} has no ready replica (starting, or not ready: see `neo status`): \
                 try again in a moment"
            ),
        );
    }
    let (head, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return plain(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")),
    };
    let start = backends.next.fetch_add(1, Ordering::Relaxed);
    let count = backends.addrs.len();
    let mut last_error = String::new();
    for attempt in 0..count {
        let addr = backends.addrs[(start + attempt) % count];
        let mut forward = Request::builder()
            .method(head.method.clone())
            .uri(format!("http://{addr}{rest}"));
        for (name, value) in &head.headers {
            if name != hyper::header::HOST {
                forward = forward.header(name, value);
            }
        }
        let Ok(forward) = forward.body(Full::new(body.clone())) else {
            return plain(StatusCode::BAD_REQUEST, "malformed request".into());
        };
        match client.request(forward).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
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

    #[tokio::test]
    async fn unknown_apps_are_503_until_the_desired_state_is_loaded_then_404() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(Routes::default());
        let task = serve(listener, routes.clone());

        let (status, body) = get(addr, "/acme/shop/api").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("starting"), "{body}");
        routes.set_synced();
        assert_eq!(get(addr, "/acme/shop/api").await.0, 404);

        routes.set("acme", "shop", Vec::new());
        let (status, body) = get(addr, "/acme/shop/api").await;
        assert_eq!(status, 503);
        assert!(body.contains("shop has no ready replica"), "{body}");
        task.abort();
    }
}
