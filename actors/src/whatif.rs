//! What-if: a podgroup's recorded observations replayed through the autoscaler under another
//! scale policy, to see the decisions it would have taken. Nothing is written.
//!
//! - [`what_if`] is the pure replay over a podgroup's events; [`recorded`] reads the decisions
//!   the live podgroup took from the same events; [`report`] puts both side by side.
//! - [`read_history`] reads a podgroup's events from `NEO_EVENTS` with an ordered consumer
//!   (the entity subject `neo.evt.{tenant}.podgroup.{app}_{stage}.*`); [`what_if_podgroup`]
//!   reads and reports.
//!
//! # The replay
//!
//! The simulated podgroup starts as the recorded one was created, with the other policy set on
//! it (so its desired count is clamped into that policy, as `SetScalePolicy` would). Then, in
//! the recorded order:
//!
//! - each `MetricsObserved` observation is sent to the simulated podgroup as an `Observe`
//!   command, through the podgroup aggregate's own `handle` (so, under the recorded policy,
//!   the decisions are the live ones); its `Autoscaled` and `ResourcesRaised` events are the
//!   what-if's decisions;
//! - operator actions are replayed as they happened: `ScaledTo` (its target clamped into the
//!   other policy), `ResourcesSet`, releases and replacements;
//! - the recorded `ScalePolicySet`, `Autoscaled` and `ResourcesRaised` are not: the other
//!   policy holds throughout, and the autoscaler's own decisions are what is being re-decided.
//!
//! The observations are replayed as recorded: the what-if does not model how the same load
//! would have spread over a different number of replicas (the recommendation,
//! `ceil(ready × usage / target)`, depends on the total load only, but the recorded ready
//! count and usage are those of the live podgroup).

use async_nats::jetstream;
use neo_protocol::pb::{self, podgroup_command::Command, podgroup_event::Event};
use neo_protocol::{EntityKind, EntityRef, envelope, headers, subjects};
use serde::Serialize;

use crate::aggregate::{Aggregate, Rejection};
use crate::aggregates::podgroup::default_policy;
use crate::replay::{self, ReadSettings, ReplayError};

/// Why a what-if could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WhatIfError {
    /// The entity named is not a podgroup.
    #[error("{0} is not a podgroup")]
    NotAPodgroup(String),
    /// The podgroup has no events (or none creating it).
    #[error("podgroup {0} does not exist (no PodgroupCreated event)")]
    NotFound(String),
    /// The other policy is malformed (the podgroup would refuse it).
    #[error("the policy is refused: {0}")]
    Policy(Rejection),
    /// Reading the events failed, or one of them is malformed.
    #[error(transparent)]
    Read(#[from] ReplayError),
}

/// A scale policy, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Fewest replicas.
    pub min_replicas: u32,
    /// Most replicas.
    pub max_replicas: u32,
    /// CPU target, percent of the allocation.
    pub target_cpu_percent: u32,
    /// Memory target, percent of the allocation.
    pub target_memory_percent: u32,
    /// Scale-down stabilisation window, seconds.
    pub scale_down_window_s: u32,
}

impl From<pb::ScalePolicy> for Policy {
    fn from(p: pb::ScalePolicy) -> Self {
        Self {
            min_replicas: p.min_replicas,
            max_replicas: p.max_replicas,
            target_cpu_percent: p.target_cpu_percent,
            target_memory_percent: p.target_memory_percent,
            scale_down_window_s: p.scale_down_window_s,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}..={} replicas, cpu {}%, memory {}%, window {} s",
            self.min_replicas,
            self.max_replicas,
            self.target_cpu_percent,
            self.target_memory_percent,
            self.scale_down_window_s
        )
    }
}

/// A per-replica allocation, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// CPU, millicores.
    pub cpu_millis: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
}

impl From<pb::Resources> for Allocation {
    fn from(r: pb::Resources) -> Self {
        Self {
            cpu_millis: r.cpu_millis,
            memory_mib: r.memory_mib,
        }
    }
}

/// What a decision changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The desired replica count.
    Replicas {
        /// Before.
        from: u32,
        /// After.
        to: u32,
    },
    /// The per-replica allocation.
    Resources {
        /// Before.
        from: Allocation,
        /// After.
        to: Allocation,
    },
}

/// One autoscaler decision, taken or that would have been.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The deciding observation's time (Unix milliseconds, the agent's clock).
    pub at_ms: u64,
    /// What changed.
    #[serde(flatten)]
    pub change: Change,
    /// The inputs that decided it.
    pub reason: String,
}

