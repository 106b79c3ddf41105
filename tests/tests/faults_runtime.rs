//! Faults of the Runtime, end to end with the process driver and real servers (nats-server,
//! Postgres, docker-registry, the S3 endpoint, the real apphost):
//!
//! - the stage database stops: the app answers 503 at once, its replica leaves the load
//!   balancer (not ready in `neo status`) without being replaced, and serves again with its data
//!   once the database is back;
//! - the agent restarts: its load balancer never answers 404 for the app that kept running;
//! - a replica killed with signal 9: the replacement's reason names the signal, not the app's
//!   last access-log line;
//! - the active agent of a pair dies: the standby takes over within the lease's TTL, adopts the
//!   replicas (no duplicate), the stage's address answers throughout, and the dead agent's
//!   lease term is refused by the intake.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use neo_gateway::api::{self, PublishStep};
use neo_protocol::pb;
use neo_runtime_agent::driver::PodgroupKey;
use neo_tests::build_stack::{example, step};
use neo_tests::eventually;
use neo_tests::runtime_stack::{RuntimeStack, agent_config, get, http};

const TENANT: &str = "acme";

async fn timed_get(url: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let response = http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    (status, body, started.elapsed())
}

fn catalog_on_dev() -> PodgroupKey {
    PodgroupKey {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
    }
}

