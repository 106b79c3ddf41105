//! The JSON documents and tables of the `Runtime` service: log lines, the status of each app
//! on each stage with its replicas, and a scale policy.

use neo_gateway::api;
use neo_protocol::pb;
use serde_json::{Value, json};

use crate::output::{fields, or_dash, rollout_word, short_digest, table, unix_millis};

/// A log level as a word (`trace` … `error`; `-` when the line has none).
pub fn level_word(level: i32) -> String {
    match pb::LogLevel::try_from(level) {
        Ok(pb::LogLevel::Unspecified) => "-".to_owned(),
        Ok(pb::LogLevel::Trace) => "trace".to_owned(),
        Ok(pb::LogLevel::Debug) => "debug".to_owned(),
        Ok(pb::LogLevel::Info) => "info".to_owned(),
        Ok(pb::LogLevel::Warn) => "warn".to_owned(),
        Ok(pb::LogLevel::Error) => "error".to_owned(),
        Err(_) => format!("unknown({level})"),
    }
}

/// A replica phase as a word (`starting`, `ready`, `unhealthy`, `stopped`, `failed`).
pub fn phase_word(phase: i32) -> String {
    match pb::ReplicaPhase::try_from(phase) {
        Ok(pb::ReplicaPhase::Unspecified) => "unknown".to_owned(),
        Ok(pb::ReplicaPhase::Starting) => "starting".to_owned(),
        Ok(pb::ReplicaPhase::Ready) => "ready".to_owned(),
        Ok(pb::ReplicaPhase::Unhealthy) => "unhealthy".to_owned(),
        Ok(pb::ReplicaPhase::Stopped) => "stopped".to_owned(),
        Ok(pb::ReplicaPhase::Failed) => "failed".to_owned(),
        Err(_) => format!("unknown({phase})"),
    }
}

/// A log line as JSON.
pub fn log_line_json(line: &pb::LogLine) -> Value {
    json!({
        "time": unix_millis(line.at_ms),
        "at_ms": line.at_ms,
        "level": level_word(line.level),
        "stage": line.stage,
        "app": line.app,
        "replica": line.replica,
        "stream": line.stream,
        "text": line.text,
    })
}

/// A log line as `time level stage/app/replica text`.
pub fn log_line(line: &pb::LogLine) -> String {
    format!(
        "{} {:<5} {}/{}/{} {}",
        unix_millis(line.at_ms),
        level_word(line.level),
        line.stage,
        line.app,
        or_dash(&line.replica),
        line.text
    )
}

fn policy_json(policy: Option<&pb::ScalePolicy>) -> Value {
    policy.map_or(Value::Null, |p| {
        json!({
            "min_replicas": p.min_replicas,
            "max_replicas": p.max_replicas,
            "target_cpu_percent": p.target_cpu_percent,
            "target_memory_percent": p.target_memory_percent,
            "scale_down_window_s": p.scale_down_window_s,
            "idle_to_zero_s": p.idle_to_zero_s,
        })
    })
}

fn replica_json(r: &pb::ReplicaStatus) -> Value {
    json!({
        "id": r.id,
        "phase": phase_word(r.phase),
        "release": r.release,
        "image_digest": r.image_digest,
        "address": r.address,
        "started": (r.started_ms > 0).then(|| unix_millis(r.started_ms)),
        "reason": r.reason,
        "cpu_millis": r.cpu_millis,
        "memory_bytes": r.memory_bytes,
    })
}

/// The status of apps on stages as JSON.
pub fn status_json(podgroups: &[api::PodgroupStatus]) -> Value {
    json!(
        podgroups
            .iter()
            .map(|p| json!({
                "app": p.app,
                "stage": p.stage,
                "release": p.release,
                "revision": p.revision,
                "image_digest": p.image_digest,
                "rollout": rollout_word(p.rollout),
                "rollout_reason": p.rollout_reason,
                "desired": p.desired,
                "ready": p.ready,
                "policy": policy_json(p.policy.as_ref()),
                "resources": p.resources.map(|r| json!({
                    "cpu_millis": r.cpu_millis,
                    "memory_mib": r.memory_mib,
                })),
                "url": p.url,
                "reported": (p.reported_ms > 0).then(|| unix_millis(p.reported_ms)),
                "agent": p.agent,
                "running_release": p.running_release,
                "not_ready_because": (p.release > 0 && p.ready < p.desired.max(1)).then(|| why_not(p)),
                "replicas": p.replicas.iter().map(replica_json).collect::<Vec<_>>(),
                "canary": p.canary_release.as_ref().map_or(Value::Null, |r| json!({
                    "release": r.number,
                    "canary": super::canary::canary_json(r),
                })),
            }))
            .collect::<Vec<_>>()
    )
}

