//! Log lines: a filter form (stage, app, replica, level, time range in UTC, text), the first
//! page of matching lines, and a live tail that appends new lines as they come.

use maud::{Markup, html};
use neo_protocol::pb;

use crate::respond::encode;

/// The most lines one page shows.
pub const PAGE_LINES: usize = 1000;

/// The filters, as the form and the query carry them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Only this stage ("" all).
    pub stage: String,
    /// Only this app.
    pub app: String,
    /// Only this replica.
    pub replica: String,
    /// The lowest level (`trace` … `error`; "" all).
    pub level: String,
    /// From (UTC, `YYYY-MM-DDTHH:MM[:SS]`; "" the last hour).
    pub since: String,
    /// Until (UTC; "" now).
    pub until: String,
    /// A substring of the text.
    pub text: String,
    /// Follow new lines.
    pub tail: bool,
}

impl Filters {
    /// The filters of a query.
    pub fn from_query(q: &std::collections::HashMap<String, String>) -> Self {
        let get = |n: &str| q.get(n).map(|v| v.trim().to_owned()).unwrap_or_default();
        Self {
            stage: get("stage"),
            app: get("app"),
            replica: get("replica"),
            level: get("level"),
            since: get("since"),
            until: get("until"),
            text: q.get("text").cloned().unwrap_or_default(),
            tail: q.get("tail").is_some_and(|t| t == "1"),
        }
    }

    /// The query that asks for them (without `tail`).
    pub fn query(&self) -> String {
        [
            ("stage", &self.stage),
            ("app", &self.app),
            ("replica", &self.replica),
            ("level", &self.level),
            ("since", &self.since),
            ("until", &self.until),
            ("text", &self.text),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// The level names, lowest first, and their values.
pub const LEVELS: [(&str, pb::LogLevel); 5] = [
    ("trace", pb::LogLevel::Trace),
    ("debug", pb::LogLevel::Debug),
    ("info", pb::LogLevel::Info),
    ("warn", pb::LogLevel::Warn),
    ("error", pb::LogLevel::Error),
];

/// A level as its word (a line without one is INFO).
pub fn level_word(level: i32) -> &'static str {
    LEVELS
        .iter()
        .find(|(_, l)| *l as i32 == level)
        .map_or("info", |(w, _)| w)
}

/// What the page shows.
#[derive(Debug, Clone, Default)]
pub struct LogsPage {
    /// The filters.
    pub filters: Filters,
    /// The tenant's stages.
    pub stages: Vec<String>,
    /// The matching lines, oldest first.
    pub lines: Vec<pb::LogLine>,
    /// More lines matched than a page shows.
    pub more: bool,
    /// A refused filter: the field and why.
    pub refused: Option<(String, String)>,
    /// Where the live tail starts (Unix ms): when the page was read.
    pub tail_from: u64,
}

/// The page's body.
pub fn page(p: &LogsPage) -> Markup {
    let f = &p.filters;
    let error = |field: &str| {
        p.refused
            .as_ref()
            .filter(|(name, _)| name == field)
            .map(|(_, m)| m.as_str())
    };
    html! {
        h1 { "Logs" }
        form.filters #log-filters method="get" action="/logs" {
            div.field {
                label for="stage" { "Stage" }
                select #stage name="stage" {
                    option value="" selected[f.stage.is_empty()] { "all" }
                    @for s in &p.stages { option value=(s) selected[*s == f.stage] { (s) } }
                }
            }
            div.field {
                label for="app" { "App" }
                input #app type="text" name="app" value=(f.app);
                (super::layout::field_error("app", error("app")))
            }
            div.field {
                label for="replica" { "Replica" }
                input #replica type="text" name="replica" value=(f.replica);
            }
            div.field {
                label for="level" { "Level at least" }
                select #level name="level" {
                    option value="" selected[f.level.is_empty()] { "any" }
                    @for (w, _) in LEVELS { option value=(w) selected[w == f.level] { (w) } }
                }
            }
            div.field {
                label for="since" { "From (UTC)" }
                input #since type="datetime-local" step="1" name="since" value=(f.since);
                (super::layout::field_error("since", error("since")))
            }
            div.field {
                label for="until" { "Until (UTC)" }
                input #until type="datetime-local" step="1" name="until" value=(f.until);
                (super::layout::field_error("until", error("until")))
            }
            div.field {
                label for="text" { "Text contains" }
                input #text type="search" name="text" value=(f.text);
                (super::layout::field_error("text", error("text")))
            }
            div.field {
                label for="tail" {
                    input #tail type="checkbox" name="tail" value="1" checked[f.tail];
                    " Live tail"
                }
            }
            button #filter type="submit" { "Show" }
        }
        @if let Some((field, message)) = &p.refused {
            @if !["app", "since", "until", "text"].contains(&field.as_str()) {
                p.error role="alert" #logs-error { (message) }
            }
        }
        p.hint #log-count {
            (p.lines.len()) " lines"
            @if p.more { ": the first " (PAGE_LINES) " that match; narrow the filters or the time range for the rest" }
            @if f.since.is_empty() { " (the last hour)" }
        }
        div.scroll {
            table.grid.logs {
                thead { tr {
                    th scope="col" { "Time (UTC)" } th scope="col" { "Level" } th scope="col" { "Where" } th scope="col" { "Text" }
                } }
                @if f.tail {
                    tbody #log-lines hx-ext="sse" sse-connect=(format!("/logs/tail?{}&from={}", f.query(), p.tail_from)) sse-swap="lines" hx-swap="beforeend" {
                        @for l in &p.lines { (row(l)) }
                    }
                } @else {
                    tbody #log-lines { @for l in &p.lines { (row(l)) } }
                }
            }
        }
    }
}