impl Decision {
    /// The decision an `Autoscaled` or `ResourcesRaised` event records, if `event` is one.
    pub fn of_event(event: &pb::PodgroupEvent) -> Option<Self> {
        match event.event.as_ref()? {
            Event::Autoscaled(e) => Some(Self {
                at_ms: e.observation.map_or(0, |o| o.at_ms),
                change: Change::Replicas {
                    from: e.from,
                    to: e.to,
                },
                reason: e.reason.clone(),
            }),
            Event::ResourcesRaised(e) => Some(Self {
                at_ms: e.observation.map_or(0, |o| o.at_ms),
                change: Change::Resources {
                    from: e.from.unwrap_or_default().into(),
                    to: e.to.unwrap_or_default().into(),
                },
                reason: e.reason.clone(),
            }),
            _ => None,
        }
    }
}

/// Figures of one run (recorded or what-if) over the observations.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Decisions taken.
    pub decisions: usize,
    /// Of which replica increases.
    pub scale_ups: usize,
    /// Of which replica decreases.
    pub scale_downs: usize,
    /// Of which allocation raises.
    pub raises: usize,
    /// The most replicas desired at any point.
    pub peak_replicas: u32,
    /// The replicas desired at the end.
    pub final_replicas: u32,
    /// Desired replicas integrated over the observations' time span (each interval between
    /// observations counted at the count in force during it): a proxy for cost.
    pub replica_seconds: u64,
}

/// One run: the policy, the decisions and their figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    /// The policy decided under (for the recorded run, the podgroup's last policy).
    pub policy: Policy,
    /// The decisions, in order.
    pub decisions: Vec<Decision>,
    /// Their figures.
    pub summary: Summary,
}

/// Integrates the figures of a run as its podgroup state evolves.
#[derive(Debug, Default)]
struct Tally {
    summary: Summary,
    /// The time of the latest observation counted.
    last_ms: Option<u64>,
    millis: u128,
}

impl Tally {
    fn start(desired: u32) -> Self {
        let mut t = Self::default();
        t.summary.peak_replicas = desired;
        t
    }

    /// An observation at `at_ms`, with `desired` in force up to it.
    fn observed(&mut self, at_ms: u64, desired: u32) {
        if let Some(last) = self.last_ms {
            let span = at_ms.saturating_sub(last);
            self.millis += u128::from(span) * u128::from(desired);
        }
        self.last_ms = Some(self.last_ms.map_or(at_ms, |l| l.max(at_ms)));
    }

    fn decided(&mut self, decision: &Decision) {
        self.summary.decisions += 1;
        match decision.change {
            Change::Replicas { from, to } if to > from => self.summary.scale_ups += 1,
            Change::Replicas { .. } => self.summary.scale_downs += 1,
            Change::Resources { .. } => self.summary.raises += 1,
        }
    }

    fn desired(&mut self, desired: u32) {
        self.summary.peak_replicas = self.summary.peak_replicas.max(desired);
        self.summary.final_replicas = desired;
    }

    fn finish(mut self, policy: pb::ScalePolicy, decisions: Vec<Decision>) -> Run {
        self.summary.replica_seconds = u64::try_from(self.millis / 1000).unwrap_or(u64::MAX);
        Run {
            policy: policy.into(),
            decisions,
            summary: self.summary,
        }
    }
}

/// The index of the event creating the podgroup.
fn creation(events: &[pb::PodgroupEvent]) -> Option<usize> {
    events
        .iter()
        .position(|e| matches!(e.event, Some(Event::Created(_))))
}

/// The decisions the live podgroup took, read from its `Autoscaled` and `ResourcesRaised`
/// events, with their figures; the policy reported is the podgroup's last.
///
/// # Errors
/// [`WhatIfError::NotFound`] (named `podgroup`) when no event creates the podgroup.
pub fn recorded(events: &[pb::PodgroupEvent], podgroup: &str) -> Result<Run, WhatIfError> {
    let first = creation(events).ok_or_else(|| WhatIfError::NotFound(podgroup.to_owned()))?;
    let mut state = pb::PodgroupState::default();
    state.apply(&events[first]);
    let mut tally = Tally::start(state.desired);
    let mut decisions = Vec::new();
    for event in &events[first + 1..] {
        if let Some(Event::Observed(e)) = &event.event
            && let Some(o) = &e.observation
        {
            tally.observed(o.at_ms, state.desired);
        }
        if let Some(decision) = Decision::of_event(event) {
            tally.decided(&decision);
            decisions.push(decision);
        }
        state.apply(event);
        tally.desired(state.desired);
    }
    tally.desired(state.desired);
    Ok(tally.finish(state.policy.unwrap_or_else(default_policy), decisions))
}

