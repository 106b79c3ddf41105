//! Build logs: each build's output lines on `neo.buildlog.{tenant}.{build_id}` in the stream
//! `NEO_BUILD_LOGS` (kept 7 days), as `neo.v1.BuildLogLine` protobuf messages. The last line of
//! an attempt has `end` set, so a follower knows when to stop.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use neo_protocol::pb;
use prost::Message;

/// The build log stream.
pub const LOG_STREAM: &str = "NEO_BUILD_LOGS";
/// Its subjects.
pub const LOG_SUBJECTS: &str = "neo.buildlog.>";

/// The subject of one build's log.
pub fn log_subject(tenant: &str, build_id: &str) -> String {
    format!("neo.buildlog.{tenant}.{build_id}")
}

/// Creates the log stream when missing (with the installation's replicas).
///
/// # Errors
/// JetStream's message when it refuses.
pub async fn ensure(js: &jetstream::Context) -> Result<(), String> {
    neo_client::streams::ensure_stream(
        js,
        stream::Config {
            name: LOG_STREAM.into(),
            subjects: vec![LOG_SUBJECTS.into()],
            storage: stream::StorageType::File,
            max_age: Duration::from_secs(7 * 24 * 3600),
            max_bytes: 1 << 30,
            description: Some("Neo build output, one subject per build".into()),
            ..Default::default()
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// How long a log line's write waits for JetStream's ack before the line is given up.
const ACK_WAIT: Duration = Duration::from_secs(1);

/// Writes one attempt's log lines.
pub struct BuildLog {
    js: jetstream::Context,
    subject: String,
    attempt: u32,
}

impl BuildLog {
    /// The log of `attempt` of `build_id`.
    pub fn new(js: jetstream::Context, tenant: &str, build_id: &str, attempt: u32) -> Self {
        Self {
            js,
            subject: log_subject(tenant, build_id),
            attempt,
        }
    }

    /// Appends a line. A log line that cannot be written is logged and dropped: the build goes
    /// on (its outcome is in the build's events either way).
    pub async fn line(&self, level: &str, text: impl Into<String>) {
        self.write(level, text.into(), false).await;
    }

    /// Appends the attempt's last line.
    pub async fn end(&self, level: &str, text: impl Into<String>) {
        self.write(level, text.into(), true).await;
    }

    async fn write(&self, level: &str, text: String, end: bool) {
        let line = pb::BuildLogLine {
            attempt: self.attempt,
            time: now_rfc3339(),
            level: level.to_owned(),
            text,
            end,
        };
        let sent = match self
            .js
            .publish(self.subject.clone(), line.encode_to_vec().into())
            .await
        {
            // Bounded: a line sent into a NATS outage must not hold the build up for the
            // whole JetStream ack timeout.
            Ok(ack) => match tokio::time::timeout(ACK_WAIT, ack).await {
                Ok(acked) => acked.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err(format!("no ack within {ACK_WAIT:?}")),
            },
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = sent {
            tracing::warn!(subject = %self.subject, error = %e, "cannot write a build log line");
        }
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
