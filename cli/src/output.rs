//! Printing results: the output format, table helpers, and enum values and times as words.

use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, PoisonError};

use comfy_table::{ContentArrangement, Table, presets};
use neo_protocol::pb;
use serde_json::Value;

use super::error::CliError;

/// How results are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable tables.
    #[default]
    Table,
    /// JSON documents (one object per line for streams).
    Json,
}

/// Where results are written.
#[derive(Debug, Clone, Default)]
pub enum Sink {
    /// The process's stdout.
    #[default]
    Stdout,
    /// A buffer (for tests that run commands in process and read what they printed).
    Memory(Arc<Mutex<Vec<u8>>>),
}

impl Sink {
    /// A new, empty in-memory sink.
    pub fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    /// What was written to an in-memory sink (empty for stdout).
    pub fn contents(&self) -> String {
        match self {
            Self::Stdout => String::new(),
            Self::Memory(buffer) => {
                let bytes = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// Whether this is stdout on a terminal (where styling such as [`dim`] is shown), and
    /// `NO_COLOR` is not set.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Stdout)
            && std::io::stdout().is_terminal()
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    }

    /// Prints a result as JSON or as a table, building only the one asked for.
    ///
    /// # Errors
    ///
    /// [`CliError::Stdout`] when stdout cannot be written.
    pub fn print(
        &self,
        format: OutputFormat,
        json: impl FnOnce() -> Value,
        table: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        match format {
            OutputFormat::Json => self.emit(&pretty(&json())),
            OutputFormat::Table => self.emit(&table()),
        }
    }

    /// Writes `text` and a newline, and flushes.
    ///
    /// # Errors
    ///
    /// [`CliError::Stdout`] when stdout cannot be written (a closed pipe included).
    pub fn emit(&self, text: &str) -> Result<(), CliError> {
        match self {
            Self::Stdout => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{text}")
                    .and_then(|()| out.flush())
                    .map_err(CliError::Stdout)
            }
            Self::Memory(buffer) => {
                let mut bytes = buffer.lock().unwrap_or_else(PoisonError::into_inner);
                bytes.extend_from_slice(text.as_bytes());
                bytes.push(b'\n');
                Ok(())
            }
        }
    }
}

/// A JSON value on several indented lines.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `text` dimmed with ANSI escapes (for a terminal only; see [`Sink::is_terminal`]).
pub fn dim(text: &str) -> String {
    format!("\x1b[2m{text}\x1b[0m")
}

/// A borderless table with these column headers, wrapped to the terminal's width.
pub fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_header(header);
    arrange(&mut table);
    table
}

/// A two-column table of field names and values, with no header.
pub fn fields<'a>(rows: impl IntoIterator<Item = (&'a str, String)>) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    arrange(&mut table);
    for (name, value) in rows {
        table.add_row([name.to_owned(), value]);
    }
    table
}

/// The narrowest terminal that tables are wrapped to; below it (or with no terminal) they are not
/// wrapped at all, as some pseudo-terminals report a width of 0.
const MIN_WRAP_WIDTH: u16 = 40;

/// Wraps a table to the terminal's width when there is a usable one.
fn arrange(table: &mut Table) {
    let wrap = table.width().is_some_and(|w| w >= MIN_WRAP_WIDTH);
    table.set_content_arrangement(if wrap {
        ContentArrangement::Dynamic
    } else {
        ContentArrangement::Disabled
    });
}

