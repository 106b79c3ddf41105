//! The `neo` command's library: running the platform, benchmarks, and local servers.
//!
//! # Layout
//!
//! - [`cli`]: the client commands (`neo login`, `neo tenant …`, …) over the gRPC gateway.
//! - [`local`]: the gateway's in-process dispatch to the platform of the same process.
//! - [`servers`]: starts real servers (nats-server) on free loopback ports for tests and `neo bench`.
//! - [`serve`]: `neo serve`, one platform process (hosts, NATS intake, reactors).
//! - [`bench`]: `neo bench …`, benchmarks that start their own servers and print figures.
//! - [`agent_cmd`]: `neo agent`, the runtime agent of one stage.
//! - [`whatif_cmd`]: `neo what-if`, a podgroup's observations replayed under another policy.
//! - [`telemetry`]: the process's `tracing` subscriber, and span export over OTLP.
pub mod agent_cmd;
pub mod audit_cmd;
pub mod bench;
pub mod build_service;
pub mod cli;
pub mod local;
pub mod metrics_http;
pub mod serve;
pub mod servers;
pub mod telemetry;
pub mod whatif_cmd;
