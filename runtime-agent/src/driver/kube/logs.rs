//! Pod logs as [`DriverEvent::Logs`]: following one container's log, and reading the level and time of a line.

use std::pin::pin;
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::LogParams;
use neo_protocol::pb;
use tokio::sync::mpsc;

use super::objects::CONTAINER;
use crate::driver::logline::{json_object, level_and_time, now_ms};
use crate::driver::{DriverEvent, PodgroupKey};

/// Lines longer than this are cut (a log event should stay well under a message's size limit).
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// At most this many lines go in one [`DriverEvent::Logs`].
const MAX_BATCH: usize = 256;
/// How long to wait before looking whether a closed log stream should be reopened.
const REOPEN_DELAY: Duration = Duration::from_secs(1);

/// One container instance whose log to follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod (the replica id).
    pub pod: String,
    /// Its podgroup.
    pub key: PodgroupKey,
    /// The container's restart count when the tail started: a restarted container is a new tail.
    pub restarts: i32,
}

/// Follows the log of `tail` and sends its lines on `events` until the container stops.
///
/// When the stream closes (the container exited, or the connection dropped), it looks at the
/// pod: if the same container instance still runs it reopens the stream from a second before
/// the last batch (so lines of that last second or two may come twice), otherwise it ends. It also ends when
/// `events` is closed.
pub async fn follow(pods: Api<Pod>, tail: Tail, events: mpsc::Sender<DriverEvent>) {
    let mut since: Option<Timestamp> = None;
    loop {
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            follow: true,
            since_time: since,
            ..LogParams::default()
        };
        match pods.log_stream(&tail.pod, &params).await {
            Ok(reader) => {
                let mut batches = pin!(lines(reader).ready_chunks(MAX_BATCH));
                while let Some(batch) = batches.next().await {
                    let now = now_ms();
                    let lines: Vec<pb::LogLine> = batch
                        .iter()
                        .filter(|text| !text.trim().is_empty())
                        .map(|text| log_line(&tail, text, now))
                        .collect();
                    // The API takes whole seconds (rounded): step back one so no line is lost.
                    since = i64::try_from(now.saturating_sub(1000))
                        .ok()
                        .and_then(|ms| Timestamp::from_millisecond(ms).ok());
                    if !lines.is_empty() && events.send(DriverEvent::Logs(lines)).await.is_err() {
                        return;
                    }
                }
            }
            Err(err) => {
                tracing::debug!(pod = %tail.pod, namespace = %tail.namespace, %err, "cannot open the pod log");
            }
        }
        tokio::time::sleep(REOPEN_DELAY).await;
        match pods.get_opt(&tail.pod).await {
            Ok(Some(pod)) if still_running(&pod, tail.restarts) => {}
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(pod = %tail.pod, namespace = %tail.namespace, %err, "stopped following the pod log");
                return;
            }
        }
    }
}

/// The lines of a log stream, decoded leniently, without their line ends; ends at the first
/// read error.
fn lines(
    reader: impl futures::AsyncBufRead + Send + 'static,
) -> impl futures::Stream<Item = String> + Send {
    futures::stream::unfold(Some(Box::pin(reader)), |reader| async move {
        let mut reader = reader?;
        let mut buf = Vec::new();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((line_text(&buf), Some(reader))),
            Err(err) => {
                tracing::debug!(%err, "pod log stream broke");
                None
            }
        }
    })
}

/// The text of one raw line: lossy UTF-8, without its line end, cut at [`MAX_LINE_BYTES`].
fn line_text(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut text = text.trim_end_matches(['\n', '\r']).to_owned();
    if text.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}

/// Whether the pod's app container is running as the same instance (restart count).
fn still_running(pod: &Pod, restarts: i32) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == CONTAINER))
            .is_some_and(|c| {
                c.restart_count == restarts
                    && c.state.as_ref().and_then(|s| s.running.as_ref()).is_some()
            })
}

/// One line of `tail` as a [`pb::LogLine`], received at `now_ms`.
///
/// The Kubernetes log API merges stdout and stderr; the apphost writes its (JSON) log to
/// stdout, so `stream` is `stdout`.
pub fn log_line(tail: &Tail, text: &str, now_ms: u64) -> pb::LogLine {
    let (level, at_ms) = parse_line(text);
    pb::LogLine {
        tenant: tail.key.tenant.clone(),
        app: tail.key.app.clone(),
        stage: tail.key.stage.clone(),
        replica: tail.pod.clone(),
        level: level as i32,
        at_ms: at_ms.unwrap_or(now_ms),
        text: text.to_owned(),
        stream: "stdout".to_owned(),
    }
}

/// The level and time of a line: from a JSON object's `level` and `timestamp` (RFC 3339)
/// fields when present, else INFO and no time.
pub fn parse_line(text: &str) -> (pb::LogLevel, Option<u64>) {
    let Some(fields) = json_object(text) else {
        return (pb::LogLevel::Info, None);
    };
    let (level, at_ms) = level_and_time(&fields);
    (level.unwrap_or(pb::LogLevel::Info), at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_their_level_and_time() {
        let line = r#"{"timestamp":"2026-05-01T12:00:00.250Z","level":"WARN","message":"slow"}"#;
        assert_eq!(
            parse_line(line),
            (pb::LogLevel::Warn, Some(1_777_636_800_250))
        );
        assert_eq!(
            parse_line(r#"{"level":"error"}"#),
            (pb::LogLevel::Error, None)
        );
    }

    #[test]
    fn other_lines_are_info_now() {
        assert_eq!(parse_line("plain text"), (pb::LogLevel::Info, None));
        assert_eq!(parse_line("{not json"), (pb::LogLevel::Info, None));
        assert_eq!(
            parse_line(r#"{"level":7,"timestamp":"yesterday"}"#),
            (pb::LogLevel::Info, None)
        );
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary() {
        let raw = "é".repeat(MAX_LINE_BYTES);
        let text = line_text(raw.as_bytes());
        assert!(text.len() <= MAX_LINE_BYTES);
        assert!(text.chars().all(|c| c == 'é'));
    }
}
