//! The platform's metrics, in one registry every component records into and `neo serve`
//! exposes as Prometheus text (`/metrics`).
//!
//! | metric | labels | what |
//! | --- | --- | --- |
//! | `neo_commands_total` | kind, outcome | commands decided: accepted, duplicate, rejected, aborted, error |
//! | `neo_conflicts_total` | kind | appends that lost a race and were decided again |
//! | `neo_append_seconds` | kind | time to append a command's events to JetStream |
//! | `neo_live_actors` | kind | entity actors live in this process |
//! | `neo_consumer_lag` | consumer | events a durable consumer (reactor, enqueuer) has yet to process |
//! | `neo_builds_total` | outcome | builds ended by this process's workers: succeeded, failed |
//! | `neo_build_seconds` | | a build's duration in a worker |
//! | `neo_rollouts_total` | status | rollouts recorded: succeeded, failed |

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a command's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// The entity kind.
    pub kind: &'static str,
    /// accepted, duplicate, rejected, aborted or error.
    pub outcome: &'static str,
}

/// A label set with just the entity kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The entity kind.
    pub kind: &'static str,
}

/// A label set with a consumer name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabel {
    /// The durable consumer.
    pub consumer: String,
}

/// A label set of the stage edge: the stage and why a request was refused (`rate_client`,
/// `rate_app`, `header_size`, `body_size`, `path`, `method`, `slow_body`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EdgeLabels {
    /// The stage.
    pub stage: String,
    /// Why.
    pub reason: &'static str,
}

/// A label set with an outcome or status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// The outcome.
    pub outcome: &'static str,
}

fn append_histogram() -> Histogram {
    // 100 µs … ~1.6 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 15))
}

fn build_histogram() -> Histogram {
    // 10 ms … ~160 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Commands decided.
    pub commands: Family<CommandLabels, Counter>,
    /// Append conflicts.
    pub conflicts: Family<KindLabel, Counter>,
    /// Append latency.
    pub append_seconds: Family<KindLabel, Histogram, fn() -> Histogram>,
    /// Live actors.
    pub live_actors: Family<KindLabel, Gauge>,
    /// Consumer lag.
    pub consumer_lag: Family<ConsumerLabel, Gauge>,
    /// Builds ended.
    pub builds: Family<OutcomeLabel, Counter>,
    /// Build durations.
    pub build_seconds: Histogram,
    /// Rollouts recorded.
    pub rollouts: Family<OutcomeLabel, Counter>,
    /// Requests the stage edge refused, by stage and reason.
    pub edge_refusals: Family<EdgeLabels, Counter>,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("neo");
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register(
            "commands",
            "Commands decided, by kind and outcome",
            commands.clone(),
        );
        let conflicts = Family::<KindLabel, Counter>::default();
        registry.register(
            "conflicts",
            "Appends that lost a race to another writer and were decided again",
            conflicts.clone(),
        );
        let append_seconds =
            Family::<KindLabel, Histogram, fn() -> Histogram>::new_with_constructor(
                append_histogram,
            );
        registry.register(
            "append_seconds",
            "Time to append a command's events",
            append_seconds.clone(),
        );
        let live_actors = Family::<KindLabel, Gauge>::default();
        registry.register(
            "live_actors",
            "Entity actors live in this process",
            live_actors.clone(),
        );
        let consumer_lag = Family::<ConsumerLabel, Gauge>::default();
        registry.register(
            "consumer_lag",
            "Events a durable consumer has yet to process",
            consumer_lag.clone(),
        );
        let builds = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "builds",
            "Builds ended by this process's workers",
            builds.clone(),
        );
        let build_seconds = build_histogram();
        registry.register(
            "build_seconds",
            "A build's duration in a worker",
            build_seconds.clone(),
        );
        let rollouts = Family::<OutcomeLabel, Counter>::default();
        registry.register("rollouts", "Rollouts recorded, by status", rollouts.clone());
        let edge_refusals = Family::<EdgeLabels, Counter>::default();
        registry.register(
            "edge_refusals",
            "Requests the stage edge refused, by stage and reason",
            edge_refusals.clone(),
        );
        Self {
            registry,
            commands,
            conflicts,
            append_seconds,
            live_actors,
            consumer_lag,
            builds,
            build_seconds,
            rollouts,
            edge_refusals,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            text = format!("# cannot encode metrics: {e}\n");
        }
        text
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_in_the_text_exposition() {
        let m = global();
        m.commands
            .get_or_create(&CommandLabels {
                kind: "app",
                outcome: "accepted",
            })
            .inc();
        let text = m.encode();
        assert!(
            text.contains("neo_commands_total{kind=\"app\",outcome=\"accepted\"}"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE neo_build_seconds histogram"),
            "{text}"
        );
    }
}
