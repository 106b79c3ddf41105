//! Why a replica died: its exit status and the last *error* line it wrote.
//!
//! An error line is one written at level WARN or ERROR (a JSON line's `level`), or a plain line
//! on stderr (a panic, a crash message); the apphost's access log and other INFO lines are
//! never the reason. Of the two files, the line written last wins: a JSON line's `timestamp`
//! tells when, a plain line is as old as its file's last change.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use neo_protocol::pb;

use super::logs::parse_line;
use super::replica::output_files;
use crate::driver::PodgroupKey;
use crate::driver::logline::{json_object, level_and_time};

/// Bytes read from the end of each output file.
const TAIL: u64 = 64 << 10;
/// The most characters of a line in a reason.
const MAX_CHARS: usize = 300;

/// An error line and when it was written (Unix ms), when the line says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLine {
    /// The line as `neo logs` shows it (a JSON line's message and fields), shortened.
    pub text: String,
    /// The line's own `timestamp`.
    pub at_ms: Option<u64>,
}

/// The reason of a death: `how` (the exit status), then the last error line in `dir`'s output
/// files if there is one.
pub fn reason(how: &str, dir: &Path) -> String {
    let [out, err] = output_files(dir);
    let candidates = [(err, "stderr"), (out, "stdout")].map(|(path, stream)| {
        let (text, modified_ms) = read_tail(&path)?;
        Some((last_error_line(&text, stream)?, modified_ms))
    });
    match latest(candidates.into_iter().flatten()) {
        Some(line) => format!("{how}: {line}"),
        None => how.to_owned(),
    }
}

/// The last error line of `text`, written to `stream` (`stdout` or `stderr`).
pub fn last_error_line(text: &str, stream: &str) -> Option<ErrorLine> {
    let nobody = PodgroupKey {
        tenant: String::new(),
        app: String::new(),
        stage: String::new(),
    };
    text.lines()
        .rev()
        .filter(|raw| !raw.trim().is_empty())
        .find_map(|raw| {
            let line = parse_line(&nobody, "", stream, raw);
            if !matches!(line.level(), pb::LogLevel::Warn | pb::LogLevel::Error) {
                return None;
            }
            let at_ms = json_object(raw).and_then(|fields| level_and_time(&fields).1);
            Some(ErrorLine {
                text: line.text.chars().take(MAX_CHARS).collect(),
                at_ms,
            })
        })
}

/// The line written last of `(line, its file's last change in Unix ms)`; the first on a tie.
pub fn latest(candidates: impl IntoIterator<Item = (ErrorLine, u64)>) -> Option<String> {
    let mut best: Option<(u64, String)> = None;
    for (line, modified_ms) in candidates {
        let at = line.at_ms.unwrap_or(modified_ms);
        if best.as_ref().is_none_or(|(when, _)| at > *when) {
            best = Some((at, line.text));
        }
    }
    best.map(|(_, text)| text)
}

/// The last [`TAIL`] bytes of a file (from a line's start) and its last change in Unix ms.
fn read_tail(path: &Path) -> Option<(String, u64)> {
    let mut file = std::fs::File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    let modified_ms = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0);
    let start = meta.len().saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start)).ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let text = if start > 0 {
        // The first line is cut: drop it.
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    Some((text.to_owned(), modified_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCESS: &str = r#"{"timestamp":"2026-11-27T10:00:05Z","level":"INFO","target":"neo_apphost::http","message":"request","app":"catalog","method":"GET","path":"/api/product","status":200}"#;
    const WARN: &str = r#"{"timestamp":"2026-11-27T10:00:03Z","level":"WARN","target":"neo_apphost::http::error","message":"database unavailable","app":"catalog","error":"pool timed out"}"#;

    #[test]
    fn access_log_lines_are_never_the_reason() {
        let text = format!("{ACCESS}\n{ACCESS}\n");
        assert_eq!(last_error_line(&text, "stdout"), None);
    }

    #[test]
    fn the_last_warning_or_error_is_chosen_over_later_info_lines() {
        let text = format!("{ACCESS}\n{WARN}\n{ACCESS}\n\n");
        let line = last_error_line(&text, "stdout").unwrap();
        assert_eq!(line.text, "database unavailable error=pool timed out");
        assert_eq!(line.at_ms, Some(1_795_773_603_000));
    }

    #[test]
    fn plain_stderr_lines_are_errors_and_plain_stdout_lines_are_not() {
        let stderr = "thread 'main' panicked at src/main.rs:3:5\nnote: run with RUST_BACKTRACE=1\n";
        let line = last_error_line(stderr, "stderr").unwrap();
        assert_eq!(line.text, "note: run with RUST_BACKTRACE=1");
        assert_eq!(line.at_ms, None);
        assert_eq!(last_error_line("listening on 8080\n", "stdout"), None);
    }

    #[test]
    fn the_line_written_last_wins_by_timestamp_else_by_file_time() {
        let warn = last_error_line(WARN, "stdout").unwrap();
        let panic = last_error_line("boom\n", "stderr").unwrap();
        // stderr last changed after the warning was logged: the panic is the reason.
        assert_eq!(
            latest([(panic.clone(), 1_795_773_604_000), (warn.clone(), 0)]).as_deref(),
            Some("boom")
        );
        // stderr is older than the warning.
        assert_eq!(
            latest([(panic, 1_795_773_600_000), (warn, 0)]).as_deref(),
            Some("database unavailable error=pool timed out")
        );
        assert_eq!(latest([]), None);
    }

    #[test]
    fn a_reason_is_the_exit_status_alone_without_an_error_line() {
        let dir = tempfile::tempdir().unwrap();
        let [out, err] = output_files(dir.path());
        std::fs::write(&out, format!("{ACCESS}\n")).unwrap();
        std::fs::write(&err, "").unwrap();
        assert_eq!(
            reason("killed by signal 9", dir.path()),
            "killed by signal 9"
        );
        std::fs::write(&out, format!("{WARN}\n{ACCESS}\n")).unwrap();
        assert_eq!(
            reason("exited with status 1", dir.path()),
            "exited with status 1: database unavailable error=pool timed out"
        );
    }
}
