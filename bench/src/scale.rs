//! `neo bench scale`: a million entities over ten thousand tenants, on a nats-server of its own.
//!
//! Phases, in order:
//! 1. `create_per_s`: `--entities` apps (one `CreateApp` each, through the in-process entity
//!    host: `platform.apps.execute`) spread round-robin over `--tenants` tenants (`t{i % T}`,
//!    app `a{i / T}`), `--concurrency` commands in flight ([`create`]). The creating host keeps
//!    at most `--live` actors (the least recently used are evicted past it, as in production);
//! 2. `disk_bytes_per_event`: the JetStream store directory's size (apparent bytes of every
//!    file under it, once the server has stopped writing) over the events stored; beside it
//!    `stream_bytes_per_event`, the stream's own `state.bytes` ([`disk`]);
//! 3. `host_rss_mib`: a fresh child process (`neo bench scale-live`) activates `--live` of the
//!    created apps (each loads its state from the log) and reports its resident memory, and the
//!    growth per live actor ([`live`]);
//! 4. `cold_activate_ms_p50` / `_p99`: `--cold` podgroups, each created and scaled through
//!    real commands by a host that snapshots after [`cold::SNAPSHOT_AT`] events, then given a
//!    `--tail` of events written back to back; a fresh host activates them one at a time and
//!    times the first state reply. `cold_interleaved_ms_*`: the same for `--cold` more whose
//!    tails were written `--interleave` podgroups at a time, so their events alternate in the
//!    log. The store counts what each activation reads: the run fails unless every activation
//!    used the snapshot and read exactly the tail ([`cold`]).
//!
//! Targets (the issue): 200,000 live actors in ≤ 2 GiB (≤ 10 KiB each); cold activation
//! p99 < 5 ms.

mod cold;
mod create;
mod disk;
mod live;
mod probe;
mod tail;

use std::sync::Arc;
use std::time::Instant;

use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_protocol::{AppName, EntityRef, TenantName};
use serde::Serialize;

pub use live::{ScaleLiveArgs, run as scale_live};

use neo_harness::NatsServer;

/// Options of `neo bench scale`.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Apps created (one `CreateApp` each).
    #[arg(long, default_value_t = 1_000_000)]
    pub entities: usize,
    /// Tenants the apps are spread over, round-robin.
    #[arg(long, default_value_t = 10_000)]
    pub tenants: usize,
    /// Actors kept live for the memory figure (and the bound of the creating host).
    #[arg(long, default_value_t = 200_000)]
    pub live: usize,
    /// Podgroups activated cold (snapshot plus tail), one at a time.
    #[arg(long, default_value_t = 200)]
    pub cold: usize,
    /// Events after the snapshot of each cold podgroup.
    #[arg(long, default_value_t = 1_000)]
    pub tail: usize,
    /// Podgroups whose tails are written at the same time (alternating in the log), for the
    /// `cold_interleaved_*` figures.
    #[arg(long, default_value_t = 64)]
    pub interleave: usize,
    /// Commands (and activations) in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// The figures `neo bench scale` prints.
