//! `agent_failover_ms` of `neo bench ha`: a stage served by a pair of agents (the process
//! driver; both on one data directory and one load balancer address, as `ops/up --cluster`
//! runs them) on the platform of [`BenchPlatform`], with the example app deployed to it.
//!
//! Each round a standby starts beside the active agent and follows it; the active agent dies
//! (its lease is not given up, its replicas keep running: [`LocalRuntime::abandon`]); the
//! figure is the time from its death to the standby's first health report of the app with
//! every desired replica ready. Meanwhile a client asks the stage's address for the app every
//! [`POLL`], each time on a new connection: `agent_failover_failed_requests` counts the
//! answers that were not 200.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use neo_builder::project::Project;
use neo_gateway::api::apps_client::AppsClient;
use neo_harness::PostgresServer;
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{AppName, StageName, TenantName, pb};
use neo_runtime_agent::agent::AgentConfig;
use neo_runtime_agent::driver::process::ProcessConfig;
use neo_runtime_agent::local::LocalRuntime;
use prost::Message as _;
use tokio::sync::watch;

use super::HaBenchArgs;
use crate::build::{BenchPlatform, pack_with_manifest, publish};
use crate::runtime::{http_status, registry, serves};

/// The stage of the pair.
const STAGE: &str = "dev";
/// The tenant [`BenchPlatform`] creates.
const TENANT: &str = "bench";
/// How often the stage's address is asked during a takeover.
const POLL: Duration = Duration::from_millis(20);
/// How long a standby may follow before the active agent dies.
const FOLLOW: Duration = Duration::from_secs(2);
/// How long a takeover may take before the bench gives up.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);

/// What the failover rounds measured.
pub(super) struct Failovers {
    /// Death of the active agent → the standby reports the app converged, per round.
    pub times: Vec<Duration>,
    /// Requests to the stage's address answered other than 200 during the rounds.
    pub failed_requests: usize,
    /// Requests made during the rounds.
    pub requests: usize,
}

/// Runs `args.agent_rounds` takeovers on a stack of its own.
pub(super) async fn failovers(args: &HaBenchArgs) -> anyhow::Result<Failovers> {
    let project = Project::from_dir(&args.example)
        .with_context(|| format!("reading {}", args.example.display()))?;
    let mut bench = BenchPlatform::start(args.apphost.clone()).await?;
    let measured = match bench.run_runtime_reactors().await {
        Ok(()) => rounds(&bench, &project, args.agent_rounds).await,
        Err(e) => Err(e),
    };
    bench.shutdown().await;
    measured
}

/// How each agent of the pair is configured.
#[derive(Clone)]
struct Pair {
    client: async_nats::Client,
    registry: Arc<neo_image::Registry>,
    dir: PathBuf,
    database: String,
}

impl Pair {
    /// Starts agent `name` on `lb`: it returns once it holds the lease.
    async fn agent(&self, name: &str, lb: SocketAddr) -> anyhow::Result<LocalRuntime> {
        let mut process = ProcessConfig::new(self.dir.join(STAGE), Some(self.database.clone()));
        process.images_dir = self.dir.join("images");
        process.probe_every = Duration::from_millis(100);
        process.grace = Duration::from_secs(3);
        process.edge = process.edge.without_rate_limits();
        let mut config = AgentConfig::new(StageName::new(STAGE)?);
        config.name = name.into();
        config.observe_every = Duration::from_millis(100);
        config.metrics_every = Duration::from_secs(1);
        config.report_every = Duration::from_secs(2);
        config.resync_every = Duration::from_secs(5);
        LocalRuntime::start(
            self.client.clone(),
            self.registry.clone(),
            process,
            config,
            lb,
        )
        .await
        .with_context(|| format!("starting agent {name}"))
    }
}

async fn rounds(
    bench: &BenchPlatform,
    project: &Project,
    rounds: usize,
) -> anyhow::Result<Failovers> {
    let postgres = PostgresServer::start().await.context("starting Postgres")?;
    let database = format!("neo_{STAGE}");
    postgres.create_database(&database).await?;
    let dir = tempfile::tempdir()?;
    let pair = Pair {
        client: bench.client.clone(),
        registry: Arc::new(registry(bench)),
        dir: dir.path().to_owned(),
        database: postgres.url(&database),
    };
    let first = pair.agent("agent-dev-0", "127.0.0.1:0".parse()?).await?;
    let (figures, last) = takeovers(bench, project, &pair, first, rounds).await?;
    last.shutdown().await;
    Ok(figures)
}

