//! The peer of `neo bench core`: Neo's app workload on `cqrs-es` with `postgres-es`.
//!
//! The event store a Rust user would otherwise pick, run as its README shows: a
//! [`PostgresCqrs`] over one `events` table, the aggregate loaded from its events for each
//! command, the new event inserted in a transaction whose primary key
//! `(aggregate_type, aggregate_id, sequence)` is the optimistic concurrency check (a second
//! writer of the same sequence gets `AggregateConflict`). The workload is the host phase's:
//! `entities` distinct apps × `commands_per_entity` commands (a create, then revisions), one
//! event each, `concurrency` commands in flight, through a sqlx pool of that many connections.
//!
//! The Postgres is the test harness's (`servers/postgres.rs`), which runs with `fsync`,
//! `synchronous_commit` and `full_page_writes` off: a commit does not wait for the disk, as a
//! JetStream ack does not either with its default `sync_interval`. The figures record the
//! settings the peer ran with (`peer_postgres`).
//!
//! The aggregate mirrors Neo's app aggregate (`neo_actors::aggregates::app`) closely enough
//! that both do the same work per command: the same rules for create and revisions, JSON events
//! of the same fields, past tense, with a type name and a version.

use std::sync::Arc;

use anyhow::Context as _;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::{PostgresCqrs, postgres_cqrs};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgPoolOptions;

use super::{in_parallel, share};
use crate::BenchArgs;
use crate::stats::rate;

/// The `events` table as postgres-es documents it (its `db/init.sql`); no snapshots are used.
const EVENTS_TABLE: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
)";

/// The longest description accepted, as in Neo's app aggregate.
const MAX_DESCRIPTION_CHARS: usize = 1000;

/// A command to an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppCommand {
    /// Create the app.
    Create {
        /// What the app is for.
        description: String,
    },
    /// Record a new immutable revision.
    CreateRevision {
        /// The model's digest: `sha256:` and 64 lowercase hex digits.
        digest: String,
        /// The model's size in bytes.
        size: u64,
        /// Who made it.
        author: String,
        /// Why.
        message: String,
    },
}

/// What happened to an app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AppEvent {
    /// The app was created.
    Created {
        /// What the app is for.
        description: String,
    },
    /// A revision was recorded.
    RevisionCreated {
        /// 1, 2, 3…
        number: u32,
        /// The model's digest.
        digest: String,
        /// The model's size in bytes.
        size: u64,
        /// Who made it.
        author: String,
        /// Why.
        message: String,
    },
}

impl DomainEvent for AppEvent {
    fn event_type(&self) -> String {
        match self {
            AppEvent::Created { .. } => "AppCreated",
            AppEvent::RevisionCreated { .. } => "RevisionCreated",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

/// Why an app refused a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// Create, but the app exists.
    #[error("the app already exists")]
    AlreadyExists,
    /// A revision before create.
    #[error("the app does not exist")]
    NotFound,
    /// The description is longer than 1000 characters.
    #[error("the description is longer than {MAX_DESCRIPTION_CHARS} characters")]
    DescriptionTooLong,
    /// The digest is not `sha256:` + 64 lowercase hex digits.
    #[error("the digest is not `sha256:` and 64 lowercase hex digits")]
    BadDigest,
    /// The author is empty.
    #[error("the author is empty")]
    NoAuthor,
    /// The digest equals the latest revision's.
    #[error("revision {0} already has this content")]
    Unchanged(u32),
}

/// An app: whether it exists, and its revisions so far.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct App {
    exists: bool,
    description: String,
    revisions: u32,
    latest_digest: String,
}

fn is_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

impl App {
    /// The one event `command` leads to, or why not: all the rules.
    fn decide(&self, command: AppCommand) -> Result<AppEvent, Refusal> {
        match command {
            AppCommand::Create { description } => {
                if self.exists {
                    return Err(Refusal::AlreadyExists);
                }
                if description.chars().count() > MAX_DESCRIPTION_CHARS {
                    return Err(Refusal::DescriptionTooLong);
                }
                Ok(AppEvent::Created { description })
            }
            AppCommand::CreateRevision {
                digest,
                size,
                author,
                message,
            } => {
                if !self.exists {
                    return Err(Refusal::NotFound);
                }
                if !is_digest(&digest) {
                    return Err(Refusal::BadDigest);
                }
                if author.is_empty() {
                    return Err(Refusal::NoAuthor);
                }
                if self.revisions > 0 && self.latest_digest == digest {
                    return Err(Refusal::Unchanged(self.revisions));
                }
                Ok(AppEvent::RevisionCreated {
                    number: self.revisions + 1,
                    digest,
                    size,
                    author,
                    message,
                })
            }
        }
    }
}

impl Aggregate for App {
    const TYPE: &'static str = "app";
    type Command = AppCommand;
    type Event = AppEvent;
    type Error = Refusal;
    type Services = ();

