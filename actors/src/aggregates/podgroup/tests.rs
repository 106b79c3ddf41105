//! Given/when/then tests of the podgroup aggregate.

use neo_protocol::pb::{self, podgroup_command::Command, podgroup_event::Event};

use super::{default_policy, default_resources};
use crate::aggregate::testing::{assert_refused, given, when};
use crate::aggregate::{Aggregate, Rejection, RejectionCode};
use crate::aggregates::fixtures::{accept_all, digest};

type State = pb::PodgroupState;

/// A change that makes a well-formed command malformed.
type Spoil<T> = fn(&mut T);

fn cmd(command: Command) -> pb::PodgroupCommand {
    pb::PodgroupCommand {
        command: Some(command),
    }
}

fn ev(event: Event) -> pb::PodgroupEvent {
    pb::PodgroupEvent { event: Some(event) }
}

fn run(
    events: impl IntoIterator<Item = pb::PodgroupEvent>,
    command: Command,
) -> Result<Vec<pb::PodgroupEvent>, Rejection> {
    when::<State>(events, cmd(command))
}

fn policy(min: u32, max: u32) -> pb::ScalePolicy {
    pb::ScalePolicy {
        min_replicas: min,
        max_replicas: max,
        ..default_policy()
    }
}

fn resources(cpu_millis: u32, memory_mib: u32) -> pb::Resources {
    pb::Resources {
        cpu_millis,
        memory_mib,
    }
}

fn create_with(policy: Option<pb::ScalePolicy>, resources: Option<pb::Resources>) -> Command {
    Command::Create(pb::CreatePodgroup {
        app: "shop".into(),
        stage: "prod".into(),
        release: 1,
        image_digest: digest('e'),
        policy,
        resources,
        config: None,
    })
}

fn create() -> Command {
    create_with(None, None)
}

fn created_with(policy: pb::ScalePolicy, resources: pb::Resources) -> pb::PodgroupEvent {
    ev(Event::Created(pb::PodgroupCreated {
        app: "shop".into(),
        stage: "prod".into(),
        release: 1,
        image_digest: digest('e'),
        policy: Some(policy),
        resources: Some(resources),
        desired: policy.min_replicas.max(1),
        config: None,
    }))
}

/// A podgroup with the default policy (1..=3) and resources, at 1 replica.
fn created() -> pb::PodgroupEvent {
    created_with(default_policy(), default_resources())
}

fn set_policy(policy: pb::ScalePolicy) -> Command {
    Command::SetPolicy(pb::SetScalePolicy {
        policy: Some(policy),
    })
}

fn policy_set(policy: pb::ScalePolicy, desired: u32) -> pb::PodgroupEvent {
    ev(Event::PolicySet(pb::ScalePolicySet {
        policy: Some(policy),
        desired,
    }))
}

fn scale(desired: u32) -> Command {
    Command::Scale(pb::ScaleTo {
        desired,
        reason: "load".into(),
    })
}

fn scaled(from: u32, to: u32) -> pb::PodgroupEvent {
    ev(Event::Scaled(pb::ScaledTo {
        from,
        to,
        reason: "load".into(),
    }))
}

fn set_resources(resources: pb::Resources) -> Command {
    Command::SetResources(pb::SetResources {
        resources: Some(resources),
    })
}

/// The rule and field of each malformed policy.
fn malformed_policies() -> Vec<(pb::ScalePolicy, &'static str, &'static str)> {
    vec![
        (policy(0, 0), "policy.max", "max_replicas"),
        (policy(1, 101), "policy.max", "max_replicas"),
        (policy(4, 3), "policy.bounds", "min_replicas"),
        (policy(0, 3), "policy.idle", "idle_to_zero_s"),
        (
            pb::ScalePolicy {
                idle_to_zero_s: 60,
                ..policy(1, 3)
            },
            "policy.idle",
            "idle_to_zero_s",
        ),
        (
            pb::ScalePolicy {
                idle_to_zero_s: super::MAX_IDLE_TO_ZERO_S + 1,
                ..sleepy()
            },
            "policy.idle",
            "idle_to_zero_s",
        ),
        (
            pb::ScalePolicy {
                target_cpu_percent: 0,
                ..default_policy()
            },
            "policy.target",
            "target_cpu_percent",
        ),
        (
            pb::ScalePolicy {
                target_memory_percent: 101,
                ..default_policy()
            },
            "policy.target",
            "target_memory_percent",
        ),
    ]
}