/// Deploys the example, then `rounds` takeovers, each by a new standby; the figures and the
/// agent active at the end.
async fn takeovers(
    bench: &BenchPlatform,
    project: &Project,
    pair: &Pair,
    mut active: LocalRuntime,
    rounds: usize,
) -> anyhow::Result<(Failovers, LocalRuntime)> {
    let lb = active.lb_addr;
    let app = deploy(bench, project, lb).await?;
    let path = format!("/{TENANT}/{app}/api/product");
    let subject = subjects::runtime(
        &TenantName::new(TENANT)?,
        &StageName::new(STAGE)?,
        &AppName::new(&app)?,
        Channel::Health.as_str(),
    );
    let mut reports = bench.client.subscribe(subject).await?;
    let mut figures = Failovers {
        times: Vec::with_capacity(rounds),
        failed_requests: 0,
        requests: 0,
    };
    for round in 1..=rounds {
        let name = format!("agent-dev-{round}");
        let (stop, stopped) = watch::channel(false);
        let poller = tokio::spawn(poll(lb, path.clone(), stopped));
        let standby = tokio::spawn({
            let (pair, name) = (pair.clone(), name.clone());
            async move { pair.agent(&name, lb).await }
        });
        tokio::time::sleep(FOLLOW).await;
        let died = Instant::now();
        active.abandon().await;
        let converged = tokio::time::timeout(TAKEOVER_TIMEOUT, converged_by(&mut reports, &name))
            .await
            .ok()
            .flatten()
            .with_context(|| format!("round {round}: {name} did not report the app converged"))?;
        active = standby.await.context("the standby's task")??;
        figures.times.push(converged - died);
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.send_replace(true);
        let (requests, failed) = poller.await.context("the poller")?;
        figures.requests += requests;
        figures.failed_requests += failed;
        eprintln!(
            "round {round}: {name} took over in {:.0} ms ({failed} of {requests} requests not 200)",
            (converged - died).as_secs_f64() * 1000.0
        );
    }
    Ok((figures, active))
}

/// Publishes the example (deployed to dev) and waits until it serves on `lb`; its name.
async fn deploy(
    bench: &BenchPlatform,
    project: &Project,
    lb: SocketAddr,
) -> anyhow::Result<String> {
    let manifest = String::from_utf8(project.file("neo.toml").unwrap_or_default().to_vec())?;
    let model = neo_model::load(project)
        .map_err(|d| anyhow::anyhow!("the example does not load: {d:?}"))?;
    let content = pack_with_manifest(project, &manifest)?;
    let apps = AppsClient::connect(bench.endpoint.clone()).await?;
    let start = Instant::now();
    publish(apps, &bench.bearer, &model.name, content)
        .await
        .with_context(|| format!("publishing {}", model.name))?;
    serves(lb, &format!("/{TENANT}/{}/api/product", model.name), start).await?;
    Ok(model.name)
}

/// When `agent` first reports every desired replica of the app ready.
async fn converged_by(reports: &mut async_nats::Subscriber, agent: &str) -> Option<Instant> {
    while let Some(message) = reports.next().await {
        let Ok(report) = pb::HealthReport::decode(message.payload) else {
            continue;
        };
        let ready = report
            .replicas
            .iter()
            .filter(|r| r.phase() == pb::ReplicaPhase::Ready)
            .count();
        if report.agent == agent && report.desired > 0 && ready >= report.desired as usize {
            return Some(Instant::now());
        }
    }
    None
}

/// `GET path` on `lb` every [`POLL`] until stopped: (requests, answers other than 200).
async fn poll(lb: SocketAddr, path: String, mut stopped: watch::Receiver<bool>) -> (usize, usize) {
    let (mut requests, mut failed) = (0, 0);
    while !*stopped.borrow() {
        requests += 1;
        if http_status(lb, &path).await != Some(200) {
            failed += 1;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stopped.changed() => {}
        }
    }
    (requests, failed)
}