#[derive(Debug, Serialize)]
pub struct ScaleFigures {
    /// Apps created per second through the in-process host.
    pub create_per_s: f64,
    /// Seconds the creation took.
    pub create_s: f64,
    /// Events in `NEO_EVENTS` when the store was measured (one per app).
    pub events: u64,
    /// Apparent size of the JetStream store directory, in bytes.
    pub disk_bytes: u64,
    /// `disk_bytes / events`.
    pub disk_bytes_per_event: f64,
    /// The stream's `state.bytes / state.messages`.
    pub stream_bytes_per_event: f64,
    /// Resident memory of the host process with `live` actors, in MiB (target ≤ 2048 at
    /// 200,000).
    pub host_rss_mib: f64,
    /// Its resident memory before activating them (after a warm-up), in MiB.
    pub host_rss_base_mib: f64,
    /// RSS growth per live actor, in bytes (target ≤ 10,240).
    pub bytes_per_live_actor: f64,
    /// Activations per second in the child (each loads the app from the log).
    pub live_activate_per_s: f64,
    /// Median time from asking a cold podgroup's state to the reply (snapshot plus a tail
    /// written in one run).
    pub cold_activate_ms_p50: f64,
    /// 99th percentile of the same (target < 5).
    pub cold_activate_ms_p99: f64,
    /// Slowest cold activation.
    pub cold_activate_ms_max: f64,
    /// Where a median cold activation's time goes, in the store: the last sequence.
    pub cold_last_sequence_ms_p50: f64,
    /// The snapshot read.
    pub cold_read_snapshot_ms_p50: f64,
    /// Loading the tail's events.
    pub cold_load_ms_p50: f64,
    /// The 99th percentile of loading the tail's events.
    pub cold_load_ms_p99: f64,
    /// Median cold activation when `interleave` podgroups' tails alternate in the log.
    pub cold_interleaved_ms_p50: f64,
    /// 99th percentile of the same.
    pub cold_interleaved_ms_p99: f64,
    /// Median time loading an interleaved tail.
    pub cold_interleaved_load_ms_p50: f64,
    /// CPU the nats-server spends per cold activation (snapshot + tail), on average: the
    /// store's own floor under `cold_activate_ms_*`.
    pub cold_server_cpu_ms: f64,
    /// CPU the host's process spends per cold activation, on average.
    pub cold_client_cpu_ms: f64,
    /// How the run was shaped: apps created.
    pub entities: usize,
    /// Tenants.
    pub tenants: usize,
    /// Live actors measured.
    pub live: usize,
    /// Cold podgroups activated.
    pub cold: usize,
    /// Events each cold podgroup's snapshot covers.
    pub snapshot_at: usize,
    /// Events after each snapshot.
    pub tail: usize,
    /// Podgroups whose tails alternate in the log, for the interleaved figures.
    pub interleave: usize,
    /// Concurrency.
    pub concurrency: usize,
    /// Seconds the whole run took.
    pub total_s: f64,
}