/// The field of each malformed resources.
fn malformed_resources() -> Vec<(pb::Resources, &'static str)> {
    vec![
        (resources(9, 256), "cpu_millis"),
        (resources(250, 15), "memory_mib"),
    ]
}

// ---- create ----

#[test]
fn create_takes_the_defaults_and_starts_at_min() {
    assert_eq!(run([], create()).expect("accepted"), vec![created()]);
}

#[test]
fn create_with_a_policy_and_resources() {
    let events = run(
        [],
        create_with(Some(policy(2, 10)), Some(resources(500, 1024))),
    )
    .expect("accepted");
    assert_eq!(
        events,
        vec![created_with(policy(2, 10), resources(500, 1024))]
    );
}

#[test]
fn create_twice_is_refused() {
    let r = run([created()], create()).expect_err("refused");
    assert_eq!(r.rule, "podgroup.exists");
    assert_eq!(r.code, RejectionCode::AlreadyExists);
}

#[test]
fn create_refuses_invalid_names_and_digest() {
    let cases: [(Spoil<pb::CreatePodgroup>, &str, &str); 3] = [
        (|c| c.app = "sh op".into(), "podgroup.app", "create.app"),
        (
            |c| c.stage = "-prod".into(),
            "podgroup.stage",
            "create.stage",
        ),
        (
            |c| c.image_digest = "sha256:".into(),
            "podgroup.image_digest",
            "create.image_digest",
        ),
    ];
    for (spoil, rule, field) in cases {
        let Command::Create(mut c) = create() else {
            unreachable!()
        };
        spoil(&mut c);
        let r = run([], Command::Create(c)).expect_err("refused");
        assert_eq!((r.rule, r.field.as_deref()), (rule, Some(field)));
    }
}

#[test]
fn create_refuses_a_malformed_policy() {
    for (p, rule, field) in malformed_policies() {
        let r = run([], create_with(Some(p), None)).expect_err("refused");
        assert_eq!(r.rule, rule, "{p:?}");
        assert_eq!(r.code, RejectionCode::InvalidArgument);
        assert_eq!(r.field, Some(format!("create.policy.{field}")));
    }
}

#[test]
fn create_accepts_the_policy_limits() {
    let may_sleep = |idle_to_zero_s| pb::ScalePolicy {
        idle_to_zero_s,
        ..policy(0, 1)
    };
    assert!(run([], create_with(Some(may_sleep(1)), None)).is_ok());
    let week = super::MAX_IDLE_TO_ZERO_S;
    assert!(run([], create_with(Some(may_sleep(week)), None)).is_ok());
    assert!(run([], create_with(Some(policy(100, 100)), None)).is_ok());
}

#[test]
fn create_refuses_resources_under_the_minimum() {
    for (res, field) in malformed_resources() {
        let r = run([], create_with(None, Some(res))).expect_err("refused");
        assert_eq!(r.rule, "resources.minimum");
        assert_eq!(r.field, Some(format!("create.resources.{field}")));
    }
    assert!(run([], create_with(None, Some(resources(10, 16)))).is_ok());
}

#[test]
fn every_other_command_needs_the_podgroup() {
    for command in [
        set_policy(default_policy()),
        scale(2),
        set_resources(default_resources()),
    ] {
        let r = run([], command).expect_err("refused");
        assert_eq!(r.rule, "podgroup.not_found");
        assert_eq!(r.code, RejectionCode::NotFound);
    }
}

