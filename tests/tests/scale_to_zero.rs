//! Scale to zero end to end with the process driver and real servers (nats-server, Postgres,
//! docker-registry, the S3 endpoint, the real apphost): catalog on dev with a policy of min 0
//! and a 2 s idle window goes to zero replicas by itself; twenty concurrent requests then wake
//! it once (one `WokenUp`, one replica) and every one is answered 200, not refused; idle again,
//! it goes back to zero. A policy of min 0 without an idle window is refused beside its field.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use neo_gateway::api::{self, PublishStep};
use neo_protocol::pb::{self, podgroup_event::Event};
use neo_runtime_agent::driver::PodgroupKey;
use neo_tests::build_stack::{example, step};
use neo_tests::eventually;
use neo_tests::runtime_stack::{RuntimeStack, http};

const TENANT: &str = "acme";

fn policy(min_replicas: u32, idle_to_zero_s: u32) -> pb::ScalePolicy {
    pb::ScalePolicy {
        min_replicas,
        max_replicas: 3,
        target_cpu_percent: 70,
        target_memory_percent: 80,
        scale_down_window_s: 300,
        idle_to_zero_s,
    }
}

fn set_policy(policy: pb::ScalePolicy) -> api::SetScalePolicyRequest {
    api::SetScalePolicyRequest {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
        policy: Some(policy),
    }
}

/// Catalog's podgroup events on dev that went to zero, and that woke it.
async fn sleeps_and_wakes(stack: &RuntimeStack) -> (Vec<pb::ScaledToZero>, Vec<pb::WokenUp>) {
    let events = stack
        .podgroup_events(TENANT, "catalog", "dev")
        .await
        .unwrap();
    let mut sleeps = Vec::new();
    let mut wakes = Vec::new();
    for event in events.into_iter().filter_map(|e| e.event) {
        match event {
            Event::ScaledToZero(e) => sleeps.push(e),
            Event::WokenUp(e) => wakes.push(e),
            _ => {}
        }
    }
    (sleeps, wakes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_app_goes_to_zero_and_the_next_requests_wake_it_once() {
    neo_tests::test_logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let progress = stack
        .build
        .publish(&people.dave, TENANT, &example("catalog"))
        .await
        .unwrap();
    step(&progress, PublishStep::Deployed).unwrap_or_else(|| panic!("not deployed: {progress:#?}"));
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    let products = format!("{dev}/api/product");
    let client = http();
    eventually(
        Duration::from_secs(60),
        "catalog serving on dev",
        || async {
            let status = client.get(&products).send().await.ok()?.status();
            status.is_success().then_some(())
        },
    )
    .await;

    let mut runtime = stack.build.stack.runtime(&people.dave);
    let refused = runtime
        .set_scale_policy(set_policy(policy(0, 0)))
        .await
        .expect_err("min 0 without an idle window");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused
            .message()
            .contains("min replicas 0 needs an idle window"),
        "{refused:?}"
    );
    assert_eq!(
        refused
            .metadata()
            .get("neo-field")
            .and_then(|v| v.to_str().ok()),
        Some("policy.idle_to_zero_s")
    );
    let set = runtime
        .set_scale_policy(set_policy(policy(0, 2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(set.podgroup.unwrap().policy, Some(policy(0, 2)));

    let key = PodgroupKey {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
    };
    let driver = &stack.stages.get("dev").unwrap().driver;
    let asleep = eventually(Duration::from_secs(30), "catalog at zero", || async {
        let (sleeps, _) = sleeps_and_wakes(&stack).await;
        let slept = sleeps.into_iter().next()?;
        driver.pids(&key).await.is_empty().then_some(slept)
    })
    .await;
    assert_eq!((asleep.from, asleep.idle_to_zero_s), (1, 2));
    assert!(asleep.at_ms - asleep.last_request_ms >= 2_000, "{asleep:?}");

    // Twenty requests at once find no replica: each waits, one wake starts one.
    let answers: Vec<_> = (0..20)
        .map(|_| {
            let (client, products) = (client.clone(), products.clone());
            tokio::spawn(async move {
                let response = client.get(&products).send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            })
        })
        .collect();
    for answer in answers {
        let (status, body) = answer.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    let (_, wakes) = sleeps_and_wakes(&stack).await;
    assert_eq!(wakes.len(), 1, "{wakes:?}");
    assert_eq!(wakes[0].to, 1);
    assert_eq!(wakes[0].cause, "request GET /acme/catalog/api/product");
    assert_eq!(driver.pids(&key).await.len(), 1, "one replica started");

    // At zero again after another idle window; on a timeout, what the podgroup recorded since.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (sleeps, wakes) = sleeps_and_wakes(&stack).await;
        let pids = driver.pids(&key).await;
        if sleeps.len() == 2 && pids.is_empty() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            let events = stack
                .podgroup_events(TENANT, "catalog", "dev")
                .await
                .unwrap();
            let recent: Vec<String> = events
                .iter()
                .rev()
                .take(12)
                .filter_map(|e| e.event.as_ref())
                .map(|e| format!("{e:?}").chars().take(200).collect())
                .collect();
            panic!(
                "catalog not at zero again within 30 s: {} sleeps, {} wakes, pids {pids:?}; \
                 the podgroup's last events (newest first): {recent:#?}",
                sleeps.len(),
                wakes.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
