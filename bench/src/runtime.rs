//! `neo bench runtime`: the Runtime end to end, on servers of its own (those of
//! [`super::build::BenchPlatform`], plus Postgres for the stage databases) with an in-process
//! agent per stage (dev, test) running the process driver and its load balancer.
//!
//! - `publish_to_serving`: each round publishes a new app (the example renamed
//!   `{name}-{round}`, so every round is a first deploy) through the gateway's `Apps.Publish`
//!   and polls `GET {dev lb}/bench/{app}/api/product` every [`POLL`] until it answers 200;
//!   timed from the publish call.
//! - `promote_to_serving`: then `Deployments.Promote` to test, polled the same way on test's
//!   load balancer; timed from the promote call.
//! - `log_lines_per_s`: an image whose entrypoint is a shell script writing `--log-lines` JSON
//!   lines to stdout (then sleeping) is pushed and deployed straight to the platform as app
//!   `loglines` on dev; its lines are read back through the gateway's `Runtime.Logs` (opened,
//!   following, before the deploy) until all are read: lines / (deploy call → last line read).
//!   `log_ship_lines_per_s` is the agent's shipping alone: lines / (first → last batch seen
//!   on the logs subject by a plain NATS subscriber).
//!
//! - `lb_requests_per_s`, `direct_requests_per_s`, `lb_added_p99_ms`: the stage edge's cost,
//!   the last round's app read through a TLS edge and straight from its replica ([`edge`]).
//!
//! - `app_create_per_s`, `app_list_ms_p50`: the last round's app's own API through dev's
//!   load balancer: concurrent creates, then a page of 50 out of `--app-rows` records
//!   ([`app_api`]).
//!
//! - `cold_start_ms_p50`: then that app may sleep (min 0, a 1 s idle window): a request to it
//!   at zero replicas, timed to its 200, `--cold-starts` times ([`cold`]).
//!
//! - `canary_rollback_ms`: the warm-up round's app gets a release answering 500 to every
//!   other request, promoted into test as a canary at 50 % for `--canary-step` seconds: from
//!   its first answer to its last, until the old release answers everything ([`canary`]).
//!
//! A first round (not counted) warms the registry, the stage databases and the page cache.

mod app_api;
mod canary;
mod cold;
mod edge;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use neo_builder::project::Project;
use neo_gateway::api::{
    self, apps_client::AppsClient, deployments_client::DeploymentsClient,
    runtime_client::RuntimeClient,
};
use neo_image::{BaseImage, ImageSpec, Registry, RegistryConfig};
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb};
use neo_runtime_agent::agent::AgentConfig;
use neo_runtime_agent::driver::process::ProcessConfig;
use neo_runtime_agent::local::LocalRuntime;
use prost::Message as _;
use serde::Serialize;
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::Request;

use super::build::{BenchPlatform, pack_with_manifest, publish};
use super::stats::{percentile_ms, rate};
use neo_harness::PostgresServer;

/// The tenant everything runs in (created by [`BenchPlatform`]).
pub(crate) const TENANT: &str = "bench";
/// The stages started, in promotion order.
const STAGES: [&str; 2] = ["dev", "test"];
/// How often the load balancer is asked whether an app serves.
const POLL: Duration = Duration::from_millis(5);
/// How long an app may take to serve before the bench gives up.
const SERVE_TIMEOUT: Duration = Duration::from_secs(60);
/// The app the log lines come from.
const LOG_APP: &str = "loglines";

/// Options of `neo bench runtime`.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Publish-and-promote rounds measured (after one warm-up round).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Log lines the log-writing replica prints.
    #[arg(long, default_value_t = 500_000)]
    pub log_lines: usize,
    /// The example app's folder.
    #[arg(long, default_value = "examples/catalog")]
    pub example: PathBuf,
    /// The apphost binary (default: `neo-apphost` next to this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
    /// How often the process driver checks and probes replicas, in ms.
    #[arg(long, default_value_t = 100)]
    pub probe_ms: u64,
    /// How often the agents observe their driver, in ms.
    #[arg(long, default_value_t = 100)]
    pub observe_ms: u64,
    /// Clients (keep-alive connections) of the edge measurement.
    #[arg(long, default_value_t = 16)]
    pub edge_connections: usize,
    /// Seconds each side of the edge measurement runs.
    #[arg(long, default_value_t = 5)]
    pub edge_seconds: u64,
    /// Concurrent clients creating records through the stage address.
    #[arg(long, default_value_t = 32)]
    pub app_clients: usize,
    /// Records created through the stage address.
    #[arg(long, default_value_t = 20_000)]
    pub app_creates: usize,
    /// Records in the table when the list pages are read (the rest inserted in Postgres).
    #[arg(long, default_value_t = 100_000)]
    pub app_rows: usize,
    /// Requests timed to an app at zero replicas (each after it went to zero).
    #[arg(long, default_value_t = 10)]
    pub cold_starts: usize,
    /// The step of the bad canary rolled back, in seconds.
    #[arg(long, default_value_t = 5)]
    pub canary_step: u32,
}