#[test]
fn a_command_without_an_operation_is_refused() {
    assert_refused(
        when::<State>([created()], pb::PodgroupCommand { command: None }),
        "command.missing",
    );
}

// ---- policy ----

#[test]
fn set_policy_keeps_desired_when_it_fits() {
    let events = run([created(), scaled(1, 2)], set_policy(policy(1, 5))).expect("accepted");
    assert_eq!(events, vec![policy_set(policy(1, 5), 2)]);
}

#[test]
fn set_policy_clamps_desired_into_the_new_bounds() {
    let events = run([created(), scaled(1, 3)], set_policy(policy(1, 2))).expect("accepted");
    assert_eq!(events, vec![policy_set(policy(1, 2), 2)]);
    let events = run([created()], set_policy(policy(4, 8))).expect("accepted");
    assert_eq!(events, vec![policy_set(policy(4, 8), 4)]);
}

#[test]
fn set_policy_refuses_a_malformed_or_missing_policy() {
    for (p, rule, field) in malformed_policies() {
        let r = run([created()], set_policy(p)).expect_err("refused");
        assert_eq!(r.rule, rule, "{p:?}");
        assert_eq!(r.field, Some(format!("set_policy.policy.{field}")));
    }
    let missing = Command::SetPolicy(pb::SetScalePolicy { policy: None });
    assert_refused(run([created()], missing), "policy.missing");
}

// ---- scale ----

#[test]
fn scale_within_the_bounds() {
    assert_eq!(
        run([created()], scale(3)).expect("accepted"),
        vec![scaled(1, 3)]
    );
}

#[test]
fn scale_outside_the_bounds_is_refused() {
    let r = run([created()], scale(7)).expect_err("refused");
    assert_eq!(r.rule, "podgroup.bounds");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
    assert_eq!(r.message, "desired 7 is outside 1..=3");
    assert_refused(run([created()], scale(0)), "podgroup.bounds");
}

#[test]
fn scale_to_the_current_count_is_refused() {
    let r = run([created(), scaled(1, 2)], scale(2)).expect_err("refused");
    assert_eq!(r.rule, "podgroup.unchanged");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

// ---- resources ----

#[test]
fn set_new_resources() {
    let events = run([created()], set_resources(resources(1000, 2048))).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::ResourcesSet(pb::ResourcesSet {
            resources: Some(resources(1000, 2048))
        }))]
    );
}

#[test]
fn set_resources_refuses_malformed_or_missing_resources() {
    for (res, field) in malformed_resources() {
        let r = run([created()], set_resources(res)).expect_err("refused");
        assert_eq!(r.rule, "resources.minimum");
        assert_eq!(r.field, Some(format!("set_resources.resources.{field}")));
    }
    let missing = Command::SetResources(pb::SetResources { resources: None });
    assert_refused(run([created()], missing), "resources.missing");
}

// ---- folding ----

#[test]
fn folding_accepted_commands_gives_the_expected_state() {
    let (state, events) = accept_all::<State>(
        [
            create(),
            scale(3),
            set_policy(policy(2, 10)),
            scale(8),
            set_policy(policy(1, 4)),
            set_resources(resources(500, 512)),
        ]
        .map(cmd),
    );
    let expected = State {
        exists: true,
        app: "shop".into(),
        stage: "prod".into(),
        release: 1,
        image_digest: digest('e'),
        policy: Some(policy(1, 4)),
        resources: Some(resources(500, 512)),
        desired: 4,
        ..State::default()
    };
    assert_eq!(state, expected);
    assert_eq!(given::<State>(events), expected);
}

