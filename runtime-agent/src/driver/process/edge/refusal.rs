//! A request the edge refuses: its status, its reason (a stable label) and a message for the client; counted and logged once.

use std::net::IpAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONNECTION, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};

/// Why the edge refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The answer's status.
    pub status: StatusCode,
    /// A stable label: the metrics' `reason`.
    pub reason: &'static str,
    /// What the client is told.
    pub message: String,
    /// Seconds after which to try again (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Close the connection after answering (the client misbehaves).
    pub close: bool,
}

impl Refusal {
    /// A refusal with `status` and `reason`.
    pub fn new(status: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            message: message.into(),
            retry_after: None,
            close: false,
        }
    }

    /// Telling the client when to try again.
    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// Closing the connection after the answer.
    #[must_use]
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// Counts it in `neo_edge_refusals{stage, reason}` and logs it with the client's address.
    pub fn record(&self, stage: &str, client: IpAddr, path: &str) {
        neo_telemetry::metrics::global()
            .edge_refusals
            .get_or_create(&neo_telemetry::metrics::EdgeLabels {
                stage: stage.to_owned(),
                reason: self.reason,
            })
            .inc();
        let path: String = path.chars().take(200).collect();
        tracing::info!(stage, %client, reason = self.reason, status = self.status.as_u16(),
            %path, "edge refused a request");
    }

    /// The answer: the message as text, `Retry-After` when set, `Connection: close` when the
    /// connection should end.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(format!(
            "{} ({})\n",
            self.message, self.reason
        ))));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(seconds) = self.retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