/// Whether `p` went to zero replicas for want of requests (its policy lets it; the next
/// request wakes it).
pub fn asleep(p: &api::PodgroupStatus) -> bool {
    p.desired == 0 && p.policy.is_some_and(|policy| policy.idle_to_zero_s > 0)
}

/// Why `p` does not serve (all) its replicas: their reasons, else what it waits for.
pub fn why_not(p: &api::PodgroupStatus) -> String {
    if asleep(p) && p.replicas.is_empty() {
        return "asleep at zero replicas: the next request wakes it".into();
    }
    let mut reasons: Vec<&str> = p
        .replicas
        .iter()
        .filter(|r| r.phase() != pb::ReplicaPhase::Ready && !r.reason.is_empty())
        .map(|r| r.reason.as_str())
        .collect();
    reasons.dedup();
    if !reasons.is_empty() {
        return reasons.join("; ");
    }
    if p.reported_ms == 0 {
        "no agent has reported it yet (is the stage's agent running?)".into()
    } else if p.replicas.is_empty() {
        "no replica started yet".into()
    } else {
        "replicas starting".into()
    }
}

fn release_word(number: u32) -> String {
    if number == 0 {
        "-".to_owned()
    } else {
        format!("v{number}")
    }
}

fn bounds(policy: Option<&pb::ScalePolicy>) -> String {
    policy.map_or_else(
        || "-".to_owned(),
        |p| {
            let bounds = format!("{}..{}", p.min_replicas, p.max_replicas);
            if p.idle_to_zero_s == 0 {
                bounds
            } else {
                format!("{bounds}, zero after {}s idle", p.idle_to_zero_s)
            }
        },
    )
}

/// The status as a table (a row per app and stage), then a table of the replicas.
pub fn status_table(podgroups: &[api::PodgroupStatus]) -> String {
    if podgroups.is_empty() {
        return "(nothing deployed)".to_owned();
    }
    let mut t = table([
        "APP", "STAGE", "RELEASE", "IMAGE", "ROLLOUT", "READY", "SCALE", "URL", "REPORTED",
    ]);
    let mut replicas = table([
        "APP", "STAGE", "REPLICA", "PHASE", "RELEASE", "ADDRESS", "CPU", "MEMORY", "REASON",
    ]);
    for p in podgroups {
        let rollout = if p.release == 0 {
            "-".to_owned()
        } else if p.rollout_reason.is_empty() && p.ready < p.desired.max(1) {
            // Pending with no reason of its own: why its replicas are not ready.
            format!("{}: {}", rollout_word(p.rollout), why_not(p))
        } else if p.rollout_reason.is_empty() {
            rollout_word(p.rollout)
        } else {
            format!("{}: {}", rollout_word(p.rollout), p.rollout_reason)
        };
        t.add_row([
            p.app.clone(),
            p.stage.clone(),
            release_word(p.release),
            or_dash(&short_digest(&p.image_digest)),
            rollout,
            format!("{}/{}", p.ready, p.desired),
            bounds(p.policy.as_ref()),
            or_dash(&p.url),
            if p.reported_ms == 0 {
                "never".to_owned()
            } else {
                unix_millis(p.reported_ms)
            },
        ]);
        for r in &p.replicas {
            replicas.add_row([
                p.app.clone(),
                p.stage.clone(),
                r.id.clone(),
                phase_word(r.phase),
                release_word(r.release),
                or_dash(&r.address),
                format!("{:.0}m", r.cpu_millis),
                format!("{}Mi", r.memory_bytes / (1024 * 1024)),
                or_dash(&r.reason),
            ]);
        }
    }
    // Canaries rolling out now, one line each.
    let canaries: Vec<String> = podgroups
        .iter()
        .filter_map(|p| {
            let release = p.canary_release.as_ref()?;
            let running = release.canary.as_ref()?.phase() == pb::CanaryPhase::Running;
            running.then(|| {
                format!(
                    "{} on {}: canary v{}: {}",
                    p.app,
                    p.stage,
                    release.number,
                    super::canary::canary_text(release)
                )
            })
        })
        .collect();
    let mut out = t.to_string();
    if !canaries.is_empty() {
        out = format!("{out}\n\n{}", canaries.join("\n"));
    }
    if podgroups.iter().all(|p| p.replicas.is_empty()) {
        return out;
    }
    format!("{out}\n\n{replicas}")
}

/// A podgroup after a scale-policy change as JSON.
pub fn scale_policy_json(response: &api::ScalePolicyResponse) -> Value {
    let podgroup = response.podgroup.clone().unwrap_or_default();
    json!({
        "tenant": response.tenant,
        "app": response.app,
        "stage": response.stage,
        "sequence": response.sequence,
        "desired": podgroup.desired,
        "policy": policy_json(podgroup.policy.as_ref()),
    })
}

