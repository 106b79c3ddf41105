//! The Prometheus endpoint of `neo serve`: `GET /metrics` returns the process's metrics
//! (`neo_telemetry::metrics`) as Prometheus text.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use neo_actors::Platform;
use neo_telemetry::metrics;
use tokio::task::JoinHandle;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `/metrics` on `addr` until the task is aborted; returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    platform: Option<Arc<Platform>>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the metrics endpoint on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let platform = platform.clone();
            async move { scrape(platform.as_deref()) }
        }),
    );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}

/// Serves `/metrics` on `listen` unless it is `off`, saying where; the task, if serving.
///
/// # Errors
/// When `listen` is not an address or cannot be bound.
pub async fn serve_unless_off(
    listen: &str,
    platform: Option<Arc<Platform>>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if listen == "off" {
        return Ok(None);
    }
    let addr = listen.parse().context("--metrics-listen")?;
    let (bound, task) = serve(addr, platform).await?;
    println!("metrics: http://{bound}/metrics");
    Ok(Some(task))
}

fn scrape(platform: Option<&Platform>) -> impl IntoResponse + use<> {
    let m = metrics::global();
    if let Some(p) = platform {
        m.live_actors
            .get_or_create(&metrics::KindLabel { kind: "all" })
            .set(i64::try_from(p.live_count()).unwrap_or(i64::MAX));
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], m.encode())
}
