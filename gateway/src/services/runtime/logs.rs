//! `Runtime.Logs`: the log lines of a tenant's apps from stream `NEO_LOGS`, filtered and sent
//! in batches.
//!
//! An ordered consumer reads `neo.rt.{tenant}.{stage|*}.{app|*}.logs` from shortly before
//! `since` (the stream's own clock, with [`START_SLACK`] for an agent's batching and clock
//! skew; each line's time then decides) or from the beginning. Lines that pass the filters
//! gather into one response until [`MAX_LINES`] lines or [`MAX_BYTES`] of text, or until the
//! reader has caught up with the stream: so a backlog flows in large messages and a followed
//! line goes out at once. Without `follow` the call ends once the messages stored when it began
//! are read (a stream not created yet holds none); with it, it lasts until the client goes away
//! (or, with `until`, until that time plus [`START_SLACK`] has passed).

use std::pin::Pin;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use futures::{Stream, StreamExt};
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{AppName, StageName, TenantName, pb};
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

use super::{app, optional, stage};
use crate::api;
use crate::error::{invalid, unavailable};

/// The most lines in one response.
pub const MAX_LINES: usize = 4096;
/// The most text (roughly: lines' text and names) in one response, well under the 4 MiB
/// message limit.
pub const MAX_BYTES: usize = 1 << 20;
/// The longest `text` filter.
pub const MAX_TEXT: usize = 1024;
/// How far before `since` reading starts (by the stream's clock), and how long after `until`
/// a followed stream waits for late batches.
pub const START_SLACK: Duration = Duration::from_secs(60);
/// How often a followed call checks for a logs stream that does not exist yet.
const STREAM_POLL: Duration = Duration::from_secs(1);

/// The streamed responses.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<api::LogsResponse, Status>> + Send>>;

/// A validated `LogsRequest`.
#[derive(Debug, Clone)]
pub struct Query {
    /// The caller's tenant.
    pub tenant: TenantName,
    /// Only this stage.
    pub stage: Option<StageName>,
    /// Only this app.
    pub app: Option<AppName>,
    /// The lowest level let through (as its enum value; 0: all).
    pub min_level: i32,
    /// Lines at or after (Unix ms).
    pub since_ms: u64,
    /// Lines before (Unix ms; 0: no end).
    pub until_ms: u64,
    /// A substring the text must contain (empty: any).
    pub text: String,
    /// Only this replica's lines (empty: any).
    pub replica: String,
    /// Keep streaming new lines.
    pub follow: bool,
}

impl Query {
    /// Validates the request's filters for `tenant`.
    ///
    /// # Errors
    /// `INVALID_ARGUMENT` naming the field: a bad stage or app name, an unknown level, an
    /// `until_ms` not after `since_ms`, a `text` over [`MAX_TEXT`] bytes.
    pub fn from_request(tenant: TenantName, r: &api::LogsRequest) -> Result<Self, Status> {
        if pb::LogLevel::try_from(r.min_level).is_err() {
            return Err(invalid(
                "min_level",
                format!("{} is not a log level", r.min_level),
            ));
        }
        if r.until_ms != 0 && r.until_ms <= r.since_ms {
            return Err(invalid("until_ms", "must be after since_ms"));
        }
        if r.text.len() > MAX_TEXT {
            return Err(invalid("text", format!("at most {MAX_TEXT} bytes")));
        }
        if r.replica.len() > MAX_TEXT {
            return Err(invalid("replica", format!("at most {MAX_TEXT} bytes")));
        }
        Ok(Self {
            tenant,
            stage: optional("stage", &r.stage, stage)?,
            app: optional("app", &r.app, app)?,
            min_level: r.min_level,
            since_ms: r.since_ms,
            until_ms: r.until_ms,
            text: r.text.clone(),
            replica: r.replica.clone(),
            follow: r.follow,
        })
    }

    /// The subject filter: only the caller's tenant, ever.
    pub fn subject(&self) -> String {
        subjects::runtime_filter(
            Some(self.tenant.as_str()),
            self.stage.as_ref().map(StageName::as_str),
            self.app.as_ref().map(AppName::as_str),
            Channel::Logs,
        )
    }