#[test]
fn min_le_desired_le_max_after_every_event() {
    let commands = [
        create_with(Some(policy(2, 6)), None),
        scale(6),
        set_policy(policy(1, 3)),
        scale(1),
        set_policy(policy(5, 9)),
        scale(9),
        set_policy(pb::ScalePolicy {
            idle_to_zero_s: 60,
            ..policy(0, 1)
        }),
        scale(0),
        set_resources(resources(100, 100)),
    ];
    let mut state = State::default();
    for command in commands {
        let events = state.handle(cmd(command)).expect("accepted");
        for e in &events {
            state.apply(e);
            let p = state.policy.unwrap_or_default();
            assert!(
                (p.min_replicas..=p.max_replicas).contains(&state.desired),
                "desired {} outside {}..={} after {e:?}",
                state.desired,
                p.min_replicas,
                p.max_replicas
            );
        }
    }
    assert_eq!(state.desired, 0);
}

#[test]
fn an_unknown_event_leaves_the_state_unchanged() {
    let before: State = given([created(), scaled(1, 2)]);
    let mut after = before.clone();
    let unknown = pb::PodgroupEvent { event: None };
    after.apply(&unknown);
    assert_eq!(after, before);
    assert_eq!(State::event_type(&unknown), "Unknown");
}

#[test]
fn event_types_are_the_event_message_names() {
    let names: Vec<_> = [
        created(),
        policy_set(default_policy(), 1),
        scaled(1, 2),
        ev(Event::ResourcesSet(Default::default())),
    ]
    .iter()
    .map(State::event_type)
    .collect();
    assert_eq!(
        names,
        [
            "PodgroupCreated",
            "ScalePolicySet",
            "ScaledTo",
            "ResourcesSet"
        ]
    );
}

// ---- autoscaling ----

const SECOND: u64 = 1000;

fn observation(at_s: u64, ready: u32, cpu: f64, memory: f64) -> pb::Observation {
    pb::Observation {
        at_ms: at_s * SECOND,
        ready_replicas: ready,
        cpu_percent: cpu,
        memory_percent: memory,
    }
}

fn observe(o: pb::Observation) -> Command {
    Command::Observe(pb::Observe {
        observation: Some(o),
    })
}

fn observed(o: pb::Observation, recommended: u32) -> pb::PodgroupEvent {
    ev(Event::Observed(pb::MetricsObserved {
        observation: Some(o),
        recommended,
    }))
}

/// Handles and folds each observation in turn; returns the desired count after each, and
/// checks that the folded window is the one the decision returned.
fn observe_all(state: &mut State, observations: &[pb::Observation]) -> Vec<u32> {
    observations
        .iter()
        .map(|o| {
            let events = state.handle(cmd(observe(*o))).expect("accepted");
            let policy = state.policy.unwrap_or_else(default_policy);
            let decision = crate::autoscale::decide(&crate::autoscale::Inputs {
                policy: &policy,
                resources: &state.resources.unwrap_or_else(default_resources),
                desired: state.desired,
                recent: &state.recent,
                observation: o,
            });
            for e in &events {
                state.apply(e);
            }
            assert_eq!(state.recent, decision.recent, "after {o:?}");
            state.desired
        })
        .collect()
}

#[test]
fn load_scales_out_at_once_in_the_same_batch() {
    let o = observation(10, 1, 150.0, 20.0);
    let events = run([created()], observe(o)).expect("accepted");
    assert_eq!(
        events,
        vec![
            observed(o, 3),
            ev(Event::Autoscaled(pb::Autoscaled {
                from: 1,
                to: 3,
                reason: "cpu 150% of target 70% over 1 ready replica → 3".into(),
                observation: Some(o),
                policy: Some(default_policy()),
            })),
        ]
    );
    let state: State = given([created()].into_iter().chain(events));
    assert_eq!(state.desired, 3);
    assert_eq!(
        state.recent,
        vec![pb::Recommendation {
            at_ms: 10 * SECOND,
            replicas: 3
        }]
    );
}

#[test]
fn inside_the_tolerance_only_the_observation_is_recorded() {
    let o = observation(10, 1, 75.0, 85.0);
    let events = run([created()], observe(o)).expect("accepted");
    assert_eq!(events, vec![observed(o, 1)]);
}