/// App `i` of a run over `tenants` tenants: tenant `t{i % tenants}`, app `a{i / tenants}`.
///
/// # Errors
/// Never for these names (they are valid by construction); the `Result` is the names' API.
pub(crate) fn app_entity(i: usize, tenants: usize) -> anyhow::Result<EntityRef> {
    let tenants = tenants.max(1);
    Ok(EntityRef::app(
        &TenantName::new(format!("t{}", i % tenants))?,
        &AppName::new(format!("a{}", i / tenants))?,
    ))
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When the nats-server cannot start or a phase fails (including a cold activation that did
/// not use its snapshot).
pub async fn run(args: ScaleBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.live <= args.entities,
        "--live ({}) must not exceed --entities ({})",
        args.live,
        args.entities
    );
    anyhow::ensure!(args.concurrency > 0, "--concurrency must be at least 1");
    let started = Instant::now();
    let progress = |msg: &str| {
        if !args.json {
            eprintln!("… {:>5.1} s  {msg}", started.elapsed().as_secs_f64());
        }
    };
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);

    progress(&format!(
        "creating {} apps over {} tenants, {} in flight",
        args.entities, args.tenants, args.concurrency
    ));
    let created = create::run(store.clone(), &args).await?;

    progress("measuring the store");
    let disk = disk::measure(&store, &nats.store_dir()).await?;

    progress(&format!(
        "activating {} live actors (in a child process)",
        args.live
    ));
    let memory = live::measure(&nats.url(), &args).await?;

    progress(&format!(
        "writing 2 × {} podgroups (snapshot after {} events, then {} more each; the second \
         set's tails {} at a time)",
        args.cold,
        cold::SNAPSHOT_AT,
        args.tail,
        args.interleave
    ));
    let cold = cold::run(store.clone(), &args).await?;

    let figures = ScaleFigures {
        create_per_s: created.per_s,
        create_s: created.elapsed.as_secs_f64(),
        events: disk.events,
        disk_bytes: disk.dir_bytes,
        disk_bytes_per_event: disk.dir_bytes as f64 / disk.events.max(1) as f64,
        stream_bytes_per_event: disk.stream_bytes as f64 / disk.events.max(1) as f64,
        host_rss_mib: memory.rss_bytes as f64 / MIB,
        host_rss_base_mib: memory.base_rss_bytes as f64 / MIB,
        bytes_per_live_actor: memory.bytes_per_actor,
        live_activate_per_s: memory.activate_per_s,
        cold_activate_ms_p50: cold.contiguous.p50_ms,
        cold_activate_ms_p99: cold.contiguous.p99_ms,
        cold_activate_ms_max: cold.contiguous.max_ms,
        cold_last_sequence_ms_p50: cold.contiguous.last_sequence_p50_ms,
        cold_read_snapshot_ms_p50: cold.contiguous.read_snapshot_p50_ms,
        cold_load_ms_p50: cold.contiguous.load_p50_ms,
        cold_load_ms_p99: cold.contiguous.load_p99_ms,
        cold_interleaved_ms_p50: cold.interleaved.p50_ms,
        cold_interleaved_ms_p99: cold.interleaved.p99_ms,
        cold_interleaved_load_ms_p50: cold.interleaved.load_p50_ms,
        cold_server_cpu_ms: cold.contiguous.server_cpu_ms,
        cold_client_cpu_ms: cold.contiguous.client_cpu_ms,
        entities: args.entities,
        tenants: args.tenants,
        live: args.live,
        cold: args.cold,
        snapshot_at: cold::SNAPSHOT_AT,
        tail: args.tail,
        interleave: args.interleave,
        concurrency: args.concurrency,
        total_s: started.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

const MIB: f64 = 1024.0 * 1024.0;

fn print_table(f: &ScaleFigures) {
    let rows = [
        ("create_per_s", format!("{:.0}", f.create_per_s), ""),
        (
            "disk_bytes_per_event",
            format!("{:.0}", f.disk_bytes_per_event),
            "",
        ),
        (
            "stream_bytes_per_event",
            format!("{:.0}", f.stream_bytes_per_event),
            "",
        ),
        (
            "host_rss_mib",
            format!("{:.0}", f.host_rss_mib),
            "≤ 2048 at 200,000",
        ),
        (
            "bytes_per_live_actor",
            format!("{:.0}", f.bytes_per_live_actor),
            "≤ 10240",
        ),
        (
            "live_activate_per_s",
            format!("{:.0}", f.live_activate_per_s),
            "",
        ),
        (
            "cold_activate_ms_p50",
            format!("{:.2}", f.cold_activate_ms_p50),
            "",
        ),
        (
            "cold_activate_ms_p99",
            format!("{:.2}", f.cold_activate_ms_p99),
            "< 5",
        ),
        (
            "cold_activate_ms_max",
            format!("{:.2}", f.cold_activate_ms_max),
            "",
        ),
        (
            "  last_sequence_ms_p50",
            format!("{:.2}", f.cold_last_sequence_ms_p50),
            "",
        ),
        (
            "  read_snapshot_ms_p50",
            format!("{:.2}", f.cold_read_snapshot_ms_p50),
            "",
        ),
        ("  load_ms_p50", format!("{:.2}", f.cold_load_ms_p50), ""),
        ("  load_ms_p99", format!("{:.2}", f.cold_load_ms_p99), ""),
        (
            "  server_cpu_ms (mean)",
            format!("{:.2}", f.cold_server_cpu_ms),
            "nats-server's own work",
        ),
        (
            "  client_cpu_ms (mean)",
            format!("{:.2}", f.cold_client_cpu_ms),
            "",
        ),
        (
            "cold_interleaved_ms_p50",
            format!("{:.2}", f.cold_interleaved_ms_p50),
            "",
        ),
        (
            "cold_interleaved_ms_p99",
            format!("{:.2}", f.cold_interleaved_ms_p99),
            "",
        ),
        (
            "  load_ms_p50",
            format!("{:.2}", f.cold_interleaved_load_ms_p50),
            "",
        ),
    ];
    println!("{:<30} {:>12}  target", "figure", "value");
    for (name, value, target) in rows {
        println!("{name:<30} {value:>12}  {target}");
    }
    println!(
        "({} apps over {} tenants in {:.1} s, concurrency {}; {} events, {} bytes on disk; \
         {} live actors from {:.0} MiB; 2 × {} cold podgroups of {} + {} events, the second \
         set's tails {} at a time; {:.0} s in all)",
        f.entities,
        f.tenants,
        f.create_s,
        f.concurrency,
        f.events,
        f.disk_bytes,
        f.live,
        f.host_rss_base_mib,
        f.cold,
        f.snapshot_at,
        f.tail,
        f.interleave,
        f.total_s
    );
}
