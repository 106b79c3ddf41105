//! The podgroup aggregate: one app's replicas on one stage, their resources and scale policy.
//!
//! The entity id is `{app}_{stage}`. The invariant every event keeps: `min ≤ desired ≤ max`.
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `command.missing` | invalid | the command names no operation |
//! | `podgroup.exists` | already exists | create, but the podgroup exists |
//! | `podgroup.app`, `podgroup.stage` | invalid | app or stage is not a valid name |
//! | `podgroup.image_digest` | invalid | a non-empty image digest is malformed |
//! | `podgroup.not_found` | not found | any other command before create |
//! | `policy.missing`, `resources.missing` | invalid | set a policy or resources without one |
//! | `policy.max` | invalid | max replicas is 0 or over 100 |
//! | `policy.bounds` | invalid | min replicas is over max replicas |
//! | `policy.target` | invalid | a target percentage is outside 1..=100 |
//! | `resources.minimum` | invalid | under 10 millicores or 16 MiB |
//! | `podgroup.bounds` | precondition | scale to a count outside the policy's bounds |
//! | `podgroup.unchanged` | precondition | scale to the current desired count |
//! | `policy.idle` | invalid | min replicas 0 without an idle window, or a window with min ≥ 1, or a window over 7 days |
//! | `observe.missing` | invalid | observe without an observation |
//! | `observe.usage` | invalid | a usage percentage is NaN, infinite or negative |
//! | `idle.policy` | precondition | scale to zero, but the policy keeps a replica |
//! | `idle.window` | precondition | scale to zero before the idle window since the last request |
//! | `podgroup.asleep` | precondition | scale to zero, but it has no desired replica already |
//! | `wake.cause` | invalid | wake without a cause |
//! | `podgroup.awake` | precondition | wake, but it has desired replicas already |
//! | `canary.missing` | invalid | start a canary without one |
//! | `canary.weight` | invalid | a canary's share is outside 1..=100 |
//! | `canary.stale` | precondition | start or promote a canary that is not after the release, or end one that ended |
//! | `canary.not_running` | precondition | step a release that is not the podgroup's canary |
//!
//! # Autoscaling
//!
//! A well-formed `Observe` is always accepted: it records `MetricsObserved` (the observation
//! and the replica count it alone recommends), then, when the autoscaler decides so,
//! `Autoscaled` (a new desired count, with the observation and policy that decided it) and
//! `ResourcesRaised` (a larger per-replica allocation), in one batch. The decision is
//! [`autoscale::decide`]; its rules (tolerance, stabilisation window, bounds, vertical
//! thresholds) are in that module's doc. `apply` keeps the scale-down window (`recent`) with
//! [`autoscale::record`], under the current policy's window.
//!
//! # Scale to zero
//!
//! A policy with `min_replicas` 0 has an idle window (`idle_to_zero_s`). The autoscaler never
//! takes such a podgroup under one replica from its usage; the stage's agent, which sees every
//! request, sends `ScaleToZero` once none came for the window (`ScaledToZero`, with the last
//! request's time), and `Wake` when a request comes for it at zero (`WokenUp`, with the
//! request as its cause): the load balancer holds that request until a replica is ready.
//!
//! # Canaries
//!
//! The deployment's canary releases reach the podgroup as `StartCanary`, `StepCanary` and
//! `EndCanary` ([`canary`]): the canary runs beside `release` with its share of the traffic.

use std::ops::Deref;

use neo_protocol::EntityKind;
use neo_protocol::pb::{self, podgroup_command::Command, podgroup_event::Event};

use super::{check_digest, check_name, missing_command};
use crate::aggregate::{Aggregate, Rejection};
use crate::autoscale;

/// The most replicas a policy may allow.
pub const MAX_REPLICAS: u32 = 100;
/// The least CPU a replica may be given, in millicores.
pub const MIN_CPU_MILLIS: u32 = 10;
/// The least memory a replica may be given, in MiB.
pub const MIN_MEMORY_MIB: u32 = 16;