#[test]
fn scale_in_waits_for_the_window_to_pass() {
    let window = pb::ScalePolicy {
        scale_down_window_s: 60,
        ..policy(1, 5)
    };
    let mut state: State = given([created_with(window, default_resources())]);
    let desired = observe_all(
        &mut state,
        &[
            observation(0, 1, 280.0, 10.0), // ceil(1 × 4) = 4
            observation(30, 4, 10.0, 10.0), // → 1, but 4 is in the window
            observation(59, 4, 10.0, 10.0), // still in it
            observation(60, 4, 10.0, 10.0), // 4 aged out; 1s left
            observation(61, 1, 10.0, 10.0), // nothing to do at min
        ],
    );
    assert_eq!(desired, [4, 4, 4, 1, 1]);
    assert_eq!(state.recent.len(), 4, "{:?}", state.recent);
}

#[test]
fn autoscaling_stays_within_min_and_max() {
    let mut state: State = given([created_with(policy(2, 4), default_resources())]);
    let desired = observe_all(
        &mut state,
        &[
            observation(0, 2, 700.0, 10.0),
            observation(400, 4, 1.0, 1.0),
        ],
    );
    assert_eq!(desired, [4, 2]);
}

#[test]
fn high_usage_raises_the_allocation() {
    let o = observation(0, 3, 95.0, 95.0);
    let events = run([created(), scaled(1, 3)], observe(o)).expect("accepted");
    let to = resources(375, 384);
    assert_eq!(
        events,
        vec![
            observed(o, 3),
            ev(Event::ResourcesRaised(pb::ResourcesRaised {
                from: Some(default_resources()),
                to: Some(to),
                reason: "memory 95% of 256 MiB ≥ 90% → 384 MiB; cpu 95% of 250 millicores ≥ 90% \
                         at max 3 replicas → 375 millicores"
                    .into(),
                observation: Some(o),
            })),
        ]
    );
    let state: State = given([created(), scaled(1, 3)].into_iter().chain(events));
    assert_eq!(state.resources, Some(to));
}

#[test]
fn observations_without_data_decide_nothing() {
    let busy = observation(100, 1, 300.0, 95.0);
    let events = run([created()], observe(busy)).expect("accepted");
    let history: Vec<_> = [created()].into_iter().chain(events).collect();
    let before: State = given(history.clone());
    for o in [
        observation(200, 0, 500.0, 99.0), // no ready replica
        observation(50, 3, 500.0, 99.0),  // older than the last one
    ] {
        let events = run(history.clone(), observe(o)).expect("accepted");
        assert_eq!(events, vec![observed(o, before.desired)]);
        let after: State = given(history.clone().into_iter().chain(events));
        assert_eq!(after.recent, before.recent);
        assert_eq!((after.desired, after.resources), (3, before.resources));
    }
}

#[test]
fn malformed_observations_are_refused() {
    assert_refused(
        run([], observe(observation(0, 1, 1.0, 1.0))),
        "podgroup.not_found",
    );
    let missing = Command::Observe(pb::Observe { observation: None });
    assert_refused(run([created()], missing), "observe.missing");
    for (cpu, memory, field) in [
        (f64::NAN, 1.0, "cpu_percent"),
        (1.0, -1.0, "memory_percent"),
        (f64::INFINITY, 1.0, "cpu_percent"),
    ] {
        let r = run([created()], observe(observation(0, 1, cpu, memory))).expect_err("refused");
        assert_eq!(r.rule, "observe.usage");
        assert_eq!(r.field, Some(format!("observe.observation.{field}")));
    }
}

// ---- scale to zero ----

/// A policy that may go to zero after 60 s without a request (0..=3 replicas).
fn sleepy() -> pb::ScalePolicy {
    pb::ScalePolicy {
        idle_to_zero_s: 60,
        ..policy(0, 3)
    }
}

fn idle(last_request_s: u64, at_s: u64) -> Command {
    Command::ScaleToZero(pb::ScaleToZero {
        last_request_ms: last_request_s * SECOND,
        at_ms: at_s * SECOND,
    })
}