    /// Whether `line` passes the level, time and text filters.
    pub fn matches(&self, line: &pb::LogLine) -> bool {
        // A line without a level counts as INFO.
        let level = match line.level {
            0 => pb::LogLevel::Info as i32,
            n => n,
        };
        level >= self.min_level
            && line.at_ms >= self.since_ms
            && (self.until_ms == 0 || line.at_ms < self.until_ms)
            && (self.text.is_empty() || line.text.contains(&self.text))
            && (self.replica.is_empty() || line.replica == self.replica)
    }

    fn deliver_policy(&self) -> Result<DeliverPolicy, Status> {
        if self.since_ms == 0 {
            return Ok(DeliverPolicy::All);
        }
        let slack = START_SLACK.as_millis() as u64;
        let start_ms = self.since_ms.saturating_sub(slack);
        let start_time = async_nats::datetime::from_nanos(i128::from(start_ms) * 1_000_000)
            .map_err(|e| invalid("since_ms", e))?;
        Ok(DeliverPolicy::ByStartTime { start_time })
    }

    /// When a followed call with `until` ends.
    fn end(&self) -> Option<tokio::time::Instant> {
        if !self.follow || self.until_ms == 0 {
            return None;
        }
        let now_ms = crate::auth::now_s().saturating_mul(1000).max(0) as u64;
        let wait = Duration::from_millis(self.until_ms.saturating_sub(now_ms)) + START_SLACK;
        Some(tokio::time::Instant::now() + wait)
    }
}

/// An open reader of the logs stream.
struct Opened {
    /// The ordered consumer's messages.
    messages: jetstream::consumer::pull::Ordered,
    /// How many matching messages were stored when it was created.
    pending: u64,
    /// The stream's last sequence then: a call that does not follow ends there, even while
    /// agents keep writing.
    last: u64,
}

/// Opens the ordered consumer; `None` when the logs stream does not exist (yet).
async fn open(js: &jetstream::Context, query: &Query) -> Result<Option<Opened>, Status> {
    let stream = match js.get_stream(subjects::LOGS_STREAM).await {
        Ok(stream) => stream,
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                return Ok(None);
            }
            _ => return Err(unavailable(format!("log stream unavailable: {e}"))),
        },
    };
    // Fetched with the stream just now.
    let last = stream.cached_info().state.last_sequence;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: query.subject(),
            deliver_policy: query.deliver_policy()?,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot read the logs: {e}")))?;
    let pending = consumer.cached_info().num_pending;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable(format!("cannot read the logs: {e}")))?;
    Ok(Some(Opened {
        messages,
        pending,
        last,
    }))
}

/// The log lines matching `query`, as a stream of batches.
///
/// # Errors
/// `INVALID_ARGUMENT` for an unrepresentable `since_ms`; `UNAVAILABLE` when JetStream cannot
/// be read.
pub async fn lines(js: &jetstream::Context, query: Query) -> Result<LogStream, Status> {
    let opened = open(js, &query).await?;
    let (tx, rx) = mpsc::channel(16);
    if opened.is_some() || query.follow {
        tokio::spawn(send_lines(js.clone(), query, opened, tx));
    }
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}

/// A response being filled.
#[derive(Default)]
struct Batch {
    lines: Vec<pb::LogLine>,
    bytes: usize,
}

/// Roughly what a line adds to a response.
fn size(line: &pb::LogLine) -> usize {
    line.text.len() + line.replica.len() + line.app.len() + line.stage.len() + 48
}

impl Batch {
    fn push(&mut self, line: pb::LogLine) {
        self.bytes += size(&line);
        self.lines.push(line);
    }

    fn full(&self) -> bool {
        self.lines.len() >= MAX_LINES || self.bytes >= MAX_BYTES
    }

