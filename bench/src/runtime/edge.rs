//! The stage edge's cost, measured in the runtime bench: the same requests straight to a serving replica and through a TLS edge in front of it, in one run.
//!
//! The edge is the load balancer of the process driver with its production settings except
//! rate limits (one client address sends everything), serving TLS with a certificate from a
//! throwaway CA (`neo certs init`). `connections` clients keep HTTP/1.1 connections open and
//! send `GET` requests back to back for `duration`, first straight to the replica, then
//! through the edge; each side reports requests per second and latency percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use neo_runtime_agent::driver::process::edge::{Edge, EdgeConfig};
use neo_runtime_agent::driver::process::lb::{self, Routes};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::stats::{percentile_ms, rate};

/// What the edge costs.
#[derive(Debug, Serialize)]
pub struct EdgeFigures {
    /// Requests per second through the TLS edge.
    pub lb_requests_per_s: f64,
    /// The same requests per second straight to the replica (plain HTTP).
    pub direct_requests_per_s: f64,
    /// `lb_requests_per_s ÷ direct_requests_per_s`.
    pub lb_direct_ratio: f64,
    /// The edge's p99 latency minus the direct p99.
    pub lb_added_p99_ms: f64,
    /// p50 latency through the edge.
    pub lb_p50_ms: f64,
    /// p99 latency through the edge.
    pub lb_p99_ms: f64,
    /// p99 latency straight to the replica.
    pub direct_p99_ms: f64,
}

/// One side's load: requests and their latencies.
struct Load {
    per_s: f64,
    latencies: Vec<Duration>,
}

/// Measures `path` of `tenant`'s `app`, served by `replica`, straight and through a TLS edge.
///
/// # Errors
///
/// When the edge cannot start or a request fails or answers other than 200.
pub async fn measure(
    replica: SocketAddr,
    tenant: &str,
    app: &str,
    path: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<EdgeFigures> {
    let certs_dir = tempfile::tempdir()?;
    let certs = neo_server::certs::init(certs_dir.path(), &[])?;
    let config = EdgeConfig::new("bench")
        .with_tls(&certs.cert, &certs.key)?
        .without_rate_limits();
    let routes = Arc::new(Routes::default());
    routes.set(tenant, app, vec![replica]);
    routes.set_synced();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let edge_addr = listener.local_addr()?;
    let task = lb::serve(listener, routes, Edge::new(config));

    let _ = rustls::crypto::ring::default_provider().install_default();
    let plain = reqwest::Client::builder().no_proxy().build()?;
    let ca = std::fs::read(&certs.ca)?;
    let tls = reqwest::Client::builder()
        .no_proxy()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca)?)
        .resolve("localhost", edge_addr)
        .build()?;
    let direct_url = format!("http://{replica}{path}");
    let edge_url = format!(
        "https://localhost:{}/{tenant}/{app}{path}",
        edge_addr.port()
    );
    // Warm both paths (connections, TLS sessions, the app's caches).
    load(&plain, &direct_url, connections, Duration::from_millis(500)).await?;
    load(&tls, &edge_url, connections, Duration::from_millis(500)).await?;
    let mut direct = load(&plain, &direct_url, connections, duration).await?;
    let mut through = load(&tls, &edge_url, connections, duration).await?;
    task.abort();
    let direct_p99 = percentile_ms(&mut direct.latencies, 99.0);
    let lb_p99 = percentile_ms(&mut through.latencies, 99.0);
    Ok(EdgeFigures {
        lb_requests_per_s: through.per_s,
        direct_requests_per_s: direct.per_s,
        lb_direct_ratio: through.per_s / direct.per_s.max(f64::EPSILON),
        lb_added_p99_ms: lb_p99 - direct_p99,
        lb_p50_ms: percentile_ms(&mut through.latencies, 50.0),
        lb_p99_ms: lb_p99,
        direct_p99_ms: direct_p99,
    })
}

/// `connections` clients sending `GET url` back to back for `duration`.
async fn load(
    client: &reqwest::Client,
    url: &str,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let response = client.get(&url).send().await.with_context(|| url.clone())?;
                let status = response.status();
                response.bytes().await?;
                anyhow::ensure!(status == 200, "{url} answered {status}");
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.context("a load task")??);
    }
    Ok(Load {
        per_s: rate(latencies.len(), start.elapsed()),
        latencies,
    })
}
