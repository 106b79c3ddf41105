//! `neo bench idle`: what the whole stack costs while nothing happens, at growing app counts.
//!
//! On servers of its own ([`BenchPlatform`]: nats-server, docker-registry, the embedded S3
//! endpoint; the platform, gateway and one build worker in-process), it runs stage `dev` with
//! `--agents` in-process agents (process driver and load balancer, on their production
//! defaults: `AgentConfig::new`, `ProcessConfig::new`) that share the stage's tenants
//! (`AgentConfig::tenants`), each with a Postgres cluster of its own holding `neo_dev`: a
//! replica keeps one connection open (its `/readyz` runs `SELECT 1`), and one cluster's
//! `max_connections = 100` holds no more than ~97 replicas. It publishes `--apps` apps (the
//! example renamed `{name}-{i}`, each a revision built for real, one replica each: the
//! default policy's min) spread round-robin over `--tenants` tenants `idle-1…`, waits until
//! every app has a ready replica and its rollout recorded, waits `--settle-s`, and then
//! measures over `--window-s`:
//!
//! - CPU of each kind of process, from `/proc/{pid}/stat` (`utime + stime`) at both ends of the
//!   window, in % of one core: `bench` (this process: platform, gateway, build worker, agent,
//!   driver and load balancer), `nats` (nats-server), `replicas` (the apphost processes),
//!   `postgres` (each postmaster with its children; children that ended inside the window
//!   count through the postmaster's `cutime + cstime`) and `registry`. `idle_cpu_pct` is
//!   their sum ([`cpu`]).
//! - NATS messages per second, counted by the clients: `in_messages + out_messages` of the
//!   platform's connection (platform, gateway, build worker, reactors) and of each agent's own
//!   connection (nats-server is started without a monitoring port here, so `/varz` is not
//!   read). A message between two of these connections counts once at each end, as `/varz`'s
//!   `in_msgs + out_msgs` would.
//! - Messages stored per second in `NEO_EVENTS` (events, e.g. `MetricsObserved`) and in
//!   `NEO_RUNTIME` (health and metrics reports), read on a third connection.
//!
//! Sizes run in ascending order in one invocation: the apps of the next size are added to
//! those already running. An idle app's agent reports once a minute, at a phase set by when
//! the app started: a window under two minutes sees a share of those heartbeats that depends
//! on that phase (the README's figures use `--window-s 120`).

mod cpu;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use neo_builder::project::Project;
use neo_gateway::api::{self, PublishStep, apps_client::AppsClient};
use neo_image::{Registry, RegistryConfig};
use neo_protocol::{StageName, pb, subjects};
use neo_runtime_agent::agent::AgentConfig;
use neo_runtime_agent::driver::process::ProcessConfig;
use neo_runtime_agent::driver::{Driver as _, PodgroupKey, Rollout};
use neo_runtime_agent::local::LocalRuntime;
use serde::Serialize;
use tonic::Request;

pub use self::cpu::KindCpu;
use self::cpu::{round2, ticks};
use super::build::{BenchPlatform, pack_with_manifest};
use neo_harness::PostgresServer;

/// The stage every app runs on (every tenant's first).
const STAGE: &str = "dev";
/// How the NATS figure is counted.
const NATS_COUNTED: &str =
    "client statistics: in_messages + out_messages of the platform's and the agents' connections";

/// Options of `neo bench idle`.
#[derive(Debug, Clone, clap::Args)]
pub struct IdleBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The app counts measured (ascending; apps are added between sizes).
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    pub apps: Vec<usize>,
    /// Tenants the apps are spread over, round-robin.
    #[arg(long, default_value_t = 2)]
    pub tenants: usize,
    /// Agents serving the stage, the tenants split between them, each with its own Postgres.
    #[arg(long, default_value_t = 2)]
    pub agents: usize,
    /// Seconds measured at each size.
    #[arg(long, default_value_t = 30)]
    pub window_s: u64,
    /// Seconds waited after every app is ready, before the window.
    #[arg(long, default_value_t = 15)]
    pub settle_s: u64,
    /// The example app's folder.
    #[arg(long, default_value = "examples/catalog")]
    pub example: PathBuf,
    /// The apphost binary (default: `neo-apphost` next to this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
    /// How often the process driver probes a serving replica, in ms (default: the driver's
    /// own).
    #[arg(long)]
    pub probe_ms: Option<u64>,
}

