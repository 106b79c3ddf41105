//! The pod watch: every managed pod's changes become [`DriverEvent::Health`], each running
//! container's log is followed, and a pod running but not ready yet is asked why.
//!
//! [`PodWatch`] decides (a pure state machine over watcher events and the answers of starting
//! pods); [`run`] carries out what it decides: sends events, starts and stops the log followers
//! of [`super::logs`] and the askers of [`super::why`].

use std::collections::{HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use neo_protocol::pb;
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};

use super::logs::{self, Tail};
use super::objects::{CONTAINER, MANAGED_SELECTOR};
use super::ready::ReadyPods;
use super::status::{pod_key, replica_status};
use super::why;
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
    /// Start asking the pod `{namespace}/{name}`'s apphost at `address` (`ip:port`) why it is
    /// not ready.
    Ask {
        /// `{namespace}/{name}`.
        id: String,
        /// `ip:port`.
        address: String,
    },
    /// Stop asking the pod `{namespace}/{name}`.
    StopAsking(String),
}

/// What the watch remembers of one pod.
#[derive(Debug, Clone)]
struct Known {
    key: PodgroupKey,
    replica: pb::ReplicaStatus,
    /// What the apphost answered last while starting, when asked.
    why: Option<String>,
}

/// The pods seen so far, the last health reported for each, the log followers started and the
/// starting pods being asked why they are not ready.
#[derive(Debug)]
pub struct PodWatch {
    known: HashMap<String, Known>,
    /// `{namespace}/{name}` → the restart count of the container being followed.
    following: HashMap<String, i32>,
    /// Pods listed since the watch (re)started, while it lists.
    listing: Option<HashSet<String>>,
    /// Starting pods being asked why.
    asking: HashSet<String>,
    /// The port their apphost is asked on.
    readyz_port: u16,
}

impl PodWatch {
    /// A watch that has seen nothing yet, asking starting pods on `readyz_port`.
    pub fn new(readyz_port: u16) -> Self {
        Self {
            known: HashMap::new(),
            following: HashMap::new(),
            listing: None,
            asking: HashSet::new(),
            readyz_port,
        }
    }

    /// What a starting pod's apphost answered when asked why it is not ready: reported as the
    /// replica's reason when it is new (and the pod still starting).
    pub fn explained(&mut self, id: &str, reason: String) -> Vec<Action> {
        if !self.asking.contains(id) {
            return Vec::new();
        }
        let Some(known) = self.known.get_mut(id) else {
            return Vec::new();
        };
        known.why = Some(reason.clone());
        if known.replica.reason == reason {
            return Vec::new();
        }
        known.replica.reason = reason;
        vec![Action::Send(DriverEvent::Health {
            key: known.key.clone(),
            replica: known.replica.clone(),
        })]
    }

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
                    let why = None;
                    self.known.insert(id.clone(), Known { key, replica, why });
                }
                self.gone(&id, "Deleted")
            }
        }
    }

    /// A pod was added or changed. One running but not ready yet is asked why (its last answer
    /// stands in for the empty reason its status gives).
    fn applied(&mut self, pod: &Pod) -> Vec<Action> {
        let (Some(id), Some(key), Some(mut replica)) =
            (pod_id(pod), pod_key(pod), replica_status(pod))
        else {
            tracing::debug!(pod = ?pod.metadata.name, "ignoring a pod without a name or podgroup labels");
            return Vec::new();
        };
        let starting = replica.phase == pb::ReplicaPhase::Starting as i32
            && running_container(pod).is_some()
            && !replica.address.is_empty();
        let why = self
            .known
            .get(&id)
            .and_then(|k| k.why.clone())
            .filter(|_| starting);
        if let Some(why) = &why
            && replica.reason.is_empty()
        {
            replica.reason.clone_from(why);
        }
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
        if starting && self.asking.insert(id.clone()) {
            actions.push(Action::Ask {
                id: id.clone(),
                address: format!("{}:{}", replica.address, self.readyz_port),
            });
        } else if !starting && self.asking.remove(&id) {
            actions.push(Action::StopAsking(id.clone()));
        }
        self.known.insert(id, Known { key, replica, why });
        actions
    }

    /// A pod is gone: report it Stopped and stop following it.
    fn gone(&mut self, id: &str, reason: &str) -> Vec<Action> {
        let mut actions = Vec::new();
        if let Some(Known {
            key, mut replica, ..
        }) = self.known.remove(id)
        {
            replica.phase = pb::ReplicaPhase::Stopped as i32;
            replica.reason = reason.to_owned();
            actions.push(Action::Send(DriverEvent::Health { key, replica }));
        }
        if self.following.remove(id).is_some() {
            actions.push(Action::Unfollow(id.to_owned()));
        }
        if self.asking.remove(id) {
            actions.push(Action::StopAsking(id.to_owned()));
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
/// `events` closes (or the task is aborted, which also stops every log follower and asker),
/// asking starting pods why on `readyz_port`, and keeping `ready` up to date.
///
/// Watch errors are logged and retried with back-off; they never end the watch.
pub async fn run(
    client: Client,
    events: mpsc::Sender<DriverEvent>,
    readyz_port: u16,
    ready: Arc<ReadyPods>,
) {
    let api: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().labels(MANAGED_SELECTOR);
    let mut stream = pin!(watcher(api, config).default_backoff());
    let mut state = PodWatch::new(readyz_port);
    // The process uses ring; another component may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .inspect_err(|e| tracing::warn!(error = %e, "starting pods will not be asked why"))
        .ok();
    let (answers, mut answered) = mpsc::channel::<(String, String)>(64);
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut followers: HashMap<String, AbortHandle> = HashMap::new();
    let mut askers: HashMap<String, AbortHandle> = HashMap::new();
    loop {
        let actions = tokio::select! {
            item = stream.next() => match item {
                Some(Ok(event)) => state.handle(event),
                Some(Err(err)) => {
                    tracing::warn!(%err, "pod watch failed; retrying");
                    continue;
                }
                None => return,
            },
            Some((id, reason)) = answered.recv() => state.explained(&id, reason),
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        for action in actions {
            match action {
                Action::Send(event) => {
                    if let DriverEvent::Health { key, replica } = &event {
                        ready.note(key, replica);
                    }
                    if events.send(event).await.is_err() {
                        tracing::debug!("driver events closed; pod watch ends");
                        return;
                    }
                }
                Action::Follow(tail) => {
                    let id = format!("{}/{}", tail.namespace, tail.pod);
                    let pods = Api::namespaced(client.clone(), &tail.namespace);
                    let handle = tasks.spawn(logs::follow(pods, tail, events.clone()));
                    if let Some(previous) = followers.insert(id, handle) {
                        previous.abort();
                    }
                }
                Action::Unfollow(id) => {
                    if let Some(handle) = followers.remove(&id) {
                        handle.abort();
                    }
                }
                Action::Ask { id, address } => {
                    let Some(http) = &http else { continue };
                    let asker = why::follow(http.clone(), id.clone(), address, answers.clone());
                    if let Some(previous) = askers.insert(id, tasks.spawn(asker)) {
                        previous.abort();
                    }
                }
                Action::StopAsking(id) => {
                    if let Some(handle) = askers.remove(&id) {
                        handle.abort();
                    }
                }
            }
        }
    }
}