    /// Sends the lines gathered, as responses of at most [`MAX_LINES`] lines and about
    /// [`MAX_BYTES`] (one large `LogBatch` may hold more); false when the client has gone.
    async fn flush(&mut self, tx: &mpsc::Sender<Result<api::LogsResponse, Status>>) -> bool {
        self.bytes = 0;
        let mut lines = std::mem::take(&mut self.lines).into_iter().peekable();
        while lines.peek().is_some() {
            let (mut chunk, mut bytes) = (Vec::new(), 0);
            while let Some(line) = lines.next_if(|_| chunk.len() < MAX_LINES && bytes < MAX_BYTES) {
                bytes += size(&line);
                chunk.push(line);
            }
            let response = api::LogsResponse { lines: chunk };
            if tx.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        true
    }
}

/// Waits until the logs stream exists (a followed call made before any agent ran); `None`
/// when the client went away first or JetStream failed (the error is sent).
async fn wait_for_stream(
    js: &jetstream::Context,
    query: &Query,
    tx: &mpsc::Sender<Result<api::LogsResponse, Status>>,
) -> Option<Opened> {
    loop {
        tokio::select! {
            () = tx.closed() => return None,
            () = tokio::time::sleep(STREAM_POLL) => {}
        }
        match open(js, query).await {
            Ok(Some(opened)) => return Some(opened),
            Ok(None) => {}
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return None;
            }
        }
    }
}

