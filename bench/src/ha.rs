//! `neo bench ha`: Neo on a three-node NATS cluster (real nats-servers on loopback,
//! `sync_interval: always`, every stream and bucket with three replicas) against one server
//! (one replica, the server's default fsync) in the same run; then faults under a steady load.
//!
//! - `r1_commands_per_s`, `r3_commands_per_s`: `CreateApp` on `--entities` distinct apps
//!   through the in-process host, `--concurrency` at once; `r3_r1_ratio` is their ratio.
//!   `raw_r1_publish_per_s`, `raw_r3_publish_per_s` and `raw_r3_r1_ratio` are the same on
//!   JetStream alone (acknowledged publishes of an event of that size with Neo's headers and
//!   expected sequence, as many, as many at once): what the cluster costs NATS itself.
//! - On the cluster, two platform processes ([`process`]: hosts and intake on a runtime and
//!   NATS connection of their own) serve a steady load over NATS request/reply ([`load`]:
//!   [`load::SENDERS`] senders, each call retried with its command id for up to
//!   [`load::CALL_BUDGET`], as the CLI does, and only then failed):
//!   - `--rounds` leader kills: the node leading `NEO_EVENTS` is killed (SIGKILL), and
//!     restarted once commands are accepted again and caught up before the next round.
//!     `nats_leader_kill_gap_ms` is the longest time without an accepted command around a
//!     kill (worst round; `…_p50` over rounds).
//!   - `--rounds` platform kills: one of the two platform processes dies (`kill -9`) and is
//!     started again; `platform_kill_gap_ms` likewise, `platform_kill_failed_calls` the calls
//!     that failed.
//!   - A rolling upgrade: each node in turn is put in lame duck mode (SIGUSR2), exits, comes
//!     back and catches up; then each platform process drains (SIGTERM) and a new one starts.
//!     `rolling_upgrade_failed_calls` of `rolling_upgrade_calls`.
//!
//!   At the end the log is read back: `acked_lost` counts acknowledged commands not in it,
//!   `acked_duplicated` those in it more than once.
//! - `--agent-rounds` agent failovers on a stage served by a pair of agents ([`agents`]):
//!   `agent_failover_ms` (worst; `…_p50`), from the active agent's death to the standby's
//!   report of the app converged, and the stage address's answers other than 200 meanwhile.

mod agents;
mod load;
mod process;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_harness::{NatsCluster, NatsServer};
use neo_protocol::{AppName, EntityRef, TenantName, pb, subjects};
use prost::Message as _;
use serde::Serialize;

use self::load::Load;
use self::process::PlatformProcess;
use crate::core::{RawLoad, in_parallel, raw_publish, share};
use crate::recovery::command_counts;
use crate::stats::{percentile_ms, rate};

/// What the cluster's nodes add to their configuration: lame duck mode as `ops/up --cluster`
/// sets it (30 s is the least nats-server takes).
const CLUSTER_SETTINGS: &str = "lame_duck_duration: \"30s\"\nlame_duck_grace_period: \"2s\"\n";
/// How long a node in lame duck mode may take to exit.
const LAME_DUCK_EXIT: Duration = Duration::from_secs(45);
/// The tenant of the load.
const TENANT: &str = "habench";
/// The description of every app the throughput figures create.
const DESCRIPTION: &str = "ha bench";
/// How long a kill may take to heal before the bench gives up.
const HEAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `neo bench ha`.
#[derive(Debug, Clone, clap::Args)]
pub struct HaBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Distinct apps created for each throughput figure.
    #[arg(long, default_value_t = 5_000)]
    pub entities: usize,
    /// Commands in flight at once for the throughput figures.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Times the event stream's leader is killed, and times a platform process is.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Times the active agent of a stage is killed.
    #[arg(long, default_value_t = 3)]
    pub agent_rounds: usize,
    /// The example app the agents run.
    #[arg(long, default_value = "examples/catalog")]
    pub example: PathBuf,
    /// The apphost binary (default: `neo-apphost` next to this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
}

