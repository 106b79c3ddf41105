//! What a replica's probes mean (pure): its next phase and reason, and whether it must go.
//!
//! A starting replica is probed on `/readyz` only: ready → `Ready`; not ready past the start
//! timeout → `Failed` (a start failure). A replica that has been ready is probed on both:
//! `/healthz` is liveness, and failing it `failure_threshold` times in a row gets the replica
//! replaced; `/readyz` is readiness, and failing it only takes the replica out of the load
//! balancer (`Unhealthy`, reason `not ready: …`) until it passes again. So a dead database
//! (which fails `/readyz` but not `/healthz`) stops traffic without killing replicas.

use std::time::Duration;

use neo_protocol::pb;

/// What one probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A 2xx answer.
    Ok,
    /// Another answer, or none; why.
    Failed(String),
}

/// The probes of one replica in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probes {
    /// `/healthz`, for a replica that has been ready (`None` while starting).
    pub live: Option<Probe>,
    /// `/readyz`.
    pub ready: Probe,
}

/// The thresholds the judgement applies.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Liveness probes failed in a row before a replica is replaced.
    pub failure_threshold: u32,
    /// How long a replica may take to become ready.
    pub start_timeout: Duration,
}

/// A replica's probe state: its phase, liveness failures in a row, and the reason of its phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The phase.
    pub phase: pb::ReplicaPhase,
    /// Liveness probes failed in a row.
    pub failures: u32,
    /// Why it is in its phase (empty when ready).
    pub reason: String,
}

/// What to do with the replica besides updating its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Keep it running.
    Keep,
    /// It did not become ready in time: stop it, count a start failure with this reason.
    StartFailed(String),
    /// It stopped answering its liveness probe: stop it and start a replacement (this reason).
    Replace(String),
}

/// The next state of a replica that is `state` and `age` old, after `probes`.
pub fn judge(state: &State, age: Duration, probes: Probes, limits: Limits) -> (State, Verdict) {
    let mut next = state.clone();
    if state.phase == pb::ReplicaPhase::Starting {
        match probes.ready {
            Probe::Ok => {
                next.phase = pb::ReplicaPhase::Ready;
                next.failures = 0;
                next.reason.clear();
            }
            Probe::Failed(reason) if age >= limits.start_timeout => {
                let reason = format!(
                    "not ready within {}s: {reason}",
                    limits.start_timeout.as_secs()
                );
                next.phase = pb::ReplicaPhase::Failed;
                next.reason.clone_from(&reason);
                return (next, Verdict::StartFailed(reason));
            }
            // Shown while it starts (`neo status`), e.g. "not ready: secret k is not set".
            Probe::Failed(reason) => next.reason = format!("not ready: {reason}"),
        }
        return (next, Verdict::Keep);
    }
    match probes.live {
        Some(Probe::Failed(reason)) => {
            next.failures = state.failures + 1;
            if next.failures >= limits.failure_threshold {
                next.phase = pb::ReplicaPhase::Unhealthy;
                next.reason = format!("failed {} probes: {reason}", next.failures);
                let why = next.reason.clone();
                return (next, Verdict::Replace(why));
            }
        }
        Some(Probe::Ok) | None => next.failures = 0,
    }
    match probes.ready {
        Probe::Ok => {
            next.phase = pb::ReplicaPhase::Ready;
            next.reason.clear();
        }
        Probe::Failed(reason) => {
            next.phase = pb::ReplicaPhase::Unhealthy;
            next.reason = format!("not ready: {reason}");
        }
    }
    (next, Verdict::Keep)
}