/// The figures printed.
#[derive(Debug, Serialize)]
pub struct IdleFigures {
    /// One entry per app count, ascending.
    pub sizes: Vec<IdleSize>,
    /// Tenants the apps are spread over.
    pub tenants: usize,
    /// Agents (and Postgres clusters) serving the stage.
    pub agents: usize,
    /// The measuring window, in seconds.
    pub window_s: u64,
    /// The process driver's probe period for serving replicas, in ms.
    pub probe_ms: u64,
    /// `debug` or `release`: the build of this program.
    pub build: &'static str,
    /// How `idle_nats_msgs_per_s` is counted.
    pub nats_msgs_counted: &'static str,
}

/// What the stack costs idle with `apps` apps.
#[derive(Debug, Serialize)]
pub struct IdleSize {
    /// Apps running (one ready replica each).
    pub apps: usize,
    /// CPU of the whole stack, in % of one core.
    pub idle_cpu_pct: f64,
    /// The same per kind of process.
    pub cpu_pct: KindCpu,
    /// NATS messages per second (see [`NATS_COUNTED`]).
    pub idle_nats_msgs_per_s: f64,
    /// Of which on the agents' connections.
    pub agent_nats_msgs_per_s: f64,
    /// Events appended to `NEO_EVENTS` per second.
    pub idle_events_per_s: f64,
    /// Health and metrics reports stored in `NEO_RUNTIME` per second.
    pub idle_reports_per_s: f64,
    /// Seconds to publish the apps added for this size (each to its deploy).
    pub publish_s: f64,
    /// Seconds from the first of those publishes until every app was ready.
    pub ready_s: f64,
}

/// Messages in and out of `client` so far.
fn messages(client: &async_nats::Client) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = client.statistics();
    stats.in_messages.load(Relaxed) + stats.out_messages.load(Relaxed)
}

/// One agent of the stage and what it runs on.
struct Agent {
    runtime: LocalRuntime,
    /// The agent's own NATS connection (its messages are counted apart).
    client: async_nats::Client,
    postgres: PostgresServer,
}

/// The stage's agents; tenant `idle-{t}` is served by agent `(t - 1) % agents`.
struct Stage {
    agents: Vec<Agent>,
    /// Images (shared by the agents, as `ops/up`'s are), replica output and state files.
    _data: tempfile::TempDir,
}

impl Stage {
    async fn start(bench: &BenchPlatform, args: &IdleBenchArgs) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        let registry = Arc::new(Registry::new(RegistryConfig {
            host: bench.registry_host.clone(),
            insecure: true,
            prefix: "neo".into(),
            credentials: None,
        }));
        let mut agents = Vec::with_capacity(args.agents);
        for index in 0..args.agents {
            let postgres = PostgresServer::start().await.context("starting Postgres")?;
            let database = format!("neo_{STAGE}");
            postgres
                .create_database(&database)
                .await
                .with_context(|| format!("creating database {database}"))?;
            let dir = data.path().join(format!("agent-{index}"));
            let mut process = ProcessConfig::new(dir, Some(postgres.url(&database)));
            process.images_dir = data.path().join("images");
            if let Some(ms) = args.probe_ms {
                process.serving_probe_every = Duration::from_millis(ms);
            }
            let mut config = AgentConfig::new(StageName::new(STAGE)?);
            config.name = format!("agent-{STAGE}-{index}");
            config.lease_group = format!("{index}");
            config.tenants = Some(
                (1..=args.tenants)
                    .filter(|t| (t - 1) % args.agents == index)
                    .map(tenant_name)
                    .collect(),
            );
            let client = async_nats::connect(bench.nats.url()).await?;
            let runtime = LocalRuntime::start(
                client.clone(),
                registry.clone(),
                process,
                config,
                "127.0.0.1:0".parse()?,
            )
            .await
            .with_context(|| format!("starting agent {index}"))?;
            agents.push(Agent {
                runtime,
                client,
                postgres,
            });
        }
        Ok(Self {
            agents,
            _data: data,
        })
    }

    /// The agent serving `tenant` number `t` (from 1).
    fn agent_of(&self, t: usize) -> &Agent {
        &self.agents[(t - 1) % self.agents.len()]
    }

    /// Stops every agent and the replicas they run.
    async fn shutdown(self) {
        for agent in self.agents {
            agent.runtime.shutdown().await;
        }
    }
}

