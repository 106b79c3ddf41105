//! Phase 2: what the events cost on disk: the store directory's size and the stream's own count.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use neo_actors::store::jetstream::JetStreamStore;
use neo_protocol::subjects;

/// The store as measured.
pub(super) struct Disk {
    /// Messages in `NEO_EVENTS`.
    pub events: u64,
    /// The stream's `state.bytes`.
    pub stream_bytes: u64,
    /// Apparent size of every file under the JetStream store directory.
    pub dir_bytes: u64,
}

/// How long to wait for the server to stop writing before measuring anyway.
const SETTLE: Duration = Duration::from_secs(10);

/// Measures the stream and, once its size holds still for half a second (the server writes
/// its blocks behind the acks), the store directory.
///
/// # Errors
/// When the stream's info cannot be read or the directory cannot be walked.
pub(super) async fn measure(store: &JetStreamStore, dir: &Path) -> anyhow::Result<Disk> {
    let mut stream = store
        .context()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .context("looking up the event stream")?;
    let state = stream.info().await?.state.clone();
    let deadline = tokio::time::Instant::now() + SETTLE;
    let mut last = dir_bytes(dir)?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = dir_bytes(dir)?;
        if now == last || tokio::time::Instant::now() > deadline {
            last = now;
            break;
        }
        last = now;
    }
    Ok(Disk {
        events: state.messages,
        stream_bytes: state.bytes,
        dir_bytes: last,
    })
}

/// The apparent size of every file under `dir`, recursively.
fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_every_file_below() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir_all(dir.path().join("a/b"))?;
        std::fs::write(dir.path().join("one"), [0u8; 10])?;
        std::fs::write(dir.path().join("a/b/two"), [0u8; 32])?;
        assert_eq!(dir_bytes(dir.path())?, 42);
        Ok(())
    }
}