/// Publishes the catalog example and waits until dev serves it through the load balancer.
async fn serving_catalog(stack: &RuntimeStack, token: &str) -> String {
    let progress = stack
        .build
        .publish(token, TENANT, &example("catalog"))
        .await
        .unwrap();
    step(&progress, PublishStep::Deployed).unwrap_or_else(|| panic!("not deployed: {progress:#?}"));
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    eventually(
        Duration::from_secs(60),
        "catalog serving on dev",
        || async {
            get(&format!("{dev}/api/product"))
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    dev
}

/// Catalog on dev as `neo status` shows it.
async fn status(stack: &RuntimeStack, token: &str) -> api::PodgroupStatus {
    stack
        .build
        .stack
        .runtime(token)
        .status(api::StatusRequest {
            stage: "dev".into(),
            app: "catalog".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .podgroups
        .into_iter()
        .next()
        .unwrap()
}

/// Catalog's replacements on dev.
async fn replacements(stack: &RuntimeStack) -> Vec<pb::ReplicaReplaced> {
    stack
        .podgroup_events(TENANT, "catalog", "dev")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.event {
            Some(pb::podgroup_event::Event::ReplicaReplaced(r)) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_database_gets_503_at_once_and_the_replica_serves_again_without_replacement() {
    neo_tests::test_logs();
    let mut stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let dev = serving_catalog(&stack, &people.dave).await;
    let product = serde_json::json!({"title": "Teapot", "price": "12.50"});
    let created = http()
        .post(format!("{dev}/api/product"))
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    eventually(
        Duration::from_secs(30),
        "a ready replica in status",
        || async { (status(&stack, &people.dave).await.ready == 1).then_some(()) },
    )
    .await;
    let pids = stack
        .stages
        .get("dev")
        .unwrap()
        .driver
        .pids(&catalog_on_dev())
        .await;
    assert_eq!(pids.len(), 1, "{pids:?}");

    // The test cluster commits asynchronously: make the product survive the crash.
    let pool = sqlx::PgPool::connect(&stack.build.postgres.url("neo_dev"))
        .await
        .unwrap();
    sqlx::query("CHECKPOINT").execute(&pool).await.unwrap();
    pool.close().await;
    tokio::task::block_in_place(|| stack.build.postgres.stop());
    // At once: the replica cannot get a connection and says so (or, if the agent was quicker,
    // the load balancer has no ready replica).
    let (code, body, took) = timed_get(&format!("{dev}/api/product")).await;
    assert_eq!(code, 503, "{body}");
    assert!(took < Duration::from_secs(1), "503 after {took:?}: {body}");
    assert!(
        body.contains("the database is unavailable") || body.contains("no ready replica"),
        "{body}"
    );

    // The agent takes the replica out of rotation: not ready in `neo status`, and the load
    // balancer itself answers 503 at once.
    let not_ready = eventually(
        Duration::from_secs(15),
        "the replica not ready in status",
        || async {
            let now = status(&stack, &people.dave).await;
            (now.ready == 0
                && now.replicas.len() == 1
                && now.replicas[0].phase() == pb::ReplicaPhase::Unhealthy)
                .then_some(now)
        },
    )
    .await;
    let reason = &not_ready.replicas[0].reason;
    assert!(
        reason.starts_with("not ready: ") && reason.contains("database"),
        "{reason}"
    );
    let (code, body, took) = timed_get(&format!("{dev}/api/product")).await;
    assert_eq!(code, 503, "{body}");
    assert!(took < Duration::from_secs(1), "503 after {took:?}: {body}");
    assert!(body.contains("no ready replica"), "{body}");

    // Back: the same replica serves the same data, by itself.
    stack.build.postgres.restart().await.unwrap();
    eventually(Duration::from_secs(30), "catalog serving again", || async {
        get(&format!("{dev}/api/product"))
            .await
            .filter(|(s, b)| *s == 200 && b.contains("Teapot"))
    })
    .await;
    eventually(Duration::from_secs(15), "ready again in status", || async {
        (status(&stack, &people.dave).await.ready == 1).then_some(())
    })
    .await;
    let runtime = stack.stages.get("dev").unwrap();
    assert_eq!(runtime.driver.pids(&catalog_on_dev()).await, pids);
    let replaced = replacements(&stack).await;
    assert!(replaced.is_empty(), "no replacement: {replaced:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_load_balancer_never_answers_404_for_a_running_app_across_an_agent_restart() {
    neo_tests::test_logs();
    let mut stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    serving_catalog(&stack, &people.dave).await;
    let old = stack.stages.remove("dev").unwrap();
    let lb = old.lb_addr;
    let pids = old.driver.pids(&catalog_on_dev()).await;
    old.abandon().await;

    // Poll from before the new agent starts until a second after it serves.
    let url = format!("http://{lb}/{TENANT}/catalog/api/product");
    let poller = tokio::spawn(async move {
        let client = http();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen: Vec<u16> = Vec::new();
        let mut served_at: Option<Instant> = None;
        while Instant::now() < deadline
            && served_at.is_none_or(|at| at.elapsed() < Duration::from_secs(1))
        {
            // 0: no answer (nothing listens yet).
            let code = match client.get(&url).send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            if code == 200 && served_at.is_none() {
                served_at = Some(Instant::now());
            }
            seen.push(code);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        seen
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let restarted = stack
        .agent_on("dev", agent_config("dev").unwrap(), lb)
        .await
        .unwrap();
    let seen = poller.await.unwrap();
    let first = seen.iter().position(|c| *c != 0);
    assert_eq!(seen.first(), Some(&0), "polled before the agent started");
    assert!(!seen.contains(&404), "a 404 while the app runs: {seen:?}");
    let first = first.unwrap_or_else(|| panic!("never answered: {seen:?}"));
    assert!(
        seen[first..].iter().all(|c| *c == 200),
        "once listening, the running app is served: {seen:?}"
    );
    assert_eq!(
        restarted.driver.pids(&catalog_on_dev()).await,
        pids,
        "adopted, not restarted"
    );
    stack.stages.insert("dev".into(), restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_by_signal_9_is_replaced_with_the_signal_as_the_reason() {
    neo_tests::test_logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let dev = serving_catalog(&stack, &people.dave).await;
    // Access-log lines are the last the replica writes.
    for _ in 0..3 {
        assert_eq!(get(&format!("{dev}/api/product")).await.unwrap().0, 200);
    }
    let runtime = stack.stages.get("dev").unwrap();
    let pids = runtime.driver.pids(&catalog_on_dev()).await;
    assert_eq!(pids.len(), 1, "{pids:?}");
    let killed = std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let replaced = eventually(Duration::from_secs(30), "the replacement event", || async {
        replacements(&stack).await.into_iter().next()
    })
    .await;
    let reason = replaced.reason;
    assert!(reason.starts_with("killed by signal 9"), "{reason}");
    for access_log in ["/api/product", "request", "\"app\"", "status=200"] {
        assert!(!reason.contains(access_log), "{reason}");
    }
    eventually(Duration::from_secs(30), "catalog serving again", || async {
        get(&format!("{dev}/api/product"))
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
}

/// Sends GETs to `url` until `stop`, each on a new connection (so the kernel spreads them
/// over every load balancer listening on the address); each is tried up to 3 times (a
/// connection to a load balancer that just went away breaks once). Returns every final
/// status (0: no answer).
fn poll_until(
    url: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<u16>> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut seen = Vec::new();
        while !*stop.borrow() {
            let mut code = 0;
            for _ in 0..3 {
                if let Ok(response) = client.get(&url).send().await {
                    code = response.status().as_u16();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            seen.push(code);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_agent_takes_over_when_the_active_one_dies_and_the_stage_keeps_answering() {
    neo_tests::test_logs();
    let mut stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    serving_catalog(&stack, &people.dave).await;
    let active = stack.stages.remove("dev").unwrap();
    let lb = active.lb_addr;
    let pids = active.driver.pids(&catalog_on_dev()).await;
    let dead_term = active.term().expect("the first agent holds the lease");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let poller = poll_until(format!("http://{lb}/{TENANT}/catalog/api/product"), stopped);

    // The standby shares the data directory and the address; it stands by while the lease is
    // held (its load balancer already takes a share of the connections).
    let mut config = agent_config("dev").unwrap();
    config.name = "agent-dev-b".into();
    let took_over = {
        let standby = stack.agent_beside("dev", config, lb);
        tokio::pin!(standby);
        assert!(
            tokio::time::timeout(Duration::from_secs(4), &mut standby)
                .await
                .is_err(),
            "the standby acts while the active agent holds the lease"
        );
        // The active agent dies (its lease is not given up): the standby takes over.
        active.abandon().await;
        tokio::time::timeout(Duration::from_secs(20), standby)
            .await
            .expect("the standby took over within 20 s")
            .unwrap()
    };
    let term = took_over.term().unwrap();
    assert!(term > dead_term, "a new term: {term} after {dead_term}");
    assert_eq!(
        took_over.driver.pids(&catalog_on_dev()).await,
        pids,
        "adopted, no duplicate"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.send_replace(true);
    let seen = poller.await.unwrap();
    assert!(
        seen.len() > 50,
        "polled throughout: {} requests",
        seen.len()
    );
    let failed: Vec<&u16> = seen.iter().filter(|c| **c != 200).collect();
    assert!(
        failed.is_empty(),
        "the stage answered throughout the takeover: {} of {} not 200, first {:?}",
        failed.len(),
        seen.len(),
        &failed[..failed.len().min(5)]
    );

    // The dead agent's term is refused; the new one's is accepted.
    let client = stack
        .build
        .stack
        .core
        .connect_as("agent-dev")
        .await
        .unwrap();
    let dev = neo_protocol::StageName::new("dev").unwrap();
    let podgroup = neo_protocol::EntityRef::podgroup(
        &neo_protocol::TenantName::new(TENANT).unwrap(),
        &neo_protocol::AppName::new("catalog").unwrap(),
        &dev,
    );
    let observe = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::Observe(pb::Observe {
            observation: Some(pb::Observation {
                at_ms: 1,
                ready_replicas: 1,
                cpu_percent: 1.0,
                memory_percent: 1.0,
            }),
        })),
    };
    for (term, id) in [(dead_term, "stale"), (term, "current")] {
        let fence = neo_client::lease::Fence::new("");
        fence.set(term);
        let agent = neo_client::PlatformClient::for_agent(
            client.clone(),
            Duration::from_secs(10),
            dev.clone(),
            fence,
        );
        let sent = agent
            .command(
                &podgroup,
                &format!("lease-test-{id}"),
                "",
                "agent:dev:agent-dev",
                &observe,
            )
            .await;
        if term == dead_term {
            let e = sent.expect_err("a stale term is refused");
            assert_eq!(e.rule(), Some("agent.lease"), "{e}");
            assert!(e.to_string().contains("stale lease term"), "{e}");
        } else {
            sent.unwrap_or_else(|e| panic!("the current term is accepted: {e}"));
        }
    }
    stack.stages.insert("dev".into(), took_over);
}
