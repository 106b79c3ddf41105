//! The process's logs and traces: the `tracing` subscriber (logs on stderr, filtered by
//! `RUST_LOG`, in colour only at a terminal) and, when an OTLP endpoint is configured, spans
//! exported over OTLP/gRPC.
//!
//! Without an endpoint there is no OpenTelemetry layer and no exporter: spans cost what any
//! `tracing` span costs, and a `traceparent` that comes in is passed on unchanged (see
//! [`neo_telemetry::trace`]). With one, every span (the gateway's `gateway.command`, the
//! platform's `command`, the reactors' `reaction`, …) is batched and sent to the collector as
//! service [`SERVICE_NAME`], and the `traceparent` written into commands and events names these
//! spans, so one request is one trace across processes.

use std::io::IsTerminal as _;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The `service.name` of the exported spans.
pub const SERVICE_NAME: &str = "neo";

/// The spans exported: Neo's own crates' (`neo_*`), the request's path. The actor runtime's
/// per-actor spans and the embedded S3's would bury them. Levels are `RUST_LOG`'s.
const EXPORTED_TARGETS: &str = "neo";

/// The log filter when `RUST_LOG` is not set.
const DEFAULT_FILTER: &str = "info,async_nats=warn";

/// Telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built (e.g. the endpoint is not a URL).
    #[error("cannot export traces to {endpoint:?}: {reason}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// Another `tracing` subscriber is already the global default.
    #[error("cannot install the tracing subscriber: {0}")]
    Subscriber(String),
}

/// What [`init`] set up. Dropping it flushes and stops the span exporter, if any: keep it
/// until the process ends, and drop it while the async runtime still runs.
#[must_use = "dropping it stops the span exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: flushing the last spans failed: {e}");
        }
    }
}

/// The OTLP/gRPC tracer provider for `endpoint` (e.g. `http://127.0.0.1:4317`), batching
/// spans of service [`SERVICE_NAME`].
///
/// Call it inside the tokio runtime (the gRPC channel is created there, and connects lazily).
///
/// # Errors
/// [`TelemetryError::Exporter`] when the exporter cannot be built from `endpoint`.
pub fn otlp_provider(endpoint: &str) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Exporter {
            endpoint: endpoint.to_owned(),
            reason: e.to_string(),
        })?;
    Ok(SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(SERVICE_NAME).build())
        .with_batch_exporter(exporter)
        .build())
}

/// Installs the process's `tracing` subscriber: logs on stderr (`RUST_LOG`, default
/// `info,async_nats=warn`), plus an OpenTelemetry layer exporting spans to `otlp_endpoint`
/// when it is given and not blank.
///
/// With an endpoint, call it inside the tokio runtime (see [`otlp_provider`]).
///
/// # Errors
/// [`TelemetryError::Exporter`] for an unusable endpoint, [`TelemetryError::Subscriber`] when
/// a subscriber is already installed.
pub fn init(otlp_endpoint: Option<&str>) -> Result<Telemetry, TelemetryError> {
    let endpoint = otlp_endpoint.map(str::trim).filter(|e| !e.is_empty());
    let provider = endpoint.map(otlp_provider).transpose()?;
    let otel = provider.as_ref().map(|p| {
        opentelemetry::global::set_tracer_provider(p.clone());
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer(SERVICE_NAME))
            .with_filter(Targets::new().with_target(EXPORTED_TARGETS, Level::TRACE))
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| DEFAULT_FILTER.into());
    tracing_subscriber::registry()
        .with(filter)
        // Colours only for a person at a terminal: a log file or pipe (`ops/up`'s logs, an
        // agent's journal) gets plain text, and the spans' fields cost less to format.
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(otel)
        .try_init()
        .map_err(|e| TelemetryError::Subscriber(e.to_string()))?;
    if let Some(endpoint) = endpoint {
        tracing::info!(
            endpoint,
            service = SERVICE_NAME,
            "exporting traces over OTLP"
        );
    }
    Ok(Telemetry { provider })
}
