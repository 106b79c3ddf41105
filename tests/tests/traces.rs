//! One trace follows a request: the gateway's span, the platform's `command` span behind NATS,
//! the reactor's `reaction` span and the command it sends, checked with an in-process span
//! exporter; the stored events' `traceparent` headers name the spans that wrote them.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::sync::Arc;
use std::time::Duration;

use neo_actors::reactor::{self, podgroups::PodgroupOnFirstRelease};
use neo_protocol::{headers, subjects};
use neo_telemetry::trace;
use neo_tests::gateway::{Stack, req};
use opentelemetry::trace::{SpanId, TraceId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Installs the test's subscriber: every INFO span goes to an in-memory exporter as it ends.
fn in_memory_spans() -> InMemorySpanExporter {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("neo-tests")))
        .try_init()
        .unwrap();
    exporter
}

/// The string value of `span`'s attribute `key`.
fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The one finished span named `name` whose attribute `key` is `value`.
fn one<'a>(spans: &'a [SpanData], name: &str, key: &str, value: &str) -> &'a SpanData {
    let found: Vec<_> = spans
        .iter()
        .filter(|s| s.name == name && attr(s, key).as_deref() == Some(value))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one `{name}` span with {key}={value}: {found:#?}"
    );
    found[0]
}

fn ids(span: &SpanData) -> (TraceId, SpanId) {
    (span.span_context.trace_id(), span.span_context.span_id())
}

/// The `traceparent` header of every event of `tenant` in `NEO_EVENTS`, by event type.
async fn stored_traceparents(stack: &Stack, tenant: &str) -> Vec<(String, String)> {
    let js = async_nats::jetstream::new(stack.platform.client.clone());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut found = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let (entity, event_type) = subjects::parse_event(&message.subject).unwrap();
        if entity.tenant.as_str() == tenant {
            let traceparent = message
                .headers
                .get(headers::TRACEPARENT)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            found.push((event_type, traceparent));
        }
    }
    found
}

/// The span id of a `traceparent`.
fn span_id(traceparent: &str) -> SpanId {
    let id = traceparent.split('-').nth(2).unwrap();
    SpanId::from_hex(id).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_spans_gateway_actor_and_reactor() {
    let exporter = in_memory_spans();
    let stack = Stack::start().await.unwrap();
    let js = stack.platform.store.context().clone();
    let reactor = reactor::run(
        js,
        stack.platform.platform.clone(),
        Arc::new(PodgroupOnFirstRelease),
    );
    let people = stack.people().await.unwrap();
    let dave = people.dave.as_str();
    stack
        .app_with_revisions(dave, "acme", "shop", &[b"one"])
        .await
        .unwrap();
    stack.built(dave, "acme", "shop", 1, 1).await.unwrap();
    exporter.reset();

    // One call: Deploy. Its ReleaseCreated makes the reactor create the podgroup.
    let mut deployments = stack.deployments(dave);
    deployments
        .deploy(req::deploy("acme", "shop", "dev", 1))
        .await
        .unwrap();
    let mut spans = Vec::new();
    for _ in 0..100 {
        spans = exporter.get_finished_spans().unwrap();
        let podgroup_done = spans
            .iter()
            .any(|s| s.name == "command" && attr(s, "kind").as_deref() == Some("podgroup"));
        let reaction_done = spans.iter().any(|s| s.name == "reaction");
        if podgroup_done && reaction_done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // gateway.command → (NATS) command deployment → reaction → command podgroup.
    let gateway = one(&spans, "gateway.command", "kind", "deployment");
    let deployment = one(&spans, "command", "kind", "deployment");
    let reaction = one(&spans, "reaction", "reactor", "podgroup-on-first-release");
    let podgroup = one(&spans, "command", "kind", "podgroup");
    let (trace_id, gateway_id) = ids(gateway);
    for span in [deployment, reaction, podgroup] {
        assert_eq!(span.span_context.trace_id(), trace_id, "{span:#?}");
    }
    assert_eq!(
        gateway.parent_span_id,
        SpanId::INVALID,
        "the gateway starts the trace"
    );
    assert_eq!(deployment.parent_span_id, gateway_id);
    assert!(
        deployment.parent_span_is_remote,
        "the command came over NATS"
    );
    assert_eq!(reaction.parent_span_id, deployment.span_context.span_id());
    assert_eq!(podgroup.parent_span_id, reaction.span_context.span_id());
    assert_eq!(
        attr(deployment, "entity").as_deref(),
        Some("acme/deployment/shop_dev")
    );
    assert_eq!(
        attr(reaction, "event_type").as_deref(),
        Some("ReleaseCreated")
    );
    assert_eq!(attr(deployment, "outcome").as_deref(), Some("accepted"));
    assert!(attr(deployment, "command_id").is_some_and(|id| !id.is_empty()));

    // The events carry the span of the command that wrote them, in the same trace.
    let events = stored_traceparents(&stack, "acme").await;
    let of = |event_type: &str| {
        let (_, tp) = events
            .iter()
            .find(|(t, _)| t == event_type)
            .unwrap_or_else(|| panic!("no {event_type} event in {events:?}"));
        tp.clone()
    };
    let release = of("ReleaseCreated");
    assert_eq!(trace::trace_id(&release), Some(trace_id.to_string()));
    assert_eq!(span_id(&release), deployment.span_context.span_id());
    let created = of("PodgroupCreated");
    assert_eq!(trace::trace_id(&created), Some(trace_id.to_string()));
    assert_eq!(span_id(&created), podgroup.span_context.span_id());

    reactor.abort();
}