/// Why a probe answered without success: the status and, when the body is the apphost's
/// `{"reasons": [...]}`, those reasons; else the body's start.
pub fn failure(path: &str, status: u16, body: &str) -> String {
    let reasons = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let list = v.get("reasons")?.as_array()?;
            Some(
                list.iter()
                    .filter_map(serde_json::Value::as_str)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
        .filter(|r| !r.is_empty());
    let detail = reasons.unwrap_or_else(|| body.trim().chars().take(200).collect());
    if detail.is_empty() {
        format!("/{path} answered {status}")
    } else {
        format!("/{path} answered {status}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::ReplicaPhase::{Failed, Ready, Starting, Unhealthy};

    const LIMITS: Limits = Limits {
        failure_threshold: 3,
        start_timeout: Duration::from_secs(60),
    };

    fn state(phase: pb::ReplicaPhase, failures: u32) -> State {
        State {
            phase,
            failures,
            reason: String::new(),
        }
    }

    fn running(live: Probe, ready: Probe) -> Probes {
        Probes {
            live: Some(live),
            ready,
        }
    }

    fn failed(why: &str) -> Probe {
        Probe::Failed(why.into())
    }

    #[test]
    fn a_starting_replica_becomes_ready_or_fails_after_the_start_timeout() {
        let starting = state(Starting, 0);
        let probes = |ready| Probes { live: None, ready };
        let (next, verdict) = judge(&starting, Duration::ZERO, probes(Probe::Ok), LIMITS);
        assert_eq!((next.phase, verdict), (Ready, Verdict::Keep));
        let (next, verdict) = judge(
            &starting,
            Duration::from_secs(5),
            probes(failed("db")),
            LIMITS,
        );
        assert_eq!((next.phase, verdict), (Starting, Verdict::Keep));
        assert_eq!(next.reason, "not ready: db", "why it is not ready yet");
        let (next, verdict) = judge(
            &starting,
            Duration::from_secs(60),
            probes(failed("db")),
            LIMITS,
        );
        assert_eq!(next.phase, Failed);
        assert_eq!(
            verdict,
            Verdict::StartFailed("not ready within 60s: db".into())
        );
    }

    #[test]
    fn a_ready_replica_that_is_alive_but_not_ready_leaves_the_rotation_and_is_kept() {
        let ready = state(Ready, 0);
        let mut now = ready.clone();
        for _ in 0..10 {
            let (next, verdict) = judge(
                &now,
                Duration::from_secs(600),
                running(Probe::Ok, failed("database: unavailable")),
                LIMITS,
            );
            assert_eq!(verdict, Verdict::Keep, "never replaced for readiness");
            now = next;
        }
        assert_eq!(now.phase, Unhealthy);
        assert_eq!(now.reason, "not ready: database: unavailable");
        let (back, verdict) = judge(
            &now,
            Duration::from_secs(600),
            running(Probe::Ok, Probe::Ok),
            LIMITS,
        );
        assert_eq!((back.phase, back.reason.as_str()), (Ready, ""));
        assert_eq!(verdict, Verdict::Keep);
    }

    #[test]
    fn a_replica_failing_liveness_is_replaced_at_the_threshold() {
        let mut now = state(Ready, 0);
        for failures in 1..3 {
            let (next, verdict) = judge(
                &now,
                Duration::ZERO,
                running(failed("timeout"), failed("timeout")),
                LIMITS,
            );
            assert_eq!((next.failures, verdict), (failures, Verdict::Keep));
            now = next;
        }
        let (next, verdict) = judge(
            &now,
            Duration::ZERO,
            running(failed("timeout"), failed("timeout")),
            LIMITS,
        );
        assert_eq!(next.phase, Unhealthy);
        assert_eq!(verdict, Verdict::Replace("failed 3 probes: timeout".into()));
        // One success in between starts the count over.
        let (next, _) = judge(&now, Duration::ZERO, running(Probe::Ok, Probe::Ok), LIMITS);
        assert_eq!((next.phase, next.failures), (Ready, 0));
    }

    #[test]
    fn a_failure_names_the_apphosts_reasons_or_the_body() {
        assert_eq!(
            failure(
                "readyz",
                503,
                r#"{"ready":false,"reasons":["database: unavailable (no answer within 500 ms)","secret k is not set"]}"#
            ),
            "/readyz answered 503: database: unavailable (no answer within 500 ms); secret k is not set"
        );
        assert_eq!(
            failure("healthz", 500, "boom\n"),
            "/healthz answered 500: boom"
        );
        assert_eq!(failure("readyz", 503, ""), "/readyz answered 503");
    }
}
