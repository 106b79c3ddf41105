//! The autoscaler's decision: from one observation of a podgroup, the replica count and the
//! per-replica allocation it should have. A pure function, like the Kubernetes HPA.
//!
//! The podgroup aggregate calls [`decide`] for every `Observe` command and records the result
//! as events (`MetricsObserved`, then `Autoscaled` and/or `ResourcesRaised`); its `apply`
//! keeps the scale-down window with [`record`], the same fold [`decide`] uses; a what-if
//! ([`crate::whatif`]) runs the recorded observations through it again under another policy.
//!
//! # Rules
//!
//! An observation is `{at_ms, ready_replicas, cpu_percent, memory_percent}`, the percentages
//! being usage relative to the per-replica allocation, averaged over the ready replicas.
//!
//! 1. **No data, no decision.** An observation with no ready replica, with a percentage that
//!    is not a finite number ≥ 0, or taken before the last observation that entered the window
//!    (`at_ms` going backwards) decides nothing: the recommendation is the current desired
//!    count and the window is unchanged ([`Skip`]).
//! 2. **Ratio.** `ratio = max(cpu_percent / target_cpu, memory_percent / target_memory)`; the
//!    metric with the higher ratio is the one named in the reason.
//! 3. **Tolerance.** When `|ratio − 1| ≤ 0.1` ([`TOLERANCE`], float noise under 1e-9
//!    ignored) the recommendation is the current desired count.
//! 4. **Recommendation.** Otherwise `ceil(ready_replicas × ratio)` (float noise under 1e-9
//!    ignored), never against the load's direction (with `ratio > 1` not under the current
//!    desired count, with `ratio < 1` not over it), clamped to `[min, max]`. Every
//!    recommendation is within the policy's bounds. A `min` of 0 counts as 1 here: only the
//!    lack of requests takes a podgroup to zero (see the podgroup aggregate's scale to zero).
//! 5. **Window.** The recommendation enters the window, after the window drops every entry at
//!    least `scale_down_window_s` older than this observation (entries with
//!    `at_ms + window > now` stay; the newest entry always stays).
//! 6. **Scale up at once.** A recommendation over the desired count becomes the desired count.
//! 7. **Scale down slowly.** Otherwise the desired count becomes the highest recommendation in
//!    the window (clamped to `[min, max]`) if that is under it: it drops only once every
//!    higher recommendation has aged out of the window.
//! 8. **Vertical.** With data (rule 1), the per-replica allocation is raised by half
//!    ([`RAISE_NUMERATOR`] / [`RAISE_DENOMINATOR`], rounded up):
//!    memory when `memory_percent ≥ 90` ([`MEMORY_RAISE_PERCENT`]), up to 8192 MiB
//!    ([`MAX_MEMORY_MIB`]); CPU when the desired count is already at the policy's max and
//!    `cpu_percent` is over the target and `≥ 90` ([`CPU_RAISE_PERCENT`]), up to 4000
//!    millicores ([`MAX_CPU_MILLIS`]). An allocation already at or over its cap stays.
//!    Horizontal and vertical changes may both follow from one observation.

use neo_protocol::pb;

/// The band around a ratio of 1 inside which the replica count stays (±10%).
pub const TOLERANCE: f64 = 0.1;
/// The memory usage (percent of the allocation) at or over which memory is raised.
pub const MEMORY_RAISE_PERCENT: f64 = 90.0;
/// The CPU usage (percent of the allocation) at or over which CPU is raised, once the
/// podgroup is at its max replicas and over its CPU target.
pub const CPU_RAISE_PERCENT: f64 = 90.0;
/// A raise multiplies the allocation by `RAISE_NUMERATOR / RAISE_DENOMINATOR` (× 1.5).
pub const RAISE_NUMERATOR: u64 = 3;
/// See [`RAISE_NUMERATOR`].
pub const RAISE_DENOMINATOR: u64 = 2;
/// The most memory a raise gives a replica, in MiB (8 GiB).
pub const MAX_MEMORY_MIB: u32 = 8192;
/// The most CPU a raise gives a replica, in millicores (4 cores).
pub const MAX_CPU_MILLIS: u32 = 4000;

/// Float noise ignored before rounding a replica count up.
const EPSILON: f64 = 1e-9;

/// What one decision reads.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The podgroup's scale policy.
    pub policy: &'a pb::ScalePolicy,
    /// The per-replica allocation the percentages are relative to.
    pub resources: &'a pb::Resources,
    /// The desired replica count now.
    pub desired: u32,
    /// The scale-down window: recommendations, oldest first.
    pub recent: &'a [pb::Recommendation],
    /// The observation to decide from.
    pub observation: &'a pb::Observation,
}