/// The name of tenant number `t` (from 1).
fn tenant_name(t: usize) -> String {
    format!("idle-{t}")
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server or the agent cannot start, the example does not load, a publish fails, or
/// an app is not ready in time.
pub async fn run(args: IdleBenchArgs) -> anyhow::Result<()> {
    let mut sizes = args.apps.clone();
    sizes.sort_unstable();
    sizes.dedup();
    anyhow::ensure!(
        sizes.first().is_some_and(|n| *n > 0),
        "--apps needs counts ≥ 1"
    );
    anyhow::ensure!(
        args.agents > 0 && args.agents <= args.tenants,
        "--agents must be between 1 and --tenants"
    );
    let project = Project::from_dir(&args.example)
        .with_context(|| format!("reading {}", args.example.display()))?;
    let model = neo_model::load(&project)
        .map_err(|d| anyhow::anyhow!("{} does not load: {d:?}", args.example.display()))?;

    let mut bench = BenchPlatform::start(args.apphost.clone()).await?;
    if let Err(e) = bench.run_runtime_reactors().await {
        bench.shutdown().await;
        return Err(e);
    }
    let stage = match Stage::start(&bench, &args).await {
        Ok(stage) => stage,
        Err(e) => {
            bench.shutdown().await;
            return Err(e);
        }
    };
    let measured = measure(&bench, &stage, &args, &sizes, &project, &model.name).await;
    stage.shutdown().await;
    bench.shutdown().await;
    let figures = IdleFigures {
        sizes: measured?,
        tenants: args.tenants,
        agents: args.agents,
        window_s: args.window_s,
        probe_ms: args.probe_ms.unwrap_or_else(|| {
            let defaults = ProcessConfig::new(PathBuf::new(), None);
            u64::try_from(defaults.serving_probe_every.as_millis()).unwrap_or(u64::MAX)
        }),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        nats_msgs_counted: NATS_COUNTED,
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

fn print_table(f: &IdleFigures) {
    println!(
        "{:>5} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9}",
        "apps",
        "cpu_pct",
        "bench",
        "nats",
        "replicas",
        "postgres",
        "registry",
        "nats_msg/s",
        "events/s",
        "reports/s",
        "publish_s"
    );
    for s in &f.sizes {
        println!(
            "{:>5} {:>9.2} {:>7.2} {:>7.2} {:>9.2} {:>9.2} {:>9.2} {:>10.1} {:>9.2} {:>9.2} {:>9.1}",
            s.apps,
            s.idle_cpu_pct,
            s.cpu_pct.bench,
            s.cpu_pct.nats,
            s.cpu_pct.replicas,
            s.cpu_pct.postgres,
            s.cpu_pct.registry,
            s.idle_nats_msgs_per_s,
            s.idle_events_per_s,
            s.idle_reports_per_s,
            s.publish_s
        );
    }
    println!(
        "(% of one core over {} s; {} build; serving replicas probed every {} ms; NATS: {})",
        f.window_s, f.build, f.probe_ms, f.nats_msgs_counted
    );
}

/// Adds apps up to each size, lets them settle, and measures.
async fn measure(
    bench: &BenchPlatform,
    stage: &Stage,
    args: &IdleBenchArgs,
    sizes: &[usize],
    project: &Project,
    name: &str,
) -> anyhow::Result<Vec<IdleSize>> {
    for t in 1..=args.tenants {
        create_tenant(bench, &tenant_name(t)).await?;
    }
    let manifest = String::from_utf8(project.file("neo.toml").unwrap_or_default().to_vec())?;
    let apps = AppsClient::connect(bench.endpoint.clone()).await?;
    // Stream counts are read on a connection of their own, so they are not counted.
    let meter = async_nats::connect(bench.nats.url()).await?;
    let meter = async_nats::jetstream::new(meter);
    // Each app's podgroup and the agent serving it.
    let mut keys: Vec<(PodgroupKey, &Agent)> = Vec::new();
    let mut figures = Vec::new();
    for &size in sizes {
        let start = Instant::now();
        for i in keys.len()..size {
            let t = i % args.tenants + 1;
            let tenant = tenant_name(t);
            let app = format!("{name}-{i}");
            let renamed = manifest.replacen(
                &format!("name = \"{name}\""),
                &format!("name = \"{app}\""),
                1,
            );
            anyhow::ensure!(renamed != manifest, "cannot rename the app in its neo.toml");
            let content = pack_with_manifest(project, &renamed)?;
            publish(apps.clone(), &bench.bearer, &tenant, &app, content)
                .await
                .with_context(|| format!("publishing {tenant}/{app}"))?;
            let key = PodgroupKey {
                tenant,
                app,
                stage: STAGE.into(),
            };
            keys.push((key, stage.agent_of(t)));
        }
        let publish_s = start.elapsed().as_secs_f64();
        let timeout = Duration::from_secs(60 + 3 * u64::try_from(size).unwrap_or(u64::MAX));
        all_ready(stage, &keys, timeout).await?;
        let ready_s = start.elapsed().as_secs_f64();
        eprintln!(
            "idle bench: {size} apps published in {publish_s:.1} s, all ready after {ready_s:.1} s; settling {} s",
            args.settle_s
        );
        tokio::time::sleep(Duration::from_secs(args.settle_s)).await;

        let mut pids = HashSet::new();
        for (key, agent) in &keys {
            pids.extend(agent.runtime.driver.pids(key).await);
        }
        let ports: Vec<u16> = stage.agents.iter().map(|a| a.postgres.port()).collect();
        let agents_messages = || {
            stage
                .agents
                .iter()
                .map(|a| messages(&a.client))
                .sum::<u64>()
        };
        let stored_before = stored(&meter).await?;
        let msgs_before = (messages(&bench.client), agents_messages());
        let ticks_before = ticks(&pids, &ports);
        let at = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.window_s)).await;
        let ticks_after = ticks(&pids, &ports);
        let window = at.elapsed();
        let msgs_after = (messages(&bench.client), agents_messages());
        let stored_after = stored(&meter).await?;

        let cpu = ticks_after.percent_since(&ticks_before, window);
        let per_s = |after: u64, before: u64| {
            #[allow(clippy::cast_precision_loss)]
            let n = after.saturating_sub(before) as f64;
            round2(n / window.as_secs_f64())
        };
        let agent = per_s(msgs_after.1, msgs_before.1);
        let size = IdleSize {
            apps: size,
            idle_cpu_pct: round2(cpu.total()),
            cpu_pct: cpu,
            idle_nats_msgs_per_s: round2(per_s(msgs_after.0, msgs_before.0) + agent),
            agent_nats_msgs_per_s: agent,
            idle_events_per_s: per_s(stored_after.0, stored_before.0),
            idle_reports_per_s: per_s(stored_after.1, stored_before.1),
            publish_s: (publish_s * 10.0).round() / 10.0,
            ready_s: (ready_s * 10.0).round() / 10.0,
        };
        eprintln!(
            "idle bench: {} apps: {:.2} % of a core ({:?}), {:.1} NATS msgs/s, {:.2} events/s, {:.2} reports/s",
            size.apps,
            size.idle_cpu_pct,
            size.cpu_pct,
            size.idle_nats_msgs_per_s,
            size.idle_events_per_s,
            size.idle_reports_per_s
        );
        figures.push(size);
    }
    Ok(figures)
}

/// Messages stored so far in `NEO_EVENTS` and in `NEO_RUNTIME`.
async fn stored(js: &async_nats::jetstream::Context) -> anyhow::Result<(u64, u64)> {
    let mut counts = [0; 2];
    for (count, name) in counts
        .iter_mut()
        .zip([subjects::EVENTS_STREAM, subjects::RUNTIME_STREAM])
    {
        let mut stream = js.get_stream(name).await?;
        *count = stream.info().await?.state.last_sequence;
    }
    Ok((counts[0], counts[1]))
}

/// Creates `tenant` (default stages) with the platform admin as its admin.
async fn create_tenant(bench: &BenchPlatform, tenant: &str) -> anyhow::Result<()> {
    let mut create = Request::new(api::CreateTenantRequest {
        name: tenant.into(),
        admin: "admin".into(),
        ..Default::default()
    });
    create
        .metadata_mut()
        .insert("authorization", bench.bearer.parse()?);
    api::tenants_client::TenantsClient::connect(bench.endpoint.clone())
        .await?
        .create_tenant(create)
        .await
        .with_context(|| format!("creating tenant {tenant}"))?;
    Ok(())
}

/// Publishes `content` as `app` of `tenant` to its first stage and waits for the deploy.
async fn publish(
    mut apps: AppsClient<tonic::transport::Channel>,
    bearer: &str,
    tenant: &str,
    app: &str,
    content: Vec<u8>,
) -> anyhow::Result<()> {
    let mut messages = vec![api::PublishRequest {
        part: Some(api::publish_request::Part::Header(api::PublishHeader {
            tenant: tenant.into(),
            app: app.into(),
            message: "idle bench".into(),
            stage: String::new(),
        })),
    }];
    messages.extend(content.chunks(64 * 1024).map(|chunk| api::PublishRequest {
        part: Some(api::publish_request::Part::Chunk(chunk.to_vec().into())),
    }));
    let mut request = Request::new(futures::stream::iter(messages));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse()?);
    let mut stream = apps.publish(request).await?.into_inner();
    while let Some(progress) = stream.message().await? {
        match PublishStep::try_from(progress.step).unwrap_or(PublishStep::Unspecified) {
            PublishStep::Deployed => return Ok(()),
            PublishStep::BuildFailed | PublishStep::DeployRefused => {
                anyhow::bail!("publish failed: {}", progress.message)
            }
            _ => {}
        }
    }
    anyhow::bail!("the publish ended without a deploy")
}

/// Waits until every podgroup of `keys` has a ready replica and its rollout succeeded.
async fn all_ready(
    stage: &Stage,
    keys: &[(PodgroupKey, &Agent)],
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut ready = HashSet::new();
        for agent in &stage.agents {
            for o in agent.runtime.driver.observe().await? {
                let serving = o
                    .replicas
                    .iter()
                    .any(|r| r.phase() == pb::ReplicaPhase::Ready);
                if serving && o.rollout == Rollout::Succeeded {
                    ready.insert(o.key);
                }
            }
        }
        let missing = keys.iter().filter(|(k, _)| !ready.contains(k)).count();
        if missing == 0 {
            return Ok(());
        }
        if start.elapsed() > timeout {
            anyhow::bail!(
                "{missing} of {} apps not ready within {timeout:?}",
                keys.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
