//! Unit tests of the autoscaler's decision: each rule of the module doc, by example.

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

fn resources() -> pb::Resources {
    pb::Resources {
        cpu_millis: 250,
        memory_mib: 256,
    }
}

fn obs(at_s: u64, ready: u32, cpu: f64, memory: f64) -> pb::Observation {
    pb::Observation {
        at_ms: at_s * SECOND,
        ready_replicas: ready,
        cpu_percent: cpu,
        memory_percent: memory,
    }
}

/// Runs observations in order from `desired`, folding each decision; returns each
/// decision's desired count after it.
fn run(policy: &pb::ScalePolicy, mut desired: u32, observations: &[pb::Observation]) -> Vec<u32> {
    let mut recent = Vec::new();
    let resources = resources();
    observations
        .iter()
        .map(|o| {
            let d = decide(&Inputs {
                policy,
                resources: &resources,
                desired,
                recent: &recent,
                observation: o,
            });
            let mut folded = recent.clone();
            record(&mut folded, policy.scale_down_window_s, o, d.recommended);
            assert_eq!(folded, d.recent, "record folds the window decide returned");
            recent = d.recent;
            if let Some(s) = d.scale {
                assert_eq!(s.from, desired);
                desired = s.to;
            }
            desired
        })
        .collect()
}

fn decide_one(policy: &pb::ScalePolicy, desired: u32, o: &pb::Observation) -> Decision {
    decide(&Inputs {
        policy,
        resources: &resources(),
        desired,
        recent: &[],
        observation: o,
    })
}

#[test]
fn scales_out_at_once_and_names_the_inputs() {
    let d = decide_one(&policy(1, 10, 300), 2, &obs(0, 2, 142.0, 10.0));
    assert_eq!(d.recommended, 5);
    let scale = d.scale.expect("scaled");
    assert_eq!((scale.from, scale.to), (2, 5));
    assert_eq!(
        scale.reason,
        "cpu 142% of target 70% over 2 ready replicas → 5"
    );
    assert_eq!(d.raise, None);
}

#[test]
fn memory_may_drive_the_ratio() {
    let d = decide_one(&policy(1, 10, 300), 1, &obs(0, 1, 10.0, 88.0));
    // 88 / 80 = 1.1: inside the tolerance.
    assert_eq!((d.recommended, d.scale.is_none()), (1, true));
    let d = decide_one(&policy(1, 10, 300), 2, &obs(0, 2, 10.0, 85.0 * 2.0));
    let scale = d.scale.expect("scaled");
    assert_eq!(scale.to, 5);
    assert!(
        scale.reason.starts_with("memory 170% of target 80%"),
        "{}",
        scale.reason
    );
}

#[test]
fn inside_the_tolerance_nothing_changes() {
    for cpu in [63.0, 70.0, 77.0] {
        let d = decide_one(&policy(1, 10, 300), 3, &obs(0, 3, cpu, 10.0));
        assert_eq!((d.recommended, d.scale.clone()), (3, None), "cpu {cpu}");
    }
    // Just outside: 78 / 70 = 1.114 → ceil(3.34) = 4.
    let d = decide_one(&policy(1, 10, 300), 3, &obs(0, 3, 78.0, 10.0));
    assert_eq!(d.scale.map(|s| s.to), Some(4));
}

#[test]
fn clamps_to_min_and_max() {
    let d = decide_one(&policy(1, 3, 300), 1, &obs(0, 1, 700.0, 10.0));
    let scale = d.scale.expect("scaled");
    assert_eq!((d.recommended, scale.to), (3, 3));
    assert!(
        scale.reason.ends_with("→ 10, capped at max 3"),
        "{}",
        scale.reason
    );
    let d = decide_one(&policy(2, 5, 0), 4, &obs(0, 4, 1.0, 1.0));
    let scale = d.scale.expect("scaled");
    assert_eq!((d.recommended, scale.to), (2, 2));
    assert!(
        scale.reason.ends_with("→ 1, raised to min 2"),
        "{}",
        scale.reason
    );
}

#[test]
fn scales_in_only_once_higher_recommendations_leave_the_window() {
    let p = policy(1, 10, 300);
    let desired = run(
        &p,
        1,
        &[
            obs(0, 1, 350.0, 10.0),  // → 5 at once
            obs(100, 5, 28.0, 10.0), // → 2, but 5 is in the window
            obs(299, 5, 28.0, 10.0), // still 5 (0 + 300 > 299)
            obs(300, 5, 28.0, 10.0), // 5 aged out: the highest left is 2
            obs(350, 2, 7.0, 10.0),  // → 1, but 2 (t=100..300) is in the window
            obs(650, 2, 7.0, 10.0),  // only 1s left in the window
        ],
    );
    assert_eq!(desired, [5, 5, 5, 2, 2, 1]);
}

