//! The pod watch: every managed pod's changes become [`DriverEvent::Health`], and each running container's log is followed.
//!
//! [`PodWatch`] decides (a pure state machine over watcher events); [`run`] carries out what it
//! decides: sends events, starts and stops the log followers of [`super::logs`].

use std::collections::{HashMap, HashSet};
use std::pin::pin;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use neo_protocol::pb;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::logs::{self, Tail};
use super::objects::{CONTAINER, MANAGED_SELECTOR};
use super::status::{pod_key, replica_status};
use crate::driver::{DriverEvent, PodgroupKey};

/// What the watch should do after a pod event.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this event.
    Send(DriverEvent),
    /// Start following a container's log (replacing any follower of the same pod).
    Follow(Tail),
    /// Stop following the log of the pod `{namespace}/{name}`.
    Unfollow(String),
}

/// What the watch remembers of one pod.
#[derive(Debug, Clone)]
struct Known {
    key: PodgroupKey,
    replica: pb::ReplicaStatus,
}

/// The pods seen so far, the last health reported for each and the log followers started.
#[derive(Debug, Default)]
pub struct PodWatch {
    known: HashMap<String, Known>,
    /// `{namespace}/{name}` → the restart count of the container being followed.
    following: HashMap<String, i32>,
    /// Pods listed since the watch (re)started, while it lists.
    listing: Option<HashSet<String>>,
}

impl PodWatch {
    /// What to do about one watcher event.
    ///
    /// A health event goes out when anything reported of a replica changes (phase, reason,
    /// address, release); a deleted pod, or one missing from a relist, is reported Stopped.
    pub fn handle(&mut self, event: watcher::Event<Pod>) -> Vec<Action> {
        match event {
            watcher::Event::Init => {
                self.listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(pod) => {
                if let (Some(listing), Some(id)) = (self.listing.as_mut(), pod_id(&pod)) {
                    listing.insert(id);
                }
                self.applied(&pod)
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let gone: Vec<String> = self
                    .known
                    .keys()
                    .filter(|id| !listed.contains(*id))
                    .cloned()
                    .collect();
                gone.iter()
                    .flat_map(|id| self.gone(id, "Deleted"))
                    .collect()
            }
            watcher::Event::Apply(pod) => self.applied(&pod),
            watcher::Event::Delete(pod) => {
                let Some(id) = pod_id(&pod) else {
                    return Vec::new();
                };
                // The Stopped report carries the pod's last state.
                if let (Some(key), Some(replica)) = (pod_key(&pod), replica_status(&pod)) {
                    self.known.insert(id.clone(), Known { key, replica });
                }
                self.gone(&id, "Deleted")
            }
        }
    }

    /// A pod was added or changed.
    fn applied(&mut self, pod: &Pod) -> Vec<Action> {
        let (Some(id), Some(key), Some(replica)) = (pod_id(pod), pod_key(pod), replica_status(pod))
        else {
            tracing::debug!(pod = ?pod.metadata.name, "ignoring a pod without a name or podgroup labels");
            return Vec::new();
        };
        let mut actions = Vec::new();
        if self.known.get(&id).map(|k| &k.replica) != Some(&replica) {
            actions.push(Action::Send(DriverEvent::Health {
                key: key.clone(),
                replica: replica.clone(),
            }));
        }
        if let Some(restarts) = running_container(pod)
            && self.following.get(&id) != Some(&restarts)
        {
            self.following.insert(id.clone(), restarts);
            actions.push(Action::Follow(Tail {
                namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                pod: replica.id.clone(),
                key: key.clone(),
                restarts,
            }));
        }
        self.known.insert(id, Known { key, replica });
        actions
    }

    /// A pod is gone: report it Stopped and stop following it.
    fn gone(&mut self, id: &str, reason: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(Known { key, mut replica }) = self.known.remove(id) {
            replica.phase = pb::ReplicaPhase::Stopped as i32;
            replica.reason = reason.to_owned();
            actions.push(Action::Send(DriverEvent::Health { key, replica }));
        }
        if self.following.remove(id).is_some() {
            actions.push(Action::Unfollow(id.to_owned()));
        }
        actions
    }
}

/// `{namespace}/{name}` of a pod.
fn pod_id(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref()?;
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    Some(format!("{namespace}/{name}"))
}

/// The restart count of the app container when it is running (so has a log to follow).
fn running_container(pod: &Pod) -> Option<i32> {
    if pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == CONTAINER)
        .filter(|c| c.state.as_ref().and_then(|s| s.running.as_ref()).is_some())
        .map(|c| c.restart_count)
}

/// Watches every pod labelled `app.kubernetes.io/managed-by=neo` in all namespaces until
/// `events` closes (or the task is aborted, which also stops every log follower).
///
/// Watch errors are logged and retried with back-off; they never end the watch.
pub async fn run(client: Client, events: mpsc::Sender<DriverEvent>) {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let mut stream = pin!(watcher(api, config).default_backoff());
    let mut state = PodWatch::default();
    let mut followers: JoinSet<()> = JoinSet::new();
    let mut handles: HashMap<String, AbortHandle> = HashMap::new();
    loop {
        tokio::select! {
            item = stream.next() => {
                let event = match item {
                    Some(Ok(event)) => event,
                    Some(Err(err)) => {
                        tracing::warn!(%err, "pod watch failed; retrying");
                        continue;
                    }
                    None => return,
                };
                for action in state.handle(event) {
                    match action {
                        Action::Send(event) => {
                            if events.send(event).await.is_err() {
                                tracing::debug!("driver events closed; pod watch ends");
                                return;
                            }
                        }
                        Action::Follow(tail) => {
                            let id = format!("{}/{}", tail.namespace, tail.pod);
                            let pods = Api::namespaced(client.clone(), &tail.namespace);
                            let handle = followers.spawn(logs::follow(pods, tail, events.clone()));
                            if let Some(previous) = handles.insert(id, handle) {
                                previous.abort();
                            }
                        }
                        Action::Unfollow(id) => {
                            if let Some(handle) = handles.remove(&id) {
                                handle.abort();
                            }
                        }
                    }
                }
            }
            Some(_) = followers.join_next(), if !followers.is_empty() => {}
        }
    }
}
