//! Impact analysis: what deploying a producer's revision to a stage would do to the consumers
//! deployed there.
//!
//! The consumers come from a [`Consumers`] source (the Postgres read models) and what a
//! producer revision exposed from its build ([`Builds`]); [`assess`] gathers both
//! and checks each use with [`compat::check_use`] against what the new revision exposes and what
//! the producer exposed when the consumer was built. The platform (deploys, 1-Click Publish) and
//! the gateway's Impact call both call [`assess`].

use neo_protocol::{AppName, EntityRef, TenantName, pb};

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

/// Where builds are read from: what a producer revision exposed is what its succeeded build
/// recorded.
#[async_trait::async_trait]
pub trait Builds: Send + Sync {
    /// The state of `build` (the default state when it does not exist).
    ///
    /// # Errors
    /// When the build cannot be read for an infrastructure failure (worth retrying).
    async fn build(&self, build: &EntityRef) -> Result<pb::BuildState, String>;
}

/// Why an impact assessment could not be made: an outage, never a verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssessError {
    /// The read models could not be queried.
    #[error("impact analysis: read models unavailable: {0}")]
    ReadModels(String),
    /// A producer's build could not be read.
    #[error("impact analysis: {0}")]
    Producer(String),
}

/// What deploying a revision of `app` exposing `exposes` to `stage` of `tenant` would do to the
/// consumers deployed there.
///
/// # Errors
/// When the read models or a producer's build cannot be read.
pub async fn assess(
    consumers: &dyn Consumers,
    builds: &dyn Builds,
    (tenant, stage, app): (&str, &str, &str),
    exposes: &[pb::ExposedEntity],
) -> Result<Report, AssessError> {
    let uses = consumers
        .on_stage(tenant, stage, app)
        .await
        .map_err(AssessError::ReadModels)?;
    let mut previous = Vec::with_capacity(uses.len());
    for used in &uses {
        previous.push(exposed_at(builds, tenant, &used.dependency).await?);
    }
    Ok(analyse(
        uses.iter().zip(previous.iter().map(|p| p.as_deref())),
        exposes,
    ))
}

/// What the producer revision a consumer was built against exposed (`None`: unknown, e.g.
/// not built, or not a valid name).
async fn exposed_at(
    builds: &dyn Builds,
    tenant: &str,
    used: &pb::Dependency,
) -> Result<Option<Vec<pb::ExposedEntity>>, AssessError> {
    let (Ok(tenant), Ok(app)) = (TenantName::new(tenant), AppName::new(&used.producer_app)) else {
        return Ok(None);
    };
    let build = builds
        .build(&EntityRef::build(&tenant, &app, used.producer_revision))
        .await
        .map_err(AssessError::Producer)?;
    Ok((build.status() == pb::BuildStatus::Succeeded).then_some(build.exposes))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `reviews` r2 on the stage uses all of `catalog`'s `Product`, built against catalog r1.
    struct OneConsumer(Result<(), String>);

    #[async_trait::async_trait]
    impl Consumers for OneConsumer {
        async fn on_stage(
            &self,
            _tenant: &str,
            _stage: &str,
            _producer_app: &str,
        ) -> Result<Vec<ConsumerUse>, String> {
            self.0.clone()?;
            Ok(vec![ConsumerUse {
                consumer_app: "reviews".into(),
                consumer_revision: 2,
                dependency: pb::Dependency {
                    producer_app: "catalog".into(),
                    entity: "Product".into(),
                    producer_revision: 1,
                    fields: Vec::new(),
                },
            }])
        }
    }

    /// What catalog r1's build exposed (`None`: it was never built).
    struct Catalog(Option<Vec<pb::ExposedEntity>>);

    #[async_trait::async_trait]
    impl Builds for Catalog {
        async fn build(&self, build: &EntityRef) -> Result<pb::BuildState, String> {
            assert_eq!(
                build.to_string(),
                "acme/build/catalog_r1",
                "the revision used"
            );
            Ok(match &self.0 {
                Some(exposes) => pb::BuildState {
                    status: pb::BuildStatus::Succeeded.into(),
                    exposes: exposes.clone(),
                    ..Default::default()
                },
                None => pb::BuildState::default(),
            })
        }
    }

    fn product(fields: &[&str]) -> Vec<pb::ExposedEntity> {
        vec![pb::ExposedEntity {
            name: "Product".into(),
            fields: fields
                .iter()
                .map(|f| pb::FieldSpec {
                    name: (*f).into(),
                    r#type: "text".into(),
                    required: false,
                })
                .collect(),
        }]
    }

    async fn run(
        consumers: Result<(), String>,
        before: Option<Vec<pb::ExposedEntity>>,
    ) -> Result<Report, AssessError> {
        assess(
            &OneConsumer(consumers),
            &Catalog(before),
            ("acme", "prod", "catalog"),
            &product(&["price"]),
        )
        .await
    }

    #[tokio::test]
    async fn a_field_gone_from_what_the_consumer_was_built_against_blocks() {
        let report = run(Ok(()), Some(product(&["title", "price"])))
            .await
            .expect("assessed");
        assert_eq!(
            report.blocker_lines(),
            vec!["reviews r2: field `title` of entity `Product` of app `catalog` is gone"]
        );
    }

    #[tokio::test]
    async fn without_the_producer_revision_used_nothing_is_known_to_break() {
        let report = run(Ok(()), None).await.expect("assessed");
        assert!(report.blockers.is_empty(), "{report:?}");
    }

    #[tokio::test]
    async fn read_models_out_of_reach_are_an_outage_not_a_verdict() {
        let e = run(Err("connection refused".into()), None)
            .await
            .expect_err("no verdict");
        assert_eq!(e, AssessError::ReadModels("connection refused".into()));
    }
}
