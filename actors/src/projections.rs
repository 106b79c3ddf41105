//! Projections: read models of the event log in Postgres, for queries the entities cannot
//! answer alone (which apps consume this one, what runs where).
//!
//! One runner follows stream `NEO_EVENTS` in order from the position stored in Postgres + 1,
//! decodes each event and applies batches of them in one transaction that also stores the new
//! position (`projection_positions`). So a crash loses nothing and applies nothing twice, and
//! dropping the tables and replaying from sequence 1 rebuilds them exactly.
//!
//! - [`decode`]: subject, headers and payload → a typed event (pure).
//! - [`apply`]: the SQL of each event type.
//! - [`migrations`]: the embedded schema (`actors/migrations/*.sql`).
//! - [`queries`]: what the read models answer, e.g. [`consumers_on_stage`].
//! - `runner`: the consumer, batching and the stored position.
//!
//! # Tables
//!
//! | table | key | from |
//! | --- | --- | --- |
//! | `projection_positions` | projection | every batch |
//! | `tenants` | tenant | `TenantCreated`, `StageAdded`, `StageRemoved`, `QuotaSet`, `TenantSuspended`, `TenantResumed` |
//! | `tenant_members` | tenant, user_name | `MemberSet`, `MemberRemoved` |
//! | `apps` | tenant, app | `AppCreated`, `AppArchived` |
//! | `revisions` | tenant, app, number | `RevisionCreated` |
//! | `builds` | tenant, build_id | `BuildRequested`, `BuildStarted`, `BuildSucceeded`, `BuildFailed`, `BuildCancelled` |
//! | `dependency_edges` | tenant, consumer_app, consumer_revision, producer_app, entity | `BuildSucceeded.dependencies` |
//! | `exposed_fields` | tenant, app, revision, entity, field | `BuildSucceeded.exposes` |
//! | `releases` | tenant, app, stage, number | `ReleaseCreated`, `RolloutRecorded` |
//! | `deployments` | tenant, app, stage | the current release: `ReleaseCreated`, `RolloutRecorded` |
//! | `blocked_deploys` | tenant, app, stage, seq | `DeployBlocked` (impact analysis refused a deploy) |
//!
//! Every row has `last_seq`, the stream sequence of the event that last changed it.

pub mod apply;
pub mod decode;
pub mod migrations;
pub mod queries;
mod runner;

pub use queries::{ConsumerUse, consumers_on_stage};
/// The sqlx this crate's API speaks ([`PgPool`]), for callers querying the read models.
pub use sqlx;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The name of the read models' row in `projection_positions`.
pub const PROJECTION: &str = "read_models";
/// The most events applied in one transaction.
pub const MAX_BATCH: usize = 500;

/// Why a projection operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Postgres refused or could not be reached.
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    /// Postgres refused to apply an event; its batch was rolled back, to be retried.
    #[error("applying event {sequence}: {source}")]
    Apply {
        /// The event's stream sequence.
        sequence: u64,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// The schema could not be migrated.
    #[error("migrating the read models: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// NATS or JetStream failed (stream, consumer or message).
    #[error("nats: {0}")]
    Nats(String),
    /// Another runner (or a rebuild) moved the stored position while this one read events;
    /// nothing was applied, and following resumes from the stored position.
    #[error("the projection's position moved from {expected} to {found} under this runner")]
    Moved {
        /// The position this runner started its batch from.
        expected: u64,
        /// The position found in Postgres.
        found: u64,
    },
    /// [`Projections::wait_for`] gave up.
    #[error("the projection reached sequence {position}, not {sequence}, within {waited:?}")]
    Timeout {
        /// The sequence waited for.
        sequence: u64,
        /// The position reached.
        position: u64,
        /// How long it waited.
        waited: Duration,
    },
    /// A stored value is out of range (the tables were written by something else).
    #[error("corrupt read model: {0}")]
    Corrupt(String),
}

pub(crate) fn nats(e: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Nats(e.to_string())
}

/// The read models in one Postgres database, and the runner that writes them.
#[derive(Debug, Clone)]
pub struct Projections {
    pool: PgPool,
    skipped: Arc<AtomicU64>,
}

impl Projections {
    /// Connects to `database_url` (`postgres://user@host:port/database`) and migrates the
    /// schema.
    ///
    /// # Errors
    /// [`ProjectionError::Database`] when Postgres cannot be reached;
    /// [`ProjectionError::Migrate`] when the schema cannot be migrated.
    pub async fn connect(database_url: &str) -> Result<Projections, ProjectionError> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect(database_url)
            .await?;
        Self::with_pool(pool).await
    }

    /// Uses `pool` and migrates the schema.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn with_pool(pool: PgPool) -> Result<Projections, ProjectionError> {
        let projections = Projections {
            pool,
            skipped: Arc::new(AtomicU64::new(0)),
        };
        projections.migrate().await?;
        Ok(projections)
    }

    /// The connection pool, for queries on the read models.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How many events this handle (and its clones) skipped because they could not be read;
    /// each was logged with its sequence.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// The last stream sequence applied (0: none).
    ///
    /// # Errors
    /// [`ProjectionError::Database`]; [`ProjectionError::Corrupt`] for a negative position.
    pub async fn position(&self) -> Result<u64, ProjectionError> {
        let stored: Option<i64> =
            sqlx::query_scalar("SELECT sequence FROM projection_positions WHERE projection = $1")
                .bind(PROJECTION)
                .fetch_optional(&self.pool)
                .await?;
        position_from(stored)
    }

    /// Waits until the projection has applied `sequence`, polling its position.
    ///
    /// # Errors
    /// [`ProjectionError::Timeout`] after `timeout`; [`ProjectionError::Database`].
    pub async fn wait_for(&self, sequence: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let started = Instant::now();
        loop {
            let position = self.position().await?;
            if position >= sequence {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(ProjectionError::Timeout {
                    sequence,
                    position,
                    waited: timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops every read-model table and the stored position, migrates again and replays the
    /// stream from sequence 1. Returns the position reached.
    ///
    /// # Guarantees
    /// The tables equal what following the stream from the start would have built. A runner
    /// left running meanwhile finds its position moved and resumes from the stored one.
    ///
    /// # Errors
    /// As [`catch_up`](Self::catch_up), and [`ProjectionError::Migrate`].
    pub async fn rebuild(
        &self,
        js: &async_nats::jetstream::Context,
    ) -> Result<u64, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        let drop = format!(
            "DROP TABLE IF EXISTS {} CASCADE",
            migrations::TABLES.join(", ")
        );
        sqlx::raw_sql(&drop).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM _sqlx_migrations WHERE version = ANY($1)")
            .bind(migrations::versions())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!("read models dropped; replaying the event log");
        self.migrate().await?;
        let position = self.catch_up(js).await?;
        tracing::info!(position, "read models rebuilt");
        Ok(position)
    }

    async fn migrate(&self) -> Result<(), ProjectionError> {
        migrations::migrator().await?.run(&self.pool).await?;
        sqlx::query(
            "INSERT INTO projection_positions (projection, sequence) VALUES ($1, 0)
             ON CONFLICT (projection) DO NOTHING",
        )
        .bind(PROJECTION)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn position_from(stored: Option<i64>) -> Result<u64, ProjectionError> {
    let stored = stored.unwrap_or(0);
    u64::try_from(stored)
        .map_err(|_| ProjectionError::Corrupt(format!("stored position {stored} is negative")))
}
