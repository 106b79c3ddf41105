//! Neo's processes, wired from its crates, and the operator commands beside them: what the
//! `neo` binary (`ops/`) runs after parsing its arguments. The composition root: the only crate
//! that knows every other.
//!
//! # Layout
//!
//! - [`serve`]: `neo serve`, one platform process (hosts, NATS intake, reactors, gateway).
//! - [`portal`]: the portal `neo serve` runs over its own gateway.
//! - [`agent`]: `neo agent`, the runtime agent of one stage.
//! - [`build_service`]: `neo build-worker`, build workers on the platform's work queue.
//! - [`audit`]: `neo audit`, the event log's hash chain checked, or the log exported.
//! - [`whatif`]: `neo what-if`, a podgroup's observations replayed under another policy.
//! - [`telemetry`]: the process's `tracing` subscriber, and span export over OTLP.
//! - [`metrics_http`]: the Prometheus endpoint of a process.
//! - [`nats_connect`]: every NATS connection: URL, TLS, the component's own credential.
//! - [`nats_config`]: `neo nats-config` (the secured server's users and grants) and
//!   `neo nats-provision`.
//! - [`keys`]: the key-encryption key of the secrets store, `neo keys`, and the reactor that
//!   destroys a deleted tenant's data key.
//! - [`certs`]: `neo certs init`, the local CA and the servers' certificate.
//! - [`platform_image`]: `neo image platform`, the image of Neo's own binaries, pushed to a
//!   registry (what `deploy/` runs).
pub mod agent;
pub mod audit;
pub mod build_service;
pub mod certs;
pub mod keys;
pub mod metrics_http;
pub mod nats_config;
pub mod nats_connect;
pub mod platform_image;
pub mod portal;
pub mod serve;
pub mod telemetry;
pub mod whatif;
