//! What the pods counted, read from their apphost's `GET /activityz` (requests so far, being
//! answered, answered 5xx, answer times per bucket): on Kubernetes no load balancer of the
//! agent's sees an app's requests, so its pods are asked.
//!
//! - **Idle windows.** Each ready pod of an awake app that may go to zero is read every
//!   [`super::activator::ActivatorConfig::usage_every`]; a count that moved, or a request being
//!   answered, is noted as the app's latest request at this agent's clock
//!   ([`crate::activity::AppActivity::request`]). The agent's idle rule does the rest.
//! - **Canaries.** Each ready pod of an app with a canary is read every [`CANARY_EVERY`]; what
//!   it answered since the last read goes to its release's side of the app's
//!   [`crate::canary::Figures`] (the canary's pods, by their release, or the baseline's), which
//!   the agent judges each step by, as the process driver's load balancer fills them.
//!
//! Other apps cost nothing here, nor does an app asleep: with no app to read, the reader
//! waits for one without ticking.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neo_protocol::envelope::now_ms;
use serde::Deserialize;

use super::ready::{ReadyPod, ReadyPods};
use crate::activity::Activity;
use crate::canary::Canaries;
use crate::driver::PodgroupKey;

/// How long one pod may take to answer.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How often the pods of an app with a canary are read.
pub const CANARY_EVERY: Duration = Duration::from_secs(1);

/// What `GET /activityz` answers (an older apphost sends the first two only).
#[derive(Debug, Clone, Default, Deserialize)]
struct Usage {
    requests: u64,
    in_flight: u64,
    #[serde(default)]
    errors: u64,
    #[serde(default)]
    answer_us: Answers,
}

/// Answer times: counts per bucket, `counts` one longer than `bounds` (the slower ones).
#[derive(Debug, Clone, Default, Deserialize)]
struct Answers {
    bounds: Vec<u64>,
    counts: Vec<u64>,
}

/// Why an app's pods are read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reading {
    /// It may go to zero and has replicas.
    sleepable: bool,
    /// The release of its canary, when one runs.
    canary: Option<u32>,
}

/// The apps whose pods are read, and what their reads go to.
#[derive(Debug)]
pub struct Tracked {
    /// The ready pods, from the pod watch.
    pub ready: Arc<ReadyPods>,
    /// The apps' requests (idle windows) and wakes.
    pub activity: Arc<Activity>,
    /// The canaries' figures.
    pub canaries: Arc<Canaries>,
    pod_port: AtomicU16,
    apps: Mutex<BTreeMap<PodgroupKey, Reading>>,
    /// Signalled when an app starts being read.
    added: tokio::sync::Notify,
}

impl Tracked {
    /// Reading the pods of `ready` on `pod_port`.
    pub fn new(ready: Arc<ReadyPods>, pod_port: u16) -> Self {
        Self {
            ready,
            activity: Arc::default(),
            canaries: Arc::default(),
            pod_port: AtomicU16::new(pod_port),
            apps: Mutex::default(),
            added: tokio::sync::Notify::new(),
        }
    }

    /// The port pods are reached on.
    pub fn pod_port(&self) -> u16 {
        self.pod_port.load(Ordering::Relaxed)
    }

    /// Reaches pods on `port` from now on.
    pub fn set_pod_port(&self, port: u16) {
        self.pod_port.store(port, Ordering::Relaxed);
    }

    /// Notes `key`'s desired state: its idle window (0: it never sleeps), its count and the
    /// release of its canary; an ended canary's figures are forgotten.
    pub fn note(&self, key: &PodgroupKey, idle_to_zero_s: u32, replicas: u32, canary: Option<u32>) {
        self.activity
            .set_idle_to_zero(&key.tenant, &key.app, idle_to_zero_s);
        let reading = Reading {
            sleepable: idle_to_zero_s > 0 && replicas > 0,
            canary,
        };
        let Ok(mut apps) = self.apps.lock() else {
            return;
        };
        let before = if reading == Reading::default() {
            apps.remove(key)
        } else {
            apps.insert(key.clone(), reading)
        };
        drop(apps);
        if before.is_some_and(|b| b.canary.is_some()) && canary.is_none() {
            self.canaries.forget(&key.tenant, &key.app);
        }
        if before.is_none() && reading != Reading::default() {
            self.added.notify_one();
        }
    }

    /// `key` is removed.
    pub fn forget(&self, key: &PodgroupKey) {
        self.note(key, 0, 0, None);
    }

    /// Whether no app is read.
    fn is_empty(&self) -> bool {
        self.apps.lock().map(|apps| apps.is_empty()).unwrap_or(true)
    }

