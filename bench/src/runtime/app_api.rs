//! The app's own API through the stage address, as its users call it: creates from concurrent
//! clients (`app_create_per_s`), then a list page of 50 out of `rows` records
//! (`app_list_ms_p50`).
//!
//! The creates go through dev's load balancer to the last round's app (`POST
//! /{tenant}/{app}/api/product`, keep-alive clients sending back to back); the table is then
//! filled up to `rows` records straight in Postgres (the same rows, `generate_series`), and
//! `GET /{tenant}/{app}/api/product?limit=50` (the first page, by id) and
//! `?limit=50&offset={rows/2}` (a page in the middle) are read one after the other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;

use crate::stats::{percentile_ms, rate};

/// What the app's API did.
#[derive(Debug, Serialize)]
pub struct AppApiFigures {
    /// Creates per second through the stage address, from `clients` concurrent clients.
    pub app_create_per_s: f64,
    /// Median time of `GET api/product?limit=50` (the first page) with `rows` records stored.
    pub app_list_ms_p50: f64,
    /// 99th percentile of the same.
    pub app_list_ms_p99: f64,
    /// Median time of a page of 50 in the middle of the table (`offset` = half the rows).
    pub app_list_middle_ms_p50: f64,
    /// Records in the table while the pages were read.
    pub app_rows: usize,
    /// Creates sent.
    pub app_creates: usize,
}

/// Runs the creates, fills the table, reads the pages.
///
/// # Errors
///
/// When a create or a read fails, or the table cannot be filled.
pub async fn measure(
    lb: SocketAddr,
    base: &str,
    database_url: &str,
    table: &str,
    clients: usize,
    creates: usize,
    rows: usize,
) -> anyhow::Result<AppApiFigures> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("http://{lb}{base}/api/product");
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for _ in 0..clients.max(1) {
        let (http, url, next) = (http.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= creates {
                    return Ok::<_, anyhow::Error>(());
                }
                let body = format!(r#"{{"title":"Item {i}","price":"{}.50"}}"#, i % 1000);
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                anyhow::ensure!(
                    response.status() == 201,
                    "POST {url} answered {}",
                    response.status()
                );
            }
        }));
    }
    for task in tasks {
        task.await.context("a create client")??;
    }
    let app_create_per_s = rate(creates, start.elapsed());

    let fill = rows.saturating_sub(creates);
    let pool = sqlx::PgPool::connect(database_url)
        .await
        .context("connecting to the stage database")?;
    sqlx::query(&format!(
        "INSERT INTO {table} (title, price, created_at, updated_at) \
         SELECT 'Seed ' || g, (g % 1000)::numeric, now(), now() FROM generate_series(1, $1) g"
    ))
    .bind(i64::try_from(fill)?)
    .execute(&pool)
    .await
    .with_context(|| format!("filling {table}"))?;
    sqlx::query(&format!("ANALYZE {table}"))
        .execute(&pool)
        .await?;
    pool.close().await;

    let mut first = pages(&http, &format!("{url}?limit=50"), 200).await?;
    let mut middle = pages(&http, &format!("{url}?limit=50&offset={}", rows / 2), 50).await?;
    Ok(AppApiFigures {
        app_create_per_s,
        app_list_ms_p50: percentile_ms(&mut first, 50.0),
        app_list_ms_p99: percentile_ms(&mut first, 99.0),
        app_list_middle_ms_p50: percentile_ms(&mut middle, 50.0),
        app_rows: rows,
        app_creates: creates,
    })
}

/// `n` sequential reads of `url` (after 5 not counted), each checked to be a full page.
async fn pages(http: &reqwest::Client, url: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 5 {
        let start = Instant::now();
        let response = http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(
            response.status() == 200,
            "GET {url} answered {}",
            response.status()
        );
        let body = response.bytes().await?;
        let elapsed = start.elapsed();
        let page: serde_json::Value = serde_json::from_slice(&body)?;
        let items = page["items"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(items == 50, "GET {url}: {items} items, not 50");
        if i >= 5 {
            times.push(elapsed);
        }
    }
    Ok(times)
}