/// The figures printed.
#[derive(Debug, Serialize)]
pub struct RuntimeFigures {
    /// Median time from the publish call to the first 200 from the app on dev.
    pub publish_to_serving_ms_p50: f64,
    /// 90th percentile of the same.
    pub publish_to_serving_ms_p90: f64,
    /// Median time from the publish call to the release on dev (the publish stream's end).
    pub publish_to_deployed_ms_p50: f64,
    /// Median time from the promote call to the first 200 from the app on test.
    pub promote_to_serving_ms_p50: f64,
    /// 90th percentile of the same.
    pub promote_to_serving_ms_p90: f64,
    /// Lines written by one replica, shipped by its agent and read through the gateway, per
    /// second from the deploy call to the last line read.
    pub log_lines_per_s: f64,
    /// The agent's shipping alone: lines per second from the first to the last batch on the
    /// logs subject (0 when the subscriber missed some).
    pub log_ship_lines_per_s: f64,
    /// From the deploy call to the first line on the logs subject (pull, unpack, start).
    pub log_first_line_ms: f64,
    /// Bytes of an app image in the registry (its compressed layers: the apphost and the
    /// bundle), as a replica's first start pulls it.
    pub image_bytes: u64,
    /// The stage edge: requests through it (TLS) and straight to the replica, in one run.
    #[serde(flatten)]
    pub edge: edge::EdgeFigures,
    /// The app's own API: creates and list pages through the stage address.
    #[serde(flatten)]
    pub app: app_api::AppApiFigures,
    /// Cold starts from zero replicas.
    #[serde(flatten)]
    pub cold: cold::ColdFigures,
    /// A bad canary rolled back.
    #[serde(flatten)]
    pub canary: canary::CanaryFigures,
    /// Rounds measured.
    pub rounds: usize,
    /// Log lines written and read.
    pub log_lines: usize,
}

/// The stages' agents and what they run on.
struct Stages {
    dev: LocalRuntime,
    test: LocalRuntime,
    /// Images, replica output and state files of the agents.
    _data: tempfile::TempDir,
    postgres: PostgresServer,
}

impl Stages {
    /// Starts Postgres with a database per stage, and an agent per stage.
    async fn start(bench: &BenchPlatform, args: &RuntimeBenchArgs) -> anyhow::Result<Self> {
        let postgres = PostgresServer::start().await.context("starting Postgres")?;
        let data = tempfile::tempdir()?;
        let registry = Arc::new(registry(bench));
        let mut runtimes = Vec::new();
        for stage in STAGES {
            let database = format!("neo_{stage}");
            postgres
                .create_database(&database)
                .await
                .with_context(|| format!("creating database {database}"))?;
            let mut process =
                ProcessConfig::new(data.path().join(stage), Some(postgres.url(&database)));
            // The stages share one image cache, as `ops/up`'s agents on one machine do.
            process.images_dir = data.path().join("images");
            process.probe_every = Duration::from_millis(args.probe_ms);
            process.grace = Duration::from_secs(3);
            process.edge = process.edge.without_rate_limits();
            let mut config = AgentConfig::new(StageName::new(stage)?);
            config.observe_every = Duration::from_millis(args.observe_ms);
            config.metrics_every = Duration::from_secs(1);
            config.report_every = Duration::from_secs(2);
            config.resync_every = Duration::from_secs(5);
            let runtime = LocalRuntime::start(
                bench.client.clone(),
                registry.clone(),
                process,
                config,
                "127.0.0.1:0".parse()?,
            )
            .await
            .with_context(|| format!("starting the agent of {stage}"))?;
            runtimes.push(runtime);
        }
        let test = runtimes.pop().context("no test agent")?;
        let dev = runtimes.pop().context("no dev agent")?;
        Ok(Self {
            dev,
            test,
            _data: data,
            postgres,
        })
    }

