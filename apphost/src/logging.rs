//! JSON lines on stdout: timestamp, level, message, the process's identity, and event fields.

use std::fmt;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Identity;

/// Formats each event as one JSON object per line.
#[derive(Debug, Clone)]
pub struct JsonLines {
    identity: Identity,
}

impl JsonLines {
    /// A formatter stamping every line with `identity`.
    pub fn new(identity: Identity) -> Self {
        Self { identity }
    }

    /// The JSON object for one event (without its fields).
    fn line(&self, level: &str, target: &str) -> Map<String, Value> {
        let mut line = Map::new();
        let now = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        line.insert("timestamp".into(), now.into());
        line.insert("level".into(), level.into());
        line.insert("target".into(), target.into());
        let Identity {
            tenant,
            app,
            stage,
            replica,
        } = &self.identity;
        for (key, value) in [
            ("tenant", tenant),
            ("app", app),
            ("stage", stage),
            ("replica", replica),
        ] {
            if !value.is_empty() {
                line.insert(key.into(), value.as_str().into());
            }
        }
        line
    }
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = self.line(meta.level().as_str(), meta.target());
        event.record(&mut Fields(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// Collects an event's fields into the line.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Installs the JSON-lines subscriber on stdout; `RUST_LOG` filters (default `info`).
pub fn init(identity: Identity) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .event_format(JsonLines::new(identity))
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .try_init();
}