/// Replays the podgroup's recorded observations under `policy` (see the module doc) and
/// returns the decisions the autoscaler would have taken, with their figures. Pure.
///
/// # Errors
/// [`WhatIfError::NotFound`] when no event creates the podgroup; [`WhatIfError::Policy`] when
/// the podgroup would refuse `policy`.
pub fn what_if(
    events: &[pb::PodgroupEvent],
    policy: &pb::ScalePolicy,
    podgroup: &str,
) -> Result<Run, WhatIfError> {
    let first = creation(events).ok_or_else(|| WhatIfError::NotFound(podgroup.to_owned()))?;
    let mut sim = pb::PodgroupState::default();
    sim.apply(&events[first]);
    let set = sim
        .handle(command(Command::SetPolicy(pb::SetScalePolicy {
            policy: Some(*policy),
        })))
        .map_err(WhatIfError::Policy)?;
    for e in &set {
        sim.apply(e);
    }
    let mut tally = Tally::start(sim.desired);
    let mut decisions = Vec::new();
    for event in &events[first + 1..] {
        let Some(recorded) = &event.event else {
            continue;
        };
        match recorded {
            Event::Observed(e) => {
                let Some(observation) = e.observation else {
                    continue;
                };
                tally.observed(observation.at_ms, sim.desired);
                // Refused only for figures the live podgroup would have refused too.
                let Ok(new) = sim.handle(command(Command::Observe(pb::Observe {
                    observation: Some(observation),
                }))) else {
                    continue;
                };
                for e in &new {
                    if let Some(decision) = Decision::of_event(e) {
                        tally.decided(&decision);
                        decisions.push(decision);
                    }
                    sim.apply(e);
                }
            }
            Event::Scaled(e) => {
                let to = e.to.clamp(policy.min_replicas, policy.max_replicas);
                if to != sim.desired {
                    sim.apply(&pb::PodgroupEvent {
                        event: Some(Event::Scaled(pb::ScaledTo {
                            from: sim.desired,
                            to,
                            reason: e.reason.clone(),
                        })),
                    });
                }
            }
            // Under the other policy the same idleness and the same requests decide again:
            // it may not allow zero, or may not be asleep when the request comes.
            Event::ScaledToZero(e) => {
                let idle = Command::ScaleToZero(pb::ScaleToZero {
                    last_request_ms: e.last_request_ms,
                    at_ms: e.at_ms,
                });
                for e in sim.handle(command(idle)).unwrap_or_default() {
                    sim.apply(&e);
                }
            }
            Event::WokenUp(e) => {
                let wake = Command::Wake(pb::Wake {
                    cause: e.cause.clone(),
                    at_ms: e.at_ms,
                });
                for e in sim.handle(command(wake)).unwrap_or_default() {
                    sim.apply(&e);
                }
            }
            Event::ResourcesSet(_)
            | Event::ReleaseAssigned(_)
            | Event::ReplicaReplaced(_)
            | Event::CanaryStarted(_)
            | Event::CanaryStepped(_)
            | Event::CanaryEnded(_) => {
                sim.apply(event);
            }
            Event::Created(_)
            | Event::PolicySet(_)
            | Event::Autoscaled(_)
            | Event::ResourcesRaised(_) => {}
        }
        tally.desired(sim.desired);
    }
    tally.desired(sim.desired);
    Ok(tally.finish(*policy, decisions))
}

fn command(command: Command) -> pb::PodgroupCommand {
    pb::PodgroupCommand {
        command: Some(command),
    }
}

/// A podgroup's events, read from the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    /// The podgroup.
    pub entity: EntityRef,
    /// Its events, in stream order.
    pub events: Vec<pb::PodgroupEvent>,
    /// The stream sequence of the last one (0 when none).
    pub last_sequence: u64,
}

impl History {
    /// The podgroup's policy after its events (the default policy before any).
    pub fn policy(&self) -> pb::ScalePolicy {
        let mut state = pb::PodgroupState::default();
        for e in &self.events {
            state.apply(e);
        }
        state.policy.unwrap_or_else(default_policy)
    }
}

/// Changes to a policy; `None` keeps the field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Fewest replicas.
    pub min_replicas: Option<u32>,
    /// Most replicas.
    pub max_replicas: Option<u32>,
    /// CPU target, percent.
    pub target_cpu_percent: Option<u32>,
    /// Memory target, percent.
    pub target_memory_percent: Option<u32>,
    /// Scale-down window, seconds.
    pub scale_down_window_s: Option<u32>,
    /// Scale to zero after this many seconds without a request (0: never).
    pub idle_to_zero_s: Option<u32>,
}

