//! Tails a replica's output files and turns each line into a `LogLine`.
//!
//! The apphost writes JSON lines (`timestamp`, `level`, `message`, fields); anything else (a
//! panic, a crash message on stderr) is shipped as it is, at INFO for stdout and ERROR for
//! stderr. Offsets are shared so the agent's state file records what was shipped.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use neo_protocol::pb;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::replica::output_files;
use crate::driver::logline::{json_object, level_and_time, now_ms};
use crate::driver::{DriverEvent, PodgroupKey};

/// How often the files are read while lines arrive (a file with more than [`CHUNK`] waiting
/// is read on at once, see [`AHEAD`]).
const POLL: Duration = Duration::from_millis(50);
/// The pause doubles with every read that finds nothing, up to this: a quiet replica costs
/// one look per second, and its next line is shipped within it.
const QUIET_POLL: Duration = Duration::from_secs(1);
/// The most bytes read per file per poll.
const CHUNK: usize = 1 << 20;
/// Chunks a backlog may queue ahead of the shipper before reading pauses for [`POLL`] again.
const AHEAD: usize = 4;
/// Output files larger than this are emptied once fully shipped (the writer appends).
const ROTATE_AT: u64 = 64 << 20;

/// Bytes of stdout and stderr shipped so far.
pub type Offsets = Arc<[AtomicU64; 2]>;

/// Starts tailing a replica's files from `offsets`.
pub fn tail(
    key: PodgroupKey,
    replica: String,
    dir: PathBuf,
    offsets: Offsets,
    events: mpsc::Sender<DriverEvent>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let files = output_files(&dir);
        let mut partial: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut pause = POLL;
        loop {
            let mut lines = Vec::new();
            // A file read to the chunk limit has more waiting: read on without pausing.
            let mut backlog = false;
            for (index, path) in files.iter().enumerate() {
                let stream = if index == 0 { "stdout" } else { "stderr" };
                let start = offsets[index].load(Ordering::Relaxed);
                let (read, new_offset) = match read_from(path, start) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "cannot read output");
                        continue;
                    }
                };
                offsets[index].store(new_offset, Ordering::Relaxed);
                backlog |= read.len() >= CHUNK;
                let buffer = &mut partial[index];
                buffer.extend_from_slice(&read);
                // Complete lines are parsed in place and dropped at once: draining each line
                // from the front would move the rest of the chunk every time (quadratic).
                let mut start = 0;
                while let Some(end) = buffer[start..].iter().position(|b| *b == b'\n') {
                    let text = String::from_utf8_lossy(&buffer[start..start + end]);
                    if !text.trim().is_empty() {
                        lines.push(parse_line(&key, &replica, stream, &text));
                    }
                    start += end + 1;
                }
                buffer.drain(..start);
            }
            pause = if lines.is_empty() {
                (pause * 2).min(QUIET_POLL)
            } else {
                POLL
            };
            if !lines.is_empty() && events.send(DriverEvent::Logs(lines)).await.is_err() {
                return;
            }
            // Unless the shipper lags: then parsed lines would only pile up in the channel.
            let queued = events.max_capacity() - events.capacity();
            if backlog && queued < AHEAD {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(pause).await;
            }
        }
    })
}