    /// Stops both agents and every replica they run.
    async fn shutdown(self) {
        self.dev.shutdown().await;
        self.test.shutdown().await;
    }
}

/// A client of the bench's registry.
pub(crate) fn registry(bench: &BenchPlatform) -> Registry {
    Registry::new(RegistryConfig {
        host: bench.registry_host.clone(),
        insecure: true,
        prefix: "neo".into(),
        credentials: None,
    })
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server or agent cannot start, the example does not load, a publish or promote
/// fails, or an app or its log lines do not arrive in time.
pub async fn run(args: RuntimeBenchArgs) -> anyhow::Result<()> {
    let project = Project::from_dir(&args.example)
        .with_context(|| format!("reading {}", args.example.display()))?;
    let model = neo_model::load(&project)
        .map_err(|d| anyhow::anyhow!("{} does not load: {d:?}", args.example.display()))?;
    let mut bench = BenchPlatform::start(args.apphost.clone()).await?;
    if let Err(e) = bench.run_runtime_reactors().await {
        bench.shutdown().await;
        return Err(e);
    }
    let stages = match Stages::start(&bench, &args).await {
        Ok(stages) => stages,
        Err(e) => {
            bench.shutdown().await;
            return Err(e);
        }
    };
    eprintln!(
        "runtime bench: dev lb {}, test lb {}",
        stages.dev.lb_addr, stages.test.lb_addr
    );
    let measured = measure(&bench, &stages, &args, &project, &model).await;
    stages.shutdown().await;
    bench.shutdown().await;
    let figures = measured?;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

fn print_table(f: &RuntimeFigures) {
    println!("{:<28} {:>12}  target", "figure", "value");
    println!(
        "{:<28} {:>12.1}  < 2000",
        "publish_to_serving_ms_p50", f.publish_to_serving_ms_p50
    );
    println!(
        "{:<28} {:>12.1}",
        "publish_to_serving_ms_p90", f.publish_to_serving_ms_p90
    );
    println!(
        "{:<28} {:>12.1}",
        "publish_to_deployed_ms_p50", f.publish_to_deployed_ms_p50
    );
    println!(
        "{:<28} {:>12.1}  < 500",
        "promote_to_serving_ms_p50", f.promote_to_serving_ms_p50
    );
    println!(
        "{:<28} {:>12.1}",
        "promote_to_serving_ms_p90", f.promote_to_serving_ms_p90
    );
    println!(
        "{:<28} {:>12.0}  >= 50000",
        "log_lines_per_s", f.log_lines_per_s
    );
    println!(
        "{:<28} {:>12.0}",
        "log_ship_lines_per_s", f.log_ship_lines_per_s
    );
    println!("{:<28} {:>12.1}", "log_first_line_ms", f.log_first_line_ms);
    println!("{:<28} {:>12}", "image_bytes", f.image_bytes);
    println!(
        "{:<28} {:>12.0}",
        "lb_requests_per_s", f.edge.lb_requests_per_s
    );
    println!(
        "{:<28} {:>12.0}",
        "direct_requests_per_s", f.edge.direct_requests_per_s
    );
    println!(
        "{:<28} {:>12.2}  >= 0.8",
        "lb_direct_ratio", f.edge.lb_direct_ratio
    );
    println!(
        "{:<28} {:>12.2}  < 2",
        "lb_added_p99_ms", f.edge.lb_added_p99_ms
    );
    println!(
        "{:<28} {:>12.0}  >= 2000",
        "app_create_per_s", f.app.app_create_per_s
    );
    println!(
        "{:<28} {:>12.2}  < 20",
        "app_list_ms_p50", f.app.app_list_ms_p50
    );
    println!("{:<28} {:>12.2}", "app_list_ms_p99", f.app.app_list_ms_p99);
    println!(
        "{:<28} {:>12.2}",
        "app_list_middle_ms_p50", f.app.app_list_middle_ms_p50
    );
    println!("{:<28} {:>12}", "app_rows", f.app.app_rows);
    println!(
        "{:<28} {:>12.1}  < 500",
        "cold_start_ms_p50", f.cold.cold_start_ms_p50
    );
    println!(
        "{:<28} {:>12.1}",
        "cold_start_ms_p90", f.cold.cold_start_ms_p90
    );
    println!(
        "{:<28} {:>12.0}  < 10000",
        "canary_rollback_ms", f.canary.canary_rollback_ms
    );
    println!("{:<28} {:>12}", "canary_step_s", f.canary.canary_step_s);
    println!("{:<28} {:>12}", "rounds", f.rounds);
    println!("{:<28} {:>12}", "log_lines", f.log_lines);
}

/// The rounds, then the log lines.
async fn measure(
    bench: &BenchPlatform,
    stages: &Stages,
    args: &RuntimeBenchArgs,
    project: &Project,
    model: &neo_model::Model,
) -> anyhow::Result<RuntimeFigures> {
    let manifest = String::from_utf8(project.file("neo.toml").unwrap_or_default().to_vec())?;
    let apps = AppsClient::connect(bench.endpoint.clone()).await?;
    let mut deployments = DeploymentsClient::connect(bench.endpoint.clone()).await?;
    let mut to_serving = Vec::with_capacity(args.rounds);
    let mut to_deployed = Vec::with_capacity(args.rounds);
    let mut promoted = Vec::with_capacity(args.rounds);
    for round in 0..=args.rounds {
        let app = format!("{}-{round}", model.name);
        let renamed = manifest.replacen(
            &format!("name = \"{}\"", model.name),
            &format!("name = \"{app}\""),
            1,
        );
        anyhow::ensure!(renamed != manifest, "cannot rename the app in its neo.toml");
        let content = pack_with_manifest(project, &renamed)?;
        let path = format!("/{TENANT}/{app}/api/product");

        let start = Instant::now();
        let publishing = tokio::spawn({
            let (apps, bearer, app) = (apps.clone(), bench.bearer.clone(), app.clone());
            async move { publish(apps, &bearer, &app, content).await }
        });
        let serving = serves(stages.dev.lb_addr, &path, start)
            .await
            .with_context(|| format!("{app} on dev"))?;
        let (_, deployed, _) = publishing
            .await
            .context("the publish task")?
            .with_context(|| format!("publishing {app}"))?;

        let start = Instant::now();
        let mut promote = Request::new(api::PromoteRequest {
            tenant: TENANT.into(),
            app: app.clone(),
            stage: "test".into(),
            force: false,
            canary: false,
        });
        promote
            .metadata_mut()
            .insert("authorization", bench.bearer.parse()?);
        deployments
            .promote(promote)
            .await
            .with_context(|| format!("promoting {app} to test"))?;
        let on_test = serves(stages.test.lb_addr, &path, start)
            .await
            .with_context(|| format!("{app} on test"))?;
        eprintln!(
            "round {round}{}: publish → serving {:.0} ms (deployed {:.0} ms), promote → serving {:.0} ms",
            if round == 0 { " (warm-up)" } else { "" },
            ms(serving),
            ms(deployed),
            ms(on_test)
        );
        if round > 0 {
            to_serving.push(serving);
            to_deployed.push(deployed);
            promoted.push(on_test);
        }
    }
    let image_bytes = image_bytes(bench, &format!("{}-0", model.name)).await?;
    let last = format!("{}-{}", model.name, args.rounds);
    let replica = stages
        .dev
        .driver
        .routes()
        .backends(TENANT, &last)
        .first()
        .copied()
        .with_context(|| format!("no ready replica of {last} on dev"))?;
    let edge = edge::measure(
        replica,
        TENANT,
        &last,
        "/api/product",
        args.edge_connections,
        Duration::from_secs(args.edge_seconds.max(1)),
    )
    .await
    .context("measuring the edge")?;
    let key = neo_runtime_agent::driver::PodgroupKey {
        tenant: TENANT.into(),
        app: last.clone(),
        stage: "dev".into(),
    };
    let table = format!(
        "\"{}\".product",
        neo_runtime_agent::driver::database::schema(&key)
    );
    let app = app_api::measure(
        stages.dev.lb_addr,
        &format!("/{TENANT}/{last}"),
        &stages.postgres.url("neo_dev"),
        &table,
        args.app_clients,
        args.app_creates,
        args.app_rows,
    )
    .await
    .context("measuring the app's API")?;
    let cold = cold::measure(
        &bench.endpoint,
        &bench.bearer,
        &stages.dev.driver.routes(),
        stages.dev.lb_addr,
        (TENANT, &last, "/api/product"),
        args.cold_starts,
    )
    .await
    .context("measuring cold starts")?;
    let canary = canary::measure(
        bench,
        stages.test.lb_addr,
        &format!("{}-0", model.name),
        (model, project),
        args.canary_step,
    )
    .await
    .context("measuring a canary's rollback")?;
    let logs = log_lines(bench, model, project, args.log_lines).await?;
    Ok(RuntimeFigures {
        image_bytes,
        publish_to_serving_ms_p50: percentile_ms(&mut to_serving, 50.0),
        publish_to_serving_ms_p90: percentile_ms(&mut to_serving, 90.0),
        publish_to_deployed_ms_p50: percentile_ms(&mut to_deployed, 50.0),
        promote_to_serving_ms_p50: percentile_ms(&mut promoted, 50.0),
        promote_to_serving_ms_p90: percentile_ms(&mut promoted, 90.0),
        log_lines_per_s: logs.end_to_end,
        log_ship_lines_per_s: logs.shipping,
        log_first_line_ms: logs.first_line_ms,
        edge,
        app,
        cold,
        canary,
        rounds: args.rounds,
        log_lines: args.log_lines,
    })
}

/// The compressed size of the first revision's image of `app`, pulled from the registry.
async fn image_bytes(bench: &BenchPlatform, app: &str) -> anyhow::Result<u64> {
    let registry = registry(bench);
    let reference = format!(
        "{}/{}:r1",
        registry.host(),
        registry.repository(TENANT, app)
    );
    let (_, layers) = registry
        .pull(&reference)
        .await
        .with_context(|| format!("pulling {reference}"))?;
    Ok(layers.iter().map(|l| l.len() as u64).sum())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Polls `GET http://{lb}{path}` every [`POLL`] until it answers 200; the time since `start`.
pub(crate) async fn serves(lb: SocketAddr, path: &str, start: Instant) -> anyhow::Result<Duration> {
    let mut last = None;
    loop {
        let status = http_status(lb, path).await;
        if status == Some(200) {
            return Ok(start.elapsed());
        }
        last = status.or(last);
        if start.elapsed() > SERVE_TIMEOUT {
            anyhow::bail!(
                "GET http://{lb}{path} did not answer 200 within {SERVE_TIMEOUT:?} (last status: {last:?})"
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The status of `GET http://{addr}{path}` (HTTP/1.1, one connection per request, the body
/// read and dropped); `None` when it cannot be had within a second.
pub(crate) async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        // "HTTP/1.1 200 OK"
        let line = response.split(|b| *b == b'\n').next()?;
        std::str::from_utf8(line)
            .ok()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

/// What the log-lines phase measured.
struct LogFigures {
    end_to_end: f64,
    shipping: f64,
    first_line_ms: f64,
}

/// The entrypoint of the log-writing image: `lines` JSON lines on stdout as fast as `awk`
/// prints them, then it idles (and is never ready: it serves nothing).
fn log_script(lines: usize) -> String {
    format!(
        r#"#!/bin/sh
# neo bench runtime: {lines} JSON log lines as fast as possible, then idle.
ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)
awk -v n={lines} -v ts="$ts" 'BEGIN {{
  for (i = 1; i <= n; i++)
    printf "{{\"timestamp\":\"%s\",\"level\":\"INFO\",\"message\":\"line %d\"}}\n", ts, i
}}'
exec sleep 3600
"#
    )
}

/// Deploys image `digest` to dev as a new release of `app` straight through the platform, as
/// if revision 1 (build `{app}_r1`, which the platform checks) had built it: for images the
/// bench made itself.
///
/// # Errors
/// When the platform refuses the deploy.
pub(crate) async fn deploy_given(
    bench: &BenchPlatform,
    app: &str,
    digest: &str,
) -> anyhow::Result<()> {
    let deploy = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
            app: app.into(),
            stage: "dev".into(),
            build_id: format!("{app}_r1"),
            revision: 1,
            image_digest: digest.into(),
            ..Default::default()
        })),
    };
    let request = pb::CommandRequest {
        command_id: uuid::Uuid::new_v4().to_string(),
        principal: "bench".into(),
        command: deploy.encode_to_vec().into(),
        ..Default::default()
    };
    let entity = EntityRef::deployment(
        &TenantName::new(TENANT)?,
        &AppName::new(app)?,
        &StageName::new("dev")?,
    );
    let reply = bench.platform.dispatch(&entity, request).await;
    anyhow::ensure!(
        matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))),
        "the deploy of {app} was not accepted: {reply:?}"
    );
    Ok(())
}