    /// The apps to read now: those with a canary, and the sleepable ones when `idle_due`.
    fn due(&self, idle_due: bool) -> Vec<(PodgroupKey, Reading)> {
        self.apps
            .lock()
            .map(|apps| {
                apps.iter()
                    .filter(|(_, r)| r.canary.is_some() || (idle_due && r.sleepable))
                    .map(|(k, r)| (k.clone(), *r))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Reads the pods of the tracked apps (see the module doc), the sleepable ones every
/// `idle_every`, until aborted.
pub(super) async fn run(tracked: Arc<Tracked>, idle_every: Duration) {
    // The process uses ring; another component may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = match reqwest::Client::builder()
        .no_proxy()
        .timeout(TIMEOUT)
        .build()
    {
        Ok(http) => http,
        Err(e) => {
            tracing::warn!(error = %e, "pods' usage will not be read: no HTTP client");
            return;
        }
    };
    // What each pod (podgroup, pod name) answered at its last read.
    let mut last: HashMap<(PodgroupKey, String), Usage> = HashMap::new();
    let mut idle_read_at: Option<Instant> = None;
    let mut tick = tokio::time::interval(idle_every.min(CANARY_EVERY));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if tracked.is_empty() {
            last.clear();
            tracked.added.notified().await;
        }
        tick.tick().await;
        let idle_due = idle_read_at.is_none_or(|at| at.elapsed() >= idle_every);
        if idle_due {
            idle_read_at = Some(Instant::now());
        }
        let apps = tracked.due(idle_due);
        let pods: Vec<(PodgroupKey, Reading, ReadyPod)> = apps
            .iter()
            .flat_map(|(key, reading)| {
                tracked
                    .ready
                    .of(key)
                    .into_iter()
                    .map(|pod| (key.clone(), *reading, pod))
            })
            .collect();
        let port = tracked.pod_port();
        let answers = futures::future::join_all(
            pods.iter()
                .map(|(_, _, pod)| read(&http, SocketAddr::new(pod.ip, port))),
        )
        .await;
        let now = now_ms();
        for (key, reading) in &apps {
            if let Some(canary) = reading.canary {
                let serving = pods
                    .iter()
                    .any(|(k, _, pod)| k == key && pod.release == canary);
                tracked
                    .canaries
                    .app(&key.tenant, &key.app)
                    .set_serving(serving);
            }
        }
        for ((key, reading, pod), usage) in pods.into_iter().zip(answers) {
            let Some(usage) = usage else {
                // Not answering now: its last read stands.
                continue;
            };
            let earlier = last.get(&(key.clone(), pod.name.clone()));
            let moved = earlier.map_or(usage.requests > 0, |e| e.requests != usage.requests);
            if reading.sleepable && (moved || usage.in_flight > 0) {
                tracked.activity.app(&key.tenant, &key.app).request(now);
            }
            if let (Some(canary), Some(earlier)) = (reading.canary, earlier) {
                record(
                    &tracked.canaries,
                    &key,
                    pod.release == canary,
                    earlier,
                    &usage,
                );
            }
            last.insert((key, pod.name), usage);
        }
        // Forget the pods no longer ready (or of apps no longer read).
        last.retain(|(key, name), _| tracked.ready.contains(key, name));
    }
}

/// Adds what a pod answered between `earlier` and `now` to its release's side of the app's
/// figures (a pod that restarted counts from zero).
fn record(canaries: &Canaries, key: &PodgroupKey, canary: bool, earlier: &Usage, now: &Usage) {
    let restarted = now.requests < earlier.requests;
    let zero = Usage::default();
    let from = if restarted { &zero } else { earlier };
    let requests = now.requests - from.requests;
    if requests == 0 {
        return;
    }
    let errors = now.errors.saturating_sub(from.errors);
    let times: Vec<(Duration, u64)> = now
        .answer_us
        .counts
        .iter()
        .enumerate()
        .filter_map(|(i, count)| {
            let before = from.answer_us.counts.get(i).copied().unwrap_or(0);
            let added = count.saturating_sub(before);
            // The slower answers than the last bound count as twice it.
            let bound = now
                .answer_us
                .bounds
                .get(i)
                .copied()
                .or_else(|| now.answer_us.bounds.last().map(|b| b.saturating_mul(2)))?;
            (added > 0).then(|| (Duration::from_micros(bound), added))
        })
        .collect();
    canaries
        .app(&key.tenant, &key.app)
        .add(canary, requests, errors, &times);
}

/// The usage of the pod at `address`, or `None` when it does not answer it.
async fn read(http: &reqwest::Client, address: SocketAddr) -> Option<Usage> {
    let response = http
        .get(format!("http://{address}/activityz"))
        .send()
        .await
        .inspect_err(|e| tracing::debug!(%address, error = %e, "cannot read a pod's usage"))
        .ok()?
        .error_for_status()
        .ok()?;
    let text = response.text().await.ok()?;
    serde_json::from_str(&text)
        .inspect_err(|e| tracing::debug!(%address, error = %e, "unreadable usage"))
        .ok()
}
