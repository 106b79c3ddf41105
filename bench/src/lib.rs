//! `neo bench …`: benchmarks that start their own servers and print a table, or one JSON
//! object with `--json`.
//!
//! - [`core`]: the event-sourced core.
//! - [`gateway`]: the gRPC gateway against the in-process host.
//! - [`ha`]: a three-node NATS cluster against one server, and the event stream's leader killed
//!   under load.
//! - [`idle`]: what the whole stack costs while nothing happens, at 10 and 100 apps.
//! - [`portal`]: the portal's board of 300 apps × 3 stages, and a page of filtered logs out of
//!   a million lines.
//! - [`recovery`]: each fault healing by itself under load, with nothing acknowledged lost.
//! - [`replay`]: reading the event log back and folding it into state, against a raw read.
//! - [`runtime`]: publish and promote to serving, and log lines through the Runtime.
//! - [`scale`]: a million entities over ten thousand tenants: creation rate, disk per event,
//!   memory of 200,000 live actors, cold activation from a snapshot and a tail.
//! - [`stats`]: percentiles, rates and process memory.

pub mod build;
pub mod core;
pub mod gateway;
pub mod ha;
pub mod idle;
pub mod portal;
mod procstat;
pub mod recovery;
pub mod replay;
pub mod runtime;
pub mod scale;
pub mod stats;

/// Options shared by the benchmarks.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Distinct entities commanded.
    #[arg(long, default_value_t = 10_000)]
    pub entities: usize,
    /// Commands per entity (one create, then revisions).
    #[arg(long, default_value_t = 5)]
    pub commands_per_entity: usize,
    /// Commands in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Rounds of raw publish, raw publish with Neo's headers and entity host, back to back;
    /// the figures are their medians and each ratio is taken within a round.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Events of the one entity rehydrated.
    #[arg(long, default_value_t = 100_000)]
    pub rehydrate_events: usize,
    /// Actors kept live for the memory figure.
    #[arg(long, default_value_t = 100_000)]
    pub live_actors: usize,
}

pub use self::core::run as core;
