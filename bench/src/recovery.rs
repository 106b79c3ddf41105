//! `neo bench recovery`: how long each fault takes to heal by itself, and that nothing the
//! platform acknowledged is lost, on servers of its own (those of [`BenchPlatform`], plus
//! Postgres for the read models and dev's stage database).
//!
//! Each fault runs `--rounds` times under a steady load: a `CreateApp` of a new app over NATS
//! request/reply every 50 ms, each with its own command id, keeping the ids answered
//! `Accepted`. At the end `NEO_EVENTS` is read back and `acked_lost` counts the acknowledged
//! ids not on exactly one `AppCreated` (its command id). The build faults publish a
//! new revision of the example each round (built for real) and time `heal_ms` from the fault
//! cleared to the release (its `ReleaseCreated` event's `ce-time`), and `seen_ms` to the
//! publish reporting it (what the user waits for):
//!
//! - `nats_restart`: nats-server is killed (SIGKILL) as soon as the publish reports its build
//!   started (the worker pauses `--step-delay-ms` after each step, so the build is still
//!   running), and restarted on its port and store `--nats-outage-ms` later (longer than the
//!   pauses, so what follows is recovery, not the drill's pauses); from the server ready to the
//!   release. A progress stream cut by the restart is resumed by publishing the same content
//!   again.
//! - `postgres_outage`: Postgres (the read models) is stopped before the publish and restarted
//!   [`OUTAGE_AFTER_BUILD`] after the build succeeded, while the deploy's impact analysis
//!   keeps failing (the reactor retries with backoff); from the restart to the release.
//! - `registry_outage`: the registry is stopped for `--registry-outage-s` from just before the
//!   publish (the worker retries with backoff, holding its lease); from the restart to the
//!   release.
//! - `replica_kill`: an agent for dev (process driver and load balancer, `neo agent`'s
//!   defaults) runs the app; its replica is killed (SIGKILL); from the kill to a 200 through
//!   the load balancer with the replacement running.
//!
//! [`load`] is the steady load and the count read back; [`publish`], the publishes followed to
//! their release.

mod load;
mod publish;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use neo_actors::projections::Projections;
use neo_builder::project::Project;
use neo_gateway::api::{PublishStep, apps_client::AppsClient};
use neo_image::{Registry, RegistryConfig};
use neo_protocol::StageName;
use neo_runtime_agent::agent::AgentConfig;
use neo_runtime_agent::driver::PodgroupKey;
use neo_runtime_agent::driver::process::ProcessConfig;
use neo_runtime_agent::local::LocalRuntime;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use self::load::Load;
pub(crate) use self::load::{command_counts, create_app};
use self::publish::{Deployed, publish_until_deployed, reached, released_at};
use super::build::{BenchOptions, BenchPlatform, pack_with_manifest};
use super::runtime::http_status;
use super::stats::percentile_ms;
use neo_harness::PostgresServer;

/// The tenant everything runs in (created by [`BenchPlatform`]).
const TENANT: &str = "bench";
/// How long a fault may take to heal (and a publish step to come) before the bench gives up.
const HEAL_TIMEOUT: Duration = Duration::from_secs(120);
/// Postgres stays down this long after the build succeeded (the deploy meets it dead).
const OUTAGE_AFTER_BUILD: Duration = Duration::from_secs(3);
/// How often the load balancer is asked whether the app serves again.
const POLL: Duration = Duration::from_millis(5);
/// The pause between rounds.
const SETTLE: Duration = Duration::from_secs(1);

/// A fault the bench injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Fault {
    /// nats-server killed and restarted while a build runs.
    NatsRestart,
    /// Postgres down while a publish's deploy needs impact analysis.
    PostgresOutage,
    /// The registry down during a publish.
    RegistryOutage,
    /// A replica of a deployed app killed.
    ReplicaKill,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::NatsRestart => "nats_restart",
            Fault::PostgresOutage => "postgres_outage",
            Fault::RegistryOutage => "registry_outage",
            Fault::ReplicaKill => "replica_kill",
        }
    }
}

/// Options of `neo bench recovery`.
#[derive(Debug, Clone, clap::Args)]
pub struct RecoveryBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Times each fault is injected.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// The faults, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [
        Fault::NatsRestart, Fault::PostgresOutage, Fault::RegistryOutage, Fault::ReplicaKill,
    ])]
    pub faults: Vec<Fault>,
    /// The build worker's pause after each step, in ms (so NATS is killed mid-build).
    #[arg(long, default_value_t = 200)]
    pub step_delay_ms: u64,
    /// How long nats-server stays down, in ms.
    #[arg(long, default_value_t = 1000)]
    pub nats_outage_ms: u64,
    /// How long the registry is down, in seconds.
    #[arg(long, default_value_t = 10)]
    pub registry_outage_s: u64,
    /// The example app's folder.
    #[arg(long, default_value = "examples/catalog")]
    pub example: PathBuf,
    /// The apphost binary (default: `neo-apphost` next to this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
}

