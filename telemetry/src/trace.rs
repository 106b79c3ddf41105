//! W3C trace context across process boundaries: a span's `traceparent`, and a span made the
//! child of a `traceparent` that came in a command, an event header or a desired state.
//!
//! A request is one trace from the gateway through NATS to the entity, the reactors and the
//! runtime agent: each hop writes its span's [`traceparent`] into what it sends
//! (`CommandRequest.traceparent`, the `traceparent` header of every event,
//! `DesiredPodgroup.traceparent`), and the receiver calls [`set_parent`] on its own span before
//! entering it:
//!
//! ```
//! use neo_telemetry::trace;
//!
//! # let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
//! let span = tracing::info_span!("apply", podgroup = "shop_dev");
//! trace::set_parent(&span, traceparent); // before the span is entered
//! let _entered = span.enter();
//! // … work; what it sends carries `trace::current_traceparent()`
//! ```
//!
//! The spans get a trace context only in a process whose subscriber has a
//! `tracing-opentelemetry` layer. Elsewhere [`traceparent`] is `None`, [`current_traceparent`]
//! is empty and [`set_parent`] does nothing, so a caller passes the incoming `traceparent` on
//! unchanged (see [`traceparent_or`]) and the trace still holds together across it.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use neo_protocol::headers::TRACEPARENT;

/// Why a span could not be made the child of a `traceparent`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The string is empty: nothing to continue.
    #[error("no traceparent")]
    Empty,
    /// The string is not a valid W3C `traceparent` (`00-{trace id}-{span id}-{flags}`).
    #[error("not a W3C traceparent ({len} characters)")]
    Malformed {
        /// Its length (the value itself is outside data and is not echoed).
        len: usize,
    },
    /// The span cannot take a parent: this process has no OpenTelemetry layer, the span is
    /// disabled by the filter, or it was already entered.
    #[error("the span cannot take a remote parent: {0}")]
    Span(String),
}

/// Reads one incoming `traceparent`.
struct Incoming<'a>(&'a str);

impl Extractor for Incoming<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == TRACEPARENT).then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec![TRACEPARENT]
    }
}

/// Collects the outgoing `traceparent`.
#[derive(Default)]
struct Outgoing(Option<String>);

impl Injector for Outgoing {
    fn set(&mut self, key: &str, value: String) {
        if key == TRACEPARENT {
            self.0 = Some(value);
        }
    }
}

/// The W3C `traceparent` of `span`, or `None` when it has no trace context (no OpenTelemetry
/// layer in this process, or the span is disabled).
///
/// Builds the span's OpenTelemetry data: call [`set_parent`] on it before this.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut out = Outgoing::default();
    TraceContextPropagator::new().inject_context(&cx, &mut out);
    out.0
}

/// The `traceparent` of the current span, or an empty string (the protobuf fields' "none")
/// when it has no trace context.
pub fn current_traceparent() -> String {
    traceparent(&tracing::Span::current()).unwrap_or_default()
}

/// `span`'s `traceparent`, or `incoming` when `span` has none: a process that does not trace
/// passes the trace it was given on unchanged.
pub fn traceparent_or(span: &tracing::Span, incoming: &str) -> String {
    traceparent(span).unwrap_or_else(|| incoming.to_owned())
}

/// Makes `span` the child of the remote span that `traceparent` names, so it joins that trace.
///
/// Call it before the span is first entered (or instrumented future first polled).
///
/// # Errors
/// [`TraceError::Empty`] or [`TraceError::Malformed`] for the string;
/// [`TraceError::Span`] when the span cannot take a parent. The span is unchanged then: it
/// stays the child of the span current where it was created, if any.
pub fn try_set_parent(span: &tracing::Span, traceparent: &str) -> Result<(), TraceError> {
    if traceparent.is_empty() {
        return Err(TraceError::Empty);
    }
    let cx = TraceContextPropagator::new().extract(&Incoming(traceparent));
    if !cx.span().span_context().is_valid() {
        return Err(TraceError::Malformed {
            len: traceparent.len(),
        });
    }
    span.set_parent(cx)
        .map_err(|e| TraceError::Span(e.to_string()))
}

/// Makes `span` the child of `traceparent` when it can, and says whether it did; an empty or
/// malformed `traceparent`, or a process without OpenTelemetry, leaves the span as it is (see
/// [`try_set_parent`] for the reasons). Call it before the span is first entered.
pub fn set_parent(span: &tracing::Span, traceparent: &str) -> bool {
    match try_set_parent(span, traceparent) {
        Ok(()) => true,
        Err(TraceError::Empty) => false,
        Err(e) => {
            tracing::trace!(error = %e, "span not joined to the incoming trace");
            false
        }
    }
}

/// The trace id (32 lowercase hex digits) of a valid `traceparent`.
pub fn trace_id(traceparent: &str) -> Option<String> {
    let cx = TraceContextPropagator::new().extract(&Incoming(traceparent));
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn trace_id_of_a_valid_traceparent() {
        assert_eq!(
            trace_id(TP).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(trace_id(""), None);
        assert_eq!(trace_id("00-zz-b7ad6b7169203331-01"), None);
    }

    #[test]
    fn a_span_joins_the_incoming_trace_and_hands_it_on() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("child");
            assert!(set_parent(&span, TP));
            let out = traceparent(&span).expect("a traced span has a traceparent");
            assert_eq!(trace_id(&out), trace_id(TP));
            assert_ne!(out, TP, "the child has its own span id");
            let _entered = span.enter();
            assert_eq!(current_traceparent(), out);
            let late = tracing::info_span!("late");
            let _ = traceparent(&late);
            assert!(matches!(
                try_set_parent(&late, TP),
                Err(TraceError::Span(_))
            ));
        });
    }

    #[test]
    fn without_an_opentelemetry_layer_nothing_changes() {
        let span = tracing::info_span!("s");
        assert_eq!(traceparent(&span), None);
        assert_eq!(traceparent_or(&span, TP), TP);
        assert_eq!(current_traceparent(), "");
        assert!(!set_parent(&span, TP));
        assert_eq!(try_set_parent(&span, ""), Err(TraceError::Empty));
        assert_eq!(
            try_set_parent(&span, "garbage"),
            Err(TraceError::Malformed { len: 7 })
        );
    }
}
