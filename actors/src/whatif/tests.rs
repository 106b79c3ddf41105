//! Unit tests of the what-if: the live decisions found again, other policies, errors.

use super::*;

const SECOND: u64 = 1000;

fn policy(min: u32, max: u32, window_s: u32) -> pb::ScalePolicy {
    pb::ScalePolicy {
        min_replicas: min,
        max_replicas: max,
        target_cpu_percent: 70,
        target_memory_percent: 80,
        scale_down_window_s: window_s,
        idle_to_zero_s: 0,
    }
}

fn observe(at_s: u64, ready: u32, cpu: f64, memory: f64) -> Command {
    Command::Observe(pb::Observe {
        observation: Some(pb::Observation {
            at_ms: at_s * SECOND,
            ready_replicas: ready,
            cpu_percent: cpu,
            memory_percent: memory,
        }),
    })
}

/// The events of a podgroup created with `policy` and sent `commands`, as the live
/// aggregate records them.
fn history(policy: pb::ScalePolicy, commands: Vec<Command>) -> Vec<pb::PodgroupEvent> {
    let create = Command::Create(pb::CreatePodgroup {
        app: "shop".into(),
        stage: "prod".into(),
        policy: Some(policy),
        ..Default::default()
    });
    let mut state = pb::PodgroupState::default();
    let mut events = Vec::new();
    for c in std::iter::once(create).chain(commands) {
        for e in state.handle(command(c)).expect("accepted") {
            state.apply(&e);
            events.push(e);
        }
    }
    events
}

/// Load rising then falling, the observations spaced past a 60 s window.
fn load() -> Vec<Command> {
    vec![
        observe(0, 1, 150.0, 20.0),  // → 3
        observe(30, 3, 140.0, 95.0), // → 6, capped at 5; memory raised
        observe(60, 5, 72.0, 20.0),  // inside the tolerance
        observe(90, 5, 20.0, 20.0),  // → 2, but 5 is in the window
        observe(80, 5, 300.0, 99.0), // older: decides nothing
        observe(200, 5, 20.0, 20.0), // → 2 once the window passed
        observe(300, 2, 10.0, 20.0), // → 1
    ]
}

fn replicas(run: &Run) -> Vec<(u64, u32, u32)> {
    run.decisions
        .iter()
        .filter_map(|d| match d.change {
            Change::Replicas { from, to } => Some((d.at_ms / SECOND, from, to)),
            Change::Resources { .. } => None,
        })
        .collect()
}

#[test]
fn under_the_recorded_policy_the_decisions_are_the_live_ones() {
    let p = policy(1, 5, 60);
    let events = history(p, load());
    let live = recorded(&events, "pg").expect("recorded");
    assert_eq!(
        replicas(&live),
        [(0, 1, 3), (30, 3, 5), (200, 5, 2), (300, 2, 1)]
    );
    assert_eq!(live.summary.raises, 1);
    let same = what_if(&events, &p, "pg").expect("replayed");
    assert_eq!(same, live);
    // Each interval at the count decided at its start: 3 × 30 s, 5 × (30 + 30 + 110) s,
    // 2 × 100 s.
    assert_eq!(live.summary.replica_seconds, 90 + 850 + 200);
    assert_eq!(
        (live.summary.peak_replicas, live.summary.final_replicas),
        (5, 1)
    );
}

#[test]
fn another_policy_decides_otherwise() {
    let events = history(policy(1, 5, 60), load());
    let capped = what_if(&events, &policy(1, 2, 60), "pg").expect("replayed");
    assert_eq!(replicas(&capped), [(0, 1, 2), (300, 2, 1)]);
    assert!(capped.decisions[0].reason.ends_with("→ 3, capped at max 2"));
    assert_eq!(capped.summary.peak_replicas, 2);
    let patient = what_if(&events, &policy(1, 5, 600), "pg").expect("replayed");
    assert_eq!(replicas(&patient), [(0, 1, 3), (30, 3, 5)]);
    assert_eq!(patient.policy.scale_down_window_s, 600);
}

#[test]
fn the_start_is_clamped_and_operator_scales_are_replayed_clamped() {
    let events = history(
        policy(1, 5, 60),
        vec![Command::Scale(pb::ScaleTo {
            desired: 5,
            reason: "by hand".into(),
        })],
    );
    let run = what_if(&events, &policy(2, 3, 60), "pg").expect("replayed");
    assert!(run.decisions.is_empty());
    assert_eq!(
        (run.summary.peak_replicas, run.summary.final_replicas),
        (3, 3)
    );
    let run = what_if(&events[..1], &policy(2, 3, 60), "pg").expect("replayed");
    assert_eq!(run.summary.final_replicas, 2);
}

#[test]
fn a_bad_policy_or_no_podgroup_is_an_error() {
    let events = history(policy(1, 5, 60), vec![]);
    match what_if(&events, &policy(4, 2, 60), "pg") {
        Err(WhatIfError::Policy(r)) => assert_eq!(r.rule, "policy.bounds"),
        other => panic!("expected a policy error, got {other:?}"),
    }
    assert_eq!(
        what_if(&[], &policy(1, 2, 60), "pg"),
        Err(WhatIfError::NotFound("pg".into()))
    );
    assert_eq!(
        recorded(&events[1..], "pg"),
        Err(WhatIfError::NotFound("pg".into()))
    );
}

#[test]
fn overrides_change_only_what_they_name() {
    let o = Overrides {
        max_replicas: Some(2),
        scale_down_window_s: Some(600),
        ..Overrides::default()
    };
    assert_eq!(
        o.apply(policy(1, 5, 60)),
        pb::ScalePolicy {
            max_replicas: 2,
            scale_down_window_s: 600,
            ..policy(1, 5, 60)
        }
    );
    assert_eq!(
        Overrides::default().apply(policy(1, 5, 60)),
        policy(1, 5, 60)
    );
}

#[test]
fn decisions_serialise_with_their_kind() {
    let d = Decision {
        at_ms: 5,
        change: Change::Replicas { from: 1, to: 3 },
        reason: "load".into(),
    };
    let json = serde_json::to_value(&d).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"at_ms": 5, "kind": "replicas", "from": 1, "to": 3, "reason": "load"})
    );
}