/// Reads, filters and batches until the end (see the module doc) or until the client goes.
async fn send_lines(
    js: jetstream::Context,
    query: Query,
    opened: Option<Opened>,
    tx: mpsc::Sender<Result<api::LogsResponse, Status>>,
) {
    let end = query.end();
    let until_end = async {
        match end {
            Some(end) => tokio::time::sleep_until(end).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(until_end);
    let opened = match opened {
        Some(opened) => Some(opened),
        None => {
            tokio::select! {
                opened = wait_for_stream(&js, &query, &tx) => opened,
                () = &mut until_end => None,
            }
        }
    };
    let Some(Opened {
        mut messages,
        pending,
        last,
    }) = opened
    else {
        return;
    };
    if !query.follow && pending == 0 {
        return;
    }
    let mut batch = Batch::default();
    loop {
        let next = tokio::select! {
            biased;
            () = tx.closed() => return,
            () = &mut until_end => {
                batch.flush(&tx).await;
                return;
            }
            next = messages.next() => next,
        };
        let msg = match next {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => {
                batch.flush(&tx).await;
                let _ = tx
                    .send(Err(unavailable(format!("log stream interrupted: {e}"))))
                    .await;
                return;
            }
            None => {
                batch.flush(&tx).await;
                return;
            }
        };
        let (left, sequence) = msg
            .info()
            .map(|i| (i.pending, i.stream_sequence))
            .unwrap_or((0, u64::MAX));
        gather(&query, msg.subject.as_str(), &msg.payload, &mut batch);
        let done = !query.follow && (left == 0 || sequence >= last);
        if (batch.full() || left == 0 || done) && !batch.flush(&tx).await {
            return;
        }
        if done {
            return;
        }
    }
}

/// Adds the lines of one `LogBatch` message that pass the filters, labelled with the tenant,
/// stage and app of its subject (`neo.rt.{tenant}.{stage}.{app}.logs`).
fn gather(query: &Query, subject: &str, payload: &[u8], batch: &mut Batch) {
    let Some((tenant, stage, app)) = subjects::split_runtime(subject) else {
        return;
    };
    let decoded = match pb::LogBatch::decode(payload) {
        Ok(decoded) => decoded,
        Err(e) => {
            tracing::warn!(subject, error = %e, "undecodable log batch skipped");
            return;
        }
    };
    for mut line in decoded.lines {
        if !query.matches(&line) {
            continue;
        }
        tenant.clone_into(&mut line.tenant);
        stage.clone_into(&mut line.stage);
        app.clone_into(&mut line.app);
        batch.push(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> api::LogsRequest {
        api::LogsRequest {
            tenant: "acme".into(),
            ..Default::default()
        }
    }

    fn acme() -> TenantName {
        TenantName::new("acme").unwrap()
    }

    fn line(level: pb::LogLevel, at_ms: u64, text: &str) -> pb::LogLine {
        pb::LogLine {
            level: level as i32,
            at_ms,
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_become_a_subject_of_the_callers_tenant_only() {
        let all = Query::from_request(acme(), &request()).unwrap();
        assert_eq!(all.subject(), "neo.rt.acme.*.*.logs");
        let one = Query::from_request(
            acme(),
            &api::LogsRequest {
                stage: "dev".into(),
                app: "shop".into(),
                ..request()
            },
        )
        .unwrap();
        assert_eq!(one.subject(), "neo.rt.acme.dev.shop.logs");
        for (field, bad) in [
            (
                "stage",
                api::LogsRequest {
                    stage: "*".into(),
                    ..request()
                },
            ),
            (
                "app",
                api::LogsRequest {
                    app: "a.>".into(),
                    ..request()
                },
            ),
            (
                "until_ms",
                api::LogsRequest {
                    since_ms: 10,
                    until_ms: 10,
                    ..request()
                },
            ),
            (
                "min_level",
                api::LogsRequest {
                    min_level: 42,
                    ..request()
                },
            ),
            (
                "text",
                api::LogsRequest {
                    text: "x".repeat(MAX_TEXT + 1),
                    ..request()
                },
            ),
        ] {
            let e = Query::from_request(acme(), &bad).unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{field}");
            assert!(e.message().starts_with(&format!("{field}:")), "{e:?}");
        }
    }

    #[test]
    fn lines_pass_by_level_time_and_text() {
        let q = Query::from_request(
            acme(),
            &api::LogsRequest {
                min_level: pb::LogLevel::Warn as i32,
                since_ms: 100,
                until_ms: 200,
                text: "disk".into(),
                ..request()
            },
        )
        .unwrap();
        assert!(q.matches(&line(pb::LogLevel::Warn, 100, "disk full")));
        assert!(q.matches(&line(pb::LogLevel::Error, 199, "no disk")));
        assert!(!q.matches(&line(pb::LogLevel::Info, 150, "disk")));
        assert!(!q.matches(&line(pb::LogLevel::Error, 99, "disk")));
        assert!(!q.matches(&line(pb::LogLevel::Error, 200, "disk")));
        assert!(!q.matches(&line(pb::LogLevel::Error, 150, "Disk")));
        let info = Query::from_request(
            acme(),
            &api::LogsRequest {
                min_level: pb::LogLevel::Info as i32,
                ..request()
            },
        )
        .unwrap();
        assert!(info.matches(&line(pb::LogLevel::Unspecified, 0, "raw")));
        assert!(!info.matches(&line(pb::LogLevel::Debug, 0, "x")));
        let one = Query::from_request(
            acme(),
            &api::LogsRequest {
                replica: "shop-dev-2".into(),
                ..request()
            },
        )
        .unwrap();
        let of = |replica: &str| pb::LogLine {
            replica: replica.into(),
            ..line(pb::LogLevel::Info, 0, "x")
        };
        assert!(one.matches(&of("shop-dev-2")));
        assert!(!one.matches(&of("shop-dev-1")));
    }

    #[test]
    fn a_batch_is_labelled_from_its_subject_and_filtered() {
        let q = Query::from_request(acme(), &request()).unwrap();
        let payload = pb::LogBatch {
            lines: vec![
                line(pb::LogLevel::Info, 1, "a"),
                line(pb::LogLevel::Info, 2, "b"),
            ],
        }
        .encode_to_vec();
        let mut batch = Batch::default();
        gather(&q, "neo.rt.acme.dev.shop.logs", &payload, &mut batch);
        gather(&q, "neo.rt.acme.dev.shop.logs", b"\xff\xff", &mut batch);
        assert_eq!(batch.lines.len(), 2);
        assert!(!batch.full());
        assert_eq!(
            (
                batch.lines[1].tenant.as_str(),
                batch.lines[1].stage.as_str(),
                batch.lines[1].app.as_str(),
                batch.lines[1].text.as_str()
            ),
            ("acme", "dev", "shop", "b")
        );
    }

    #[tokio::test]
    async fn a_large_batch_goes_out_in_bounded_responses() {
        let mut batch = Batch::default();
        for i in 0..(MAX_LINES * 2 + 1) {
            batch.push(line(pb::LogLevel::Info, i as u64, "x"));
        }
        assert!(batch.full());
        let (tx, mut rx) = mpsc::channel(8);
        assert!(batch.flush(&tx).await);
        drop(tx);
        let mut sizes = Vec::new();
        while let Some(response) = rx.recv().await {
            sizes.push(response.unwrap().lines.len());
        }
        assert_eq!(sizes, [MAX_LINES, MAX_LINES, 1]);
        assert!(batch.lines.is_empty() && !batch.full());
    }
}
