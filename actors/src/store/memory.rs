//! An in-memory [`EventStore`] with the JetStream store's semantics, for unit tests.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use neo_protocol::{EntityRef, pb};

use super::{Appended, EventStore, NewEvent, StoreError, StoredEvent};

#[derive(Default)]
struct Inner {
    /// Every event, in stream order: (entity, event).
    log: Vec<(EntityRef, StoredEvent)>,
    /// Command id → (first, last) sequence, for de-duplication.
    applied: HashMap<String, (u64, u64)>,
    snapshots: HashMap<EntityRef, pb::Snapshot>,
}

/// A whole event log in one process's memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a test panicked while holding it; the data is still whole.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends an event without any check, as a foreign writer would (for tests of bad data).
    pub fn inject(&self, entity: &EntityRef, event: NewEvent) -> u64 {
        push(&mut self.lock(), entity, event)
    }
}

/// Puts `event` of `entity` at the end of the log; its sequence.
fn push(inner: &mut Inner, entity: &EntityRef, event: NewEvent) -> u64 {
    let sequence = inner.log.len() as u64 + 1;
    inner.log.push((
        entity.clone(),
        StoredEvent {
            sequence,
            meta: event.meta,
            payload: event.payload,
        },
    ));
    sequence
}

fn last_of(inner: &Inner, entity: &EntityRef) -> u64 {
    inner
        .log
        .iter()
        .rev()
        .find(|(e, _)| e == entity)
        .map_or(0, |(_, ev)| ev.sequence)
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(
        &self,
        entity: &EntityRef,
        expected_last: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let mut inner = self.lock();
        let command_id = events
            .first()
            .map(|e| e.meta.command_id.clone())
            .unwrap_or_default();
        // Like JetStream: the expected sequence is checked before de-duplication.
        if last_of(&inner, entity) != expected_last {
            return Err(StoreError::Conflict {
                entity: entity.to_string(),
                expected: expected_last,
            });
        }
        if let Some(&(first, last)) = inner.applied.get(&command_id) {
            return Ok(Appended {
                first_sequence: first,
                last_sequence: last,
                duplicate: true,
            });
        }
        let first = inner.log.len() as u64 + 1;
        for event in events {
            push(&mut inner, entity, event);
        }
        let last = inner.log.len() as u64;
        inner.applied.insert(command_id, (first, last));
        Ok(Appended {
            first_sequence: first,
            last_sequence: last,
            duplicate: false,
        })
    }

    async fn last_sequence(&self, entity: &EntityRef) -> Result<u64, StoreError> {
        Ok(last_of(&self.lock(), entity))
    }

    async fn load(
        &self,
        entity: &EntityRef,
        after: u64,
        until: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        Ok(self
            .lock()
            .log
            .iter()
            .filter(|(e, ev)| e == entity && ev.sequence > after && ev.sequence <= until)
            .map(|(_, ev)| ev.clone())
            .collect())
    }

    async fn read_snapshot(&self, entity: &EntityRef) -> Result<Option<pb::Snapshot>, StoreError> {
        Ok(self.lock().snapshots.get(entity).cloned())
    }

    async fn write_snapshot(
        &self,
        entity: &EntityRef,
        snapshot: &pb::Snapshot,
    ) -> Result<(), StoreError> {
        self.lock()
            .snapshots
            .insert(entity.clone(), snapshot.clone());
        Ok(())
    }
}
