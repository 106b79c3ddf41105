//! The JetStream streams of the Runtime: desired podgroups, agents' reports, app logs.
//!
//! Reports and logs are kept by age and size (they are observations, not the record of
//! decisions, which lives in `NEO_EVENTS`); desired states keep the last message per subject.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use neo_protocol::subjects;

/// How long and how much the report streams keep.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Health and metrics reports: the oldest kept.
    pub reports_max_age: Duration,
    /// Health and metrics reports: total bytes kept.
    pub reports_max_bytes: i64,
    /// Log lines: the oldest kept.
    pub logs_max_age: Duration,
    /// Log lines: total bytes kept.
    pub logs_max_bytes: i64,
}

impl Default for Retention {
    /// Reports 7 days / 256 MiB, logs 3 days / 1 GiB (JetStream reserves these sizes
    /// against the server's `max_file_store`).
    fn default() -> Self {
        Self {
            reports_max_age: Duration::from_secs(7 * 24 * 3600),
            reports_max_bytes: 256 << 20,
            logs_max_age: Duration::from_secs(3 * 24 * 3600),
            logs_max_bytes: 1 << 30,
        }
    }
}

/// A stream could not be created.
#[derive(Debug, thiserror::Error)]
#[error("cannot create stream {stream}: {reason}")]
pub struct StreamError {
    /// Which.
    pub stream: &'static str,
    /// JetStream's message.
    pub reason: String,
}

/// Creates the three Runtime streams when missing (with the installation's replicas, raised
/// in place when they have fewer).
///
/// # Errors
/// When JetStream refuses.
pub async fn ensure(js: &jetstream::Context, retention: Retention) -> Result<(), StreamError> {
    let configs = [
        stream::Config {
            name: subjects::DESIRED_STREAM.into(),
            subjects: vec![subjects::DESIRED_ALL.into()],
            storage: stream::StorageType::File,
            max_messages_per_subject: 1,
            allow_direct: true,
            description: Some("Neo: the desired state of every podgroup, per stage".into()),
            ..Default::default()
        },
        stream::Config {
            name: subjects::RUNTIME_STREAM.into(),
            subjects: vec!["neo.rt.*.*.*.health".into(), "neo.rt.*.*.*.metrics".into()],
            storage: stream::StorageType::File,
            max_age: retention.reports_max_age,
            max_bytes: retention.reports_max_bytes,
            allow_direct: true,
            description: Some("Neo: agents' health and metrics reports".into()),
            ..Default::default()
        },
        stream::Config {
            name: subjects::LOGS_STREAM.into(),
            subjects: vec!["neo.rt.*.*.*.logs".into()],
            storage: stream::StorageType::File,
            max_age: retention.logs_max_age,
            max_bytes: retention.logs_max_bytes,
            description: Some("Neo: app log lines, batched per podgroup".into()),
            ..Default::default()
        },
    ];
    let names = [
        subjects::DESIRED_STREAM,
        subjects::RUNTIME_STREAM,
        subjects::LOGS_STREAM,
    ];
    for (name, config) in names.into_iter().zip(configs) {
        neo_client::streams::ensure_stream(js, config)
            .await
            .map_err(|e| StreamError {
                stream: name,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}
