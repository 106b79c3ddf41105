//! Given/when/then tests of canary releases.

use neo_protocol::pb::{self, CanaryPhase, deployment_command::Command, deployment_event::Event};

use super::super::tests::{ev, promote, promoted, run, source, two_releases};
use crate::aggregate::Aggregate;
use crate::aggregate::testing::{assert_refused, given};
use crate::canary::default_policy;

type State = pb::DeploymentState;

fn canary_promote() -> Command {
    let Command::Promote(mut promote) = promote(Some(source())) else {
        unreachable!("a promotion")
    };
    promote.canary = true;
    Command::Promote(promote)
}

/// v1, v2, then v3 promoted as a canary at 10 % over v2.
fn running() -> Vec<pb::DeploymentEvent> {
    let mut events = two_releases();
    events.extend(run(two_releases(), canary_promote()).expect("accepted"));
    events
}

fn figures(requests: u64, errors: u64, p95_ms: f64) -> pb::ReleaseFigures {
    pb::ReleaseFigures {
        requests,
        errors,
        p95_ms,
    }
}

fn step(step: u32, canary: pb::ReleaseFigures) -> Command {
    Command::RecordCanaryStep(pb::RecordCanaryStep {
        release: 3,
        step,
        baseline: Some(figures(900, 0, 40.0)),
        canary: Some(canary),
    })
}

fn canary_of(state: &State, number: u32) -> pb::Canary {
    state.releases[number as usize - 1]
        .canary
        .clone()
        .expect("a canary")
}

#[test]
fn a_canary_promotion_runs_beside_the_current_release_at_the_first_step() {
    let state: State = given(running());
    assert_eq!(state.current, 3);
    let canary = canary_of(&state, 3);
    assert_eq!((canary.baseline, canary.step, canary.weight), (2, 0, 10));
    assert_eq!(canary.phase(), CanaryPhase::Running);
    assert_eq!(canary.policy, Some(default_policy()));
    let plain = run(two_releases(), promote(Some(source()))).expect("accepted");
    assert_eq!(plain, vec![promoted(3)], "without canary nothing changes");
}

#[test]
fn a_canary_needs_a_baseline_and_nothing_else_releases_while_it_runs() {
    assert_refused(run([], canary_promote()), "canary.no_baseline");
    let r = run(running(), super::super::tests::rollback(1)).expect_err("refused");
    assert_eq!(r.rule, "canary.running");
    assert_eq!(
        r.message,
        "release v3 is rolling out as a canary: complete or abort it first"
    );
    assert_refused(run(running(), canary_promote()), "canary.running");
}

#[test]
fn a_healthy_canary_advances_then_completes_with_its_figures() {
    let mut events = running();
    let advanced = run(events.clone(), step(0, figures(100, 0, 41.0))).expect("accepted");
    let [
        pb::DeploymentEvent {
            event: Some(Event::CanaryAdvanced(a)),
        },
    ] = advanced.as_slice()
    else {
        panic!("not advanced: {advanced:?}");
    };
    assert_eq!((a.release, a.step, a.weight), (3, 1, 50));
    assert_eq!(a.judged.as_ref().map(|j| j.weight), Some(10));
    events.extend(advanced);
    assert_refused(
        run(events.clone(), step(0, figures(100, 0, 41.0))),
        "canary.step",
    );
    let completed = run(events.clone(), step(1, figures(500, 0, 41.0))).expect("accepted");
    events.extend(completed);
    let state: State = given(events);
    let canary = canary_of(&state, 3);
    assert_eq!(canary.phase(), CanaryPhase::Completed);
    assert_eq!((canary.weight, canary.steps.len()), (100, 2));
    assert!(
        canary.outcome.starts_with("every step passed"),
        "{}",
        canary.outcome
    );
    assert_eq!(state.current, 3);
}

#[test]
fn a_failing_step_rolls_back_to_the_baseline_naming_the_figures() {
    let mut events = running();
    let rolled = run(events.clone(), step(0, figures(100, 30, 41.0))).expect("accepted");
    let [
        pb::DeploymentEvent {
            event: Some(Event::CanaryRolledBack(r)),
        },
    ] = rolled.as_slice()
    else {
        panic!("not rolled back: {rolled:?}");
    };
    assert_eq!((r.release, r.baseline), (3, 2));
    assert!(r.reason.starts_with("error rate 30.0 %"), "{}", r.reason);
    events.extend(rolled);
    let state: State = given(events.clone());
    assert_eq!(state.current, 2, "the baseline serves again");
    assert_eq!(canary_of(&state, 3).phase(), CanaryPhase::RolledBack);
    assert_refused(
        run(events.clone(), step(0, figures(100, 0, 41.0))),
        "canary.not_running",
    );
    run(events, super::super::tests::rollback(1)).expect("releases again once it ended");
}

#[test]
fn too_few_requests_are_refused_and_the_step_runs_on() {
    let r = run(running(), step(0, figures(5, 5, 900.0))).expect_err("refused");
    assert_eq!(r.rule, "canary.too_few_requests");
    assert_eq!(r.message, "5 request(s) of the 20 a step needs");
}

#[test]
fn a_canary_is_aborted_or_promoted_at_once_by_hand() {
    let aborted = run(
        running(),
        Command::AbortCanary(pb::AbortCanary {
            release: 3,
            reason: "customers complain".into(),
        }),
    )
    .expect("accepted");
    let state: State = given(running().into_iter().chain(aborted));
    assert_eq!(state.current, 2);
    assert_eq!(canary_of(&state, 3).outcome, "aborted: customers complain");

    let now = run(
        running(),
        Command::CompleteCanary(pb::CompleteCanary { release: 3 }),
    )
    .expect("accepted");
    let state: State = given(running().into_iter().chain(now));
    assert_eq!(canary_of(&state, 3).phase(), CanaryPhase::Completed);
    assert_eq!(
        canary_of(&state, 3).outcome,
        "promoted at once at step 0 (10 %)"
    );
    assert_refused(
        run(
            two_releases(),
            Command::CompleteCanary(pb::CompleteCanary { release: 2 }),
        ),
        "canary.not_running",
    );
}

#[test]
fn the_stage_policy_is_checked_kept_and_used_by_the_next_canary() {
    let policy = pb::CanaryPolicy {
        steps: vec![25],
        step_seconds: 5,
        ..default_policy()
    };
    let set = |policy| {
        Command::SetCanaryPolicy(pb::SetCanaryPolicy {
            policy: Some(policy),
        })
    };
    let r = run(
        two_releases(),
        set(pb::CanaryPolicy {
            steps: vec![50, 10],
            ..default_policy()
        }),
    )
    .expect_err("refused");
    assert_eq!(r.rule, "canary.policy");
    assert_eq!(r.field.as_deref(), Some("set_canary_policy.policy.steps"));
    let mut events = two_releases();
    events.extend(run(two_releases(), set(policy.clone())).expect("accepted"));
    events.extend(run(events.clone(), canary_promote()).expect("accepted"));
    let state: State = given(events);
    assert_eq!(state.canary_policy, Some(policy.clone()));
    let canary = canary_of(&state, 3);
    assert_eq!((canary.weight, canary.policy), (25, Some(policy)));
    let names: Vec<_> = [ev(Event::CanaryPolicySet(Default::default()))]
        .iter()
        .map(State::event_type)
        .collect();
    assert_eq!(names, ["CanaryPolicySet"]);
}
