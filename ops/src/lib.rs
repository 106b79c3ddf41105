//! The `neo` command's library: local servers for tests and benchmarks, and the CLI's parts.
//!
//! # Layout
//!
//! - [`servers`]: starts real servers (nats-server) on free loopback ports for tests and `neo bench`.
pub mod servers;
