//! The canary's rules, one by one.

use neo_protocol::pb;

use super::*;

fn figures(requests: u64, errors: u64, p95_ms: f64) -> pb::ReleaseFigures {
    pb::ReleaseFigures {
        requests,
        errors,
        p95_ms,
    }
}

#[test]
fn too_few_requests_run_the_step_on() {
    let verdict = judge(
        &default_policy(),
        0,
        &figures(500, 0, 10.0),
        &figures(19, 19, 900.0),
    );
    assert_eq!(
        verdict,
        Verdict::Wait("19 request(s) of the 20 a step needs".into())
    );
}

#[test]
fn errors_over_the_baseline_roll_it_back_at_the_first_step() {
    let verdict = judge(
        &default_policy(),
        0,
        &figures(900, 0, 10.0),
        &figures(100, 30, 10.0),
    );
    assert_eq!(
        verdict,
        Verdict::RollBack(
            "error rate 30.0 % against 0.0 % on the baseline (at most +1.0 points)".into()
        )
    );
    // Up to the allowed increase it passes: 1.0 point more than a baseline at 2 %.
    let verdict = judge(
        &default_policy(),
        0,
        &figures(1000, 20, 10.0),
        &figures(100, 3, 10.0),
    );
    assert!(
        matches!(
            verdict,
            Verdict::Advance {
                step: 1,
                weight: 50,
                ..
            }
        ),
        "{verdict:?}"
    );
}

#[test]
fn a_slower_canary_rolls_back_and_a_baseline_without_latency_is_not_compared() {
    let verdict = judge(
        &default_policy(),
        0,
        &figures(900, 0, 40.0),
        &figures(100, 0, 61.0),
    );
    assert_eq!(
        verdict,
        Verdict::RollBack(
            "p95 latency 61.0 ms against 40.0 ms on the baseline (at most ×1.50)".into()
        )
    );
    let verdict = judge(
        &default_policy(),
        0,
        &figures(0, 0, 0.0),
        &figures(100, 0, 61.0),
    );
    assert!(matches!(verdict, Verdict::Advance { .. }), "{verdict:?}");
}

#[test]
fn a_healthy_canary_advances_through_its_steps_then_completes() {
    let policy = default_policy();
    let (base, canary) = (figures(900, 1, 40.0), figures(100, 0, 42.0));
    let Verdict::Advance {
        step,
        weight,
        reason,
    } = judge(&policy, 0, &base, &canary)
    else {
        panic!("not advanced");
    };
    assert_eq!((step, weight), (1, 50));
    assert!(reason.contains("over 100 request(s)"), "{reason}");
    assert!(matches!(
        judge(&policy, 1, &base, &canary),
        Verdict::Complete(_)
    ));
}

#[test]
fn malformed_policies_name_their_part() {
    let with = |change: fn(&mut pb::CanaryPolicy)| {
        let mut policy = default_policy();
        change(&mut policy);
        check_policy(&policy).map_err(|(part, _)| part)
    };
    assert_eq!(with(|_| {}), Ok(()));
    assert_eq!(with(|p| p.steps.clear()), Err("steps"));
    assert_eq!(with(|p| p.steps = vec![10; 11]), Err("steps"));
    assert_eq!(with(|p| p.steps = vec![0, 50]), Err("steps"));
    assert_eq!(with(|p| p.steps = vec![10, 100]), Err("steps"));
    assert_eq!(with(|p| p.steps = vec![50, 10]), Err("steps"));
    assert_eq!(with(|p| p.step_seconds = 0), Err("step_seconds"));
    assert_eq!(
        with(|p| p.max_error_rate_increase = f64::NAN),
        Err("max_error_rate_increase")
    );
    assert_eq!(
        with(|p| p.max_error_rate_increase = -1.0),
        Err("max_error_rate_increase")
    );
    assert_eq!(with(|p| p.max_p95_ratio = 0.5), Err("max_p95_ratio"));
}