/// The figures of one fault.
#[derive(Debug, Serialize)]
pub struct FaultFigures {
    /// The fault's name.
    pub fault: &'static str,
    /// Median time from the fault cleared to the interrupted work done.
    pub heal_ms_p50: f64,
    /// The longest of the same.
    pub heal_ms_max: f64,
    /// Every round's.
    pub heal_ms: Vec<f64>,
    /// Median time from the fault cleared to the publish reporting the release (for
    /// `replica_kill`, the same as `heal_ms`).
    pub seen_ms_p50: f64,
    /// The longest of the same.
    pub seen_ms_max: f64,
    /// Load commands the platform acknowledged during the fault's rounds.
    pub commands_acked: usize,
    /// Of those, the ones not in the event log exactly once (must be 0).
    pub acked_lost: usize,
}

/// The figures printed.
#[derive(Debug, Serialize)]
pub struct RecoveryFigures {
    /// Per fault, in the order run.
    pub faults: Vec<FaultFigures>,
    /// Acknowledged load commands not in the event log exactly once, over every fault.
    pub acked_lost: usize,
    /// Rounds per fault.
    pub rounds: usize,
    /// The build worker's pause after each step.
    pub build_step_delay_ms: u64,
    /// How long nats-server was down.
    pub nats_outage_ms: u64,
    /// How long the registry was down.
    pub registry_outage_s: u64,
}

/// The servers, the platform and a gateway client.
struct Drill {
    bench: BenchPlatform,
    postgres: PostgresServer,
    apps: AppsClient<Channel>,
    app: String,
}

impl Drill {
    /// Starts Postgres (read models `neo`, dev's database `neo_dev`), the platform with impact
    /// analysis on the read models, their projection and the Runtime's reactors.
    async fn start(args: &RecoveryBenchArgs, app: String) -> anyhow::Result<Self> {
        let postgres = PostgresServer::start().await.context("starting Postgres")?;
        for database in ["neo", "neo_dev"] {
            postgres
                .create_database(database)
                .await
                .with_context(|| format!("creating database {database}"))?;
        }
        let projections = Arc::new(
            Projections::connect(&postgres.url("neo"))
                .await
                .context("connecting the read models")?,
        );
        let mut bench = BenchPlatform::start_with(BenchOptions {
            apphost: args.apphost.clone(),
            consumers: Some(projections.clone()),
            build_step_delay: Duration::from_millis(args.step_delay_ms),
            ..BenchOptions::default()
        })
        .await?;
        let ready = async {
            bench.run_runtime_reactors().await?;
            anyhow::Ok(AppsClient::connect(bench.endpoint.clone()).await?)
        };
        let apps = match ready.await {
            Ok(apps) => apps,
            Err(e) => {
                bench.shutdown().await;
                return Err(e);
            }
        };
        bench.tasks.push(projections.run(bench.js.clone()));
        Ok(Self {
            bench,
            postgres,
            apps,
            app,
        })
    }

    /// Publishes `content` in the background until deployed; its steps come on the receiver.
    fn publish(
        &self,
        content: Vec<u8>,
    ) -> (
        JoinHandle<anyhow::Result<Deployed>>,
        mpsc::UnboundedReceiver<PublishStep>,
    ) {
        let (steps, seen) = mpsc::unbounded_channel();
        let task = tokio::spawn(publish_until_deployed(
            self.apps.clone(),
            self.bench.bearer.clone(),
            self.app.clone(),
            content,
            steps,
        ));
        (task, seen)
    }
}

/// New revisions of the example: the same files with a new description each time.
struct Revisions {
    project: Project,
    manifest: String,
    description: String,
    made: usize,
}

