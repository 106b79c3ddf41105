//! What the stage's load balancer measures of an app's canary, for the agent to report each
//! step: the requests, 5xx answers and answer times of the canary and of its baseline, and
//! which of the two a request goes to ([`to_canary`]).
//!
//! The driver that routes the stage's traffic keeps one [`Canaries`] and gives it to the agent
//! ([`crate::driver::Driver::canaries`]); the load balancer records every request of an app
//! with a canary into its [`Figures`], and the agent's [`crate::agent::canary`] task reads them
//! when a step has run its time, and starts them afresh at each step.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use neo_protocol::pb;

/// The most answer times kept per release and step for its p95 (a step of more requests
/// keeps the first ones; enough for a percentile to one part in a thousand).
pub const MAX_SAMPLES: usize = 100_000;

/// Whether the `n`-th request (counted per app from 0) goes to the canary at `weight` percent:
/// exactly `weight` of every 100 consecutive requests do, spread evenly. With `sticky`, the
/// client's address decides instead, so one client stays on one release for the whole step
/// (and on the canary in later steps, as its share only grows).
pub fn to_canary(weight: u32, sticky: bool, client: IpAddr, n: u64) -> bool {
    let weight = u64::from(weight.min(100));
    if sticky {
        let mut hasher = DefaultHasher::new();
        client.hash(&mut hasher);
        return hasher.finish() % 100 < weight;
    }
    (n + 1) * weight / 100 > n * weight / 100
}

/// The figures of every app with a canary on the stage.
#[derive(Debug, Default)]
pub struct Canaries {
    apps: RwLock<HashMap<(String, String), Arc<Figures>>>,
}

impl Canaries {
    /// The figures of an app (made empty on first use).
    pub fn app(&self, tenant: &str, app: &str) -> Arc<Figures> {
        let key = (tenant.to_owned(), app.to_owned());
        if let Some(found) = self.get(tenant, app) {
            return found;
        }
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone()
    }

    /// The figures of an app, if it has had a canary.
    pub fn get(&self, tenant: &str, app: &str) -> Option<Arc<Figures>> {
        self.apps
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(tenant.to_owned(), app.to_owned()))
            .cloned()
    }

    /// Forgets one app's figures (its canary ended).
    pub fn forget(&self, tenant: &str, app: &str) {
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(tenant.to_owned(), app.to_owned()));
    }

    /// Forgets the apps for which `keep` says no (their canary ended).
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        self.apps
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(tenant, app), _| keep(tenant, app));
    }
}

/// What one release answered since its figures were last started.
#[derive(Debug, Default, Clone)]
struct Recorder {
    requests: u64,
    errors: u64,
    /// Answer times in microseconds (at most [`MAX_SAMPLES`]).
    samples: Vec<u32>,
}

impl Recorder {
    fn record(&mut self, status: u16, took: Duration) {
        self.requests += 1;
        if status >= 500 {
            self.errors += 1;
        }
        if self.samples.len() < MAX_SAMPLES {
            self.samples
                .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
        }
    }

    /// Adds `requests` answered elsewhere (counted by the replicas), `errors` of them 5xx,
    /// their answer times as (time, how many).
    fn add(&mut self, requests: u64, errors: u64, times: &[(Duration, u64)]) {
        self.requests += requests;
        self.errors += errors;
        for (took, count) in times {
            let room = MAX_SAMPLES.saturating_sub(self.samples.len());
            let sample = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
            let many = usize::try_from(*count).unwrap_or(usize::MAX).min(room);
            self.samples.extend(std::iter::repeat_n(sample, many));
        }
    }

    fn figures(&self) -> pb::ReleaseFigures {
        pb::ReleaseFigures {
            requests: self.requests,
            errors: self.errors,
            p95_ms: p95_ms(&self.samples),
        }
    }
}

/// The 95th percentile (nearest rank) of answer times in microseconds, in milliseconds; 0
/// with none.
fn p95_ms(samples: &[u32]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let rank = (sorted.len() * 95).div_ceil(100).max(1);
    f64::from(sorted[rank - 1]) / 1000.0
}