/// The policy of a podgroup created without one: 1..=3 replicas, 70% CPU, 80% memory, 300 s.
pub const fn default_policy() -> pb::ScalePolicy {
    pb::ScalePolicy {
        min_replicas: 1,
        max_replicas: 3,
        target_cpu_percent: 70,
        target_memory_percent: 80,
        scale_down_window_s: 300,
        idle_to_zero_s: 0,
    }
}

/// The longest idle window a policy may set before scaling to zero: 7 days.
pub const MAX_IDLE_TO_ZERO_S: u32 = 7 * 24 * 3600;

/// The resources of a podgroup created without any: 250 millicores, 256 MiB.
pub const fn default_resources() -> pb::Resources {
    pb::Resources {
        cpu_millis: 250,
        memory_mib: 256,
    }
}

impl Aggregate for pb::PodgroupState {
    const KIND: EntityKind = EntityKind::Podgroup;
    type Command = pb::PodgroupCommand;
    type Event = pb::PodgroupEvent;

    fn handle(&self, command: pb::PodgroupCommand) -> Result<Vec<pb::PodgroupEvent>, Rejection> {
        let Some(command) = command.command else {
            return Err(missing_command("podgroup"));
        };
        let rules = Rules(self);
        let event = match command {
            Command::Create(create) => rules.create(create)?,
            Command::SetPolicy(set) => {
                rules.existing()?;
                let Some(policy) = set.policy else {
                    return Err(Rejection::invalid(
                        "policy.missing",
                        "set_policy.policy",
                        "set_policy needs a policy",
                    ));
                };
                check_policy("set_policy.policy", &policy)?;
                let desired = self
                    .desired
                    .max(policy.min_replicas)
                    .min(policy.max_replicas);
                Event::PolicySet(pb::ScalePolicySet {
                    policy: Some(policy),
                    desired,
                })
            }
            Command::Scale(scale) => {
                rules.existing()?;
                let policy = self.policy.unwrap_or_else(default_policy);
                let (min, max) = (policy.min_replicas, policy.max_replicas);
                if !(min..=max).contains(&scale.desired) {
                    return Err(Rejection::precondition(
                        "podgroup.bounds",
                        format_args!("desired {} is outside {min}..={max}", scale.desired),
                    ));
                }
                if scale.desired == self.desired {
                    return Err(Rejection::precondition(
                        "podgroup.unchanged",
                        format_args!("desired is already {}", self.desired),
                    ));
                }
                Event::Scaled(pb::ScaledTo {
                    from: self.desired,
                    to: scale.desired,
                    reason: scale.reason,
                })
            }
            Command::SetResources(set) => {
                rules.existing()?;
                let Some(resources) = set.resources else {
                    return Err(Rejection::invalid(
                        "resources.missing",
                        "set_resources.resources",
                        "set_resources needs resources",
                    ));
                };
                check_resources("set_resources.resources", &resources)?;
                Event::ResourcesSet(pb::ResourcesSet {
                    resources: Some(resources),
                })
            }
            Command::AssignRelease(assign) => {
                rules.existing()?;
                check_digest(
                    "podgroup.image_digest",
                    "assign_release.image_digest",
                    &assign.image_digest,
                )?;
                if assign.release <= self.release {
                    return Err(Rejection::precondition(
                        "podgroup.release_order",
                        format_args!(
                            "release {} is not after the current release {}",
                            assign.release, self.release
                        ),
                    ));
                }
                Event::ReleaseAssigned(pb::ReleaseAssigned {
                    release: assign.release,
                    image_digest: assign.image_digest,
                    config: assign.config,
                })
            }
            Command::RecordReplacement(replaced) => {
                rules.existing()?;
                if replaced.replica.is_empty() {
                    return Err(Rejection::invalid(
                        "replacement.replica",
                        "record_replacement.replica",
                        "the replaced replica is missing",
                    ));
                }
                Event::ReplicaReplaced(pb::ReplicaReplaced {
                    replica: replaced.replica,
                    replacement: replaced.replacement,
                    reason: replaced.reason,
                })
            }
            Command::Observe(observe) => return rules.observe(observe),
            Command::ScaleToZero(idle) => rules.scale_to_zero(&idle)?,
            Command::Wake(wake) => rules.wake(wake)?,
            Command::StartCanary(start) => rules.start_canary(start)?,
            Command::StepCanary(step) => rules.step_canary(step)?,
            Command::EndCanary(end) => rules.end_canary(end)?,
        };
        Ok(vec![pb::PodgroupEvent { event: Some(event) }])
    }

