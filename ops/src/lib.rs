//! The `neo` command's library: running the platform, agents and workers, audits and benchmarks.
//!
//! # Layout
//!
//! - [`serve`]: `neo serve`, one platform process (hosts, NATS intake, reactors).
//! - [`bench`]: `neo bench …`, benchmarks that start their own servers and print figures.
//! - [`agent_cmd`]: `neo agent`, the runtime agent of one stage.
//! - [`whatif_cmd`]: `neo what-if`, a podgroup's observations replayed under another policy.
//! - [`telemetry`]: the process's `tracing` subscriber, and span export over OTLP.
//! - [`nats_connect`]: every NATS connection: URL, TLS, the component's own credential.
//! - [`nats_config`]: `neo nats-config` (the secured server's users and grants) and
//!   `neo nats-provision`.
//! - [`keys`]: the key-encryption key of the secrets store, `neo keys`, and the reactor that
//!   destroys a deleted tenant's data key.
//! - [`certs`]: `neo certs init`, the local CA and the servers' certificate.
pub mod agent_cmd;
pub mod audit_cmd;
pub mod bench;
pub mod build_service;
pub mod certs;
pub mod keys;
pub mod metrics_http;
pub mod nats_config;
pub mod nats_connect;
pub mod serve;
pub mod telemetry;
pub mod whatif_cmd;