/// What one observation decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count this observation alone recommends (the current desired count when
    /// it decides nothing).
    pub recommended: u32,
    /// The scale-down window after it.
    pub recent: Vec<pb::Recommendation>,
    /// A change of the desired replica count.
    pub scale: Option<Scale>,
    /// A raise of the per-replica allocation.
    pub raise: Option<Raise>,
    /// Why the observation decided nothing, if it did not.
    pub skipped: Option<Skip>,
}

/// A horizontal change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scale {
    /// The desired count before.
    pub from: u32,
    /// The desired count after.
    pub to: u32,
    /// The inputs that decided it, e.g. `cpu 142% of target 70% over 2 ready replicas → 5`.
    pub reason: String,
}

/// A vertical change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raise {
    /// The allocation before.
    pub from: pb::Resources,
    /// The allocation after.
    pub to: pb::Resources,
    /// The inputs that decided it, e.g. `memory 95% of 256 MiB ≥ 90% → 384 MiB`.
    pub reason: String,
}

/// Why an observation decides nothing.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum Skip {
    /// No replica was ready: the percentages average nothing.
    #[error("no ready replica")]
    NoReadyReplica,
    /// A percentage is NaN, infinite or negative.
    #[error("usage is not a number ≥ 0 (cpu {cpu_percent}%, memory {memory_percent}%)")]
    BadUsage {
        /// The CPU percentage observed.
        cpu_percent: f64,
        /// The memory percentage observed.
        memory_percent: f64,
    },
    /// Taken before the last observation that entered the window.
    #[error("taken at {at_ms} ms, before the last observation at {last_ms} ms")]
    Stale {
        /// When this observation was taken.
        at_ms: u64,
        /// When the last one in the window was taken.
        last_ms: u64,
    },
}

/// Why `observation` decides nothing given the window `recent`, or `None` when it decides.
pub fn skip(recent: &[pb::Recommendation], observation: &pb::Observation) -> Option<Skip> {
    let usable = |p: f64| p.is_finite() && p >= 0.0;
    if observation.ready_replicas == 0 {
        Some(Skip::NoReadyReplica)
    } else if !usable(observation.cpu_percent) || !usable(observation.memory_percent) {
        Some(Skip::BadUsage {
            cpu_percent: observation.cpu_percent,
            memory_percent: observation.memory_percent,
        })
    } else {
        match recent.last() {
            Some(last) if observation.at_ms < last.at_ms => Some(Skip::Stale {
                at_ms: observation.at_ms,
                last_ms: last.at_ms,
            }),
            _ => None,
        }
    }
}

/// Folds a recorded observation and its recommendation into the window (rule 5): unless the
/// observation decides nothing ([`skip`]), drops the entries at least `window_s` older than
/// it and appends `(at_ms, recommended)`. The podgroup's `apply` calls this for every
/// `MetricsObserved`, so the window it keeps is the one [`decide`] returned.
pub fn record(
    recent: &mut Vec<pb::Recommendation>,
    window_s: u32,
    observation: &pb::Observation,
    recommended: u32,
) {
    if skip(recent, observation).is_some() {
        return;
    }
    let now = observation.at_ms;
    let window_ms = u64::from(window_s) * 1000;
    recent.retain(|r| r.at_ms.saturating_add(window_ms) > now);
    recent.push(pb::Recommendation {
        at_ms: now,
        replicas: recommended,
    });
}

