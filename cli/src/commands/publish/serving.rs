//! After a publish deployed a release: waiting until the stage serves it, and saying why not.
//!
//! The stage's agent reports each replica (`Runtime.Status`); the release serves once a replica
//! of it is ready. While it is not, the spinner shows the replicas' reasons (the app's
//! readiness reasons, e.g. `secret payment_api_key is not set`); a failed rollout ends the wait
//! with its reason.

use std::time::{Duration, Instant};

use neo_gateway::api;
use neo_protocol::pb;
use serde_json::json;

use crate::commands::runtime::podgroup_status;
use crate::connect::Context;
use crate::error::CliError;
use crate::progress::spinner;

/// How often the status is read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Where a release stands on its stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// A replica of the release is ready: the app answers at `url`.
    Yes {
        /// The stage's address of the app.
        url: String,
    },
    /// A later release replaced it before it served.
    Superseded(u32),
    /// The rollout failed (e.g. the image crashes at start).
    Failed(String),
    /// Not yet: why, as the agent last reported it (empty before its first report).
    Not(String),
}

/// Where `release` stands in `status` (the app's podgroup on the stage, when it exists).
pub fn serving(status: Option<&api::PodgroupStatus>, release: u32) -> Serving {
    let Some(p) = status else {
        return Serving::Not("the stage has no podgroup for it yet".into());
    };
    if p.release > release {
        return Serving::Superseded(p.release);
    }
    if p.release == release && p.rollout() == pb::RolloutStatus::Failed {
        return Serving::Failed(p.rollout_reason.clone());
    }
    let ready = p
        .replicas
        .iter()
        .any(|r| r.release == release && r.phase() == pb::ReplicaPhase::Ready);
    if ready {
        return Serving::Yes { url: p.url.clone() };
    }
    Serving::Not(crate::render::runtime::why_not(p))
}

/// Waits up to `wait` until `release` of `app` serves on `stage`, showing why not meanwhile,
/// and prints the outcome.
///
/// # Errors
///
/// [`CliError::RolloutFailed`] (exit 5) when the rollout failed, [`CliError::NotServing`]
/// (exit 1) when it does not serve within `wait`; the gateway's error when the status cannot
/// be read.
pub async fn wait(
    cx: &Context,
    target: (&str, &str, &str),
    release: u32,
    wait: Duration,
) -> Result<(), CliError> {
    let (tenant, app, stage) = target;
    // Each read within --timeout (the publish's own connection has no deadline).
    let client = cx.connect().await?.runtime();
    let started = Instant::now();
    let progress = spinner(format!("waiting for {app} v{release} to serve on {stage}"));
    let outcome = loop {
        let status = podgroup_status(&client, "reading the status", tenant, app, stage).await?;
        let now = serving(status.as_ref(), release);
        match now {
            Serving::Not(why) if started.elapsed() < wait => {
                progress.set_message(format!(
                    "waiting for {app} v{release} to serve on {stage}: {why}"
                ));
                tokio::time::sleep(POLL).await;
            }
            other => break other,
        }
    };
    progress.finish_and_clear();
    let waited = started.elapsed().as_secs_f64();
    let line = |serving: bool, text: String| {
        cx.print(
            || json!({"app": app, "stage": stage, "release": release, "serving": serving, "message": text}),
            || text.clone(),
        )
    };
    match outcome {
        Serving::Yes { url } => line(true, format!("{app} v{release} serves on {stage} at {url}")),
        Serving::Superseded(later) => line(
            false,
            format!("{app} v{release} was replaced by v{later} on {stage} before it served"),
        ),
        Serving::Failed(reason) => Err(CliError::RolloutFailed {
            app: app.to_owned(),
            stage: stage.to_owned(),
            release,
            reason,
        }),
        Serving::Not(why) => Err(CliError::NotServing {
            app: app.to_owned(),
            stage: stage.to_owned(),
            release,
            waited_s: waited.round() as u64,
            why,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(release: u32, phase: pb::ReplicaPhase, reason: &str) -> pb::ReplicaStatus {
        pb::ReplicaStatus {
            id: format!("r{release}"),
            release,
            phase: phase as i32,
            reason: reason.into(),
            ..Default::default()
        }
    }

    fn podgroup(release: u32, replicas: Vec<pb::ReplicaStatus>) -> api::PodgroupStatus {
        api::PodgroupStatus {
            app: "shop".into(),
            stage: "dev".into(),
            release,
            url: "https://127.0.0.1:8081/acme/shop/".into(),
            reported_ms: if replicas.is_empty() { 0 } else { 1 },
            replicas,
            ..Default::default()
        }
    }

    #[test]
    fn a_ready_replica_of_the_release_serves_and_one_of_another_does_not() {
        let p = podgroup(2, vec![replica(2, pb::ReplicaPhase::Ready, "")]);
        assert_eq!(
            serving(Some(&p), 2),
            Serving::Yes {
                url: "https://127.0.0.1:8081/acme/shop/".into()
            }
        );
        let old = podgroup(2, vec![replica(1, pb::ReplicaPhase::Ready, "")]);
        assert_eq!(
            serving(Some(&old), 2),
            Serving::Not("replicas starting".into())
        );
        assert_eq!(serving(Some(&p), 1), Serving::Superseded(2));
    }

    #[test]
    fn not_serving_says_why_from_the_replicas() {
        let p = podgroup(
            1,
            vec![replica(
                1,
                pb::ReplicaPhase::Starting,
                "not ready: secret payment_api_key is not set",
            )],
        );
        assert_eq!(
            serving(Some(&p), 1),
            Serving::Not("not ready: secret payment_api_key is not set".into())
        );
        assert!(
            matches!(serving(Some(&podgroup(1, vec![])), 1), Serving::Not(w) if w.contains("no agent"))
        );
        assert!(matches!(serving(None, 1), Serving::Not(_)));
        let mut failed = podgroup(1, vec![]);
        failed.rollout = pb::RolloutStatus::Failed as i32;
        failed.rollout_reason = "replica exited at start".into();
        assert_eq!(
            serving(Some(&failed), 1),
            Serving::Failed("replica exited at start".into())
        );
    }
}