/// The figures of one app's canary and baseline.
#[derive(Debug, Default)]
pub struct Figures {
    both: Mutex<(Recorder, Recorder)>,
    /// The canary has a ready replica in the load balancer (its step may be timed).
    serving: AtomicBool,
}

impl Figures {
    /// Records an answer of the canary (`canary`) or the baseline.
    pub fn record(&self, canary: bool, status: u16, took: Duration) {
        let mut both = self.both.lock().unwrap_or_else(PoisonError::into_inner);
        if canary {
            both.1.record(status, took);
        } else {
            both.0.record(status, took);
        }
    }

    /// Adds what replicas of the canary (`canary`) or the baseline counted themselves: the
    /// Kubernetes path, where the pods count their requests, errors and answer times (per
    /// bucket: each time is its bucket's bound).
    pub fn add(&self, canary: bool, requests: u64, errors: u64, times: &[(Duration, u64)]) {
        let mut both = self.both.lock().unwrap_or_else(PoisonError::into_inner);
        if canary {
            both.1.add(requests, errors, times);
        } else {
            both.0.add(requests, errors, times);
        }
    }

    /// What the baseline and the canary answered since [`Figures::restart`].
    pub fn read(&self) -> (pb::ReleaseFigures, pb::ReleaseFigures) {
        let both = self.both.lock().unwrap_or_else(PoisonError::into_inner);
        (both.0.figures(), both.1.figures())
    }

    /// Starts counting afresh (a new step).
    pub fn restart(&self) {
        *self.both.lock().unwrap_or_else(PoisonError::into_inner) = Default::default();
    }

    /// Says whether the canary has a ready replica in the load balancer.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// Whether the canary has a ready replica in the load balancer.
    pub fn serving(&self) -> bool {
        self.serving.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_sends_exactly_its_share_of_every_hundred_requests() {
        let client = IpAddr::from([127, 0, 0, 1]);
        for weight in [0, 1, 10, 33, 50, 99, 100] {
            let sent = (0..1000)
                .filter(|n| to_canary(weight, false, client, *n))
                .count();
            assert_eq!(sent, weight as usize * 10, "weight {weight}");
        }
        // Spread evenly: at 50 % every other request.
        let firsts: Vec<bool> = (0..4).map(|n| to_canary(50, false, client, n)).collect();
        assert_eq!(firsts, [false, true, false, true]);
    }

    #[test]
    fn sticky_clients_stay_on_one_release_and_share_by_weight() {
        let clients: Vec<IpAddr> = (0..2000u32)
            .map(|i| IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]))
            .collect();
        for client in &clients[..20] {
            let first = to_canary(30, true, *client, 0);
            assert!((1..50).all(|n| to_canary(30, true, *client, n) == first));
        }
        let on_canary = clients
            .iter()
            .filter(|c| to_canary(30, true, **c, 0))
            .count();
        assert!(
            (500..700).contains(&on_canary),
            "{on_canary} of 2000 at 30 %"
        );
        // A client on the canary at 30 % stays on it at 50 %.
        assert!(
            clients
                .iter()
                .filter(|c| to_canary(30, true, **c, 0))
                .all(|c| to_canary(50, true, *c, 0))
        );
    }

    #[test]
    fn figures_count_errors_and_the_p95_per_release_until_restarted() {
        let figures = Figures::default();
        for ms in 1..=100 {
            figures.record(
                true,
                if ms <= 5 { 500 } else { 200 },
                Duration::from_millis(ms),
            );
        }
        figures.record(false, 200, Duration::from_millis(3));
        let (baseline, canary) = figures.read();
        assert_eq!((canary.requests, canary.errors), (100, 5));
        assert!((canary.p95_ms - 95.0).abs() < 1e-9, "{}", canary.p95_ms);
        assert_eq!((baseline.requests, baseline.errors), (1, 0));
        assert!((baseline.p95_ms - 3.0).abs() < 1e-9);
        figures.restart();
        assert_eq!(figures.read().1, pb::ReleaseFigures::default());
    }
}