fn scaled_to_zero(from: u32, last_request_s: u64, at_s: u64) -> pb::PodgroupEvent {
    ev(Event::ScaledToZero(pb::ScaledToZero {
        from,
        last_request_ms: last_request_s * SECOND,
        at_ms: at_s * SECOND,
        idle_to_zero_s: 60,
    }))
}

fn wake(cause: &str) -> Command {
    Command::Wake(pb::Wake {
        cause: cause.into(),
        at_ms: 200 * SECOND,
    })
}

#[test]
fn a_podgroup_that_may_sleep_starts_awake_with_one_replica() {
    let events = run([], create_with(Some(sleepy()), None)).expect("accepted");
    let state: State = given(events);
    assert_eq!(state.desired, 1);
    assert_eq!(state.policy, Some(sleepy()));
}

#[test]
fn an_idle_window_needs_min_zero_and_min_zero_needs_a_window() {
    for (policy, message) in [
        (policy(0, 3), "min replicas 0 needs an idle window"),
        (
            pb::ScalePolicy {
                idle_to_zero_s: 60,
                ..policy(2, 3)
            },
            "an idle window needs min replicas 0 (it is 2)",
        ),
    ] {
        let r = run([created()], set_policy(policy)).expect_err("refused");
        assert_eq!(r.rule, "policy.idle");
        assert_eq!(r.code, RejectionCode::InvalidArgument);
        assert_eq!(r.field.as_deref(), Some("set_policy.policy.idle_to_zero_s"));
        assert!(r.message.starts_with(message), "{}", r.message);
    }
    run([created()], set_policy(sleepy())).expect("a window with min 0 is accepted");
}

#[test]
fn idle_for_the_window_goes_to_zero_recording_the_last_request() {
    let given_events = [created(), policy_set(sleepy(), 1), scaled(1, 2)];
    let events = run(given_events.clone(), idle(100, 160)).expect("accepted");
    assert_eq!(events, vec![scaled_to_zero(2, 100, 160)]);
    let state: State = given(given_events.into_iter().chain(events));
    assert_eq!(state.desired, 0);
}

#[test]
fn scale_to_zero_is_refused_before_the_window_without_the_policy_or_asleep() {
    let sleepy_podgroup = [created(), policy_set(sleepy(), 1)];
    let r = run(sleepy_podgroup.clone(), idle(100, 159)).expect_err("refused");
    assert_eq!(r.rule, "idle.window");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
    assert_eq!(r.message, "idle for 59.0 s of the policy's 60 s");

    let r = run([created()], idle(0, 1_000)).expect_err("refused");
    assert_eq!(r.rule, "idle.policy");
    assert!(r.message.contains("min replicas 0"), "{}", r.message);

    let asleep = [created(), policy_set(sleepy(), 1), scaled_to_zero(1, 0, 60)];
    assert_refused(run(asleep, idle(0, 1_000)), "podgroup.asleep");
}

#[test]
fn a_request_wakes_a_podgroup_at_zero_once() {
    let asleep = [created(), policy_set(sleepy(), 1), scaled_to_zero(1, 0, 60)];
    let events = run(asleep.clone(), wake("request GET /acme/shop/")).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::WokenUp(pb::WokenUp {
            to: 1,
            cause: "request GET /acme/shop/".into(),
            at_ms: 200 * SECOND,
        }))]
    );
    let awake: Vec<_> = asleep.into_iter().chain(events).collect();
    assert_eq!(given::<State>(awake.clone()).desired, 1);

    let r = run(awake.clone(), wake("request GET /acme/shop/")).expect_err("refused");
    assert_eq!(r.rule, "podgroup.awake");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
    assert_refused(run(awake, wake(" ")), "wake.cause");
}