#[test]
fn the_scale_down_reason_names_the_window() {
    let p = policy(1, 10, 60);
    let recent = [
        pb::Recommendation {
            at_ms: 0,
            replicas: 6,
        },
        pb::Recommendation {
            at_ms: 30 * SECOND,
            replicas: 4,
        },
    ];
    let d = decide(&Inputs {
        policy: &p,
        resources: &resources(),
        desired: 6,
        recent: &recent,
        observation: &obs(60, 6, 14.0, 10.0),
    });
    let scale = d.scale.expect("scaled");
    assert_eq!((d.recommended, scale.to), (2, 4));
    assert_eq!(
        scale.reason,
        "cpu 14% of target 70% over 6 ready replicas → 2, highest in the last 60 s: 4"
    );
    assert_eq!(d.recent.len(), 2);
}

#[test]
fn a_recommendation_never_goes_against_the_load() {
    // Under load with only 1 of 3 replicas ready: ceil(1 × 1.5) = 2 is not a scale-in.
    let d = decide_one(&policy(1, 10, 0), 3, &obs(0, 1, 105.0, 10.0));
    assert_eq!((d.recommended, d.scale), (3, None));
    // Idle with 4 ready of a desired 1: ceil(4 × 0.5) = 2 is not a scale-out.
    let d = decide_one(&policy(1, 10, 0), 1, &obs(0, 4, 35.0, 10.0));
    assert_eq!((d.recommended, d.scale), (1, None));
}

#[test]
fn observations_without_data_decide_nothing() {
    let p = policy(1, 10, 300);
    let recent = [pb::Recommendation {
        at_ms: 50 * SECOND,
        replicas: 2,
    }];
    for (o, why) in [
        (obs(60, 0, 500.0, 500.0), Skip::NoReadyReplica),
        (
            obs(60, 2, f64::NAN, 10.0),
            Skip::BadUsage {
                cpu_percent: f64::NAN,
                memory_percent: 10.0,
            },
        ),
        (
            obs(40, 2, 500.0, 95.0),
            Skip::Stale {
                at_ms: 40 * SECOND,
                last_ms: 50 * SECOND,
            },
        ),
    ] {
        let d = decide(&Inputs {
            policy: &p,
            resources: &resources(),
            desired: 2,
            recent: &recent,
            observation: &o,
        });
        assert_eq!((d.recommended, &d.recent[..]), (2, &recent[..]));
        assert_eq!((d.scale, d.raise), (None, None));
        // NaN ≠ NaN: compare the variant's text.
        assert_eq!(d.skipped.map(|s| s.to_string()), Some(why.to_string()));
        let mut folded = recent.to_vec();
        record(&mut folded, 300, &o, d.recommended);
        assert_eq!(folded, recent);
    }
    // The same time as the last one still decides.
    assert_eq!(skip(&recent, &obs(50, 2, 10.0, 10.0)), None);
}

#[test]
fn memory_is_raised_at_90_percent_up_to_its_cap() {
    let d = decide_one(&policy(1, 10, 300), 1, &obs(0, 1, 10.0, 90.0));
    let raise = d.raise.expect("raised");
    assert_eq!((raise.from.memory_mib, raise.to.memory_mib), (256, 384));
    assert_eq!(raise.to.cpu_millis, 250);
    assert_eq!(raise.reason, "memory 90% of 256 MiB ≥ 90% → 384 MiB");
    assert_eq!(
        decide_one(&policy(1, 10, 300), 1, &obs(0, 1, 10.0, 89.9)).raise,
        None
    );
    assert_eq!(raised(6000, MAX_MEMORY_MIB), 8192);
    assert_eq!(raised(8192, MAX_MEMORY_MIB), 8192);
    assert_eq!(raised(9000, MAX_MEMORY_MIB), 9000);
    assert_eq!(raised(11, MAX_MEMORY_MIB), 17);
}

#[test]
fn cpu_is_raised_only_at_max_replicas() {
    let p = policy(1, 3, 300);
    assert_eq!(decide_one(&p, 2, &obs(0, 2, 95.0, 10.0)).raise, None);
    let d = decide_one(&p, 3, &obs(0, 3, 95.0, 10.0));
    let raise = d.raise.expect("raised");
    assert_eq!((raise.from.cpu_millis, raise.to.cpu_millis), (250, 375));
    assert_eq!(
        raise.reason,
        "cpu 95% of 250 millicores ≥ 90% at max 3 replicas → 375 millicores"
    );
    assert_eq!(decide_one(&p, 3, &obs(0, 3, 89.0, 10.0)).raise, None);
    // Both at once.
    let d = decide_one(&p, 3, &obs(0, 3, 95.0, 95.0));
    let raise = d.raise.expect("raised");
    assert_eq!((raise.to.cpu_millis, raise.to.memory_mib), (375, 384));
    assert!(raise.reason.contains("; "), "{}", raise.reason);
    assert_eq!(raised(3000, MAX_CPU_MILLIS), 4000);
}