/// The figures of `neo bench ha`.
#[derive(Debug, Serialize)]
pub struct HaFigures {
    /// Commands per second on one server, one replica.
    pub r1_commands_per_s: f64,
    /// Commands per second on the cluster, three replicas, `sync_interval: always`.
    pub r3_commands_per_s: f64,
    /// `r3 ÷ r1`.
    pub r3_r1_ratio: f64,
    /// Raw acknowledged publishes per second on one server, one replica (the R1 baseline).
    pub raw_r1_publish_per_s: f64,
    /// The same on the cluster, three replicas, `sync_interval: always`.
    pub raw_r3_publish_per_s: f64,
    /// `raw_r3 ÷ raw_r1`: the most `r3_r1_ratio` could be if Neo added nothing.
    pub raw_r3_r1_ratio: f64,
    /// Acknowledged commands missing from the log after every kill.
    pub acked_lost: usize,
    /// Acknowledged commands in the log more than once.
    pub acked_duplicated: usize,
    /// Commands acknowledged during the kills.
    pub acked: usize,
    /// The longest time without an accepted command around a leader kill (worst round).
    pub nats_leader_kill_gap_ms: f64,
    /// The same, median over rounds.
    pub nats_leader_kill_gap_ms_p50: f64,
    /// Calls that failed around the leader kills.
    pub nats_leader_kill_failed_calls: usize,
    /// The longest time without an accepted command around a platform process's death
    /// (worst round).
    pub platform_kill_gap_ms: f64,
    /// The same, median over rounds.
    pub platform_kill_gap_ms_p50: f64,
    /// Calls that failed around the platform kills.
    pub platform_kill_failed_calls: usize,
    /// Calls that failed during the rolling upgrade.
    pub rolling_upgrade_failed_calls: usize,
    /// Calls made during the rolling upgrade.
    pub rolling_upgrade_calls: usize,
    /// How long the rolling upgrade took, in seconds.
    pub rolling_upgrade_s: f64,
    /// The active agent killed → the standby reports the app converged (worst round).
    pub agent_failover_ms: f64,
    /// The same, median over rounds.
    pub agent_failover_ms_p50: f64,
    /// Requests to the stage's address answered other than 200 during the failovers.
    pub agent_failover_failed_requests: usize,
    /// Requests to the stage's address during the failovers.
    pub agent_failover_requests: usize,
    /// Leader kills, and platform kills.
    pub rounds: usize,
    /// Agent failovers.
    pub agent_rounds: usize,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server cannot start, a phase fails, or a kill does not heal within a minute.
pub async fn run(args: HaBenchArgs) -> anyhow::Result<()> {
    let lone = NatsServer::start().await?;
    let r1 = throughput(
        async_nats::connect(lone.url()).await?,
        args.entities,
        args.concurrency,
    )
    .await
    .context("one server")?;
    drop(lone);

    let mut cluster = NatsCluster::start(CLUSTER_SETTINGS).await?;
    let r3 = throughput(cluster.connect().await?, args.entities, args.concurrency)
        .await
        .context("the cluster")?;
    let faults = cluster_faults(&mut cluster, args.rounds).await?;
    drop(cluster);
    let agents = agents::failovers(&args).await.context("agent failovers")?;

    let mut leader_gaps = faults.leader_gaps;
    let mut platform_gaps = faults.platform_gaps;
    let mut failovers = agents.times;
    let figures = HaFigures {
        r1_commands_per_s: r1.commands_per_s,
        r3_commands_per_s: r3.commands_per_s,
        r3_r1_ratio: r3.commands_per_s / r1.commands_per_s.max(f64::EPSILON),
        raw_r1_publish_per_s: r1.raw_publish_per_s,
        raw_r3_publish_per_s: r3.raw_publish_per_s,
        raw_r3_r1_ratio: r3.raw_publish_per_s / r1.raw_publish_per_s.max(f64::EPSILON),
        acked_lost: faults.acked_lost,
        acked_duplicated: faults.acked_duplicated,
        acked: faults.acked,
        nats_leader_kill_gap_ms: worst_ms(&leader_gaps),
        nats_leader_kill_gap_ms_p50: percentile_ms(&mut leader_gaps, 50.0),
        nats_leader_kill_failed_calls: faults.leader_failed,
        platform_kill_gap_ms: worst_ms(&platform_gaps),
        platform_kill_gap_ms_p50: percentile_ms(&mut platform_gaps, 50.0),
        platform_kill_failed_calls: faults.platform_failed,
        rolling_upgrade_failed_calls: faults.upgrade_failed,
        rolling_upgrade_calls: faults.upgrade_calls,
        rolling_upgrade_s: faults.upgrade_took.as_secs_f64(),
        agent_failover_ms: worst_ms(&failovers),
        agent_failover_ms_p50: percentile_ms(&mut failovers, 50.0),
        agent_failover_failed_requests: agents.failed_requests,
        agent_failover_requests: agents.requests,
        rounds: args.rounds,
        agent_rounds: args.agent_rounds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

fn worst_ms(times: &[Duration]) -> f64 {
    times.iter().map(Duration::as_secs_f64).fold(0.0, f64::max) * 1000.0
}

/// What the faults on the cluster measured.
struct ClusterFaults {
    leader_gaps: Vec<Duration>,
    leader_failed: usize,
    platform_gaps: Vec<Duration>,
    platform_failed: usize,
    upgrade_failed: usize,
    upgrade_calls: usize,
    upgrade_took: Duration,
    acked: usize,
    acked_lost: usize,
    acked_duplicated: usize,
}

/// Two platform processes under a steady load on `cluster`: `rounds` leader kills, `rounds`
/// platform kills, a rolling upgrade; then the log is checked against what was acknowledged.
async fn cluster_faults(cluster: &mut NatsCluster, rounds: usize) -> anyhow::Result<ClusterFaults> {
    let urls = cluster.urls();
    let mut processes = vec![
        PlatformProcess::start(&urls).await?,
        PlatformProcess::start(&urls).await?,
    ];
    let js = jetstream::new(cluster.connect().await?);
    let load = Load::start(cluster.connect().await?, TENANT);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let mut leader_gaps = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let leader = cluster
            .leader_of(subjects::EVENTS_STREAM)
            .await
            .context("NEO_EVENTS has no leader")?;
        cluster.node(leader).kill();
        let killed = Instant::now();
        let resumed = load
            .accepted_after(killed, HEAL_TIMEOUT)
            .await
            .with_context(|| format!("leader kill {round}: no command accepted after it"))?;
        leader_gaps.push(load.gap_around(killed, resumed));
        cluster.node(leader).restart().await?;
        cluster
            .wait_caught_up(leader, subjects::EVENTS_STREAM)
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let platform_phase = Instant::now();
    let mut platform_gaps = Vec::with_capacity(rounds);
    for round in 1..=rounds {
        let which = round % processes.len();
        processes.remove(which).kill();
        let killed = Instant::now();
        let resumed = load
            .accepted_after(killed, HEAL_TIMEOUT)
            .await
            .with_context(|| format!("platform kill {round}: no command accepted after it"))?;
        platform_gaps.push(load.gap_around(killed, resumed));
        tokio::time::sleep(Duration::from_secs(1)).await;
        processes.insert(which, PlatformProcess::start(&urls).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let upgrade_phase = Instant::now();
    for node in 0..neo_harness::nats_cluster::NODES {
        cluster.node(node).lame_duck(LAME_DUCK_EXIT).await;
        cluster.node(node).restart().await?;
        cluster
            .wait_caught_up(node, subjects::EVENTS_STREAM)
            .await?;
    }
    for which in 0..processes.len() {
        processes.remove(which).drain().await;
        processes.insert(which, PlatformProcess::start(&urls).await?);
    }
    let upgraded = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;

    let calls = load.stop().await;
    drop(processes);
    let (_, leader_failed) = calls.between(started, platform_phase);
    let (_, platform_failed) = calls.between(platform_phase, upgrade_phase);
    let (upgrade_accepted, upgrade_failed) = calls.between(upgrade_phase, upgraded);
    let counts = command_counts(&js, TENANT).await?;
    let count = |id: &String| counts.get(id).copied().unwrap_or(0);
    Ok(ClusterFaults {
        leader_gaps,
        leader_failed,
        platform_gaps,
        platform_failed,
        upgrade_failed,
        upgrade_calls: upgrade_accepted + upgrade_failed,
        upgrade_took: upgraded - upgrade_phase,
        acked: calls.accepted.len(),
        acked_lost: calls
            .accepted
            .iter()
            .filter(|(id, _)| count(id) == 0)
            .count(),
        acked_duplicated: calls
            .accepted
            .iter()
            .filter(|(id, _)| count(id) > 1)
            .count(),
    })
}

/// What one store sustains: raw publishes, then the host's commands.
struct Throughput {
    raw_publish_per_s: f64,
    commands_per_s: f64,
}

/// On `client`: `entities` acknowledged raw publishes of an app's creation event with Neo's
/// headers, then `CreateApp` on `entities` new apps through an in-process host, `concurrency`
/// at once each.
async fn throughput(
    client: async_nats::Client,
    entities: usize,
    concurrency: usize,
) -> anyhow::Result<Throughput> {
    let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);
    let load = RawLoad {
        entities,
        per_entity: 1,
        concurrency,
    };
    let created = pb::AppEvent {
        event: Some(pb::app_event::Event::Created(pb::AppCreated {
            description: DESCRIPTION.into(),
        })),
    };
    let raw_publish_per_s =
        raw_publish(&client, load, created.encoded_len(), "rawthroughput", true).await?;

    let platform = Platform::start(store, HostConfig::default()).await?;
    let tenant = TenantName::new("throughput")?;
    let elapsed = in_parallel(concurrency, |w| {
        let (platform, tenant) = (platform.clone(), tenant.clone());
        async move {
            for i in share(w, concurrency, entities) {
                let app = AppName::new(format!("e{i}"))?;
                platform
                    .apps
                    .execute(
                        &EntityRef::app(&tenant, &app),
                        CommandMeta::new("bench"),
                        create_app(),
                    )
                    .await?;
            }
            Ok(())
        }
    })
    .await?;
    Ok(Throughput {
        raw_publish_per_s,
        commands_per_s: rate(entities, elapsed),
    })
}

fn create_app() -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: DESCRIPTION.into(),
        })),
    }
}