/// Reads what `path` holds past `offset` (at most [`CHUNK`]); empties a large, fully read file.
fn read_from(path: &PathBuf, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    if len < offset {
        // Emptied (rotated) by us earlier, or replaced: start over.
        return Ok((Vec::new(), 0));
    }
    if len == offset {
        if len > ROTATE_AT {
            file.set_len(0)?;
            return Ok((Vec::new(), 0));
        }
        return Ok((Vec::new(), offset));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut buffer = Vec::new();
    let wanted = u64::try_from(CHUNK).unwrap_or(u64::MAX).min(len - offset);
    file.take(wanted).read_to_end(&mut buffer)?;
    let read = u64::try_from(buffer.len()).unwrap_or(0);
    Ok((buffer, offset + read))
}

/// One line of output as a `LogLine`.
pub fn parse_line(key: &PodgroupKey, replica: &str, stream: &str, text: &str) -> pb::LogLine {
    let mut line = pb::LogLine {
        tenant: key.tenant.clone(),
        app: key.app.clone(),
        stage: key.stage.clone(),
        replica: replica.to_owned(),
        level: if stream == "stderr" {
            pb::LogLevel::Error
        } else {
            pb::LogLevel::Info
        }
        .into(),
        at_ms: now_ms(),
        text: text.to_owned(),
        stream: stream.to_owned(),
    };
    let Some(fields) = json_object(text) else {
        return line;
    };
    let (level, at_ms) = level_and_time(&fields);
    if let Some(level) = level {
        line.level = level.into();
    }
    if let Some(at_ms) = at_ms {
        line.at_ms = at_ms;
    }
    let mut text = fields
        .get("message")
        .and_then(|m| m.as_str())
        .unwrap_or_default()
        .to_owned();
    for (name, value) in &fields {
        if matches!(
            name.as_str(),
            "message" | "timestamp" | "level" | "target" | "tenant" | "app" | "stage" | "replica"
        ) {
            continue;
        }
        let value = value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(name);
        text.push('=');
        text.push_str(&value);
    }
    line.text = text;
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PodgroupKey {
        PodgroupKey::acme_shop_dev()
    }

    #[test]
    fn a_json_line_gives_its_level_time_message_and_fields() {
        let line = parse_line(
            &key(),
            "shop-r1-abc",
            "stdout",
            r#"{"timestamp":"2026-11-27T10:00:00Z","level":"WARN","target":"x","message":"slow query","ms":812}"#,
        );
        assert_eq!(line.level(), pb::LogLevel::Warn);
        assert_eq!(line.at_ms, 1_795_773_600_000);
        assert_eq!(line.text, "slow query ms=812");
        assert_eq!(
            (line.tenant.as_str(), line.replica.as_str()),
            ("acme", "shop-r1-abc")
        );
    }

    #[test]
    fn plain_stderr_is_an_error_line_as_written() {
        let line = parse_line(
            &key(),
            "r",
            "stderr",
            "thread 'main' panicked at src/main.rs",
        );
        assert_eq!(line.level(), pb::LogLevel::Error);
        assert_eq!(line.text, "thread 'main' panicked at src/main.rs");
    }

    #[tokio::test]
    async fn a_backlog_is_shipped_whole_and_a_partial_line_waits_for_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let [out, _] = output_files(dir.path());
        // More than one chunk, ending in half a line.
        let count = CHUNK / 10 + 1000;
        let mut text: String = (0..count).map(|i| format!("line {i:04}\n")).collect();
        text.push_str("half");
        std::fs::write(&out, &text).unwrap();
        let (tx, mut rx) = mpsc::channel(16);
        let offsets: Offsets = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let tailer = tail(key(), "r".into(), dir.path().into(), offsets, tx);
        let mut texts = Vec::new();
        while texts.len() < count {
            let Some(DriverEvent::Logs(lines)) = rx.recv().await else {
                panic!("the tailer stopped");
            };
            texts.extend(lines.into_iter().map(|l| l.text));
        }
        assert_eq!(texts.len(), count);
        assert_eq!(texts[count - 1], format!("line {:04}", count - 1));
        let mut file = std::fs::OpenOptions::new().append(true).open(&out).unwrap();
        std::io::Write::write_all(&mut file, b" done\n").unwrap();
        let Some(DriverEvent::Logs(lines)) = rx.recv().await else {
            panic!("the tailer stopped");
        };
        assert_eq!(lines[0].text, "half done");
        tailer.abort();
    }

    #[test]
    fn files_are_read_from_the_offset_and_emptied_files_start_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout.log");
        std::fs::write(&path, b"one\ntwo\n").unwrap();
        let (read, offset) = read_from(&path, 4).unwrap();
        assert_eq!((read.as_slice(), offset), (&b"two\n"[..], 8));
        std::fs::write(&path, b"").unwrap();
        assert_eq!(read_from(&path, 8).unwrap(), (Vec::new(), 0));
    }
}