/// One line as a table row; its replica links to that replica's lines.
pub fn row(l: &pb::LogLine) -> Markup {
    let level = level_word(l.level);
    let replica = format!(
        "/logs?stage={}&app={}&replica={}",
        encode(&l.stage),
        encode(&l.app),
        encode(&l.replica)
    );
    html! {
        tr class=(format!("level-{level}")) {
            td { time { (time_of(l.at_ms)) } }
            td.level { (level) }
            td { (l.stage) "/" (l.app) "/" a.replica href=(replica) { (l.replica) } }
            td.text { (l.text) }
        }
    }
}

/// Unix ms as `YYYY-MM-DD HH:MM:SS.mmm` (UTC).
pub fn time_of(at_ms: u64) -> String {
    let at = i128::from(at_ms) * 1_000_000;
    match time::OffsetDateTime::from_unix_timestamp_nanos(at) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        ),
        Err(_) => at_ms.to_string(),
    }
}

/// A form's UTC time (`YYYY-MM-DDTHH:MM` or with `:SS`) as Unix ms.
///
/// # Errors
/// What is wrong with it.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let with_seconds = if text.len() == 16 {
        format!("{text}:00")
    } else {
        text.to_owned()
    };
    let format = time::format_description::parse_borrowed::<2>(
        "[year]-[month]-[day]T[hour]:[minute]:[second]",
    )
    .map_err(|e| e.to_string())?;
    let at = time::PrimitiveDateTime::parse(&with_seconds, &format)
        .map_err(|e| format!("`{text}` is not a time like 2026-12-04T09:30: {e}"))?
        .assume_utc();
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("`{text}` is before 1970"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_utc_and_show_back() {
        let at = parse_time("2026-12-04T09:30").expect("a time");
        assert_eq!(time_of(at), "2026-12-04 09:30:00.000");
        assert_eq!(parse_time("2026-12-04T09:30:05"), Ok(at + 5_000));
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn filters_round_trip_through_the_query() {
        let q: std::collections::HashMap<String, String> = [
            ("stage", "dev"),
            ("text", "order 7"),
            ("level", "warn"),
            ("tail", "1"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let f = Filters::from_query(&q);
        assert!(f.tail);
        assert_eq!(f.query(), "stage=dev&level=warn&text=order+7");
        assert_eq!(
            Filters::from_query(&crate::respond::query(Some(&f.query()))),
            Filters { tail: false, ..f }
        );
    }
}
