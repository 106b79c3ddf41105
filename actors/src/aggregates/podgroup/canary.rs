//! A canary beside the podgroup's release: the deployment starts it, steps its share of the
//! traffic and ends it (promoted or rolled back); the podgroup keeps what the stage's agent
//! must run for it.
//!
//! Reactors deliver the deployment's canary events in order, but a start and an end come
//! through different reactors: an end of a canary that never started here still counts
//! (`canary_ended`), so its late start is refused as stale; a promotion of a release older
//! than the podgroup's own is refused.

use neo_protocol::pb::{self, podgroup_event::Event};

use super::Rules;
use crate::aggregate::Rejection;
use crate::aggregates::check_digest;

impl Rules<'_> {
    /// Starts a canary beside the release.
    pub(super) fn start_canary(&self, start: pb::StartCanary) -> Result<Event, Rejection> {
        self.existing()?;
        let Some(canary) = start.canary else {
            return Err(Rejection::invalid(
                "canary.missing",
                "start_canary.canary",
                "start_canary needs a canary",
            ));
        };
        check_digest(
            "podgroup.image_digest",
            "start_canary.canary.image_digest",
            &canary.image_digest,
        )?;
        if canary.release <= self.release || canary.release <= self.canary_ended {
            return Err(Rejection::precondition(
                "canary.stale",
                format_args!(
                    "release {} is not after the current release {} or an ended canary",
                    canary.release, self.release
                ),
            ));
        }
        if !(1..=100).contains(&canary.weight) {
            return Err(Rejection::invalid(
                "canary.weight",
                "start_canary.canary.weight",
                format_args!("weight {} is outside 1..=100", canary.weight),
            ));
        }
        Ok(Event::CanaryStarted(pb::CanaryStarted {
            canary: Some(canary),
        }))
    }

    /// Moves the canary to its next step.
    pub(super) fn step_canary(&self, step: pb::StepCanary) -> Result<Event, Rejection> {
        self.existing()?;
        self.running(step.release)?;
        if !(1..=100).contains(&step.weight) {
            return Err(Rejection::invalid(
                "canary.weight",
                "step_canary.weight",
                format_args!("weight {} is outside 1..=100", step.weight),
            ));
        }
        Ok(Event::CanaryStepped(pb::CanaryStepped {
            release: step.release,
            step: step.step,
            weight: step.weight,
        }))
    }

    /// Ends the canary: promoted (the release becomes the podgroup's) or rolled back.
    pub(super) fn end_canary(&self, end: pb::EndCanary) -> Result<Event, Rejection> {
        self.existing()?;
        if end.release <= self.canary_ended {
            return Err(Rejection::precondition(
                "canary.stale",
                format_args!("the canary of release {} ended already", end.release),
            ));
        }
        if end.promoted {
            check_digest(
                "podgroup.image_digest",
                "end_canary.image_digest",
                &end.image_digest,
            )?;
            if end.release <= self.release {
                return Err(Rejection::precondition(
                    "canary.stale",
                    format_args!(
                        "release {} is not after the current release {}",
                        end.release, self.release
                    ),
                ));
            }
        }
        Ok(Event::CanaryEnded(pb::CanaryEnded {
            release: end.release,
            promoted: end.promoted,
            image_digest: end.image_digest,
            config: end.config,
            reason: end.reason,
        }))
    }

    fn running(&self, release: u32) -> Result<&pb::PodgroupCanary, Rejection> {
        match &self.canary {
            Some(canary) if canary.release == release => Ok(canary),
            _ => Err(Rejection::precondition(
                "canary.not_running",
                format_args!("release {release} is not a canary of this podgroup"),
            )),
        }
    }
}

/// Folds a canary event into the state.
pub(super) fn apply(state: &mut pb::PodgroupState, event: &Event) {
    match event {
        Event::CanaryStarted(e) => state.canary.clone_from(&e.canary),
        Event::CanaryStepped(e) => {
            if let Some(canary) = state.canary.as_mut().filter(|c| c.release == e.release) {
                canary.step = e.step;
                canary.weight = e.weight;
            }
        }
        Event::CanaryEnded(e) => {
            if state
                .canary
                .as_ref()
                .is_some_and(|c| c.release <= e.release)
            {
                state.canary = None;
            }
            state.canary_ended = state.canary_ended.max(e.release);
            if e.promoted {
                state.release = e.release;
                state.image_digest.clone_from(&e.image_digest);
                state.config.clone_from(&e.config);
            }
        }
        // A release after a canary replaces it (the deployment ended it already).
        Event::ReleaseAssigned(e)
            if state
                .canary
                .as_ref()
                .is_some_and(|c| c.release <= e.release) =>
        {
            state.canary = None;
        }
        _ => {}
    }
}
