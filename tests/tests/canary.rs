//! Canary releases end to end with the process driver and real servers (nats-server, Postgres,
//! docker-registry, the S3 endpoint, the real apphost): catalog v1 serves on test; a release
//! whose program answers 500 to every other request is promoted into test as a canary at 50 %:
//! the stage's load balancer sends it half the requests, the agent reports the step, and the
//! deployment rolls it back by itself at the first step with the figures that decided, the old
//! release then answering everything (and, while it runs, it is not promoted further). A healthy release then completes its steps (20 %, then
//! 50 %) with each step's share of the traffic within a tolerance, and serves alone.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use neo_gateway::api::deployments_client::DeploymentsClient;
use neo_gateway::api::{self, PublishStep};
use neo_image::BaseImage;
use neo_protocol::pb;
use neo_tests::build_stack::{example, step};
use neo_tests::eventually;
use neo_tests::gateway::{Authed, req};
use neo_tests::runtime_stack::{RuntimeStack, http};

const TENANT: &str = "acme";

/// An app program answering 500 to every other request but its probes.
const FAULTY: &str = neo_harness::programs::HALF_FAILING_APP;

/// Catalog's deployment on `stage`.
async fn deployment(stack: &RuntimeStack, token: &str, stage: &str) -> pb::DeploymentState {
    stack
        .deployment(token, (TENANT, "catalog", stage))
        .await
        .unwrap()
}

/// Waits until release `number` of `stage` is rolled out.
async fn rolled_out(stack: &RuntimeStack, token: &str, stage: &str, number: u32) {
    eventually(Duration::from_secs(60), "the rollout", || async {
        let state = deployment(stack, token, stage).await;
        state
            .releases
            .iter()
            .any(|r| r.number == number && r.rollout() == pb::RolloutStatus::Succeeded)
            .then_some(())
    })
    .await;
}

fn policy(steps: &[u32], max_p95_ratio: f64) -> api::SetCanaryPolicyRequest {
    api::SetCanaryPolicyRequest {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "test".into(),
        policy: Some(pb::CanaryPolicy {
            steps: steps.to_vec(),
            step_seconds: 3,
            max_error_rate_increase: 1.0,
            max_p95_ratio,
            min_requests: 20,
            sticky: false,
        }),
    }
}

/// Sets test's canary policy, then promotes dev's release into test as a canary: its number.
async fn promote_canary(
    deployments: &DeploymentsClient<Authed>,
    policy: api::SetCanaryPolicyRequest,
) -> u32 {
    deployments.clone().set_canary_policy(policy).await.unwrap();
    let mut promote = req::promote(TENANT, "catalog", "test");
    promote.canary = true;
    let promoted = deployments.clone().promote(promote).await.unwrap();
    promoted
        .into_inner()
        .state
        .unwrap()
        .releases
        .last()
        .unwrap()
        .number
}

/// What the test stage answered while a canary served (from its first answer on): per
/// release (from `x-neo-release`), the answers and how many were 5xx.
#[derive(Debug, Default)]
struct Answers(BTreeMap<u32, (u32, u32)>);