/// Decides from one observation (the rules of the module doc).
pub fn decide(inputs: &Inputs<'_>) -> Decision {
    let Inputs {
        policy,
        resources,
        desired,
        recent,
        observation: o,
    } = *inputs;
    if let Some(skipped) = skip(recent, o) {
        return Decision {
            recommended: desired,
            recent: recent.to_vec(),
            scale: None,
            raise: None,
            skipped: Some(skipped),
        };
    }
    // A policy's min of 0 counts as 1: usage never takes a podgroup to zero, only a lack of
    // requests does (the agent's `ScaleToZero`).
    let (min, max) = (
        policy.min_replicas.max(1).min(policy.max_replicas),
        policy.max_replicas,
    );
    let load = Load::of(policy, o);
    let ratio = load.ratio();
    let needed = (f64::from(o.ready_replicas) * ratio - EPSILON)
        .ceil()
        .max(0.0);
    let recommended = if (ratio - 1.0).abs() <= TOLERANCE + EPSILON {
        desired
    } else {
        // `as` saturates: a huge need is clamped to max below.
        let mut n = needed as u32;
        if (ratio > 1.0 && n < desired) || (ratio < 1.0 && n > desired) {
            n = desired;
        }
        n
    }
    .clamp(min, max);

    let mut window = recent.to_vec();
    record(&mut window, policy.scale_down_window_s, o, recommended);
    let to = if recommended > desired {
        recommended
    } else {
        let highest = window
            .iter()
            .map(|r| r.replicas)
            .max()
            .unwrap_or(recommended);
        highest.clamp(min, max).min(desired)
    };
    let scale = (to != desired).then(|| {
        // `as` saturates.
        let needed = needed as u64;
        let mut reason = load.describe(o.ready_replicas, needed);
        if needed > u64::from(max) {
            reason.push_str(&format!(", capped at max {max}"));
        } else if needed < u64::from(min) {
            reason.push_str(&format!(", raised to min {min}"));
        }
        if to != recommended {
            reason.push_str(&format!(
                ", highest in the last {} s: {to}",
                policy.scale_down_window_s
            ));
        }
        Scale {
            from: desired,
            to,
            reason,
        }
    });
    Decision {
        recommended,
        recent: window,
        scale,
        raise: raise(policy, resources, desired, o),
        skipped: None,
    }
}

/// The usage figures against their targets.
struct Load {
    cpu: (f64, u32),
    memory: (f64, u32),
}

impl Load {
    fn of(policy: &pb::ScalePolicy, o: &pb::Observation) -> Self {
        Self {
            cpu: (o.cpu_percent, policy.target_cpu_percent.max(1)),
            memory: (o.memory_percent, policy.target_memory_percent.max(1)),
        }
    }

    fn ratios(&self) -> (f64, f64) {
        (
            self.cpu.0 / f64::from(self.cpu.1),
            self.memory.0 / f64::from(self.memory.1),
        )
    }

    fn ratio(&self) -> f64 {
        let (cpu, memory) = self.ratios();
        cpu.max(memory)
    }

    /// `cpu 142% of target 70% over 2 ready replicas → 5`, naming the metric of the higher
    /// ratio.
    fn describe(&self, ready: u32, needed: u64) -> String {
        let (cpu, memory) = self.ratios();
        let (name, (percent, target)) = if cpu >= memory {
            ("cpu", self.cpu)
        } else {
            ("memory", self.memory)
        };
        let replicas = if ready == 1 { "replica" } else { "replicas" };
        format!("{name} {percent:.0}% of target {target}% over {ready} ready {replicas} → {needed}")
    }
}

/// Rule 8: the raised allocation, if any.
fn raise(
    policy: &pb::ScalePolicy,
    resources: &pb::Resources,
    desired: u32,
    o: &pb::Observation,
) -> Option<Raise> {
    let mut to = *resources;
    let mut reasons = Vec::new();
    if o.memory_percent >= MEMORY_RAISE_PERCENT {
        let memory = raised(resources.memory_mib, MAX_MEMORY_MIB);
        if memory > resources.memory_mib {
            to.memory_mib = memory;
            reasons.push(format!(
                "memory {:.0}% of {} MiB ≥ {MEMORY_RAISE_PERCENT}% → {memory} MiB",
                o.memory_percent, resources.memory_mib
            ));
        }
    }
    if desired >= policy.max_replicas
        && o.cpu_percent > f64::from(policy.target_cpu_percent)
        && o.cpu_percent >= CPU_RAISE_PERCENT
    {
        let cpu = raised(resources.cpu_millis, MAX_CPU_MILLIS);
        if cpu > resources.cpu_millis {
            to.cpu_millis = cpu;
            reasons.push(format!(
                "cpu {:.0}% of {} millicores ≥ {CPU_RAISE_PERCENT}% at max {} replicas → {cpu} \
                 millicores",
                o.cpu_percent, resources.cpu_millis, policy.max_replicas
            ));
        }
    }
    (!reasons.is_empty()).then(|| Raise {
        from: *resources,
        to,
        reason: reasons.join("; "),
    })
}

/// `value × 1.5` rounded up, at most `cap` (and never under `value`).
fn raised(value: u32, cap: u32) -> u32 {
    let up = (u64::from(value) * RAISE_NUMERATOR).div_ceil(RAISE_DENOMINATOR);
    u32::try_from(up).unwrap_or(u32::MAX).min(cap).max(value)
}

#[cfg(test)]
mod tests;
