//! `neo serve`: one platform process: the entity hosts, the NATS command intake and the
//! reactors, on a JetStream event store. Several can serve the same NATS at once.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_actors::intake::{self, IntakeConfig};
use neo_actors::reactor::{self, podgroups::PodgroupOnFirstRelease};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};

/// Options of `neo serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// NATS server URL.
    #[arg(long, env = "NEO_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Replicas of the event stream and snapshot bucket (3 in a cluster).
    #[arg(long, default_value_t = 1)]
    pub replicas: usize,
    /// Seconds an idle entity actor stays live.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_s: u64,
    /// Most entity actors kept live per kind.
    #[arg(long, default_value_t = 200_000)]
    pub max_live: usize,
    /// Events between snapshots of an entity.
    #[arg(long, default_value_t = 256)]
    pub snapshot_every: u64,
    /// Largest command accepted, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_command_bytes: usize,
}

/// Runs the platform until Ctrl-C or SIGTERM.
///
/// # Errors
/// When NATS cannot be reached or the stream cannot be set up.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let client = async_nats::ConnectOptions::new()
        .name("neo-platform")
        .retry_on_initial_connect()
        .connect(&args.nats)
        .await
        .with_context(|| format!("connecting to NATS at {}", args.nats))?;
    let store_config = StoreConfig {
        replicas: args.replicas,
        ..StoreConfig::default()
    };
    let store = Arc::new(
        JetStreamStore::open(client.clone(), store_config)
            .await
            .context("opening the event store")?,
    );
    let host_config = HostConfig {
        idle_timeout: Duration::from_secs(args.idle_timeout_s),
        max_live: args.max_live,
        snapshot_every: args.snapshot_every,
        ..HostConfig::default()
    };
    let platform = Platform::start(store.clone(), host_config).await?;
    let intake_config = IntakeConfig {
        max_command_bytes: args.max_command_bytes,
        ..IntakeConfig::default()
    };
    let _intake = intake::serve(client.clone(), platform.clone(), intake_config).await?;
    let reactor = reactor::run(
        store.context().clone(),
        platform.clone(),
        Arc::new(PodgroupOnFirstRelease),
    );
    println!("neo platform ready: NATS {}", args.nats);
    tracing::info!(nats = %args.nats, "neo platform ready");
    shutdown_signal().await;
    tracing::info!("shutting down");
    reactor.abort();
    platform.passivate_all();
    client.flush().await.ok();
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
