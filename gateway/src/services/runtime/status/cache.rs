//! The entity states `Runtime.Status` read last, each with the number of events it had then.
//!
//! The event stream is append-only, so an entity whose subjects hold as many messages as when
//! its state was read has that same state: one listing of the tenant's deployment and podgroup
//! subjects with their message counts (which `Status` reads anyway, to know the apps and
//! stages) tells which states changed, and only those are read again from the entity host. A
//! board of hundreds of apps at rest then costs two listings, not two reads per cell. The
//! listing comes from the stream itself, so a change made through another platform process is
//! seen as soon as it is stored.

use std::collections::HashMap;
use std::sync::Mutex;

use neo_protocol::pb;

/// The most entities kept; past it the cache starts over (it is only ever a shortcut).
const MAX_ENTRIES: usize = 200_000;

/// A state read earlier: its event count then, the state and the sequence it covers.
#[derive(Debug, Clone)]
pub struct Read<S> {
    events: u64,
    state: S,
    sequence: u64,
}

/// Entity (`{tenant}.{kind}.{id}`) → the state `Status` read last.
#[derive(Debug, Default)]
pub struct StatusCache {
    deployments: Mutex<HashMap<String, Read<pb::DeploymentState>>>,
    podgroups: Mutex<HashMap<String, Read<pb::PodgroupState>>>,
}

/// The states a cache holds of one kind.
pub trait Cached: Clone + Sized {
    /// This kind's map in `cache`.
    fn map(cache: &StatusCache) -> &Mutex<HashMap<String, Read<Self>>>;
}

impl Cached for pb::DeploymentState {
    fn map(cache: &StatusCache) -> &Mutex<HashMap<String, Read<Self>>> {
        &cache.deployments
    }
}

impl Cached for pb::PodgroupState {
    fn map(cache: &StatusCache) -> &Mutex<HashMap<String, Read<Self>>> {
        &cache.podgroups
    }
}

impl StatusCache {
    /// The state of `entity` read when it had `events` events, if that is still its count.
    pub fn get<S: Cached>(&self, entity: &str, events: u64) -> Option<(S, u64)> {
        let map = S::map(self).lock().ok()?;
        map.get(entity)
            .filter(|r| r.events == events)
            .map(|r| (r.state.clone(), r.sequence))
    }

    /// Keeps `state` (covering `sequence`) of `entity`, read when it had `events` events (or
    /// more: a later event raises the count past it, so the state is read again then).
    pub fn put<S: Cached>(&self, entity: String, events: u64, state: S, sequence: u64) {
        let Ok(mut map) = S::map(self).lock() else {
            return;
        };
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(
            entity,
            Read {
                events,
                state,
                sequence,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_kept_until_its_entity_has_another_event() {
        let cache = StatusCache::default();
        let state = pb::PodgroupState {
            desired: 3,
            ..Default::default()
        };
        cache.put("acme.podgroup.shop_dev".into(), 4, state.clone(), 17);
        assert_eq!(
            cache.get::<pb::PodgroupState>("acme.podgroup.shop_dev", 4),
            Some((state, 17))
        );
        assert_eq!(
            cache.get::<pb::PodgroupState>("acme.podgroup.shop_dev", 5),
            None
        );
        assert_eq!(
            cache.get::<pb::DeploymentState>("acme.podgroup.shop_dev", 4),
            None,
            "each kind apart"
        );
    }
}
