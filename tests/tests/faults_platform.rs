//! Faults in the platform's servers heal by themselves, under a steady load, with nothing
//! acknowledged lost and no command re-run by hand: a NATS restart (kill -9) before and during
//! a build, Postgres down while a publish is deployed, the registry down for 10 s during a
//! build, a call retried with the same request id, and the gateway's health while the event
//! store is gone.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::Duration;

use neo_gateway::api::{self, PublishStep};
use neo_tests::build_stack::{BuildStack, example, publish_to, publish_with, step};
use neo_tests::eventually;
use neo_tests::gateway::{Stack, req};
use neo_tests::load::{Load, not_once};
use tonic::{Code, Request};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A steady load: one command every 50 ms.
const LOAD_EVERY: Duration = Duration::from_millis(50);

fn packed(name: &str) -> Vec<u8> {
    neo_builder::project::Project::from_dir(&example(name))
        .unwrap()
        .pack()
}

/// Publishes until the publish streams to its end: a call made while the gateway's NATS
/// connection is still coming back answers `UNAVAILABLE`, and publishing the same content
/// again resumes the publish.
async fn publish_until_done(stack: &Stack, token: &str, app: &str) -> Vec<api::PublishProgress> {
    for _ in 0..40 {
        match publish_to(stack, token, "acme", app, packed(app)).await {
            Ok(progress) if step(&progress, PublishStep::Deployed).is_some() => return progress,
            Ok(progress) => panic!("the publish ended without a deploy: {progress:#?}"),
            Err(e) => {
                eprintln!("publish: {e:#}; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    panic!("the publish never went through");
}

/// A build stack with one worker, its people, and a steady load on tenant acme.
async fn loaded_stack() -> (BuildStack, neo_tests::gateway::People, Load) {
    let stack = BuildStack::start(1).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    let load = Load::start(
        stack.stack.core.connect().await.unwrap(),
        "acme",
        LOAD_EVERY,
    );
    (stack, people, load)
}

/// Publishes `app` through `gateway` while `outage` runs (it ends the outage), and returns
/// the progress of a publish that was deployed.
async fn publish_during(
    gateway: &Stack,
    token: &str,
    app: &str,
    outage: impl std::future::Future<Output = ()>,
) -> Vec<api::PublishProgress> {
    let (progress, ()) = tokio::join!(publish_to(gateway, token, "acme", app, packed(app)), outage);
    let progress = progress.unwrap();
    assert!(
        step(&progress, PublishStep::Deployed).is_some(),
        "{progress:#?}"
    );
    progress
}

/// Asserts that every command of the load the platform acknowledged is in the log once.
async fn nothing_lost(stack: &Stack, load: Load) {
    let acked = load.stop().await.unwrap();
    assert!(acked.len() > 10, "the load barely ran: {acked:?}");
    let client = stack.core.connect().await.unwrap();
    let lost = not_once(&client, "acme", &acked).await.unwrap();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the log once: {lost:?}"
    );
}

/// The build's events of one type.
async fn build_events(stack: &Stack, build: &str, event_type: &str) -> usize {
    stack
        .stored_events("acme")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.entity_id == build && e.event_type == event_type)
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn builds_complete_through_nats_restarts_before_and_during_them() {
    let mut stack = BuildStack::start(0).await.unwrap();
    // A worker slow enough to be caught in the middle of a build.
    let _worker = stack
        .worker(Default::default(), Duration::from_millis(800))
        .await
        .unwrap();
    let people = stack.stack.people().await.unwrap();
    let load = Load::start(
        stack.stack.core.connect().await.unwrap(),
        "acme",
        LOAD_EVERY,
    );

    // The worker waits for a job while the server is killed and comes back: its pull is
    // made again, so the next publish is built.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.stack.core.nats.restart().await.unwrap();
    let first = publish_until_done(&stack.stack, &people.dave, "catalog").await;
    assert!(
        step(&first, PublishStep::BuildSucceeded).is_some(),
        "{first:#?}"
    );

    // Killed while a build runs: the build goes on, the publish deploys.
    let client = stack.stack.apps(&people.dave);
    let publishing =
        tokio::spawn(async move { publish_with(client, "acme", "orders", packed("orders")).await });
    eventually(Duration::from_secs(20), "the orders build to start", || {
        let stack = &stack.stack;
        async move { (build_events(stack, "orders_r1", "BuildStarted").await > 0).then_some(()) }
    })
    .await;
    stack.stack.core.nats.restart().await.unwrap();
    let progress = match publishing.await.unwrap() {
        Ok(progress) if step(&progress, PublishStep::Deployed).is_some() => progress,
        // The progress stream itself may be cut by the restart: the publish goes on, and
        // publishing again follows it to the end without a second revision.
        _ => publish_until_done(&stack.stack, &people.dave, "orders").await,
    };
    let deployed = step(&progress, PublishStep::Deployed).unwrap();
    assert_eq!(deployed.revision, 1, "{progress:#?}");
    assert_eq!(
        build_events(&stack.stack, "orders_r1", "BuildFailed").await,
        0
    );
    assert_eq!(
        build_events(&stack.stack, "orders_r1", "BuildSucceeded").await,
        1
    );
    nothing_lost(&stack.stack, load).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_made_while_postgres_is_down_is_deployed_when_it_returns() {
    let (mut stack, people, load) = loaded_stack().await;
    stack.postgres.stop();
    let (gateway, postgres) = (&stack.stack, &mut stack.postgres);
    let progress = publish_during(gateway, &people.dave, "catalog", async {
        // Long enough for the build to succeed and its deploy to meet the dead read models.
        eventually(Duration::from_secs(30), "the build to succeed", || async {
            (build_events(gateway, "catalog_r1", "BuildSucceeded").await > 0).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        postgres.restart().await.unwrap();
    })
    .await;
    let deployed = step(&progress, PublishStep::Deployed).expect("deployed");
    assert_eq!(deployed.release, 1, "{progress:#?}");
    nothing_lost(&stack.stack, load).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_goes_through_a_ten_second_registry_outage() {
    let (mut stack, people, load) = loaded_stack().await;
    stack.registry.stop();
    let (gateway, registry) = (&stack.stack, &mut stack.registry);
    let progress = publish_during(gateway, &people.dave, "catalog", async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        registry.restart().await.unwrap();
    })
    .await;
    // The user saw why it waited: the registry, named, and that it was retried.
    let waits: Vec<&str> = progress
        .iter()
        .filter(|p| p.step == PublishStep::BuildLog as i32 && p.message.contains("retrying"))
        .map(|p| p.message.as_str())
        .collect();
    assert!(
        waits.iter().any(|m| m.contains(&stack.registry.host())),
        "{waits:#?}"
    );
    // One attempt, one start: an outage is no lost lease.
    assert_eq!(
        build_events(&stack.stack, "catalog_r1", "BuildStarted").await,
        1
    );
    assert_eq!(
        build_events(&stack.stack, "catalog_r1", "BuildFailed").await,
        0
    );
    nothing_lost(&stack.stack, load).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_publish_whose_build_failed_for_an_outage_is_finished_by_publishing_again() {
    let queue = neo_builder::queue::QueueConfig {
        retry_for: Duration::from_secs(2),
        ..Default::default()
    };
    let mut stack = BuildStack::start_with(1, queue).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    stack.registry.stop();
    let failed = publish_to(
        &stack.stack,
        &people.dave,
        "acme",
        "catalog",
        packed("catalog"),
    )
    .await
    .unwrap();
    let failure = step(&failed, PublishStep::BuildFailed).expect("failed");
    // The real reason, naming the registry; not a lost lease.
    assert!(
        failure.message.contains(&stack.registry.host()) && failure.message.contains("retried"),
        "{failure:#?}"
    );
    stack.registry.restart().await.unwrap();

    // The same content again: no new revision, a new build attempt, deployed.
    let resumed = publish_to(
        &stack.stack,
        &people.dave,
        "acme",
        "catalog",
        packed("catalog"),
    )
    .await
    .unwrap();
    let created = step(&resumed, PublishStep::RevisionCreated).expect("revision");
    assert_eq!(created.revision, 1, "{resumed:#?}");
    assert!(created.message.contains("unchanged"), "{created:#?}");
    let deployed = step(&resumed, PublishStep::Deployed).expect("deployed");
    assert_eq!(deployed.release, 1, "{resumed:#?}");

    // Once more: nothing left to do, and it says so.
    let again = publish_to(
        &stack.stack,
        &people.dave,
        "acme",
        "catalog",
        packed("catalog"),
    )
    .await
    .unwrap();
    let deployed = step(&again, PublishStep::Deployed).expect("deployed");
    assert!(
        deployed.message.contains("already deployed") && deployed.release == 1,
        "{again:#?}"
    );
    assert_eq!(
        build_events(&stack.stack, "catalog_r1", "BuildSucceeded").await,
        1
    );
}

fn with_request_id<T>(message: T, id: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("neo-request-id", id.parse().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_retried_with_the_same_request_id_is_written_once() {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    let mut apps = stack.apps(&people.dave);
    let first = apps
        .create_app(with_request_id(req::create_app("acme", "shop"), "try-1"))
        .await
        .unwrap()
        .into_inner();
    // The client did not hear the answer and tries again with the same id: the same answer,
    // nothing written twice.
    let second = apps
        .create_app(with_request_id(req::create_app("acme", "shop"), "try-1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, second);
    let created = stack
        .stored_events("acme")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.entity_id == "shop" && e.event_type == "AppCreated")
        .count();
    assert_eq!(created, 1);
    // Another request id is another call: the app exists.
    let again = apps
        .create_app(with_request_id(req::create_app("acme", "shop"), "try-2"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    // A malformed id is refused, naming the metadata.
    let bad = apps
        .create_app(with_request_id(req::create_app("acme", "cart"), "a b"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("neo-request-id"), "{bad:?}");
}

async fn health(stack: &Stack) -> Option<ServingStatus> {
    let mut client = HealthClient::new(stack.channel());
    let reply = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(reply.into_inner().status).ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn health_is_not_serving_while_the_event_store_is_gone_and_serving_after() {
    let mut stack = Stack::start().await.unwrap();
    assert_eq!(health(&stack).await, Some(ServingStatus::Serving));
    stack.core.nats.stop();
    eventually(Duration::from_secs(20), "NOT_SERVING", || async {
        (health(&stack).await == Some(ServingStatus::NotServing)).then_some(())
    })
    .await;
    stack.core.nats.restart().await.unwrap();
    eventually(Duration::from_secs(30), "SERVING again", || async {
        (health(&stack).await == Some(ServingStatus::Serving)).then_some(())
    })
    .await;
    // And it serves: a write goes through.
    let people = eventually(Duration::from_secs(20), "the platform back", || async {
        stack.people().await.ok()
    })
    .await;
    let created = stack
        .apps(&people.dave)
        .create_app(req::create_app("acme", "after"))
        .await;
    assert!(created.is_ok(), "{created:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_retries_a_call_through_a_nats_restart_and_writes_it_once() {
    let mut stack = Stack::start().await.unwrap();
    stack.people().await.unwrap();
    let neo = neo_tests::cli::Neo::new(&stack);
    neo.login("dave", Some("acme")).await.unwrap();
    stack.core.nats.stop();
    // `neo app create` meets UNAVAILABLE, and tries again with the same request id until the
    // server is back.
    let (created, ()) = tokio::join!(neo.run(&["app", "create", "cart"]), async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        stack.core.nats.restart().await.unwrap();
    });
    let (result, out) = created;
    assert!(result.is_ok(), "{result:?}: {out}");
    let created = stack
        .stored_events("acme")
        .await
        .unwrap()
        .iter()
        .filter(|e| e.entity_id == "cart" && e.event_type == "AppCreated")
        .count();
    assert_eq!(created, 1);
}