/// Pushes and deploys the log-writing image as app [`LOG_APP`] on dev, and reads its lines
/// back through `Runtime.Logs` (and, for the shipping rate, a plain NATS subscriber).
async fn log_lines(
    bench: &BenchPlatform,
    model: &neo_model::Model,
    project: &Project,
    lines: usize,
) -> anyhow::Result<LogFigures> {
    anyhow::ensure!(lines > 0, "--log-lines must be at least 1");
    let script = log_script(lines);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("apphost");
    std::fs::write(&path, &script)?;
    let base = BaseImage::from_apphost(&path)?;
    // Any bundle will do: the script reads none.
    let bundle = neo_builder::bundle::compile(model, project, &[]);
    let revision_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&script)));
    let spec = ImageSpec {
        tenant: TENANT,
        app: LOG_APP,
        revision: 1,
        revision_digest: &revision_digest,
    };
    let image = registry(bench)
        .push_app(&spec, &base, &bundle.layer())
        .await
        .context("pushing the log-writing image")?;

    // Both readers are open before the deploy.
    let (tenant, stage, app) = (
        TenantName::new(TENANT)?,
        StageName::new("dev")?,
        AppName::new(LOG_APP)?,
    );
    let subject = subjects::runtime(&tenant, &stage, &app, Channel::Logs.as_str());
    let shipped = bench.client.subscribe(subject).await?;
    let mut request = Request::new(api::LogsRequest {
        tenant: TENANT.into(),
        stage: "dev".into(),
        app: LOG_APP.into(),
        follow: true,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", bench.bearer.parse()?);
    let mut read = RuntimeClient::connect(bench.endpoint.clone())
        .await?
        .logs(request)
        .await
        .context("Runtime.Logs")?
        .into_inner();

    let start = Instant::now();
    deploy_given(bench, LOG_APP, &image.digest).await?;
    eprintln!("log lines: {lines} lines deployed as {LOG_APP} on dev");
    let watch = tokio::spawn(watch_shipping(shipped, lines, start));

    let timeout = Duration::from_secs(60).max(Duration::from_secs((lines / 5_000) as u64));
    let mut count = 0;
    let reading = async {
        while count < lines {
            let response = read
                .message()
                .await
                .context("reading Runtime.Logs")?
                .context("Runtime.Logs ended before every line was read")?;
            count += response.lines.len();
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(timeout, reading)
        .await
        .map_err(|_| anyhow::anyhow!("read {count} of {lines} log lines in {timeout:?}"))??;
    let elapsed = start.elapsed();
    let end_to_end = rate(lines, elapsed);
    let (first, last) = tokio::time::timeout(Duration::from_secs(5), watch)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or((None, None));
    let shipping = match (first, last) {
        (Some(first), Some(last)) if last > first => rate(lines, last - first),
        _ => 0.0,
    };
    let first_line_ms = first.map_or(0.0, ms);
    eprintln!(
        "log lines: {lines} read through the gateway in {:.0} ms; first shipped after {first_line_ms:.0} ms, last after {:.0} ms",
        ms(elapsed),
        last.map_or(0.0, ms)
    );
    Ok(LogFigures {
        end_to_end,
        shipping,
        first_line_ms,
    })
}

/// When (since `start`) the first batch and the batch completing `lines` lines arrived on the
/// logs subject; `None`s when the subscription ends first.
async fn watch_shipping(
    mut shipped: async_nats::Subscriber,
    lines: usize,
    start: Instant,
) -> (Option<Duration>, Option<Duration>) {
    let mut first = None;
    let mut count = 0;
    while let Some(message) = shipped.next().await {
        let Ok(batch) = pb::LogBatch::decode(message.payload) else {
            continue;
        };
        first.get_or_insert_with(|| start.elapsed());
        count += batch.lines.len();
        if count >= lines {
            return (first, Some(start.elapsed()));
        }
    }
    (first, None)
}
