//! The event store: append with optimistic concurrency, load, and snapshots.
//!
//! [`EventStore`] is what the entity host needs from a log. [`jetstream::JetStreamStore`] is the
//! real one; [`memory::MemoryStore`] serves unit tests with the same semantics.

pub mod jetstream;
pub mod memory;

use async_trait::async_trait;
use bytes::Bytes;
use neo_protocol::envelope::EventMeta;
use neo_protocol::{EntityRef, pb};

/// An event about to be appended.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// Type, ids, principal, time, trace.
    pub meta: EventMeta,
    /// The encoded `{Kind}Event`.
    pub payload: Bytes,
}

/// An event read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// Its stream sequence.
    pub sequence: u64,
    /// Type, ids, principal, time, trace.
    pub meta: EventMeta,
    /// The encoded `{Kind}Event`, as stored (before upcasting).
    pub payload: Bytes,
}

/// The outcome of an append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The sequence of the first event written.
    pub first_sequence: u64,
    /// The sequence of the last event written: the entity's new last sequence.
    pub last_sequence: u64,
    /// The log already held these events (same command id): nothing new was written.
    pub duplicate: bool,
}

/// Why the store could not do what was asked. Conflicts are kept apart from failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the entity first: its last sequence is not the expected one.
    #[error("{entity}: another writer appended first (expected last sequence {expected})")]
    Conflict {
        /// The entity.
        entity: String,
        /// The last sequence the writer expected.
        expected: u64,
    },
    /// The store cannot be reached or did not answer in time.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// A stored event cannot be read.
    #[error("{entity}: event at sequence {sequence} is malformed: {reason}")]
    Malformed {
        /// The entity.
        entity: String,
        /// The stream sequence of the bad event.
        sequence: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The events are larger than the store accepts.
    #[error("events too large for the store: {0}")]
    TooLarge(String),
    /// The store refused the operation for another reason.
    #[error("event store error: {0}")]
    Other(String),
}

/// A log of entity events with per-entity optimistic concurrency, and a snapshot store.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends a command's events atomically, if the entity's last sequence is still
    /// `expected_last` (0: the entity has no events).
    ///
    /// # Guarantees
    /// All of `events` are written, or none. Appending the same command id again writes
    /// nothing: it is a [`StoreError::Conflict`] when the entity moved on (the caller catches
    /// up and finds the command in the log), or, within the store's de-duplication window, an
    /// answer with the original sequences and `duplicate: true`.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when another writer appended first.
    async fn append(
        &self,
        entity: &EntityRef,
        expected_last: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError>;

    /// The sequence of the entity's last event (0 if it has none).
    async fn last_sequence(&self, entity: &EntityRef) -> Result<u64, StoreError>;

    /// The entity's events with sequence in `after+1 ..= until`, in order.
    async fn load(
        &self,
        entity: &EntityRef,
        after: u64,
        until: u64,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// The entity's latest snapshot, if any.
    async fn read_snapshot(&self, entity: &EntityRef) -> Result<Option<pb::Snapshot>, StoreError>;

    /// Replaces the entity's snapshot. Snapshots only speed recovery.
    async fn write_snapshot(
        &self,
        entity: &EntityRef,
        snapshot: &pb::Snapshot,
    ) -> Result<(), StoreError>;
}
