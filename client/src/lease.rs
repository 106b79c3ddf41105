//! The agents' leases: one active agent per stage (or lease group), fenced.
//!
//! A lease is an entry of the `NEO_AGENT_LEASES` bucket (its replica count the installation's,
//! see [`crate::streams`]), key `{stage}` or `{stage}.{group}`. Entries expire [`TTL`] after
//! their last write, so a holder renews every [`RENEW_EVERY`]; a standby tries to create the
//! entry as often, and wins once the holder stopped renewing. The entry's first revision is
//! the lease's **term**, its fencing token: every stage command carries it ([`Fence`]) and the
//! intake refuses a term that is not the current entry's ([`check`]), so an agent that lost its
//! lease (paused, cut off) cannot act beside its successor.
//!
//! Reads for the check go to the stream's leader (`STREAM.MSG.GET`), not to a replica that may
//! lag.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use neo_protocol::{StageName, pb, subjects};
use prost::Message;

use crate::streams::StreamError;

/// How long a lease lives after its last renewal.
pub const TTL: Duration = Duration::from_secs(3);
/// How often a holder renews, and a standby tries to take the lease.
pub const RENEW_EVERY: Duration = Duration::from_millis(750);

/// Opens (or creates) the leases bucket.
///
/// # Errors
/// When JetStream refuses.
pub async fn open(js: &jetstream::Context) -> Result<kv::Store, StreamError> {
    crate::streams::ensure_bucket(
        js,
        kv::Config {
            bucket: subjects::AGENT_LEASES_BUCKET.into(),
            description: "the active agent of each stage: holder and term (fencing token)".into(),
            history: 1,
            max_age: TTL,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        },
    )
    .await
}

/// What went wrong with a lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds it, or it lapsed before this renewal.
    #[error("the lease is held by another agent or lapsed")]
    Lost,
    /// JetStream did not answer as it should (retry).
    #[error("JetStream: {0}")]
    JetStream(String),
}

/// A lease this process holds: its key, term and the revision of its last write.
#[derive(Debug, Clone)]
pub struct Held {
    /// The bucket key.
    pub key: String,
    /// The fencing token.
    pub term: u64,
    /// The revision of the last write (the next renewal expects it).
    pub revision: u64,
    /// The value written (holder, group, term).
    pub lease: pb::AgentLease,
}

/// Takes the lease `key` for `holder` (in `group`) if nobody holds it; `Ok(None)` when
/// someone does.
///
/// # Errors
/// When JetStream does not answer.
pub async fn try_acquire(
    kv: &kv::Store,
    key: &str,
    group: &str,
    holder: &str,
) -> Result<Option<Held>, LeaseError> {
    let lease = pb::AgentLease {
        group: group.to_owned(),
        term: 0,
        holder: holder.to_owned(),
    };
    let revision = match kv.create(key, lease.encode_to_vec().into()).await {
        Ok(revision) => revision,
        Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => return Ok(None),
        Err(e) => return Err(LeaseError::JetStream(e.to_string())),
    };
    // The term is the creating revision; written into the value at once, so readers need
    // not know which revision created the entry.
    let held = Held {
        key: key.to_owned(),
        term: revision,
        revision,
        lease: pb::AgentLease {
            term: revision,
            ..lease
        },
    };
    renew(kv, held).await.map(Some)
}

/// Renews `held` (same term), answering the lease with its new revision.
///
/// # Errors
/// [`LeaseError::Lost`] when the entry changed or lapsed since; else JetStream's error.
pub async fn renew(kv: &kv::Store, mut held: Held) -> Result<Held, LeaseError> {
    match kv
        .update(&held.key, held.lease.encode_to_vec().into(), held.revision)
        .await
    {
        Ok(revision) => {
            held.revision = revision;
            Ok(held)
        }
        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(LeaseError::Lost),
        Err(e) => Err(LeaseError::JetStream(e.to_string())),
    }
}

/// Gives `held` up at once (a graceful stop), so a standby takes over without waiting out
/// the TTL. Best effort: a lease not released lapses by itself.
pub async fn release(kv: &kv::Store, held: &Held) {
    if let Err(e) = kv
        .purge_expect_revision(&held.key, Some(held.revision))
        .await
    {
        tracing::debug!(key = %held.key, error = %e, "lease not released (it will lapse)");
    }
}

/// The current holder of lease `key`, read from the bucket's leader (`None`: nobody).
///
/// # Errors
/// When JetStream does not answer.
pub async fn current(kv: &kv::Store, key: &str) -> Result<Option<pb::AgentLease>, LeaseError> {
    let subject = format!("$KV.{}.{key}", subjects::AGENT_LEASES_BUCKET);
    match kv.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => {
            // A purge leaves a marker with an empty body: nobody holds it.
            if message.payload.is_empty() {
                return Ok(None);
            }
            pb::AgentLease::decode(message.payload)
                .map(Some)
                .map_err(|e| LeaseError::JetStream(format!("undecodable lease {key}: {e}")))
        }
        Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
            Ok(None)
        }
        Err(e) => Err(LeaseError::JetStream(e.to_string())),
    }
}

/// Why a stage command's lease is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No lease, a lapsed one, or another agent's term now: the sender must not act.
    #[error("{0}")]
    Fenced(String),
    /// The lease could not be read now: retry.
    #[error("{0}")]
    Unreadable(String),
}

/// Whether the agent of `stage` may act under `lease`.
///
/// # Errors
/// [`Refusal::Fenced`] when no lease was sent, it lapsed, or another agent holds it now;
/// [`Refusal::Unreadable`] when the bucket does not answer.
pub async fn check(
    kv: &kv::Store,
    stage: &StageName,
    lease: Option<&pb::AgentLease>,
) -> Result<(), Refusal> {
    let Some(lease) = lease.filter(|l| l.term != 0) else {
        return Err(Refusal::Fenced(format!(
            "the agent of stage {stage} sent no lease: only the active agent may act"
        )));
    };
    let key = subjects::agent_lease_key(stage, &lease.group);
    match current(kv, &key).await {
        Ok(Some(now)) if now.term == lease.term => Ok(()),
        Ok(Some(now)) => Err(Refusal::Fenced(format!(
            "stale lease term {} for {key}: agent {} holds term {} now",
            lease.term, now.holder, now.term
        ))),
        Ok(None) => Err(Refusal::Fenced(format!(
            "the lease {key} (term {}) lapsed: only the active agent may act",
            lease.term
        ))),
        Err(e) => Err(Refusal::Unreadable(format!(
            "the lease {key} cannot be read now ({e}); retry"
        ))),
    }
}

/// The lease an agent's commands carry: set while it holds one, cleared (term 0) when it
/// loses it. Clones share the value.
#[derive(Debug, Clone, Default)]
pub struct Fence {
    group: String,
    term: Arc<AtomicU64>,
}

impl Fence {
    /// The fence of lease group `group` ("" for the stage's own), holding nothing yet.
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
            term: Arc::default(),
        }
    }

    /// Acts under `term` from now on (0: under none).
    pub fn set(&self, term: u64) {
        self.term.store(term, Ordering::SeqCst);
    }

    /// The lease to stamp on a command.
    pub fn lease(&self) -> pb::AgentLease {
        pb::AgentLease {
            group: self.group.clone(),
            term: self.term.load(Ordering::SeqCst),
            holder: String::new(),
        }
    }
}
