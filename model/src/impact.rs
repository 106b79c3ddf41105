//! Impact analysis: what deploying a producer's revision to a stage would do to the consumers
//! deployed there.
//!
//! The consumers come from a [`Consumers`] source (the Postgres read models); each use is
//! checked with [`compat::check_use`] against what the new revision exposes and what the
//! producer exposed when the consumer was built.

use neo_protocol::pb;

use crate::compat::{self, Finding, Severity};

/// A consumer deployed on a stage, and what it uses of one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerUse {
    /// The consumer app.
    pub consumer_app: String,
    /// The consumer's revision (its current release on the stage).
    pub consumer_revision: u32,
    /// What it uses: the entity and fields, resolved to the producer revision it was built
    /// against.
    pub dependency: pb::Dependency,
}

/// Where the consumers of a stage come from.
#[async_trait::async_trait]
pub trait Consumers: Send + Sync {
    /// The consumers of `producer_app` deployed on `stage` (their current release).
    async fn on_stage(
        &self,
        tenant: &str,
        stage: &str,
        producer_app: &str,
    ) -> Result<Vec<ConsumerUse>, String>;
}

/// One finding about one consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerFinding {
    /// The consumer app.
    pub consumer_app: String,
    /// Its revision.
    pub consumer_revision: u32,
    /// What happens to it.
    pub finding: Finding,
}

impl std::fmt::Display for ConsumerFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} r{}: {}",
            self.consumer_app, self.consumer_revision, self.finding.message
        )
    }
}

/// Blockers and warnings of one deploy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// What would break.
    pub blockers: Vec<ConsumerFinding>,
    /// What may break.
    pub warnings: Vec<ConsumerFinding>,
}

impl Report {
    /// The blockers, one line each, as recorded in a blocked or forced deploy.
    pub fn blocker_lines(&self) -> Vec<String> {
        self.blockers.iter().map(ToString::to_string).collect()
    }
}

/// Checks each use against `exposes` (the new revision). `previous` gives, for a use, what the
/// producer exposed at the revision the consumer was built against (`None`: unknown).
pub fn analyse<'a>(
    uses: impl IntoIterator<Item = (&'a ConsumerUse, Option<&'a [pb::ExposedEntity]>)>,
    exposes: &[pb::ExposedEntity],
) -> Report {
    let mut report = Report::default();
    for (consumer, previous) in uses {
        for finding in compat::check_use(&consumer.dependency, exposes, previous) {
            let severity = finding.severity;
            let item = ConsumerFinding {
                consumer_app: consumer.consumer_app.clone(),
                consumer_revision: consumer.consumer_revision,
                finding,
            };
            match severity {
                Severity::Blocker => report.blockers.push(item),
                Severity::Warning => report.warnings.push(item),
            }
        }
    }
    report
}
