//! Phase 3: resident memory of a host with N live actors, measured by a child process
//! (`neo bench scale-live`) on a fresh heap while nothing else runs in it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};
use neo_protocol::{AppName, EntityRef, TenantName};
use serde::{Deserialize, Serialize};

use super::{ScaleBenchArgs, app_entity};
use crate::core::{in_parallel, share};
use crate::stats::{rate, rss_bytes};

/// Apps activated (never created: nothing to read) before the first reading, to warm the
/// allocator and the runtime.
const WARM_UP: usize = 2_000;

/// Options of the hidden `neo bench scale-live`, which `neo bench scale` runs as a child.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleLiveArgs {
    /// The NATS server holding the apps.
    #[arg(long)]
    pub nats: String,
    /// Tenants the apps were spread over (`t{i % tenants}`, app `a{i / tenants}`).
    #[arg(long)]
    pub tenants: usize,
    /// Apps to activate: the first `count` of them.
    #[arg(long)]
    pub count: usize,
    /// Activations in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// What the child prints, as one JSON object.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LiveMemory {
    /// Resident memory with every actor live.
    pub rss_bytes: u64,
    /// Resident memory after the warm-up, before the actors.
    pub base_rss_bytes: u64,
    /// `(rss_bytes - base_rss_bytes) / count`.
    pub bytes_per_actor: f64,
    /// Activations per second (each reads the app's state from the log).
    pub activate_per_s: f64,
}

/// Activates `count` created apps (each rebuilt from the log), and prints [`LiveMemory`].
///
/// # Errors
/// When NATS is unreachable, an app cannot be loaded, an actor was stopped during the run, or
/// `/proc/self/statm` cannot be read.
pub async fn run(args: ScaleLiveArgs) -> anyhow::Result<()> {
    let client = async_nats::connect(&args.nats).await?;
    let store = Arc::new(JetStreamStore::open(client, StoreConfig::default()).await?);
    let (n, c, tenants) = (args.count, args.concurrency.max(1), args.tenants);
    let platform = Platform::start(
        store,
        HostConfig {
            max_live: n + WARM_UP + 1,
            ..HostConfig::default()
        },
    )
    .await?;
    // The host's idle sweep keeps an actor used after `now - idle_timeout` floored at 0 ms, so
    // during its first `idle_timeout` it stops actors last used in the host's first
    // millisecond (at the first sweep, 75 s in by default). Use none that early.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let warm = TenantName::new("warm")?;
    in_parallel(c, |w| {
        let (platform, warm) = (platform.clone(), warm.clone());
        async move {
            for i in share(w, c, WARM_UP) {
                let e = EntityRef::app(&warm, &AppName::new(format!("w{i}"))?);
                platform.apps.state(&e).await?;
            }
            Ok(())
        }
    })
    .await?;
    let base = rss_bytes().context("cannot read /proc/self/statm")?;
    let elapsed = in_parallel(c, |w| {
        let platform = platform.clone();
        async move {
            for i in share(w, c, n) {
                let e = app_entity(i, tenants)?;
                let (state, _) = platform.apps.state(&e).await?;
                anyhow::ensure!(state.exists, "{e} was not created");
            }
            Ok(())
        }
    })
    .await?;
    let rss = rss_bytes().context("cannot read /proc/self/statm")?;
    anyhow::ensure!(
        platform.live_count() == n + WARM_UP,
        "actors were stopped during the run ({} live of {})",
        platform.live_count(),
        n + WARM_UP
    );
    let figure = LiveMemory {
        rss_bytes: rss,
        base_rss_bytes: base,
        bytes_per_actor: rss.saturating_sub(base) as f64 / n.max(1) as f64,
        activate_per_s: rate(n, elapsed),
    };
    println!("{}", serde_json::to_string(&figure)?);
    Ok(())
}

/// Runs `neo bench scale-live` in a child process and reads its figures.
pub(super) async fn measure(nats: &str, args: &ScaleBenchArgs) -> anyhow::Result<LiveMemory> {
    let exe = std::env::current_exe().context("locating the neo binary")?;
    let output = tokio::process::Command::new(exe)
        .args(["bench", "scale-live", "--nats", nats])
        .args(["--tenants", &args.tenants.to_string()])
        .args(["--count", &args.live.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .context("running neo bench scale-live")?;
    anyhow::ensure!(
        output.status.success(),
        "neo bench scale-live failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("neo bench scale-live printed no figures")
}
