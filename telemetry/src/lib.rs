//! What every Neo process reports about itself, apart from its logs.
//!
//! - [`metrics`]: the process's Prometheus metrics, in one registry.
//! - [`trace`]: W3C trace context (`traceparent`) in and out of `tracing` spans, so one request
//!   is one trace across the gateway, NATS, the entity, the reactors and the agents.

pub mod metrics;
pub mod trace;
