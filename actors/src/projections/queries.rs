//! Questions the read models answer, for impact analysis and tooling.

use neo_protocol::pb;
use sqlx::PgPool;

use super::ProjectionError;

/// A consumer app whose current release on a stage uses an entity of a producer app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerUse {
    /// The consuming app.
    pub consumer_app: String,
    /// The consumer's revision that the stage's current release runs.
    pub consumer_revision: u32,
    /// What it uses: producer app, entity, the producer revision it was built against and
    /// the fields it reads (empty: the whole entity).
    pub dependency: pb::Dependency,
}

/// The consumers of `producer_app` whose current release on `stage` is a revision that
/// depends on it, with what they use; ordered by consumer app, then entity.
///
/// # Guarantees
/// Reads the read models as the projection last left them: as fresh as its position.
///
/// # Errors
/// [`ProjectionError::Database`] when Postgres fails; [`ProjectionError::Corrupt`] when a
/// stored revision number does not fit a `u32`.
pub async fn consumers_on_stage(
    pool: &PgPool,
    tenant: &str,
    stage: &str,
    producer_app: &str,
) -> Result<Vec<ConsumerUse>, ProjectionError> {
    let rows: Vec<(String, i64, String, String, i64, Vec<String>)> = sqlx::query_as(
        "SELECT e.consumer_app, e.consumer_revision, e.producer_app, e.entity,
                e.producer_revision, e.fields
         FROM deployments d
         JOIN dependency_edges e
           ON e.tenant = d.tenant AND e.consumer_app = d.app AND e.consumer_revision = d.revision
         WHERE d.tenant = $1 AND d.stage = $2 AND e.producer_app = $3
         ORDER BY e.consumer_app, e.entity",
    )
    .bind(tenant)
    .bind(stage)
    .bind(producer_app)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(
            |(consumer_app, consumer_revision, producer_app, entity, producer_revision, fields)| {
                Ok(ConsumerUse {
                    consumer_app,
                    consumer_revision: revision(consumer_revision)?,
                    dependency: pb::Dependency {
                        producer_app,
                        entity,
                        producer_revision: revision(producer_revision)?,
                        fields,
                    },
                })
            },
        )
        .collect()
}

fn revision(value: i64) -> Result<u32, ProjectionError> {
    u32::try_from(value)
        .map_err(|_| ProjectionError::Corrupt(format!("revision {value} is out of range")))
}
