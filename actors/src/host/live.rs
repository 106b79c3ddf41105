//! The live actors of one host: lookup, passivation after idle, and the bound on their number.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use neo_protocol::EntityRef;
use ractor::ActorRef;
use tokio::sync::OnceCell;

use super::entity::EntityMsg;
use crate::aggregate::Aggregate;

type Cell<A> = Arc<OnceCell<ActorRef<EntityMsg<A>>>>;

struct Slot<A: Aggregate> {
    cell: Cell<A>,
    /// Milliseconds since the map's epoch when the entity was last routed to.
    last_used: u64,
}

/// Entity → its actor (or its activation in progress).
pub(super) struct LiveMap<A: Aggregate> {
    slots: Mutex<HashMap<EntityRef, Slot<A>>>,
    epoch: Instant,
}

impl<A: Aggregate> LiveMap<A> {
    pub(super) fn new() -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<EntityRef, Slot<A>>> {
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// The entity's slot, created empty if absent, marked as used now. When the map is full,
    /// the least recently used tenth is stopped first.
    pub(super) fn slot(&self, entity: &EntityRef, max_live: usize) -> Cell<A> {
        let now = self.now();
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(entity) {
            slot.last_used = now;
            return slot.cell.clone();
        }
        if slots.len() >= max_live {
            evict_oldest(&mut slots, (max_live / 10).max(1));
        }
        let cell: Cell<A> = Arc::new(OnceCell::new());
        slots.insert(
            entity.clone(),
            Slot {
                cell: cell.clone(),
                last_used: now,
            },
        );
        cell
    }

    /// Forgets a slot whose activation failed, so the next command tries again.
    pub(super) fn forget_uninitialised(&self, entity: &EntityRef) {
        let mut slots = self.lock();
        if slots.get(entity).is_some_and(|s| !s.cell.initialized()) {
            slots.remove(entity);
        }
    }

    /// Forgets the entity if its slot still holds `actor` (it stopped or crashed).
    pub(super) fn forget(&self, entity: &EntityRef, actor: &ActorRef<EntityMsg<A>>) {
        let mut slots = self.lock();
        if slots
            .get(entity)
            .and_then(|s| s.cell.get())
            .is_some_and(|a| a.get_id() == actor.get_id())
        {
            slots.remove(entity);
        }
    }

    /// Forgets whichever entity is served by the actor with this id.
    pub(super) fn forget_actor(&self, id: ractor::ActorId) {
        self.lock()
            .retain(|_, s| s.cell.get().is_none_or(|a| a.get_id() != id));
    }

    pub(super) fn stop_all(&self) {
        let drained: Vec<_> = self.lock().drain().collect();
        for (_, slot) in drained {
            if let Some(actor) = slot.cell.get() {
                actor.stop(None);
            }
        }
    }

    /// Stops the actors idle for longer than `idle`.
    fn passivate_idle(&self, idle: Duration) -> usize {
        let cutoff = self.now().saturating_sub(idle.as_millis() as u64);
        let mut slots = self.lock();
        let before = slots.len();
        slots.retain(|_, s| {
            let keep = s.last_used > cutoff || !s.cell.initialized();
            if !keep && let Some(actor) = s.cell.get() {
                actor.stop(Some("idle".into()));
            }
            keep
        });
        before - slots.len()
    }
}

fn evict_oldest<A: Aggregate>(slots: &mut HashMap<EntityRef, Slot<A>>, count: usize) {
    let mut ages: Vec<(u64, EntityRef)> = slots
        .iter()
        .filter(|(_, s)| s.cell.initialized())
        .map(|(k, s)| (s.last_used, k.clone()))
        .collect();
    let count = count.min(ages.len());
    if count == 0 {
        return;
    }
    ages.select_nth_unstable_by_key(count - 1, |(t, _)| *t);
    for (_, key) in ages.into_iter().take(count) {
        if let Some(slot) = slots.remove(&key)
            && let Some(actor) = slot.cell.get()
        {
            actor.stop(Some("evicted".into()));
        }
    }
    tracing::debug!(count, "evicted least recently used actors");
}

/// Periodically passivates idle actors until the map is dropped.
pub(super) async fn reap<A: Aggregate>(live: Weak<LiveMap<A>>, idle: Duration) {
    let period = (idle / 4).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(period).await;
        let Some(live) = live.upgrade() else { return };
        let stopped = live.passivate_idle(idle);
        if stopped > 0 {
            tracing::debug!(stopped, kind = %A::KIND, "passivated idle actors");
        }
    }
}