#[test]
fn usage_never_takes_a_podgroup_that_may_sleep_under_one_replica() {
    let mut state: State = given([created(), policy_set(sleepy(), 1)]);
    let desired = observe_all(
        &mut state,
        &[observation(0, 1, 0.0, 1.0), observation(400, 1, 0.0, 1.0)],
    );
    assert_eq!(desired, [1, 1]);
    assert_eq!(state.desired, 1);
}

#[test]
fn the_new_event_types_are_named() {
    let names: Vec<_> = [
        scaled_to_zero(1, 0, 60),
        ev(Event::WokenUp(Default::default())),
    ]
    .iter()
    .map(State::event_type)
    .collect();
    assert_eq!(names, ["ScaledToZero", "WokenUp"]);
}

fn canary(release: u32, weight: u32) -> pb::PodgroupCanary {
    pb::PodgroupCanary {
        release,
        image_digest: digest('c'),
        config: None,
        step: 0,
        weight,
        sticky: false,
        step_seconds: 5,
    }
}

fn canary_started(release: u32) -> pb::PodgroupEvent {
    ev(Event::CanaryStarted(pb::CanaryStarted {
        canary: Some(canary(release, 10)),
    }))
}

fn end(release: u32, promoted: bool) -> Command {
    Command::EndCanary(pb::EndCanary {
        release,
        promoted,
        image_digest: if promoted { digest('c') } else { String::new() },
        config: None,
        reason: "judged".into(),
    })
}

#[test]
fn a_canary_runs_beside_the_release_until_it_is_promoted() {
    let started = run(
        [created()],
        Command::StartCanary(pb::StartCanary {
            canary: Some(canary(2, 10)),
        }),
    )
    .unwrap();
    let state: State = given([created()].into_iter().chain(started));
    assert_eq!(
        (state.release, state.canary.as_ref().map(|c| c.weight)),
        (1, Some(10))
    );
    let stepped = run(
        [created(), canary_started(2)],
        Command::StepCanary(pb::StepCanary {
            release: 2,
            step: 1,
            weight: 50,
        }),
    )
    .unwrap();
    let events: Vec<_> = [created(), canary_started(2)]
        .into_iter()
        .chain(stepped)
        .collect();
    let state: State = given(events.clone());
    assert_eq!(
        state.canary.as_ref().map(|c| (c.step, c.weight)),
        Some((1, 50))
    );
    let ended = run(events.clone(), end(2, true)).unwrap();
    let state: State = given(events.into_iter().chain(ended));
    assert_eq!(
        (state.release, state.image_digest.clone()),
        (2, digest('c'))
    );
    assert_eq!((state.canary, state.canary_ended), (None, 2));
}

#[test]
fn a_rolled_back_canary_leaves_the_release_and_its_late_start_is_stale() {
    let ended = run([created(), canary_started(2)], end(2, false)).unwrap();
    let state: State = given([created(), canary_started(2)].into_iter().chain(ended));
    assert_eq!((state.release, state.canary.is_none()), (1, true));
    // The end came first (another reactor): the start that follows is refused as stale.
    let ended_first = run([created()], end(2, false)).unwrap();
    let events: Vec<_> = [created()].into_iter().chain(ended_first).collect();
    assert_refused(
        run(
            events,
            Command::StartCanary(pb::StartCanary {
                canary: Some(canary(2, 10)),
            }),
        ),
        "canary.stale",
    );
}

#[test]
fn canary_commands_are_checked() {
    assert_refused(
        run(
            [created()],
            Command::StartCanary(pb::StartCanary { canary: None }),
        ),
        "canary.missing",
    );
    assert_refused(
        run(
            [created()],
            Command::StartCanary(pb::StartCanary {
                canary: Some(canary(2, 0)),
            }),
        ),
        "canary.weight",
    );
    assert_refused(
        run(
            [created()],
            Command::StepCanary(pb::StepCanary {
                release: 2,
                step: 1,
                weight: 50,
            }),
        ),
        "canary.not_running",
    );
    assert_refused(run([created()], end(1, true)), "canary.stale");
}