impl Revisions {
    fn next(&mut self) -> anyhow::Result<Vec<u8>> {
        self.made += 1;
        let (old, n) = (&self.description, self.made);
        let edited = self.manifest.replacen(
            &format!("description = \"{old}\""),
            &format!("description = \"{old} (recovery {n})\""),
            1,
        );
        anyhow::ensure!(
            edited != self.manifest,
            "cannot edit the description in neo.toml"
        );
        pack_with_manifest(&self.project, &edited)
    }
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server cannot start, the example does not load, a fault does not heal in time, or
/// (after the figures) an acknowledged command is not in the event log exactly once.
pub async fn run(args: RecoveryBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "--rounds must be at least 1");
    let project = Project::from_dir(&args.example)
        .with_context(|| format!("reading {}", args.example.display()))?;
    let model = neo_model::load(&project)
        .map_err(|d| anyhow::anyhow!("{} does not load: {d:?}", args.example.display()))?;
    let manifest = String::from_utf8(project.file("neo.toml").unwrap_or_default().to_vec())?;
    let mut revisions = Revisions {
        project,
        manifest,
        description: model.description.clone(),
        made: 0,
    };
    let mut drill = Drill::start(&args, model.name.clone()).await?;
    let measured = measure(&mut drill, &args, &mut revisions).await;
    drill.bench.shutdown().await;
    let figures = measured?;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!(
            "{:<16} {:>6} {:>12} {:>12} {:>12} {:>12} {:>7} {:>10}",
            "fault",
            "rounds",
            "heal_ms_p50",
            "heal_ms_max",
            "seen_ms_p50",
            "seen_ms_max",
            "acked",
            "acked_lost"
        );
        for f in &figures.faults {
            println!(
                "{:<16} {:>6} {:>12.1} {:>12.1} {:>12.1} {:>12.1} {:>7} {:>10}",
                f.fault,
                f.heal_ms.len(),
                f.heal_ms_p50,
                f.heal_ms_max,
                f.seen_ms_p50,
                f.seen_ms_max,
                f.commands_acked,
                f.acked_lost
            );
        }
        println!("acked_lost {} (target 0)", figures.acked_lost);
    }
    anyhow::ensure!(
        figures.acked_lost == 0,
        "{} acknowledged commands are not in the event log exactly once",
        figures.acked_lost
    );
    Ok(())
}

/// A warm-up publish (the base layer into the registry), then each fault under its load, then
/// the log read back.
async fn measure(
    drill: &mut Drill,
    args: &RecoveryBenchArgs,
    revisions: &mut Revisions,
) -> anyhow::Result<RecoveryFigures> {
    let (warm_up, _) = drill.publish(revisions.next()?);
    warm_up.await.context("the warm-up publish")??;
    let mut runs = Vec::with_capacity(args.faults.len());
    for &fault in &args.faults {
        let load = Load::start(drill.bench.client.clone(), fault);
        let (heals, seen) = match fault {
            Fault::ReplicaKill => replica_kills(drill, args.rounds)
                .await
                .map(|heals| (heals.clone(), heals)),
            _ => build_faults(drill, args, revisions, fault).await,
        }
        .with_context(|| fault.name())?;
        runs.push((fault, heals, seen, load.stop().await?));
    }
    let counts = command_counts(&drill.bench.js, TENANT).await?;
    let mut faults = Vec::with_capacity(runs.len());
    for (fault, mut heals, mut seen, acked) in runs {
        let lost: Vec<&String> = acked
            .iter()
            .filter(|id| counts.get(*id) != Some(&1))
            .collect();
        if !lost.is_empty() {
            eprintln!(
                "{}: acknowledged but not in the log once: {lost:?}",
                fault.name()
            );
        }
        faults.push(FaultFigures {
            fault: fault.name(),
            heal_ms: heals.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
            heal_ms_p50: percentile_ms(&mut heals, 50.0),
            heal_ms_max: percentile_ms(&mut heals, 100.0),
            seen_ms_p50: percentile_ms(&mut seen, 50.0),
            seen_ms_max: percentile_ms(&mut seen, 100.0),
            commands_acked: acked.len(),
            acked_lost: lost.len(),
        });
    }
    Ok(RecoveryFigures {
        acked_lost: faults.iter().map(|f| f.acked_lost).sum(),
        faults,
        rounds: args.rounds,
        build_step_delay_ms: args.step_delay_ms,
        nats_outage_ms: args.nats_outage_ms,
        registry_outage_s: args.registry_outage_s,
    })
}