/// A podgroup after a scale-policy change as its fields.
pub fn scale_policy_table(response: &api::ScalePolicyResponse) -> String {
    let podgroup = response.podgroup.clone().unwrap_or_default();
    let p = podgroup.policy.unwrap_or_default();
    fields([
        ("app", response.app.clone()),
        ("stage", response.stage.clone()),
        (
            "replicas",
            format!("{}..{}", p.min_replicas, p.max_replicas),
        ),
        ("desired", podgroup.desired.to_string()),
        ("target cpu", format!("{}%", p.target_cpu_percent)),
        ("target memory", format!("{}%", p.target_memory_percent)),
        ("scale-down window", format!("{}s", p.scale_down_window_s)),
        (
            "scale to zero",
            if p.idle_to_zero_s == 0 {
                "never".to_owned()
            } else {
                format!("after {}s without a request", p.idle_to_zero_s)
            },
        ),
    ])
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn podgroup() -> api::PodgroupStatus {
        api::PodgroupStatus {
            app: "shop".into(),
            stage: "dev".into(),
            release: 2,
            image_digest: format!("sha256:{}", "ab".repeat(32)),
            rollout: pb::RolloutStatus::Succeeded as i32,
            desired: 2,
            ready: 1,
            policy: Some(pb::ScalePolicy {
                min_replicas: 1,
                max_replicas: 3,
                ..Default::default()
            }),
            url: "http://127.0.0.1:8080/acme/shop/".into(),
            reported_ms: 1_500,
            replicas: vec![pb::ReplicaStatus {
                id: "shop-1".into(),
                phase: pb::ReplicaPhase::Ready as i32,
                release: 2,
                memory_bytes: 64 * 1024 * 1024,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_log_line_reads_time_level_where_and_text() {
        let line = pb::LogLine {
            tenant: "acme".into(),
            app: "shop".into(),
            stage: "dev".into(),
            replica: "shop-1".into(),
            level: pb::LogLevel::Warn as i32,
            at_ms: 1_500,
            text: "disk almost full".into(),
            stream: "stderr".into(),
        };
        assert_eq!(
            log_line(&line),
            "1970-01-01T00:00:01.5Z warn  dev/shop/shop-1 disk almost full"
        );
        assert_eq!(log_line_json(&line)["level"], "warn");
        assert_eq!(level_word(0), "-");
    }

    #[test]
    fn status_shows_release_replicas_and_url() {
        let table = status_table(&[podgroup()]);
        assert!(table.contains("v2"), "{table}");
        assert!(table.contains("sha256:abababababab"), "{table}");
        assert!(table.contains("succeeded"), "{table}");
        assert!(table.contains("1/2"), "{table}");
        assert!(
            table.contains("http://127.0.0.1:8080/acme/shop/"),
            "{table}"
        );
        assert!(table.contains("shop-1"), "{table}");
        assert!(table.contains("64Mi"), "{table}");
        let json = status_json(&[podgroup()]);
        assert_eq!(json[0]["replicas"][0]["phase"], "ready");
        assert_eq!(json[0]["policy"]["max_replicas"], 3);
        assert_eq!(status_table(&[]), "(nothing deployed)");
    }

    #[test]
    fn an_app_at_zero_says_it_is_asleep_and_how_it_wakes() {
        let asleep = api::PodgroupStatus {
            desired: 0,
            ready: 0,
            replicas: Vec::new(),
            policy: Some(pb::ScalePolicy {
                min_replicas: 0,
                max_replicas: 3,
                idle_to_zero_s: 60,
                ..Default::default()
            }),
            ..podgroup()
        };
        let table = status_table(std::slice::from_ref(&asleep));
        assert!(table.contains("0/0"), "{table}");
        assert!(table.contains("the next request wakes it"), "{table}");
        assert!(table.contains("0..3, zero after 60s idle"), "{table}");
        let json = status_json(&[asleep]);
        assert_eq!(json[0]["policy"]["idle_to_zero_s"], 60);
        assert_eq!(
            json[0]["not_ready_because"],
            "asleep at zero replicas: the next request wakes it"
        );
    }

    #[test]
    fn a_running_canary_is_said_below_the_table_and_in_json() {
        let mut canary = podgroup();
        canary.canary_release = Some(pb::Release {
            number: 4,
            canary: Some(pb::Canary {
                baseline: 3,
                step: 0,
                weight: 10,
                policy: Some(pb::CanaryPolicy {
                    steps: vec![10, 50],
                    ..Default::default()
                }),
                phase: pb::CanaryPhase::Running.into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        let table = status_table(std::slice::from_ref(&canary));
        let line = format!(
            "{} on {}: canary v4: step 1 of 2: 10 % of the traffic, v3 the rest",
            canary.app, canary.stage
        );
        assert!(table.contains(&line), "{table}");
        let json = status_json(&[canary]);
        assert_eq!(json[0]["canary"]["release"], 4);
        assert_eq!(json[0]["canary"]["canary"]["phase"], "running");
    }
}