fn print_table(f: &HaFigures) {
    println!("neo bench ha (3 nodes, sync_interval always, R3; against 1 server, R1)");
    println!("  commands/s R1            {:>10.0}", f.r1_commands_per_s);
    println!(
        "  commands/s R3            {:>10.0}   ({:.2} × R1)",
        f.r3_commands_per_s, f.r3_r1_ratio
    );
    println!(
        "  raw publishes/s R1, R3   {:>10.0} {:.0}   ({:.2} × R1: JetStream alone)",
        f.raw_r1_publish_per_s, f.raw_r3_publish_per_s, f.raw_r3_r1_ratio
    );
    println!(
        "  leader kill gap          {:>10.0} ms worst, {:.0} ms p50 ({} rounds)",
        f.nats_leader_kill_gap_ms, f.nats_leader_kill_gap_ms_p50, f.rounds
    );
    println!(
        "  platform kill gap        {:>10.0} ms worst, {:.0} ms p50 ({} rounds)",
        f.platform_kill_gap_ms, f.platform_kill_gap_ms_p50, f.rounds
    );
    println!(
        "  failed calls             {:>10}   leader kills; {} platform kills; {} of {} in the rolling upgrade ({:.0} s)",
        f.nats_leader_kill_failed_calls,
        f.platform_kill_failed_calls,
        f.rolling_upgrade_failed_calls,
        f.rolling_upgrade_calls,
        f.rolling_upgrade_s
    );
    println!(
        "  agent failover           {:>10.0} ms worst, {:.0} ms p50 ({} rounds; {} of {} requests not 200)",
        f.agent_failover_ms,
        f.agent_failover_ms_p50,
        f.agent_rounds,
        f.agent_failover_failed_requests,
        f.agent_failover_requests
    );
    println!(
        "  acknowledged             {:>10}   lost {}, duplicated {}",
        f.acked, f.acked_lost, f.acked_duplicated
    );
}