    async fn handle(
        &mut self,
        command: AppCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), Refusal> {
        let event = self.decide(command)?;
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: AppEvent) {
        match event {
            AppEvent::Created { description } => {
                self.exists = true;
                self.description = description;
            }
            AppEvent::RevisionCreated { number, digest, .. } => {
                self.revisions = number;
                self.latest_digest = digest;
            }
        }
    }
}

/// Command `j` of an entity: a create, then revisions (the host phase's `command(j)`).
fn command(j: usize) -> AppCommand {
    if j == 0 {
        AppCommand::Create {
            description: "bench".into(),
        }
    } else {
        AppCommand::CreateRevision {
            digest: format!("sha256:{j:064x}"),
            size: 1000,
            author: "bench".into(),
            message: "bench".into(),
        }
    }
}

/// The settings that decide what a commit costs, as the server reports them.
const SETTINGS: &str = "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name) \
     FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', \
     'shared_buffers', 'max_connections', 'wal_sync_method')";

/// What the peer did, and on what.
#[derive(Debug)]
pub(super) struct PeerRun {
    /// Commands per second.
    pub commands_per_s: f64,
    /// The server's version and the settings that decide what a commit costs.
    pub postgres: String,
}

/// Runs the workload on the empty database at `url` (creating its `events` table).
///
/// # Errors
/// When Postgres is unreachable, a command fails, or the table does not hold one event per
/// command afterwards.
pub(super) async fn run(url: &str, args: &BenchArgs) -> anyhow::Result<PeerRun> {
    let connections = u32::try_from(args.concurrency.max(1)).unwrap_or(u32::MAX);
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    // Open every connection before the clock starts, as NATS is connected before the host's.
    drop(futures::future::try_join_all((0..connections).map(|_| pool.acquire())).await?);
    sqlx::raw_sql(EVENTS_TABLE)
        .execute(&pool)
        .await
        .context("creating the events table")?;
    let cqrs: Arc<PostgresCqrs<App>> = Arc::new(postgres_cqrs(pool.clone(), vec![], ()));
    let (k, c, entities) = (args.commands_per_entity, args.concurrency, args.entities);
    let elapsed = in_parallel(c, |w| {
        let cqrs = cqrs.clone();
        async move {
            for i in share(w, c, entities) {
                let id = format!("e{i}");
                for j in 0..k {
                    cqrs.execute(&id, command(j))
                        .await
                        .with_context(|| format!("command {j} to {id}"))?;
                }
            }
            Ok(())
        }
    })
    .await?;
    let (events,): (i64,) = sqlx::query_as("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(
        usize::try_from(events).ok() == Some(entities * k),
        "the peer stored {events} events for {} commands",
        entities * k
    );
    let (version, settings): (String, String) = sqlx::query_as(&format!(
        "SELECT current_setting('server_version'), ({SETTINGS})"
    ))
    .fetch_one(&pool)
    .await?;
    pool.close().await;
    Ok(PeerRun {
        commands_per_s: rate(entities * k, elapsed),
        postgres: format!("PostgreSQL {version}: {settings}"),
    })
}

#[cfg(test)]
mod tests {
    use cqrs_es::test::TestFramework;

    use super::*;

    type Given = TestFramework<App>;

    fn created() -> AppEvent {
        AppEvent::Created {
            description: "bench".into(),
        }
    }

    fn revision(number: u32, j: usize) -> AppEvent {
        AppEvent::RevisionCreated {
            number,
            digest: format!("sha256:{j:064x}"),
            size: 1000,
            author: "bench".into(),
            message: "bench".into(),
        }
    }

    #[test]
    fn create_then_revisions_numbered_from_one() {
        Given::with(())
            .given_no_previous_events()
            .when(command(0))
            .then_expect_events(vec![created()]);
        Given::with(())
            .given(vec![created()])
            .when(command(1))
            .then_expect_events(vec![revision(1, 1)]);
        Given::with(())
            .given(vec![created(), revision(1, 1)])
            .when(command(2))
            .then_expect_events(vec![revision(2, 2)]);
    }

    #[test]
    fn refusals() {
        Given::with(())
            .given(vec![created()])
            .when(command(0))
            .then_expect_error(Refusal::AlreadyExists);
        Given::with(())
            .given_no_previous_events()
            .when(command(1))
            .then_expect_error(Refusal::NotFound);
        Given::with(())
            .given(vec![created(), revision(1, 1)])
            .when(command(1))
            .then_expect_error(Refusal::Unchanged(1));
        Given::with(())
            .given_no_previous_events()
            .when(AppCommand::Create {
                description: "x".repeat(MAX_DESCRIPTION_CHARS + 1),
            })
            .then_expect_error(Refusal::DescriptionTooLong);
        let bad = |digest: &str, author: &str| AppCommand::CreateRevision {
            digest: digest.into(),
            size: 1,
            author: author.into(),
            message: String::new(),
        };
        Given::with(())
            .given(vec![created()])
            .when(bad("sha256:ABC", "me"))
            .then_expect_error(Refusal::BadDigest);
        Given::with(())
            .given(vec![created()])
            .when(bad(&format!("sha256:{:064x}", 7), ""))
            .then_expect_error(Refusal::NoAuthor);
    }
}
