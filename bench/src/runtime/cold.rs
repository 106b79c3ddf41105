//! Cold starts from zero replicas (`cold_start_ms_p50`): the last round's app on dev is given a
//! policy of min 0 with a 1 s idle window (through the gateway's `Runtime.SetScalePolicy`, as
//! `neo scale --min 0 --idle-to-zero 1s` does); each round waits, without a request, until the
//! agent has put it to sleep (dev's load balancer has no replica of it), then times one
//! `GET {dev lb}/{tenant}/{app}{path}` until its answer: the load balancer holds the request,
//! the agent wakes the podgroup, the desired state comes back, a replica starts and is probed
//! ready, and the request goes to it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use neo_gateway::api::{self, runtime_client::RuntimeClient};
use neo_protocol::pb;
use neo_runtime_agent::driver::process::lb::Routes;
use serde::Serialize;
use tonic::Request;

use crate::stats::percentile_ms;

/// How long an app may take to go to zero before the bench gives up.
const SLEEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the cold starts measured.
#[derive(Debug, Serialize)]
pub struct ColdFigures {
    /// Median time from a request to an app at zero replicas to its answer (200).
    pub cold_start_ms_p50: f64,
    /// 90th percentile of the same.
    pub cold_start_ms_p90: f64,
    /// Cold starts measured.
    pub cold_starts: usize,
}

/// The app's policy: may sleep after `idle_to_zero_s`.
fn sleepy(idle_to_zero_s: u32) -> pb::ScalePolicy {
    pb::ScalePolicy {
        min_replicas: 0,
        max_replicas: 1,
        target_cpu_percent: 70,
        target_memory_percent: 80,
        scale_down_window_s: 300,
        idle_to_zero_s,
    }
}

/// Sets the policy, then `rounds` times: waits for zero replicas, times one request.
///
/// # Errors
/// When the policy is refused, the app does not go to zero in time, or a request fails.
pub async fn measure(
    endpoint: &str,
    bearer: &str,
    routes: &Routes,
    lb: SocketAddr,
    (tenant, app, path): (&str, &str, &str),
    rounds: usize,
) -> anyhow::Result<ColdFigures> {
    let mut runtime = RuntimeClient::connect(endpoint.to_owned()).await?;
    let mut set = Request::new(api::SetScalePolicyRequest {
        tenant: tenant.into(),
        app: app.into(),
        stage: "dev".into(),
        policy: Some(sleepy(1)),
    });
    set.metadata_mut().insert("authorization", bearer.parse()?);
    runtime
        .set_scale_policy(set)
        .await
        .context("setting a policy of min 0")?;
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("http://{lb}/{tenant}/{app}{path}");
    let mut times = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let asleep = Instant::now();
        while !routes.backends(tenant, app).is_empty() {
            anyhow::ensure!(
                asleep.elapsed() < SLEEP_TIMEOUT,
                "{app} did not go to zero within {SLEEP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let start = Instant::now();
        let response = client
            .get(&url)
            .send()
            .await
            .with_context(|| format!("cold request {round}"))?;
        let took = start.elapsed();
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "cold request {round} answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
        eprintln!("cold start {round}: {:.0} ms", took.as_secs_f64() * 1000.0);
        times.push(took);
    }
    Ok(ColdFigures {
        cold_start_ms_p50: percentile_ms(&mut times, 50.0),
        cold_start_ms_p90: percentile_ms(&mut times, 90.0),
        cold_starts: rounds,
    })
}
