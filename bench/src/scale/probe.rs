//! The JetStream store with counters: how many snapshots and events an activation read, and
//! the time each read call of the store took.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use neo_actors::store::jetstream::JetStreamStore;
use neo_actors::store::{Appended, EventStore, NewEvent, StoreError, StoredEvent};
use neo_protocol::{EntityRef, pb};

/// What was read since the last [`Probe::take`].
pub(super) struct Read {
    /// Snapshots found.
    pub snapshots: u64,
    /// Events loaded.
    pub events: u64,
    /// Time in `last_sequence`.
    pub last_sequence: Duration,
    /// Time in `read_snapshot`.
    pub read_snapshot: Duration,
    /// Time in `load`.
    pub load: Duration,
}

/// Delegates to the JetStream store, counting and timing the reads. Meant for one activation
/// at a time: the counters are shared.
pub(super) struct Probe {
    inner: Arc<JetStreamStore>,
    snapshots: AtomicU64,
    events: AtomicU64,
    last_sequence_ns: AtomicU64,
    read_snapshot_ns: AtomicU64,
    load_ns: AtomicU64,
}

impl Probe {
    pub(super) fn new(inner: Arc<JetStreamStore>) -> Self {
        Self {
            inner,
            snapshots: AtomicU64::new(0),
            events: AtomicU64::new(0),
            last_sequence_ns: AtomicU64::new(0),
            read_snapshot_ns: AtomicU64::new(0),
            load_ns: AtomicU64::new(0),
        }
    }

    /// What was read since the last call, resetting the counters.
    pub(super) fn take(&self) -> Read {
        let ns = |a: &AtomicU64| Duration::from_nanos(a.swap(0, Ordering::Relaxed));
        Read {
            snapshots: self.snapshots.swap(0, Ordering::Relaxed),
            events: self.events.swap(0, Ordering::Relaxed),
            last_sequence: ns(&self.last_sequence_ns),
            read_snapshot: ns(&self.read_snapshot_ns),
            load: ns(&self.load_ns),
        }
    }
}

fn add(counter: &AtomicU64, since: Instant) {
    counter.fetch_add(since.elapsed().as_nanos() as u64, Ordering::Relaxed);
}

#[async_trait]
impl EventStore for Probe {
    async fn append(
        &self,
        entity: &EntityRef,
        expected_last: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        self.inner.append(entity, expected_last, events).await
    }

    async fn last_sequence(&self, entity: &EntityRef) -> Result<u64, StoreError> {
        let start = Instant::now();
        let last = self.inner.last_sequence(entity).await;
        add(&self.last_sequence_ns, start);
        last
    }

    async fn load(
        &self,
        entity: &EntityRef,
        after: u64,
        until: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let start = Instant::now();
        let events = self.inner.load(entity, after, until).await;
        add(&self.load_ns, start);
        if let Ok(events) = &events {
            self.events
                .fetch_add(events.len() as u64, Ordering::Relaxed);
        }
        events
    }

    async fn read_snapshot(&self, entity: &EntityRef) -> Result<Option<pb::Snapshot>, StoreError> {
        let start = Instant::now();
        let snapshot = self.inner.read_snapshot(entity).await;
        add(&self.read_snapshot_ns, start);
        if let Ok(Some(_)) = &snapshot {
            self.snapshots.fetch_add(1, Ordering::Relaxed);
        }
        snapshot
    }

    async fn write_snapshot(
        &self,
        entity: &EntityRef,
        snapshot: &pb::Snapshot,
    ) -> Result<(), StoreError> {
        self.inner.write_snapshot(entity, snapshot).await
    }
}