    fn apply(&mut self, event: &pb::PodgroupEvent) {
        let Some(event) = &event.event else { return };
        match event {
            Event::Created(e) => {
                self.exists = true;
                self.app.clone_from(&e.app);
                self.stage.clone_from(&e.stage);
                self.release = e.release;
                self.image_digest.clone_from(&e.image_digest);
                self.policy = e.policy;
                self.resources = e.resources;
                self.desired = e.desired;
                self.config.clone_from(&e.config);
            }
            Event::PolicySet(e) => {
                self.policy = e.policy;
                self.desired = e.desired;
            }
            Event::Scaled(e) => self.desired = e.to,
            Event::ResourcesSet(e) => self.resources = e.resources,
            Event::ReleaseAssigned(e) => {
                self.release = e.release;
                self.image_digest.clone_from(&e.image_digest);
                self.config.clone_from(&e.config);
                canary::apply(self, event);
            }
            Event::Observed(e) => {
                if let Some(observation) = &e.observation {
                    let window_s = self
                        .policy
                        .unwrap_or_else(default_policy)
                        .scale_down_window_s;
                    autoscale::record(&mut self.recent, window_s, observation, e.recommended);
                }
            }
            Event::Autoscaled(e) => self.desired = e.to,
            Event::ResourcesRaised(e) => self.resources = e.to,
            Event::ReplicaReplaced(_) => self.replacements += 1,
            Event::ScaledToZero(_) => self.desired = 0,
            Event::WokenUp(e) => self.desired = e.to,
            Event::CanaryStarted(_) | Event::CanaryStepped(_) | Event::CanaryEnded(_) => {
                canary::apply(self, event);
            }
        }
    }

    fn event_type(event: &pb::PodgroupEvent) -> &'static str {
        match &event.event {
            Some(Event::Created(_)) => "PodgroupCreated",
            Some(Event::PolicySet(_)) => "ScalePolicySet",
            Some(Event::Scaled(_)) => "ScaledTo",
            Some(Event::ResourcesSet(_)) => "ResourcesSet",
            Some(Event::ReleaseAssigned(_)) => "ReleaseAssigned",
            Some(Event::Observed(_)) => "MetricsObserved",
            Some(Event::Autoscaled(_)) => "Autoscaled",
            Some(Event::ResourcesRaised(_)) => "ResourcesRaised",
            Some(Event::ReplicaReplaced(_)) => "ReplicaReplaced",
            Some(Event::ScaledToZero(_)) => "ScaledToZero",
            Some(Event::WokenUp(_)) => "WokenUp",
            Some(Event::CanaryStarted(_)) => "CanaryStarted",
            Some(Event::CanaryStepped(_)) => "CanaryStepped",
            Some(Event::CanaryEnded(_)) => "CanaryEnded",
            None => crate::aggregate::UNKNOWN_EVENT,
        }
    }
}

/// The state as the rules below see it: a view, since a foreign type takes no inherent impl.
struct Rules<'a>(&'a pb::PodgroupState);

impl Deref for Rules<'_> {
    type Target = pb::PodgroupState;

    fn deref(&self) -> &pb::PodgroupState {
        self.0
    }
}

