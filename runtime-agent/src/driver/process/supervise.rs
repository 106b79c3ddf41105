//! The supervisor's tick: check and probe every replica, then converge each podgroup.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use neo_protocol::pb;

use super::health::{self, Limits, Probe, Probes, Verdict};
use super::replica::{Liveness, Replica, Spec};
use super::{Group, Inner, Tracked, exit};
use crate::driver::{DriverEvent, PodgroupKey};

/// A replica to probe: its podgroup, id, address, and whether it is still starting.
struct Target {
    key: PodgroupKey,
    id: String,
    addr: SocketAddr,
    starting: bool,
}

/// How often the state file is written at most when only log offsets moved (when nothing
/// moved, it is not written).
const SAVE_EVERY: Duration = Duration::from_secs(2);

impl Inner {
    /// One pass: liveness, probes, then convergence of every podgroup.
    pub(super) async fn tick(&self) {
        let (targets, reaped) = self.check_processes().await;
        let results = futures::future::join_all(targets.into_iter().map(|target| async move {
            let probes = self.probes(target.addr, target.starting).await;
            (target, probes)
        }))
        .await;
        let mut groups = self.groups.lock().await;
        let mut changed = reaped;
        for (target, probes) in results {
            if let Some(group) = groups.get_mut(&target.key) {
                changed |= self.record_probes(&target.key, group, &target.id, probes);
            }
        }
        for (key, group) in groups.iter_mut() {
            changed |= self.converge(key, group);
            self.routes.set_route(&key.tenant, &key.app, group.route());
        }
        let before = groups.len();
        groups.retain(|key, g| {
            let keep = g.desired.is_some() || !g.replicas.is_empty();
            if !keep {
                self.routes.remove(&key.tenant, &key.app);
            }
            keep
        });
        changed |= groups.len() != before;
        let shipped: u64 = groups
            .values()
            .flat_map(|g| g.replicas.iter())
            .flat_map(|t| t.offsets.iter())
            .map(|o| o.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let mut last_save = self
            .last_save
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (saved_at, saved_shipped) = *last_save;
        if changed || (shipped != saved_shipped && saved_at.elapsed() >= SAVE_EVERY) {
            self.save(&groups);
            *last_save = (Instant::now(), shipped);
        }
    }

    /// Reaps dead replicas, kills those past their grace; returns what to probe now (every
    /// starting replica, and a serving one every `serving_probe_every`), sampling their usage,
    /// and whether a replica was reaped.
    async fn check_processes(&self) -> (Vec<Target>, bool) {
        let mut groups = self.groups.lock().await;
        let mut targets = Vec::new();
        let mut reaped = false;
        for (key, group) in groups.iter_mut() {
            let mut gone = Vec::new();
            for (index, tracked) in group.replicas.iter_mut().enumerate() {
                let replica = &mut tracked.replica;
                match replica.liveness() {
                    Liveness::Exited(how) => gone.push((index, how)),
                    Liveness::Alive => {
                        if let Some(since) = replica.stopping {
                            if since.elapsed() >= self.config.grace {
                                replica.kill();
                            }
                            continue;
                        }
                        let starting = replica.phase == pb::ReplicaPhase::Starting;
                        let due = starting
                            || replica
                                .probed_at
                                .is_none_or(|at| at.elapsed() >= self.config.serving_probe_every);
                        if !due {
                            continue;
                        }
                        replica.probed_at = Some(Instant::now());
                        replica.sample();
                        targets.push(Target {
                            key: key.clone(),
                            id: replica.id.clone(),
                            addr: replica.addr(),
                            starting,
                        });
                    }
                }
            }
            for (index, how) in gone.into_iter().rev() {
                let tracked = group.replicas.remove(index);
                self.exited(key, group, tracked, &how);
                reaped = true;
            }
        }
        (targets, reaped)
    }

    /// A replica's process is gone: record why, and queue its replacement when it served.
    fn exited(&self, key: &PodgroupKey, group: &mut Group, tracked: Tracked, how: &str) {
        let Tracked {
            mut replica,
            tailer,
            ..
        } = tracked;
        // Let the tailer ship the last lines (often the reason) before it stops.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            tailer.abort();
        });
        if replica.stopping.is_some() {
            tracing::info!(podgroup = %key, replica = %replica.id, "replica stopped");
            return;
        }
        let reason = exit::reason(how, &replica.dir);
        tracing::warn!(podgroup = %key, replica = %replica.id, %reason, "replica died");
        let was_starting = replica.phase == pb::ReplicaPhase::Starting;
        replica.phase = pb::ReplicaPhase::Failed;
        replica.reason.clone_from(&reason);
        self.emit(DriverEvent::Health {
            key: key.clone(),
            replica: replica.status(),
        });
        let desired_release = group.desired.as_ref().map(|d| d.release);
        if was_starting && desired_release == Some(replica.spec.release) {
            group.start_failures += 1;
            group.last_failure = reason;
        } else if was_starting && group.canary_release() == Some(replica.spec.release) {
            group.canary_failures += 1;
            group.canary_last_failure = reason;
        } else {
            group.replacing.push((replica.id, reason, replica.spec));
        }
    }

    /// `/readyz` of a starting replica; `/healthz` and `/readyz` of one that has been ready.
    async fn probes(&self, addr: SocketAddr, starting: bool) -> Probes {
        if starting {
            return Probes {
                live: None,
                ready: self.probe(addr, "readyz").await,
            };
        }
        let (live, ready) =
            futures::future::join(self.probe(addr, "healthz"), self.probe(addr, "readyz")).await;
        Probes {
            live: Some(live),
            ready,
        }
    }

    async fn probe(&self, addr: SocketAddr, path: &str) -> Probe {
        match self.http.get(format!("http://{addr}/{path}")).send().await {
            Ok(response) if response.status().is_success() => Probe::Ok,
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.text().await.unwrap_or_default();
                Probe::Failed(health::failure(path, status, &body))
            }
            Err(e) => Probe::Failed(format!("/{path}: {e}")),
        }
    }

    /// Judges a replica by its probes; returns whether its phase changed (the state file
    /// records whether it served).
    fn record_probes(
        &self,
        key: &PodgroupKey,
        group: &mut Group,
        id: &str,
        probes: Probes,
    ) -> bool {
        let desired_release = group.desired.as_ref().map(|d| d.release);
        let canary_release = group.canary_release();
        let Some(index) = group.replicas.iter().position(|t| t.replica.id == id) else {
            return false;
        };
        let replica = &mut group.replicas[index].replica;
        if replica.stopping.is_some() {
            return false;
        }
        let before = health::State {
            phase: replica.phase,
            failures: replica.failures,
            reason: std::mem::take(&mut replica.reason),
        };
        let limits = Limits {
            failure_threshold: self.config.failure_threshold,
            start_timeout: self.config.start_timeout,
        };
        let (after, verdict) = health::judge(&before, replica.age(), probes, limits);
        replica.phase = after.phase;
        replica.failures = after.failures;
        replica.reason = after.reason;
        match verdict {
            Verdict::Keep => {}
            Verdict::StartFailed(reason) => {
                replica.terminate();
                if desired_release == Some(replica.spec.release) {
                    group.start_failures += 1;
                    group.last_failure = reason;
                } else if canary_release == Some(replica.spec.release) {
                    group.canary_failures += 1;
                    group.canary_last_failure = reason;
                }
            }
            Verdict::Replace(reason) => {
                replica.terminate();
                group
                    .replacing
                    .push((replica.id.clone(), reason, replica.spec.clone()));
            }
        }
        let replica = &group.replicas[index].replica;
        // A new reason in the same phase is news too (a starting replica says why it is not
        // ready yet); the same answer again is not.
        let phase_changed = replica.phase != before.phase;
        if !phase_changed && replica.reason == before.reason {
            return false;
        }
        tracing::info!(podgroup = %key, replica = %replica.id, phase = ?replica.phase,
            reason = %replica.reason, "replica phase or reason changed");
        self.emit(DriverEvent::Health {
            key: key.clone(),
            replica: replica.status(),
        });
        phase_changed
    }

    /// Starts, replaces and stops replicas so the group matches its desired state. Returns
    /// whether replicas were started or stopped.
    fn converge(&self, key: &PodgroupKey, group: &mut Group) -> bool {
        let (Some(desired), Some(spec)) = (group.desired.clone(), group.spec.clone()) else {
            // Nothing named yet (adopted) or being removed: start nothing.
            group.replacing.clear();
            return false;
        };
        let mut changed = false;
        if group.failed.is_none() && group.start_failures >= self.config.max_start_failures {
            let reason = format!(
                "release {} failed to start {} times: {}",
                desired.release, group.start_failures, group.last_failure
            );
            tracing::warn!(podgroup = %key, %reason, "rollout failed");
            group.failed = Some(reason);
            for tracked in &mut group.replicas {
                if tracked.replica.spec.release == desired.release {
                    tracked.replica.terminate();
                }
            }
        }
        let target = usize::try_from(desired.replicas).unwrap_or(usize::MAX);
        // Replace the replicas that died while serving, with what they ran.
        for (old, reason, old_spec) in std::mem::take(&mut group.replacing) {
            let current = old_spec.release == desired.release;
            if current && group.failed.is_some() {
                continue;
            }
            if !current && group.failed.is_none() {
                // The rollout replaces old replicas anyway.
                continue;
            }
            if current && self.live_of(group, desired.release) >= target {
                continue;
            }
            if let Some(new) = self.start(key, group, old_spec) {
                changed = true;
                self.emit(DriverEvent::Replaced {
                    key: key.clone(),
                    replica: old,
                    replacement: new,
                    reason,
                });
            }
        }
        if group.failed.is_some() {
            return changed;
        }
        let live = self.live_of(group, desired.release);
        for _ in live..target {
            changed |= self.start(key, group, spec.clone()).is_some();
        }
        if live > target {
            let mut extra: Vec<usize> = group
                .replicas
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    t.replica.spec.release == desired.release && t.replica.stopping.is_none()
                })
                .map(|(i, _)| i)
                .collect();
            // Stop the not-ready ones first, then the newest.
            extra.sort_by_key(|i| {
                let r = &group.replicas[*i].replica;
                (
                    r.phase == pb::ReplicaPhase::Ready,
                    std::cmp::Reverse(r.started_ms),
                )
            });
            for i in extra.into_iter().take(live - target) {
                group.replicas[i].replica.terminate();
                changed = true;
            }
        }
        changed |= self.converge_canary(key, group, target);
        let canary = group.canary_release();
        let ready = group
            .replicas
            .iter()
            .filter(|t| {
                t.replica.spec.release == desired.release
                    && t.replica.phase == pb::ReplicaPhase::Ready
                    && t.replica.stopping.is_none()
            })
            .count();
        if ready >= target {
            for tracked in &mut group.replicas {
                let release = tracked.replica.spec.release;
                if release != desired.release
                    && Some(release) != canary
                    && tracked.replica.stopping.is_none()
                {
                    tracked.replica.terminate();
                    changed = true;
                }
            }
        }
        changed
    }

    /// Starts and stops the canary's replicas: its share of `target` (at least one while the
    /// release runs any), none once it failed to start. Returns whether any started or stopped.
    fn converge_canary(&self, key: &PodgroupKey, group: &mut Group, target: usize) -> bool {
        let Some(canary) = group.desired.as_ref().and_then(|d| d.canary.clone()) else {
            return false;
        };
        let mut changed = false;
        if group.canary_failed.is_none() && group.canary_failures >= self.config.max_start_failures
        {
            let reason = format!(
                "canary release {} failed to start {} times: {}",
                canary.release, group.canary_failures, group.canary_last_failure
            );
            tracing::warn!(podgroup = %key, %reason, "canary failed");
            group.canary_failed = Some(reason);
            for tracked in &mut group.replicas {
                if tracked.replica.spec.release == canary.release {
                    tracked.replica.terminate();
                    changed = true;
                }
            }
        }
        let Some(spec) = group
            .canary_spec
            .clone()
            .filter(|_| group.canary_failed.is_none())
        else {
            return changed;
        };
        let share = (target * usize::try_from(canary.weight).unwrap_or(100)).div_ceil(100);
        let wanted = if target == 0 {
            0
        } else {
            share.clamp(1, target)
        };
        let live = self.live_of(group, canary.release);
        for _ in live..wanted {
            changed |= self.start(key, group, spec.clone()).is_some();
        }
        if live > wanted {
            let mut extra: Vec<usize> = group
                .replicas
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    t.replica.spec.release == canary.release && t.replica.stopping.is_none()
                })
                .map(|(i, _)| i)
                .collect();
            extra.sort_by_key(|i| group.replicas[*i].replica.phase == pb::ReplicaPhase::Ready);
            for i in extra.into_iter().take(live - wanted) {
                group.replicas[i].replica.terminate();
                changed = true;
            }
        }
        changed
    }

    /// Replicas of `release` that are not stopping.
    fn live_of(&self, group: &Group, release: u32) -> usize {
        group
            .replicas
            .iter()
            .filter(|t| t.replica.spec.release == release && t.replica.stopping.is_none())
            .count()
    }

    fn start(&self, key: &PodgroupKey, group: &mut Group, spec: Arc<Spec>) -> Option<String> {
        let release = spec.release;
        match Replica::start(key, spec, &self.replicas_dir()) {
            Ok(replica) => {
                let id = replica.id.clone();
                let offsets = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
                group.replicas.push(self.track(key, replica, offsets));
                Some(id)
            }
            Err(e) => {
                tracing::error!(podgroup = %key, error = %e, "cannot start a replica");
                if group.canary_release() == Some(release) {
                    group.canary_failures += 1;
                    group.canary_last_failure = e.to_string();
                } else {
                    group.start_failures += 1;
                    group.last_failure = e.to_string();
                }
                None
            }
        }
    }
}