impl Overrides {
    /// `base` with these changes.
    pub fn apply(&self, base: pb::ScalePolicy) -> pb::ScalePolicy {
        pb::ScalePolicy {
            min_replicas: self.min_replicas.unwrap_or(base.min_replicas),
            max_replicas: self.max_replicas.unwrap_or(base.max_replicas),
            target_cpu_percent: self.target_cpu_percent.unwrap_or(base.target_cpu_percent),
            target_memory_percent: self
                .target_memory_percent
                .unwrap_or(base.target_memory_percent),
            scale_down_window_s: self.scale_down_window_s.unwrap_or(base.scale_down_window_s),
            idle_to_zero_s: self.idle_to_zero_s.unwrap_or(base.idle_to_zero_s),
        }
    }
}

/// The recorded decisions beside those under another policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The podgroup (`{tenant}/podgroup/{app}_{stage}`).
    pub podgroup: String,
    /// The stream sequence of its last event read.
    pub last_sequence: u64,
    /// Observations recorded.
    pub observations: usize,
    /// What the live podgroup decided.
    pub recorded: Run,
    /// What it would have decided under the other policy.
    pub what_if: Run,
}

/// Compares the recorded decisions with those under the podgroup's last policy changed by
/// `overrides`.
///
/// # Errors
/// As [`what_if`].
pub fn report(history: &History, overrides: &Overrides) -> Result<Report, WhatIfError> {
    let podgroup = history.entity.to_string();
    let recorded = recorded(&history.events, &podgroup)?;
    let policy = overrides.apply(history.policy());
    let what_if = what_if(&history.events, &policy, &podgroup)?;
    let observations = history
        .events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Observed(_))))
        .count();
    Ok(Report {
        podgroup,
        last_sequence: history.last_sequence,
        observations,
        recorded,
        what_if,
    })
}

/// Reads `entity`'s events from `NEO_EVENTS` with an ordered consumer (read only).
///
/// # Errors
/// [`WhatIfError::NotAPodgroup`] for another kind; [`WhatIfError::Read`] when the stream
/// cannot be read or an event is malformed (naming its sequence).
pub async fn read_history(
    js: &jetstream::Context,
    entity: &EntityRef,
) -> Result<History, WhatIfError> {
    if entity.kind != EntityKind::Podgroup {
        return Err(WhatIfError::NotAPodgroup(entity.to_string()));
    }
    let mut events = Vec::new();
    let (_, last_sequence) = replay::read_range(
        js,
        &subjects::entity_events(entity),
        1,
        u64::MAX,
        ReadSettings::default(),
        |sequence, message| {
            events.push(decode(sequence, &message)?);
            Ok(())
        },
    )
    .await?;
    tracing::debug!(%entity, events = events.len(), last_sequence, "podgroup history read");
    Ok(History {
        entity: entity.clone(),
        events,
        last_sequence,
    })
}

/// Upcasts and decodes one stored podgroup event, as the host does.
fn decode(sequence: u64, message: &async_nats::Message) -> Result<pb::PodgroupEvent, ReplayError> {
    let malformed = |reason: String| ReplayError::Malformed {
        sequence,
        subject: message.subject.chars().take(200).collect(),
        reason,
    };
    let (_, event_type) =
        subjects::parse_event(&message.subject).map_err(|e| malformed(e.to_string()))?;
    let version = envelope::schema_version(
        message
            .headers
            .as_ref()
            .and_then(|h| h.get(headers::SCHEMA_VERSION))
            .map(async_nats::HeaderValue::as_str),
    )
    .map_err(|e| malformed(e.to_string()))?;
    crate::stored::decode::<pb::PodgroupState>(&event_type, version, message.payload.clone())
        .map_err(|e| malformed(e.to_string()))
}

/// Reads `entity`'s events and reports the recorded decisions beside those under its last
/// policy changed by `overrides`. Writes nothing.
///
/// # Errors
/// As [`read_history`] and [`report`].
pub async fn what_if_podgroup(
    js: &jetstream::Context,
    entity: &EntityRef,
    overrides: &Overrides,
) -> Result<Report, WhatIfError> {
    let history = read_history(js, entity).await?;
    let report = report(&history, overrides)?;
    tracing::info!(
        podgroup = %report.podgroup,
        observations = report.observations,
        recorded = report.recorded.summary.decisions,
        what_if = report.what_if.summary.decisions,
        "what-if replayed"
    );
    Ok(report)
}

#[cfg(test)]
mod tests;