impl Rules<'_> {
    fn create(&self, create: pb::CreatePodgroup) -> Result<Event, Rejection> {
        if self.exists {
            return Err(Rejection::already_exists(
                "podgroup.exists",
                "the podgroup already exists",
            ));
        }
        check_name("podgroup.app", "create.app", "app", &create.app)?;
        check_name("podgroup.stage", "create.stage", "stage", &create.stage)?;
        if !create.image_digest.is_empty() {
            check_digest(
                "podgroup.image_digest",
                "create.image_digest",
                &create.image_digest,
            )?;
        }
        let policy = create.policy.unwrap_or_else(default_policy);
        check_policy("create.policy", &policy)?;
        let resources = create.resources.unwrap_or_else(default_resources);
        check_resources("create.resources", &resources)?;
        Ok(Event::Created(pb::PodgroupCreated {
            app: create.app,
            stage: create.stage,
            release: create.release,
            image_digest: create.image_digest,
            policy: Some(policy),
            resources: Some(resources),
            // A podgroup that may sleep starts awake: the idle window puts it to sleep.
            desired: policy.min_replicas.max(1),
            config: create.config,
        }))
    }

    /// Records an observation and what the autoscaler decides from it, in one batch:
    /// `MetricsObserved`, then `Autoscaled` and/or `ResourcesRaised` (see [`autoscale`]).
    fn observe(&self, observe: pb::Observe) -> Result<Vec<pb::PodgroupEvent>, Rejection> {
        self.existing()?;
        let Some(observation) = observe.observation else {
            return Err(Rejection::invalid(
                "observe.missing",
                "observe.observation",
                "observe needs an observation",
            ));
        };
        for (name, percent) in [
            ("cpu_percent", observation.cpu_percent),
            ("memory_percent", observation.memory_percent),
        ] {
            if !(percent.is_finite() && percent >= 0.0) {
                return Err(Rejection::invalid(
                    "observe.usage",
                    format!("observe.observation.{name}"),
                    format_args!("{name} {percent} is not a number ≥ 0"),
                ));
            }
        }
        let policy = self.policy.unwrap_or_else(default_policy);
        let resources = self.resources.unwrap_or_else(default_resources);
        let decision = autoscale::decide(&autoscale::Inputs {
            policy: &policy,
            resources: &resources,
            desired: self.desired,
            recent: &self.recent,
            observation: &observation,
        });
        let mut events = vec![Event::Observed(pb::MetricsObserved {
            observation: Some(observation),
            recommended: decision.recommended,
        })];
        if let Some(scale) = decision.scale {
            events.push(Event::Autoscaled(pb::Autoscaled {
                from: scale.from,
                to: scale.to,
                reason: scale.reason,
                observation: Some(observation),
                policy: Some(policy),
            }));
        }
        if let Some(raise) = decision.raise {
            events.push(Event::ResourcesRaised(pb::ResourcesRaised {
                from: Some(raise.from),
                to: Some(raise.to),
                reason: raise.reason,
                observation: Some(observation),
            }));
        }
        Ok(events
            .into_iter()
            .map(|event| pb::PodgroupEvent { event: Some(event) })
            .collect())
    }

    /// Goes to zero replicas when the policy allows it and no request came for its window.
    fn scale_to_zero(&self, idle: &pb::ScaleToZero) -> Result<Event, Rejection> {
        self.existing()?;
        let policy = self.policy.unwrap_or_else(default_policy);
        if policy.min_replicas > 0 || policy.idle_to_zero_s == 0 {
            return Err(Rejection::precondition(
                "idle.policy",
                format_args!(
                    "the scale policy keeps at least {} replica(s): set min replicas 0 and an \
                     idle window to scale to zero",
                    policy.min_replicas.max(1)
                ),
            ));
        }
        if self.desired == 0 {
            return Err(Rejection::precondition(
                "podgroup.asleep",
                "the podgroup has no desired replica already",
            ));
        }
        let idle_ms = idle.at_ms.saturating_sub(idle.last_request_ms);
        let window_ms = u64::from(policy.idle_to_zero_s) * 1000;
        if idle_ms < window_ms {
            return Err(Rejection::precondition(
                "idle.window",
                format_args!(
                    "idle for {:.1} s of the policy's {} s",
                    idle_ms as f64 / 1000.0,
                    policy.idle_to_zero_s
                ),
            ));
        }
        Ok(Event::ScaledToZero(pb::ScaledToZero {
            from: self.desired,
            last_request_ms: idle.last_request_ms,
            at_ms: idle.at_ms,
            idle_to_zero_s: policy.idle_to_zero_s,
        }))
    }

    /// Wakes a podgroup at zero: its policy's min replicas, at least one.
    fn wake(&self, wake: pb::Wake) -> Result<Event, Rejection> {
        self.existing()?;
        if wake.cause.trim().is_empty() {
            return Err(Rejection::invalid(
                "wake.cause",
                "wake.cause",
                "say what woke the podgroup",
            ));
        }
        if self.desired > 0 {
            return Err(Rejection::precondition(
                "podgroup.awake",
                format_args!(
                    "the podgroup has {} desired replica(s) already",
                    self.desired
                ),
            ));
        }
        let policy = self.policy.unwrap_or_else(default_policy);
        Ok(Event::WokenUp(pb::WokenUp {
            to: policy.min_replicas.max(1).min(policy.max_replicas),
            cause: wake.cause,
            at_ms: wake.at_ms,
        }))
    }

    fn existing(&self) -> Result<(), Rejection> {
        if self.exists {
            Ok(())
        } else {
            Err(Rejection::not_found(
                "podgroup.not_found",
                "the podgroup does not exist",
            ))
        }
    }
}

