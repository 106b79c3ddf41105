//! `neo bench ha`: Neo on a three-node NATS cluster (real nats-servers on loopback,
//! `sync_interval: always`, every stream and bucket with three replicas) against one server
//! (one replica, the server's default fsync) in the same run, and the node leading the event
//! stream killed under load.
//!
//! - `r1_commands_per_s`, `r3_commands_per_s`: `CreateApp` on `--entities` distinct apps
//!   through the in-process host, `--concurrency` at once; `r3_r1_ratio` is their ratio.
//! - `--rounds` leader kills: a steady load over NATS request/reply (each of [`SENDERS`] senders
//!   sends a `CreateApp` of a new app as soon as the last one is answered, waiting at most
//!   [`COMMAND_TIMEOUT`]); the node leading `NEO_EVENTS` is killed (SIGKILL), and restarted
//!   once commands are accepted again and caught up before the next round.
//!   `nats_leader_kill_gap_ms` is the longest time without an accepted command around a kill
//!   (the worst round; `…_p50` over rounds). At the end the log is read back:
//!   `acked_lost` counts acknowledged commands not in it, `acked_duplicated` those in it more
//!   than once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use neo_actors::intake::{self, IntakeConfig};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_harness::{NatsCluster, NatsServer};
use neo_protocol::{AppName, EntityRef, TenantName, pb, subjects};
use serde::Serialize;
use tokio::sync::watch;

use crate::core::{in_parallel, share};
use crate::recovery::{command_counts, create_app as create_app_over_nats};
use crate::stats::{percentile_ms, rate};

/// Senders of the steady load.
pub const SENDERS: usize = 4;
/// How long one command of the load may wait for its reply.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// The tenant of the load.
const TENANT: &str = "habench";
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
    /// Times the event stream's leader is killed.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
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
    /// Leader kills.
    pub rounds: usize,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server cannot start, a phase fails, or a kill does not heal within a minute.
pub async fn run(args: HaBenchArgs) -> anyhow::Result<()> {
    let lone = NatsServer::start().await?;
    let r1_commands_per_s = throughput(
        async_nats::connect(lone.url()).await?,
        args.entities,
        args.concurrency,
    )
    .await
    .context("one server")?;
    drop(lone);

    let mut cluster = NatsCluster::start("").await?;
    let r3_commands_per_s = throughput(cluster.connect().await?, args.entities, args.concurrency)
        .await
        .context("the cluster")?;

    let client = cluster.connect().await?;
    let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);
    let platform = Platform::start(store, HostConfig::default()).await?;
    let _intake = intake::serve(client.clone(), platform, IntakeConfig::default()).await?;
    let js = jetstream::new(client.clone());
    let load = Load::start(cluster.connect().await?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut gaps = Vec::with_capacity(args.rounds);
    for round in 1..=args.rounds {
        let leader = cluster
            .leader_of(subjects::EVENTS_STREAM)
            .await
            .context("NEO_EVENTS has no leader")?;
        cluster.node(leader).kill();
        let killed = Instant::now();
        let resumed = load
            .accepted_after(killed, HEAL_TIMEOUT)
            .await
            .with_context(|| format!("round {round}: no command accepted after the kill"))?;
        gaps.push(load.gap_around(killed, resumed));
        cluster.node(leader).restart().await?;
        cluster
            .wait_caught_up(leader, subjects::EVENTS_STREAM)
            .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let acked = load.stop().await;
    let counts = command_counts(&js, TENANT).await?;
    let acked_lost = acked
        .iter()
        .filter(|id| counts.get(*id).copied().unwrap_or(0) == 0)
        .count();
    let acked_duplicated = acked
        .iter()
        .filter(|id| counts.get(*id).copied().unwrap_or(0) > 1)
        .count();
    let figures = HaFigures {
        r1_commands_per_s,
        r3_commands_per_s,
        r3_r1_ratio: r3_commands_per_s / r1_commands_per_s.max(f64::EPSILON),
        acked_lost,
        acked_duplicated,
        acked: acked.len(),
        nats_leader_kill_gap_ms: gaps.iter().map(Duration::as_secs_f64).fold(0.0, f64::max)
            * 1000.0,
        nats_leader_kill_gap_ms_p50: percentile_ms(&mut gaps, 50.0),
        rounds: args.rounds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

/// `CreateApp` on `entities` new apps through an in-process host on `client`, `concurrency`
/// at once: commands per second.
async fn throughput(
    client: async_nats::Client,
    entities: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let store = Arc::new(JetStreamStore::open(client, StoreConfig::default()).await?);
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
    Ok(rate(entities, elapsed))
}

fn create_app() -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: "ha bench".into(),
        })),
    }
}

/// The steady load: [`SENDERS`] senders of `CreateApp`, each keeping the id and time of what
/// was accepted.
struct Load {
    accepted: Arc<Mutex<Vec<(String, Instant)>>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(client: async_nats::Client) -> Self {
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let (stop, stopped) = watch::channel(false);
        let tasks = (0..SENDERS)
            .map(|sender| {
                let (client, accepted, stopped) =
                    (client.clone(), accepted.clone(), stopped.clone());
                tokio::spawn(async move {
                    let Ok(tenant) = TenantName::new(TENANT) else {
                        return;
                    };
                    for n in 1u64.. {
                        if *stopped.borrow() {
                            return;
                        }
                        let id = format!("ha-{sender}-{n}");
                        let Ok(app) = AppName::new(&id) else { return };
                        let entity = EntityRef::app(&tenant, &app);
                        if create_app_over_nats(&client, &entity, &id, "ha bench", COMMAND_TIMEOUT)
                            .await
                            && let Ok(mut accepted) = accepted.lock()
                        {
                            accepted.push((id, Instant::now()));
                        }
                    }
                })
            })
            .collect();
        Self {
            accepted,
            stop,
            tasks,
        }
    }

    /// When the first command after `after` was accepted, waiting up to `within`.
    async fn accepted_after(&self, after: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let first = self
                .accepted
                .lock()
                .ok()
                .and_then(|a| a.iter().map(|(_, at)| *at).filter(|at| *at > after).min());
            if first.is_some() {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// From the last command accepted before `killed` to `resumed`.
    fn gap_around(&self, killed: Instant, resumed: Instant) -> Duration {
        let before = self
            .accepted
            .lock()
            .ok()
            .and_then(|a| a.iter().map(|(_, at)| *at).filter(|at| *at <= killed).max());
        resumed - before.unwrap_or(killed)
    }

    /// Stops the senders; every accepted command id.
    async fn stop(self) -> Vec<String> {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.accepted
            .lock()
            .map(|a| a.iter().map(|(id, _)| id.clone()).collect())
            .unwrap_or_default()
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
        "  leader kill gap          {:>10.0} ms worst, {:.0} ms p50 ({} rounds)",
        f.nats_leader_kill_gap_ms, f.nats_leader_kill_gap_ms_p50, f.rounds
    );
    println!(
        "  acknowledged             {:>10}   lost {}, duplicated {}",
        f.acked, f.acked_lost, f.acked_duplicated
    );
}