/// A digest cut to 19 characters (`sha256:` and 12 hex digits), as in tables.
pub fn short_digest(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// `-` for an empty value, as in tables.
pub fn or_dash(value: &str) -> String {
    if value.is_empty() {
        "-".to_owned()
    } else {
        value.to_owned()
    }
}

/// `yes` or `no`.
pub fn yes_no(value: bool) -> String {
    if value { "yes" } else { "no" }.to_owned()
}

/// A role as a word (`viewer`, `developer`, `devops`, `admin`).
pub fn role_word(role: i32) -> String {
    match pb::Role::try_from(role) {
        Ok(pb::Role::Unspecified) => "none".to_owned(),
        Ok(pb::Role::Viewer) => "viewer".to_owned(),
        Ok(pb::Role::Developer) => "developer".to_owned(),
        Ok(pb::Role::Devops) => "devops".to_owned(),
        Ok(pb::Role::Admin) => "admin".to_owned(),
        Err(_) => format!("unknown({role})"),
    }
}

/// A build status as a word (`requested`, `started`, `succeeded`, `failed`, `cancelled`).
pub fn build_status_word(status: i32) -> String {
    match pb::BuildStatus::try_from(status) {
        Ok(pb::BuildStatus::Unspecified) => "unspecified".to_owned(),
        Ok(pb::BuildStatus::Requested) => "requested".to_owned(),
        Ok(pb::BuildStatus::Started) => "started".to_owned(),
        Ok(pb::BuildStatus::Succeeded) => "succeeded".to_owned(),
        Ok(pb::BuildStatus::Failed) => "failed".to_owned(),
        Ok(pb::BuildStatus::Cancelled) => "cancelled".to_owned(),
        Err(_) => format!("unknown({status})"),
    }
}

/// A release origin as a word (`deploy`, `promotion`, `rollback`, `config`).
pub fn origin_word(origin: i32) -> String {
    match pb::ReleaseOrigin::try_from(origin) {
        Ok(pb::ReleaseOrigin::Unspecified) => "unspecified".to_owned(),
        Ok(pb::ReleaseOrigin::Deploy) => "deploy".to_owned(),
        Ok(pb::ReleaseOrigin::Promotion) => "promotion".to_owned(),
        Ok(pb::ReleaseOrigin::Rollback) => "rollback".to_owned(),
        Ok(pb::ReleaseOrigin::Config) => "config".to_owned(),
        Err(_) => format!("unknown({origin})"),
    }
}

/// A rollout status as a word (`pending`, `succeeded`, `failed`).
pub fn rollout_word(status: i32) -> String {
    match pb::RolloutStatus::try_from(status) {
        Ok(pb::RolloutStatus::Unspecified) => "unspecified".to_owned(),
        Ok(pb::RolloutStatus::Pending) => "pending".to_owned(),
        Ok(pb::RolloutStatus::Succeeded) => "succeeded".to_owned(),
        Ok(pb::RolloutStatus::Failed) => "failed".to_owned(),
        Err(_) => format!("unknown({status})"),
    }
}

/// A publish step as a word (`uploaded`, `revision_created`, `build_log`, …).
pub fn publish_step_word(step: i32) -> String {
    use neo_gateway::api::PublishStep as S;
    let word = match S::try_from(step) {
        Ok(S::Unspecified) => "unspecified",
        Ok(S::Uploaded) => "uploaded",
        Ok(S::RevisionCreated) => "revision_created",
        Ok(S::BuildRequested) => "build_requested",
        Ok(S::BuildStarted) => "build_started",
        Ok(S::BuildLog) => "build_log",
        Ok(S::BuildSucceeded) => "build_succeeded",
        Ok(S::BuildFailed) => "build_failed",
        Ok(S::Deployed) => "deployed",
        Ok(S::DeployRefused) => "deploy_refused",
        Err(_) => return format!("unknown({step})"),
    };
    word.to_owned()
}

/// Unix seconds as an RFC 3339 UTC time (the number itself when out of range).
pub fn unix_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

/// Unix milliseconds as an RFC 3339 UTC time with milliseconds.
pub fn unix_millis(millis: u64) -> String {
    let nanos = i128::from(millis) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| millis.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_print_as_words() {
        assert_eq!(role_word(pb::Role::Devops as i32), "devops");
        assert_eq!(
            build_status_word(pb::BuildStatus::Succeeded as i32),
            "succeeded"
        );
        assert_eq!(
            origin_word(pb::ReleaseOrigin::Promotion as i32),
            "promotion"
        );
        assert_eq!(rollout_word(pb::RolloutStatus::Pending as i32), "pending");
        assert_eq!(rollout_word(42), "unknown(42)");
        let step = neo_gateway::api::PublishStep::DeployRefused as i32;
        assert_eq!(publish_step_word(step), "deploy_refused");
        assert_eq!(publish_step_word(99), "unknown(99)");
    }

    #[test]
    fn digests_are_cut_to_nineteen_chars() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(short_digest(&digest), "sha256:abababababab");
        assert_eq!(short_digest("short"), "short");
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(unix_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(unix_millis(1_500), "1970-01-01T00:00:01.5Z");
    }
}
