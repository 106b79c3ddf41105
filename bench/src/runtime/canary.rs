//! A bad canary rolled back (`canary_rollback_ms`): the warm-up round's app gets a release on
//! dev whose program answers 500 to every other request (pushed and deployed straight to the
//! platform, as the log lines' image is); test's canary policy is one step of 50 % for
//! `--canary-step` seconds; the release is promoted into test as a canary while four clients
//! read the app through test's load balancer. Timed from the canary's first answer to its
//! last: the bad release's whole exposure, its step included, until the old release answers
//! everything (the deployment must have recorded the rollback).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use neo_builder::project::Project;
use neo_gateway::api::{self, deployments_client::DeploymentsClient};
use neo_image::{BaseImage, ImageSpec};
use neo_protocol::pb;
use serde::Serialize;
use sha2::Digest as _;
use tokio::sync::Mutex;
use tonic::Request;

use super::{TENANT, deploy_given, registry};
use crate::build::BenchPlatform;

/// An app program answering 500 to every other request but its probes.
const FAULTY: &str = neo_harness::programs::HALF_FAILING_APP;

/// How long the canary may take to be judged before the bench gives up.
const JUDGE_TIMEOUT: Duration = Duration::from_secs(60);

/// With no canary answer for this long after its last, the old release serves alone.
const QUIET: Duration = Duration::from_secs(2);

/// Clients reading the app through test's load balancer.
const CLIENTS: usize = 4;

/// What the canary's rollback measured.
#[derive(Debug, Serialize)]
pub struct CanaryFigures {
    /// From the bad canary's first answer to its last (its step, the judgement, the route
    /// change).
    pub canary_rollback_ms: f64,
    /// The step's length it ran with.
    pub canary_step_s: u32,
    /// Answers the canary gave, and how many of them were 5xx.
    pub canary_answers: u64,
    pub canary_errors: u64,
}

/// Answers seen: (when, whether the canary gave it, whether it was 5xx).
type Seen = Arc<Mutex<Vec<(Instant, bool, bool)>>>;

/// Deploys the bad release of `app` on dev, promotes it into test as a canary, reads the app
/// until the canary no longer answers.
///
/// # Errors
/// When the image cannot be pushed, a command is refused, or the canary is not rolled back
/// within [`JUDGE_TIMEOUT`].
pub async fn measure(
    bench: &BenchPlatform,
    test_lb: SocketAddr,
    app: &str,
    (model, project): (&neo_model::Model, &Project),
    step_seconds: u32,
) -> anyhow::Result<CanaryFigures> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("apphost");
    std::fs::write(&path, FAULTY)?;
    let base = BaseImage::from_apphost(&path)?;
    let bundle = neo_builder::bundle::compile(model, project, &[]);
    let revision_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(FAULTY)));
    let spec = ImageSpec {
        tenant: TENANT,
        app,
        revision: 1,
        revision_digest: &revision_digest,
    };
    let image = registry(bench)
        .push_app(&spec, &base, &bundle.layer())
        .await
        .context("pushing the faulty image")?;
    deploy_given(bench, app, &image.digest).await?;

    let mut deployments = DeploymentsClient::connect(bench.endpoint.clone()).await?;
    deployments
        .set_canary_policy(authed(
            &bench.bearer,
            api::SetCanaryPolicyRequest {
                tenant: TENANT.into(),
                app: app.into(),
                stage: "test".into(),
                policy: Some(pb::CanaryPolicy {
                    steps: vec![50],
                    step_seconds,
                    max_error_rate_increase: 1.0,
                    max_p95_ratio: 100.0,
                    min_requests: 20,
                    sticky: false,
                }),
            },
        )?)
        .await
        .context("setting test's canary policy")?;

    let seen: Seen = Arc::default();
    let url = format!("http://{test_lb}/{TENANT}/{app}/api/product");
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..CLIENTS)
        .map(|_| tokio::spawn(read(url.clone(), seen.clone(), stop.clone())))
        .collect();
    let promoted = deployments
        .promote(authed(
            &bench.bearer,
            api::PromoteRequest {
                tenant: TENANT.into(),
                app: app.into(),
                stage: "test".into(),
                force: false,
                canary: true,
            },
        )?)
        .await
        .context("promoting the faulty release into test as a canary")?
        .into_inner();
    let release = promoted
        .state
        .and_then(|s| s.releases.last().map(|r| r.number))
        .unwrap_or_default();
    eprintln!("canary: v{release} of {app} promoted into test at 50 % for {step_seconds} s");

    let start = Instant::now();
    let outcome = loop {
        anyhow::ensure!(
            start.elapsed() < JUDGE_TIMEOUT,
            "the canary of {app} was not rolled back within {JUDGE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let last_canary = seen
            .lock()
            .await
            .iter()
            .rev()
            .find(|(_, canary, _)| *canary)
            .map(|(at, _, _)| *at);
        if last_canary.is_none_or(|at| at.elapsed() < QUIET) {
            continue;
        }
        let state = deployments
            .get_deployment(authed(
                &bench.bearer,
                api::GetDeploymentRequest {
                    tenant: TENANT.into(),
                    app: app.into(),
                    stage: "test".into(),
                },
            )?)
            .await?
            .into_inner()
            .state
            .unwrap_or_default();
        let canary = state
            .releases
            .iter()
            .find(|r| r.number == release)
            .and_then(|r| r.canary.clone())
            .unwrap_or_default();
        if canary.phase() != pb::CanaryPhase::Running {
            break canary;
        }
    };
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let _ = reader.await;
    }
    anyhow::ensure!(
        outcome.phase() == pb::CanaryPhase::RolledBack,
        "the bad canary was not rolled back: {outcome:?}"
    );
    let seen = seen.lock().await;
    let on_canary: Vec<_> = seen.iter().filter(|(_, canary, _)| *canary).collect();
    let (Some(first), Some(last)) = (on_canary.first(), on_canary.last()) else {
        anyhow::bail!("the canary answered nothing");
    };
    let exposure = last.0.duration_since(first.0);
    eprintln!(
        "canary: rolled back ({}); answered {} requests, {} of them 5xx, over {:.0} ms",
        outcome.outcome,
        on_canary.len(),
        on_canary.iter().filter(|(_, _, error)| *error).count(),
        exposure.as_secs_f64() * 1000.0
    );
    Ok(CanaryFigures {
        canary_rollback_ms: exposure.as_secs_f64() * 1000.0,
        canary_step_s: step_seconds,
        canary_answers: on_canary.len() as u64,
        canary_errors: on_canary.iter().filter(|(_, _, error)| *error).count() as u64,
    })
}

/// `message` with the bench's bearer token.
fn authed<T>(bearer: &str, message: T) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.parse()?);
    Ok(request)
}

/// Reads `url` until `stop`, noting each answer's time, release and status.
async fn read(url: String, seen: Seen, stop: Arc<AtomicBool>) {
    let Ok(client) = reqwest::Client::builder().no_proxy().build() else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        let Ok(response) = client.get(&url).send().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let canary = response
            .headers()
            .get("x-neo-release")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|r| r > 1);
        let error = response.status().is_server_error();
        seen.lock().await.push((Instant::now(), canary, error));
    }
}