/// Checks a scale policy given as `field`.
fn check_policy(field: &str, policy: &pb::ScalePolicy) -> Result<(), Rejection> {
    let max = policy.max_replicas;
    if !(1..=MAX_REPLICAS).contains(&max) {
        return Err(Rejection::invalid(
            "policy.max",
            format!("{field}.max_replicas"),
            format_args!("max replicas {max} is outside 1..={MAX_REPLICAS}"),
        ));
    }
    if policy.min_replicas > max {
        return Err(Rejection::invalid(
            "policy.bounds",
            format!("{field}.min_replicas"),
            format_args!(
                "min replicas {} is over max replicas {max}",
                policy.min_replicas
            ),
        ));
    }
    let idle = policy.idle_to_zero_s;
    let idle_refusal = match (policy.min_replicas, idle) {
        (0, 0) => Some(
            "min replicas 0 needs an idle window: how long without a request before the \
             podgroup goes to zero replicas"
                .to_owned(),
        ),
        (min, 1..) if min > 0 => Some(format!(
            "an idle window needs min replicas 0 (it is {min}): only a podgroup that may have \
             no replica scales to zero"
        )),
        (_, idle) if idle > MAX_IDLE_TO_ZERO_S => Some(format!(
            "an idle window of {idle} s is over the most, {MAX_IDLE_TO_ZERO_S} s (7 days)"
        )),
        _ => None,
    };
    if let Some(message) = idle_refusal {
        return Err(Rejection::invalid(
            "policy.idle",
            format!("{field}.idle_to_zero_s"),
            message,
        ));
    }
    for (name, percent) in [
        ("target_cpu_percent", policy.target_cpu_percent),
        ("target_memory_percent", policy.target_memory_percent),
    ] {
        if !(1..=100).contains(&percent) {
            return Err(Rejection::invalid(
                "policy.target",
                format!("{field}.{name}"),
                format_args!("{name} {percent} is outside 1..=100"),
            ));
        }
    }
    Ok(())
}

/// Checks resources given as `field`.
fn check_resources(field: &str, resources: &pb::Resources) -> Result<(), Rejection> {
    if resources.cpu_millis < MIN_CPU_MILLIS {
        return Err(Rejection::invalid(
            "resources.minimum",
            format!("{field}.cpu_millis"),
            format_args!(
                "{} millicores is under the minimum of {MIN_CPU_MILLIS}",
                resources.cpu_millis
            ),
        ));
    }
    if resources.memory_mib < MIN_MEMORY_MIB {
        return Err(Rejection::invalid(
            "resources.minimum",
            format!("{field}.memory_mib"),
            format_args!(
                "{} MiB is under the minimum of {MIN_MEMORY_MIB}",
                resources.memory_mib
            ),
        ));
    }
    Ok(())
}

mod canary;

#[cfg(test)]
mod tests;
