//! The ready pods of each podgroup, as the pod watch last saw them: where the activator sends
//! the requests it held ([`super::activator`]), and which pods the usage reader asks, of which
//! release ([`super::usage`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use neo_protocol::pb;
use tokio::sync::watch;

use crate::driver::PodgroupKey;

/// One ready pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyPod {
    /// Its name.
    pub name: String,
    /// Its IP.
    pub ip: IpAddr,
    /// The release it runs.
    pub release: u32,
}

/// One podgroup's ready pods: name → (IP, release).
type OfKey = BTreeMap<String, (IpAddr, u32)>;

/// The ready pods' addresses by podgroup, and a signal each time they change.
#[derive(Debug)]
pub struct ReadyPods {
    pods: Mutex<HashMap<PodgroupKey, OfKey>>,
    /// Counts the changes (its receivers wake on each).
    changed: watch::Sender<u64>,
}

impl Default for ReadyPods {
    fn default() -> Self {
        Self {
            pods: Mutex::default(),
            changed: watch::Sender::new(0),
        }
    }
}

impl ReadyPods {
    /// Notes what the watch reported of one replica: ready with an address, or not (any other
    /// phase, or gone).
    pub fn note(&self, key: &PodgroupKey, replica: &pb::ReplicaStatus) {
        let ready = replica.phase == pb::ReplicaPhase::Ready as i32;
        let address = replica.address.parse::<IpAddr>().ok().filter(|_| ready);
        let Ok(mut pods) = self.pods.lock() else {
            return;
        };
        let changed = match address {
            Some(ip) => {
                let of_key = pods.entry(key.clone()).or_default();
                let pod = (ip, replica.release);
                of_key.insert(replica.id.clone(), pod) != Some(pod)
            }
            None => {
                let removed = pods
                    .get_mut(key)
                    .is_some_and(|of_key| of_key.remove(&replica.id).is_some());
                if pods.get(key).is_some_and(BTreeMap::is_empty) {
                    pods.remove(key);
                }
                removed
            }
        };
        drop(pods);
        if changed {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// The ready pods of `key`, by name.
    pub fn of(&self, key: &PodgroupKey) -> Vec<ReadyPod> {
        self.pods
            .lock()
            .ok()
            .and_then(|pods| {
                pods.get(key).map(|of_key| {
                    of_key
                        .iter()
                        .map(|(name, (ip, release))| ReadyPod {
                            name: name.clone(),
                            ip: *ip,
                            release: *release,
                        })
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// Whether `key` has a ready pod called `name`.
    pub fn contains(&self, key: &PodgroupKey, name: &str) -> bool {
        self.pods.lock().is_ok_and(|pods| {
            pods.get(key)
                .is_some_and(|of_key| of_key.contains_key(name))
        })
    }

    /// A receiver that wakes at each change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The ready pods of `key` once there is one, or `None` after `within`.
    pub async fn wait(&self, key: &PodgroupKey, within: Duration) -> Option<Vec<ReadyPod>> {
        let mut changes = self.subscribe();
        let waiting = async {
            loop {
                let pods = self.of(key);
                if !pods.is_empty() {
                    return Some(pods);
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        };
        tokio::time::timeout(within, waiting).await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PodgroupKey {
        PodgroupKey::acme_shop_dev()
    }

    fn replica(id: &str, phase: pb::ReplicaPhase, address: &str) -> pb::ReplicaStatus {
        pb::ReplicaStatus {
            id: id.into(),
            phase: phase as i32,
            address: address.into(),
            release: 3,
            ..pb::ReplicaStatus::default()
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_first_ready_pod_and_unready_pods_leave() {
        let ready = std::sync::Arc::new(ReadyPods::default());
        assert!(
            ready
                .wait(&key(), Duration::from_millis(20))
                .await
                .is_none()
        );
        let waiter = tokio::spawn({
            let ready = ready.clone();
            async move { ready.wait(&key(), Duration::from_secs(5)).await }
        });
        ready.note(
            &key(),
            &replica("shop-1", pb::ReplicaPhase::Starting, "10.0.0.7"),
        );
        ready.note(
            &key(),
            &replica("shop-1", pb::ReplicaPhase::Ready, "10.0.0.7"),
        );
        let got = waiter.await.expect("waiter").expect("a ready pod");
        let pod = ReadyPod {
            name: "shop-1".to_owned(),
            ip: "10.0.0.7".parse().expect("ip"),
            release: 3,
        };
        assert_eq!(got, [pod]);
        ready.note(
            &key(),
            &replica("shop-1", pb::ReplicaPhase::Stopped, "10.0.0.7"),
        );
        assert!(ready.of(&key()).is_empty());
    }
}
