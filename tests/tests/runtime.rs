//! The Runtime end to end with the process driver and real servers (nats-server, Postgres,
//! docker-registry, the S3 endpoint, the real apphost): publish → serving on dev through the
//! stage load balancer; promote → the same image on test with test's own database; a replica
//! killed → replaced and recorded; the agent restarted → converges without duplicates; the
//! app's logs shipped; a crashing image → failed rollout while the previous release serves;
//! CPU load → scale out, then in after the window.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use neo_gateway::api::{self, PublishStep};
use neo_image::ImageSpec;
use neo_protocol::{EntityRef, pb};
use neo_tests::build_stack::{base_image, example, step};
use neo_tests::commands::request;
use neo_tests::eventually;
use neo_tests::gateway::req;
use neo_tests::runtime_stack::{RuntimeStack, get, http};

const TENANT: &str = "acme";

/// Logs to the test's output with `RUST_LOG` (quiet by default).
fn logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

async fn post_json(url: &str, body: &serde_json::Value) -> (u16, String) {
    let response = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

async fn deployment(stack: &RuntimeStack, token: &str, stage: &str) -> pb::DeploymentState {
    stack
        .build
        .stack
        .deployments(token)
        .get_deployment(req::get_deployment(TENANT, "catalog", stage))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap()
}

/// Waits until release `number` of `stage` has the rollout status `status`.
async fn rollout(
    stack: &RuntimeStack,
    token: &str,
    stage: &str,
    number: u32,
    status: pb::RolloutStatus,
) -> pb::Release {
    eventually(Duration::from_secs(60), "the rollout", || async {
        let state = deployment(stack, token, stage).await;
        state
            .releases
            .into_iter()
            .find(|r| r.number == number && r.rollout() == status)
    })
    .await
}

/// The podgroup events of catalog on `stage`, decoded, in order.
async fn podgroup_events(stack: &RuntimeStack, stage: &str) -> Vec<pb::PodgroupEvent> {
    stack
        .podgroup_events(TENANT, "catalog", stage)
        .await
        .unwrap()
}

/// Follows catalog's log lines on `stage` through the gateway until one contains `text`.
async fn logged(stack: &RuntimeStack, token: &str, stage: &str, text: &str) -> pb::LogLine {
    let mut lines = stack
        .build
        .stack
        .runtime(token)
        .logs(api::LogsRequest {
            stage: stage.into(),
            app: "catalog".into(),
            text: text.into(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(response) = lines.message().await.unwrap() {
            if let Some(line) = response.lines.into_iter().next() {
                return line;
            }
        }
        panic!("the log stream ended");
    });
    found.await.expect("the line reaches neo logs")
}

async fn publish_catalog(stack: &RuntimeStack, token: &str) -> api::PublishProgress {
    let progress = stack
        .build
        .publish(token, TENANT, &example("catalog"))
        .await
        .unwrap();
    step(&progress, PublishStep::Deployed)
        .unwrap_or_else(|| panic!("not deployed: {progress:#?}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_app_serves_is_promoted_heals_and_survives_an_agent_restart() {
    logs();
    let mut stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let deployed = publish_catalog(&stack, &people.dave).await;

    // Served on dev through the stage's load balancer, storing in dev's database.
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    eventually(
        Duration::from_secs(60),
        "catalog serving on dev",
        || async {
            get(&format!("{dev}/healthz"))
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    let product = serde_json::json!({"title": "Teapot", "price": "12.50"});
    let (status, body) = post_json(&format!("{dev}/api/product"), &product).await;
    assert_eq!(status, 201, "{body}");
    let (status, listed) = get(&format!("{dev}/api/product")).await.unwrap();
    assert_eq!(status, 200);
    assert!(listed.contains("Teapot"), "{listed}");
    let release = rollout(&stack, &people.dave, "dev", 1, pb::RolloutStatus::Succeeded).await;
    assert_eq!(release.image_digest, deployed.image_digest);

    // Promoted: the same digest serves on test, with test's own (empty) database.
    stack
        .build
        .stack
        .deployments(&people.otto)
        .promote(req::promote(TENANT, "catalog", "test"))
        .await
        .unwrap();
    let test = stack.url("test", TENANT, "catalog").unwrap();
    let (_, listed) = eventually(
        Duration::from_secs(60),
        "catalog serving on test",
        || async {
            get(&format!("{test}/api/product"))
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    assert!(
        !listed.contains("Teapot"),
        "test has its own database: {listed}"
    );
    let promoted = rollout(
        &stack,
        &people.otto,
        "test",
        1,
        pb::RolloutStatus::Succeeded,
    )
    .await;
    assert_eq!(promoted.image_digest, deployed.image_digest);

    // The app's own log lines reach `neo logs` (the apphost logs each request it serves).
    let marker = format!("/api/product/{}", uuid::Uuid::new_v4());
    let (status, _) = get(&format!("{dev}{marker}")).await.unwrap();
    assert_eq!(status, 400, "not a record id");
    let line = logged(&stack, &people.dave, "dev", &marker).await;
    assert_eq!((line.tenant.as_str(), line.stage.as_str()), (TENANT, "dev"));
    assert!(line.replica.starts_with("catalog-r1-"), "{line:?}");

    // kill -9 the dev replica: replaced, and the replacement is a podgroup event.
    let dev_runtime = stack.stages.get("dev").unwrap();
    let key = neo_runtime_agent::driver::PodgroupKey {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
    };
    let pids = dev_runtime.driver.pids(&key).await;
    assert_eq!(pids.len(), 1, "one replica by default: {pids:?}");
    std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    let replaced = eventually(Duration::from_secs(30), "the replacement event", || async {
        podgroup_events(&stack, "dev")
            .await
            .into_iter()
            .find_map(|e| match e.event {
                Some(pb::podgroup_event::Event::ReplicaReplaced(r)) => Some(r),
                _ => None,
            })
    })
    .await;
    assert!(replaced.reason.contains("signal 9"), "{replaced:?}");
    eventually(Duration::from_secs(30), "catalog serving again", || async {
        get(&format!("{dev}/api/product"))
            .await
            .filter(|(s, b)| *s == 200 && b.contains("Teapot"))
    })
    .await;
    let healed = dev_runtime.driver.pids(&key).await;
    assert_eq!(healed.len(), 1);
    assert_ne!(healed, pids);

    // The agent killed and restarted: it adopts the running replica, starts no other.
    let old = stack.stages.remove("dev").unwrap();
    old.abandon().await;
    let restarted = stack.agent("dev").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        restarted.driver.pids(&key).await,
        healed,
        "adopted, no duplicate"
    );
    let url = format!("http://{}/{TENANT}/catalog/api/product", restarted.lb_addr);
    eventually(
        Duration::from_secs(30),
        "serving after the restart",
        || async { get(&url).await.filter(|(s, _)| *s == 200) },
    )
    .await;
    stack.stages.insert("dev".into(), restarted);
    for (_, runtime) in std::mem::take(&mut stack.stages) {
        runtime.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_that_crashes_at_start_fails_its_rollout_and_the_previous_release_serves() {
    logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let deployed = publish_catalog(&stack, &people.dave).await;
    rollout(&stack, &people.dave, "dev", 1, pb::RolloutStatus::Succeeded).await;

    // Release 2: the same bundle on a base whose program exits at once.
    let project = neo_builder::project::Project::from_dir(&example("catalog")).unwrap();
    let model = neo_model::load(&project).unwrap();
    let bundle = neo_builder::bundle::compile(&model, &project, &[]);
    let spec = ImageSpec {
        tenant: TENANT,
        app: "catalog",
        revision: 1,
        revision_digest: &deployed.digest,
    };
    let crashing = stack
        .build
        .images
        .push_app(&spec, &base_image().unwrap(), &bundle.layer())
        .await
        .unwrap();
    let deploy = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
            app: "catalog".into(),
            stage: "dev".into(),
            build_id: deployed.build_id.clone(),
            revision: 1,
            image_digest: crashing.digest.clone(),
            ..Default::default()
        })),
    };
    let entity = EntityRef::deployment(
        &TENANT.parse().unwrap(),
        &"catalog".parse().unwrap(),
        &"dev".parse().unwrap(),
    );
    let reply = stack
        .build
        .stack
        .platform
        .platform
        .dispatch(&entity, request(deploy))
        .await;
    assert!(
        matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))),
        "{reply:?}"
    );
    let failed = rollout(&stack, &people.dave, "dev", 2, pb::RolloutStatus::Failed).await;
    assert!(
        failed.rollout_reason.contains("failed to start"),
        "the reason says why: {}",
        failed.rollout_reason
    );
    // Release 1 keeps serving.
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    let (status, _) = get(&format!("{dev}/api/product")).await.unwrap();
    assert_eq!(status, 200);
    let state = deployment(&stack, &people.dave, "dev").await;
    let first = state.releases.iter().find(|r| r.number == 1).unwrap();
    assert_eq!(first.rollout(), pb::RolloutStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cpu_load_scales_out_and_back_in_after_the_window() {
    logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    publish_catalog(&stack, &people.dave).await;
    rollout(&stack, &people.dave, "dev", 1, pb::RolloutStatus::Succeeded).await;

    // A policy that a few busy clients exceed: 10% of 250 millicores, back in after 4 s.
    let podgroup = EntityRef::podgroup(
        &TENANT.parse().unwrap(),
        &"catalog".parse().unwrap(),
        &"dev".parse().unwrap(),
    );
    let policy = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::SetPolicy(
            pb::SetScalePolicy {
                policy: Some(pb::ScalePolicy {
                    min_replicas: 1,
                    max_replicas: 3,
                    target_cpu_percent: 10,
                    target_memory_percent: 100,
                    scale_down_window_s: 4,
                }),
            },
        )),
    };
    let reply = stack
        .build
        .stack
        .platform
        .platform
        .dispatch(&podgroup, request(policy))
        .await;
    assert!(
        matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))),
        "{reply:?}"
    );

    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let busy = busy.clone();
            let url = format!("{dev}/api/product");
            tokio::spawn(async move {
                let client = http();
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client.get(&url).send().await;
                }
            })
        })
        .collect();
    let key = neo_runtime_agent::driver::PodgroupKey {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
    };
    let driver = &stack.stages.get("dev").unwrap().driver;
    let out = eventually(Duration::from_secs(60), "a scale-out", || async {
        podgroup_events(&stack, "dev")
            .await
            .into_iter()
            .find_map(|e| match e.event {
                Some(pb::podgroup_event::Event::Autoscaled(a)) if a.to > a.from => Some(a),
                _ => None,
            })
    })
    .await;
    assert!(out.observation.unwrap().cpu_percent > 10.0, "{out:?}");
    eventually(Duration::from_secs(30), "the added replicas", || async {
        (driver.pids(&key).await.len() > 1).then_some(())
    })
    .await;

    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let back = eventually(Duration::from_secs(60), "the scale-in", || async {
        podgroup_events(&stack, "dev")
            .await
            .into_iter()
            .find_map(|e| match e.event {
                Some(pb::podgroup_event::Event::Autoscaled(a)) if a.to == 1 && a.from > 1 => {
                    Some(a)
                }
                _ => None,
            })
    })
    .await;
    assert!(
        back.reason.contains("cpu") || back.reason.contains("memory"),
        "{back:?}"
    );
    eventually(Duration::from_secs(30), "one replica again", || async {
        (driver.pids(&key).await.len() == 1).then_some(())
    })
    .await;
}
