//! What both drivers read from an app's output line: a JSON object's `level` and `timestamp`
//! (RFC 3339), and the clock for lines that carry no time.

use neo_protocol::pb;
use serde_json::{Map, Value};

pub use neo_protocol::envelope::now_ms;

/// The line's fields, when it is a JSON object.
pub fn json_object(text: &str) -> Option<Map<String, Value>> {
    let trimmed = text.trim_start();
    if !trimmed.starts_with('{') {
        return None;
    }
    match serde_json::from_str(trimmed) {
        Ok(Value::Object(fields)) => Some(fields),
        _ => None,
    }
}

/// The level (from a string `level`) and time in Unix ms (from an RFC 3339 `timestamp`) that
/// the fields give, each when present and readable.
pub fn level_and_time(fields: &Map<String, Value>) -> (Option<pb::LogLevel>, Option<u64>) {
    let level = fields.get("level").and_then(Value::as_str).map(level_of);
    let at_ms = fields
        .get("timestamp")
        .and_then(Value::as_str)
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .and_then(|t| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok());
    (level, at_ms)
}

/// A level name as written by common loggers (any case); unknown names are INFO.
pub fn level_of(name: &str) -> pb::LogLevel {
    match name.to_ascii_uppercase().as_str() {
        "TRACE" => pb::LogLevel::Trace,
        "DEBUG" => pb::LogLevel::Debug,
        "WARN" | "WARNING" => pb::LogLevel::Warn,
        "ERROR" | "ERR" | "FATAL" | "CRITICAL" | "PANIC" => pb::LogLevel::Error,
        _ => pb::LogLevel::Info,
    }
}