/// Sends requests to catalog on test until the deployment's canary of `release` is no longer
/// running; what they were answered.
async fn traffic_until_judged(
    stack: &RuntimeStack,
    token: &str,
    release: u32,
) -> (Answers, pb::Canary) {
    let url = format!(
        "{}/api/product",
        stack.url("test", TENANT, "catalog").unwrap()
    );
    let client = http();
    let mut answers = Answers::default();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "the canary was never judged: {answers:?}"
        );
        for _ in 0..20 {
            let Ok(response) = client.get(&url).send().await else {
                continue;
            };
            let status = response.status().as_u16();
            let Some(answered) = response
                .headers()
                .get("x-neo-release")
                .and_then(|v| v.to_str().ok()?.parse().ok())
            else {
                continue;
            };
            if answered != release && !answers.0.contains_key(&release) {
                // The canary does not serve yet: its share is not taken yet.
                continue;
            }
            let entry = answers.0.entry(answered).or_default();
            entry.0 += 1;
            entry.1 += u32::from(status >= 500);
        }
        let state = deployment(stack, token, "test").await;
        let canary = state
            .releases
            .iter()
            .find(|r| r.number == release)
            .and_then(|r| r.canary.clone())
            .unwrap();
        if canary.phase() != pb::CanaryPhase::Running {
            return (answers, canary);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_canary_rolls_back_by_itself_and_a_good_one_completes_its_steps() {
    neo_tests::test_logs();
    let stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let progress = stack
        .build
        .publish(&people.dave, TENANT, &example("catalog"))
        .await
        .unwrap();
    let deployed = step(&progress, PublishStep::Deployed)
        .unwrap_or_else(|| panic!("not deployed: {progress:#?}"))
        .clone();
    rolled_out(&stack, &people.dave, "dev", 1).await;
    let deployments = stack.build.stack.deployments(&people.otto);
    deployments
        .clone()
        .promote(req::promote(TENANT, "catalog", "test"))
        .await
        .unwrap();
    rolled_out(&stack, &people.otto, "test", 1).await;

    // Release 2 on dev: the same bundle on a program answering 500 to every other request.
    let dir = tempfile::tempdir().unwrap();
    let program = dir.path().join("apphost");
    std::fs::write(&program, FAULTY).unwrap();
    let published = (deployed.build_id.as_str(), deployed.digest.as_str());
    stack
        .deploy_example_on(
            (TENANT, "catalog", "dev"),
            published,
            1,
            &BaseImage::from_apphost(&program).unwrap(),
        )
        .await
        .unwrap();
    rolled_out(&stack, &people.dave, "dev", 2).await;

    // Promoted into test as a canary at 50 %: rolled back at its first step.
    let canary_release = promote_canary(&deployments, policy(&[50], 100.0)).await;
    assert_eq!(canary_release, 2);
    // Not promoted further while it is a canary.
    let refused = deployments
        .clone()
        .promote(req::promote(TENANT, "catalog", "prod"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert_eq!(
        refused
            .metadata()
            .get("neo-rule")
            .and_then(|v| v.to_str().ok()),
        Some("promotion.source_canary")
    );
    let (answers, canary) = traffic_until_judged(&stack, &people.otto, canary_release).await;
    assert_eq!(canary.phase(), pb::CanaryPhase::RolledBack, "{canary:?}");
    assert!(canary.outcome.contains("error"), "{}", canary.outcome);
    let judged = canary.steps.last().unwrap();
    let measured = judged.canary.unwrap();
    assert!(measured.errors * 3 >= measured.requests, "{judged:?}");
    assert_eq!(judged.baseline.unwrap().errors, 0, "{judged:?}");
    // Half the requests went to each release while it ran, the canary's failing half the time.
    let (to_canary, canary_errors) = answers.0.get(&2).copied().unwrap_or_default();
    let (to_baseline, baseline_errors) = answers.0.get(&1).copied().unwrap_or_default();
    let share = f64::from(to_canary) / f64::from(to_canary + to_baseline);
    assert!(
        (0.4..=0.6).contains(&share),
        "canary share {share}: {answers:?}"
    );
    assert!(
        canary_errors * 3 >= to_canary && baseline_errors == 0,
        "{answers:?}"
    );
    // The old release answers everything again.
    let test = format!(
        "{}/api/product",
        stack.url("test", TENANT, "catalog").unwrap()
    );
    eventually(
        Duration::from_secs(30),
        "release 1 alone on test",
        || async {
            for _ in 0..20 {
                let response = http().get(&test).send().await.ok()?;
                let split = response.headers().contains_key("x-neo-release");
                (response.status() == 200 && !split).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    let state = deployment(&stack, &people.otto, "test").await;
    assert_eq!(state.current, 1);

    // A healthy release (catalog on the real apphost in an image of its own: release 3 on
    // dev) completes 20 %, then 50 %.
    let healthy = stack
        .deploy_example_on((TENANT, "catalog", "dev"), published, 2, &stack.build.base)
        .await
        .unwrap();
    assert_ne!(healthy, deployed.image_digest);
    rolled_out(&stack, &people.dave, "dev", 3).await;
    let canary_release = promote_canary(&deployments, policy(&[20, 50], 5.0)).await;
    let (answers, canary) = traffic_until_judged(&stack, &people.otto, canary_release).await;
    assert_eq!(canary.phase(), pb::CanaryPhase::Completed, "{canary:?}");
    let weights: Vec<u32> = canary.steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [20, 50], "{canary:?}");
    for judged in &canary.steps {
        let (baseline, measured) = (judged.baseline.unwrap(), judged.canary.unwrap());
        let share = measured.requests as f64 / (baseline.requests + measured.requests) as f64;
        let weight = f64::from(judged.weight) / 100.0;
        assert!(
            (share - weight).abs() <= 0.05,
            "step {judged:?}: share {share}"
        );
        assert_eq!(measured.errors + baseline.errors, 0, "{judged:?}");
    }
    assert!(
        answers.0.get(&canary_release).is_some_and(|a| a.1 == 0),
        "{answers:?}"
    );
    let state = deployment(&stack, &people.otto, "test").await;
    assert_eq!(state.current, canary_release);
    rolled_out(&stack, &people.otto, "test", canary_release).await;
}
