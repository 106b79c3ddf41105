//! The runtime agent of one stage: it consumes the stage's desired podgroups from JetStream,
//! applies them through a [`driver::Driver`] (local processes or Kubernetes), and reports what it
//! observes (rollouts, health, logs, metrics) back to the platform.

pub mod activity;
pub mod agent;
pub mod canary;
pub mod driver;
pub mod local;
pub mod streams;