/// The rounds of a fault of the publish chain; each round's heal and seen times.
async fn build_faults(
    drill: &mut Drill,
    args: &RecoveryBenchArgs,
    revisions: &mut Revisions,
    fault: Fault,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut heals, mut seen) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let content = revisions.next()?;
        let (publishing, back) = match fault {
            Fault::NatsRestart => {
                let (publishing, mut steps) = drill.publish(content);
                reached(&mut steps, PublishStep::BuildStarted).await?;
                drill.bench.nats.kill();
                tokio::time::sleep(Duration::from_millis(args.nats_outage_ms)).await;
                drill
                    .bench
                    .nats
                    .restart()
                    .await
                    .context("restarting nats-server")?;
                (publishing, Cleared::now())
            }
            Fault::PostgresOutage => {
                tokio::task::block_in_place(|| drill.postgres.stop());
                let (publishing, mut steps) = drill.publish(content);
                reached(&mut steps, PublishStep::BuildSucceeded).await?;
                tokio::time::sleep(OUTAGE_AFTER_BUILD).await;
                drill
                    .postgres
                    .restart()
                    .await
                    .context("restarting Postgres")?;
                (publishing, Cleared::now())
            }
            Fault::ReplicaKill => anyhow::bail!("replica_kill is no fault of the publish chain"),
            Fault::RegistryOutage => {
                drill.bench.registry.stop();
                let stopped = Instant::now();
                let (publishing, _) = drill.publish(content);
                let outage = Duration::from_secs(args.registry_outage_s);
                tokio::time::sleep_until((stopped + outage).into()).await;
                drill
                    .bench
                    .registry
                    .restart()
                    .await
                    .context("restarting the registry")?;
                (publishing, Cleared::now())
            }
        };
        let deployed = publishing.await.context("the publish task")??;
        let released = released_at(&drill.bench.js, &drill.app, &deployed).await?;
        let heal = released.duration_since(back.wall).unwrap_or_else(|_| {
            eprintln!(
                "{} round {round}: released before the fault was cleared",
                fault.name()
            );
            Duration::ZERO
        });
        let shown = deployed.seen.saturating_duration_since(back.at);
        eprintln!(
            "{} round {round}: heal {:.0} ms, seen {:.0} ms",
            fault.name(),
            ms(heal),
            ms(shown)
        );
        heals.push(heal);
        seen.push(shown);
        tokio::time::sleep(SETTLE).await;
    }
    Ok((heals, seen))
}

/// When a fault was cleared, on both clocks.
struct Cleared {
    at: Instant,
    wall: SystemTime,
}

impl Cleared {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }
}

/// Starts dev's agent, waits for the app to serve, then kills its replica each round; each
/// round's time from the kill to a 200 with the replacement running.
async fn replica_kills(drill: &Drill, rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let data = tempfile::tempdir()?;
    let mut process =
        ProcessConfig::new(data.path().to_owned(), Some(drill.postgres.url("neo_dev")));
    process.grace = Duration::from_secs(3);
    process.edge = process.edge.without_rate_limits();
    let registry = Registry::new(RegistryConfig {
        host: drill.bench.registry_host.clone(),
        insecure: true,
        prefix: "neo".into(),
        credentials: None,
    });
    let dev = LocalRuntime::start(
        drill.bench.client.clone(),
        Arc::new(registry),
        process,
        AgentConfig::new(StageName::new("dev")?),
        "127.0.0.1:0".parse()?,
    )
    .await
    .context("starting dev's agent")?;
    let key = PodgroupKey {
        tenant: TENANT.into(),
        app: drill.app.clone(),
        stage: "dev".into(),
    };
    let path = format!("/{TENANT}/{}/api/product", drill.app);
    let mut heals = Vec::with_capacity(rounds);
    let killing = async {
        serves_again(&dev, &key, &path, &[], Instant::now()).await?;
        for round in 1..=rounds {
            tokio::time::sleep(SETTLE).await;
            let pids = dev.driver.pids(&key).await;
            let pid = *pids.first().context("the app has no replica")?;
            let killed = Instant::now();
            let status = tokio::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status()
                .await?;
            anyhow::ensure!(status.success(), "kill -9 {pid}: {status}");
            let heal = serves_again(&dev, &key, &path, &[pid], killed).await?;
            eprintln!("replica_kill round {round}: heal {:.0} ms", ms(heal));
            heals.push(heal);
        }
        anyhow::Ok(())
    };
    let killed = killing.await;
    dev.shutdown().await;
    killed.map(|()| heals)
}

/// Polls `GET {dev lb}{path}` every [`POLL`] until it answers 200 while none of `dead` is
/// among the app's replicas; the time since `since`.
async fn serves_again(
    dev: &LocalRuntime,
    key: &PodgroupKey,
    path: &str,
    dead: &[u32],
    since: Instant,
) -> anyhow::Result<Duration> {
    let mut last = None;
    while since.elapsed() < HEAL_TIMEOUT {
        let status = http_status(dev.lb_addr, path).await;
        if status == Some(200) {
            let pids = dev.driver.pids(key).await;
            if !pids.is_empty() && !pids.iter().any(|p| dead.contains(p)) {
                return Ok(since.elapsed());
            }
        }
        last = status.or(last);
        tokio::time::sleep(POLL).await;
    }
    anyhow::bail!("{path} on dev not served again within {HEAL_TIMEOUT:?} (last status {last:?})")
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
