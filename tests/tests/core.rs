//! The event-sourced core end to end on a real nats-server: platform processes serving the
//! NATS intake, concurrent writers, crashes, snapshots, reactors and bad input.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use neo_actors::HostConfig;
use neo_actors::host::restore;
use neo_actors::reactor::{self, podgroups::PodgroupOnFirstRelease};
use neo_actors::store::EventStore;
use neo_protocol::pb::{self, ErrorCode};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, headers, subjects};
use neo_tests::commands::{self, request, request_with_id};
use neo_tests::{Core, expect_accepted, expect_error, send, send_raw};
use prost::Message;

fn tenant() -> TenantName {
    TenantName::new("acme").unwrap()
}

fn app(name: &str) -> EntityRef {
    EntityRef::app(&tenant(), &AppName::new(name).unwrap())
}

fn code(e: &pb::CommandError) -> ErrorCode {
    ErrorCode::try_from(e.code).unwrap()
}

/// Runs a platform process on its own runtime (its own threads), like a second process.
async fn platform_in_own_runtime(
    core: &Core,
) -> (tokio::runtime::Runtime, Arc<neo_tests::PlatformProcess>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let url = core.nats.url();
    let process = rt
        .spawn(async move {
            let client = async_nats::connect(url).await?;
            neo_tests::PlatformProcess::start(client, HostConfig::default()).await
        })
        .await
        .unwrap()
        .unwrap();
    (rt, Arc::new(process))
}

/// The app state as a platform process on another runtime sees it.
async fn app_state_in(
    rt: &tokio::runtime::Runtime,
    p: &Arc<neo_tests::PlatformProcess>,
    entity: &EntityRef,
) -> pb::AppState {
    let (p, entity) = (p.clone(), entity.clone());
    rt.spawn(async move { p.platform.apps.state(&entity).await })
        .await
        .unwrap()
        .unwrap()
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_platform_processes_lose_no_update_on_one_entity() {
    let core = Core::start().await.unwrap();
    let (rt_a, a) = platform_in_own_runtime(&core).await;
    let (rt_b, b) = platform_in_own_runtime(&core).await;
    let client = core.connect().await.unwrap();
    let shop = app("shop");
    expect_accepted(
        send(&client, &shop, &request(commands::create_app()))
            .await
            .unwrap(),
    );

    // 300 concurrent revisions through the queue group: both processes serve some, and race
    // on the entity's log. A command that keeps losing is answered `Aborted`, and a client
    // retries it with the same command id (which can never apply it twice).
    let mut tasks = Vec::new();
    for n in 1..=300u64 {
        let (client, shop) = (client.clone(), shop.clone());
        tasks.push(tokio::spawn(async move {
            let req = request(commands::revision(n));
            loop {
                let reply = send(&client, &shop, &req).await.unwrap();
                match &reply.result {
                    Some(pb::command_reply::Result::Error(e)) if code(e) == ErrorCode::Aborted => {
                        continue;
                    }
                    _ => return expect_accepted(reply),
                }
            }
        }));
    }
    for t in tasks {
        assert!(!t.await.unwrap().events.is_empty());
    }
    let store = core.store().await.unwrap();
    let (replayed, _, _) = restore::<pb::AppState>(store.as_ref(), &shop, false)
        .await
        .unwrap();
    let numbers: Vec<u32> = replayed.revisions.iter().map(|r| r.number).collect();
    assert_eq!(
        numbers,
        (1..=300).collect::<Vec<_>>(),
        "numbered without gaps"
    );
    let digests: BTreeSet<_> = replayed
        .revisions
        .iter()
        .map(|r| r.digest.clone())
        .collect();
    assert_eq!(digests.len(), 300, "every update kept");
    // Each live host's state equals the fresh replay.
    // Both processes served the entity (the queue group spread the commands).
    assert_eq!(
        (a.platform.apps.live_count(), b.platform.apps.live_count()),
        (1, 1)
    );
    assert_eq!(app_state_in(&rt_a, &a, &shop).await, replayed);
    assert_eq!(app_state_in(&rt_b, &b, &shop).await, replayed);
    drop((a, b));
    rt_a.shutdown_background();
    rt_b.shutdown_background();
}

#[tokio::test]
async fn the_same_command_id_twice_gives_one_event_and_the_original_result() {
    let core = Core::start().await.unwrap();
    let _p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let t = EntityRef::tenant(&tenant());
    let req = request_with_id("create-acme-1", commands::create_tenant("alice"));
    let first = expect_accepted(send(&client, &t, &req).await.unwrap());
    let second = expect_accepted(send(&client, &t, &req).await.unwrap());
    assert_eq!(
        first.events.len(),
        2,
        "TenantCreated and MemberSet, atomically"
    );
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.events, second.events);
    let store = core.store().await.unwrap();
    assert_eq!(store.load(&t, 0, u64::MAX).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_mid_load_is_rebuilt_with_every_acknowledged_command() {
    let core = Core::start().await.unwrap();
    let (rt, process) = platform_in_own_runtime(&core).await;
    let client = core.connect().await.unwrap();
    let shop = app("shop");
    expect_accepted(
        send(&client, &shop, &request(commands::create_app()))
            .await
            .unwrap(),
    );
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let mut tasks = Vec::new();
    for n in 1..=400u64 {
        let (client, shop, acked) = (client.clone(), shop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            if let Ok(reply) = send(&client, &shop, &request(commands::revision(n))).await
                && let Some(pb::command_reply::Result::Accepted(_)) = reply.result
            {
                acked.lock().unwrap().insert(commands::digest(n));
            }
        }));
    }
    // Kill the only platform process while commands are in flight.
    while acked.lock().unwrap().len() < 50 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(process);
    rt.shutdown_background();
    for t in tasks {
        t.abort();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 50);

    let fresh = core.platform(HostConfig::default()).await.unwrap();
    let (state, _) = fresh.platform.apps.state(&shop).await.unwrap();
    let kept: BTreeSet<_> = state.revisions.iter().map(|r| r.digest.clone()).collect();
    assert!(acked.is_subset(&kept), "an acknowledged revision was lost");
    let sent: BTreeSet<_> = (1..=400).map(commands::digest).collect();
    assert!(kept.is_subset(&sent), "a revision nobody sent appeared");
    let (replayed, _, _) = restore::<pb::AppState>(fresh.store.as_ref(), &shop, false)
        .await
        .unwrap();
    assert_eq!(state, replayed);
}

#[tokio::test]
async fn state_rebuilt_with_snapshots_equals_state_without() {
    let core = Core::start().await.unwrap();
    let config = HostConfig {
        snapshot_every: 50,
        ..HostConfig::default()
    };
    let p = core.platform(config).await.unwrap();
    let shop = app("shop");
    let meta = || neo_actors::CommandMeta::new("tester");
    p.platform
        .apps
        .execute(&shop, meta(), commands::create_app())
        .await
        .unwrap();
    for n in 1..=420 {
        p.platform
            .apps
            .execute(&shop, meta(), commands::revision(n))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let snap = p
        .store
        .read_snapshot(&shop)
        .await
        .unwrap()
        .expect("snapshot written");
    assert!(snap.sequence >= 400, "snapshot at {}", snap.sequence);
    let with = restore::<pb::AppState>(p.store.as_ref(), &shop, true)
        .await
        .unwrap();
    let without = restore::<pb::AppState>(p.store.as_ref(), &shop, false)
        .await
        .unwrap();
    assert_eq!(with.0, without.0);
    assert_eq!(with.1, without.1);
    // A retried command id is still recognised after rebuilding from the snapshot.
    assert_eq!(with.2.last(), without.2.last());
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_host_keeps_serving() {
    let core = Core::start().await.unwrap();
    let _p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let good = request(commands::create_app());
    let bytes = || Bytes::from(good.encode_to_vec());

    // An invalid id in the subject.
    let e = expect_error(
        send_raw(&client, "neo.cmd.acme.app.Shop_X", bytes())
            .await
            .unwrap(),
    );
    assert_eq!(code(&e), ErrorCode::InvalidArgument);
    assert!(e.message.contains("Shop_X"), "{}", e.message);
    // An unknown kind.
    let e = expect_error(
        send_raw(&client, "neo.cmd.acme.robot.r2", bytes())
            .await
            .unwrap(),
    );
    assert_eq!(code(&e), ErrorCode::InvalidArgument);
    assert!(e.message.contains("entity kind"), "{}", e.message);
    // An invalid command id in the envelope.
    let mut bad_id = good.clone();
    bad_id.command_id = "has space".into();
    let e = expect_error(send(&client, &app("shop"), &bad_id).await.unwrap());
    assert_eq!(
        (code(&e), e.field.as_str()),
        (ErrorCode::InvalidArgument, "command_id")
    );
    // An unknown entity.
    let e = expect_error(
        send(&client, &app("ghost"), &request(commands::revision(1)))
            .await
            .unwrap(),
    );
    assert_eq!(
        (code(&e), e.rule.as_str()),
        (ErrorCode::NotFound, "app.not_found")
    );
    // Garbage payloads: not an envelope; an envelope around garbage.
    let e = expect_error(
        send_raw(
            &client,
            &subjects::command(&app("shop")),
            Bytes::from_static(b"\xff\xfe garbage"),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (code(&e), e.field.as_str()),
        (ErrorCode::InvalidArgument, "request")
    );
    let mut garbage = good.clone();
    garbage.command = Bytes::from_static(b"\x0a\xff\xff\xff");
    let e = expect_error(send(&client, &app("shop"), &garbage).await.unwrap());
    assert_eq!(
        (code(&e), e.field.as_str()),
        (ErrorCode::InvalidArgument, "command")
    );
    // An oversized command.
    let mut big = good.clone();
    big.command = Bytes::from(vec![0u8; 300 * 1024]);
    let e = expect_error(send(&client, &app("shop"), &big).await.unwrap());
    assert_eq!(code(&e), ErrorCode::ResourceExhausted);
    // Nothing was written, and the host still serves.
    let store = core.store().await.unwrap();
    assert_eq!(store.last_sequence(&app("shop")).await.unwrap(), 0);
    expect_accepted(send(&client, &app("shop"), &good).await.unwrap());
}

#[tokio::test]
async fn a_malformed_event_breaks_only_its_entity() {
    let core = Core::start().await.unwrap();
    let _p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    // A foreign writer puts garbage into one entity's log.
    let mut h = async_nats::HeaderMap::new();
    h.insert(headers::EVENT_TYPE, "AppCreated");
    h.insert(headers::SCHEMA_VERSION, "1");
    h.insert(headers::COMMAND_ID, "foreign");
    h.insert(headers::TIME, "1");
    let js = async_nats::jetstream::new(client.clone());
    let _store = core.store().await.unwrap();
    js.publish_with_headers(
        subjects::event(&app("broken"), "AppCreated"),
        h,
        Bytes::from_static(b"\xff\xff\xff\xff"),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let e = expect_error(
        send(&client, &app("broken"), &request(commands::revision(1)))
            .await
            .unwrap(),
    );
    assert_eq!(code(&e), ErrorCode::DataLoss);
    assert!(
        e.message.contains("acme/app/broken") && e.message.contains("sequence 1"),
        "{}",
        e.message
    );
    // Every other entity is unaffected.
    expect_accepted(
        send(&client, &app("fine"), &request(commands::create_app()))
            .await
            .unwrap(),
    );
    expect_accepted(
        send(&client, &app("fine"), &request(commands::revision(1)))
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn the_first_release_creates_the_podgroup_and_promotion_reuses_the_image() {
    let core = Core::start().await.unwrap();
    let p = core.platform(HostConfig::default()).await.unwrap();
    let js = p.store.context().clone();
    let rx = reactor::run(js, p.platform.clone(), Arc::new(PodgroupOnFirstRelease));
    let client = core.connect().await.unwrap();
    let t = EntityRef::tenant(&tenant());
    expect_accepted(
        send(&client, &t, &request(commands::create_tenant("alice")))
            .await
            .unwrap(),
    );
    let shop = AppName::new("shop").unwrap();
    let (dev, test) = (
        StageName::new("dev").unwrap(),
        StageName::new("test").unwrap(),
    );
    let dep_dev = EntityRef::deployment(&tenant(), &shop, &dev);
    let dep_test = EntityRef::deployment(&tenant(), &shop, &test);

    // Promotion with nothing in dev is refused.
    let e = expect_error(
        send(
            &client,
            &dep_test,
            &request(commands::promote("shop", "test")),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (code(&e), e.rule.as_str()),
        (ErrorCode::FailedPrecondition, "promotion.no_source")
    );

    let deployed = expect_accepted(
        send(
            &client,
            &dep_dev,
            &request(commands::deploy("shop", "dev", 1, 7)),
        )
        .await
        .unwrap(),
    );
    expect_accepted(
        send(
            &client,
            &dep_test,
            &request(commands::promote("shop", "test")),
        )
        .await
        .unwrap(),
    );
    let (test_state, _) = p.platform.deployments.state(&dep_test).await.unwrap();
    assert_eq!(
        test_state.releases[0].image_digest,
        commands::digest(7),
        "same image, no rebuild"
    );

    // The reactor created both podgroups, caused by the release events.
    for (stage, dep) in [(&dev, &dep_dev), (&test, &dep_test)] {
        let pg = EntityRef::podgroup(&tenant(), &shop, stage);
        let mut state = pb::PodgroupState::default();
        for _ in 0..100 {
            state = p.platform.podgroups.state(&pg).await.unwrap().0;
            if state.exists {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(state.exists, "podgroup of {dep} not created");
        assert_eq!(
            (state.release, state.desired),
            (1, state.policy.unwrap().min_replicas)
        );
        let events = p.store.load(&pg, 0, u64::MAX).await.unwrap();
        assert_eq!(events.len(), 1, "created exactly once");
        assert!(events[0].meta.causation_id.starts_with("evt:"));
    }
    let _ = deployed;
    rx.abort();
}

#[tokio::test]
async fn a_request_right_after_the_intake_starts_finds_it() {
    for i in 0..10 {
        let core = Core::start().await.unwrap();
        let client = core.connect().await.unwrap();
        let _p = core.platform(HostConfig::default()).await.unwrap();
        // No pause: `serve` returns only once the server has the intake's subscriptions.
        let reply = send(
            &client,
            &app(&format!("a{i}")),
            &request(commands::create_app()),
        )
        .await
        .unwrap();
        expect_accepted(reply);
    }
}

#[tokio::test]
async fn nothing_of_a_deleted_tenant_changes_on_any_platform_process() {
    let core = Core::start().await.unwrap();
    let p = core.platform(HostConfig::default()).await.unwrap();
    let (rt, other) = platform_in_own_runtime(&core).await;
    let js = p.store.context().clone();
    let follower = rt.spawn({
        let other = other.platform.clone();
        async move { neo_actors::platform::deleted::follow(js, other).await }
    });
    let client = core.connect().await.unwrap();
    let acme = EntityRef::tenant(&tenant());
    let shop = app("shop");
    expect_accepted(
        send(&client, &acme, &request(commands::create_tenant("alice")))
            .await
            .unwrap(),
    );
    expect_accepted(
        send(&client, &shop, &request(commands::create_app()))
            .await
            .unwrap(),
    );
    let delete = pb::TenantCommand {
        command: Some(pb::tenant_command::Command::Delete(pb::DeleteTenant {
            reason: "closing".into(),
        })),
    };
    // Deleted through this process (as its intake would), which refuses at once.
    expect_accepted(p.platform.dispatch(&acme, request(delete)).await);
    let direct = p
        .platform
        .dispatch(&shop, request(commands::revision(1)))
        .await;
    let Some(pb::command_reply::Result::Error(e)) = direct.result else {
        panic!("a refusal: {direct:?}");
    };
    assert_eq!(
        (code(&e), e.rule.as_str()),
        (ErrorCode::FailedPrecondition, "tenant.deleted")
    );
    // The other process learns it from the event: every command through the queue group is
    // refused, and a new app cannot be created either.
    let other_platform = other.platform.clone();
    let refused_there = rt
        .spawn(async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let reply = other_platform
                    .dispatch(&app("new"), request(commands::create_app()))
                    .await;
                match reply.result {
                    Some(pb::command_reply::Result::Error(e)) if e.rule == "tenant.deleted" => {
                        return true;
                    }
                    _ if std::time::Instant::now() > deadline => return false,
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
        .unwrap();
    assert!(refused_there, "the other process refuses within 5 s");
    for _ in 0..4 {
        let e = expect_error(
            send(&client, &shop, &request(commands::revision(2)))
                .await
                .unwrap(),
        );
        assert_eq!(e.rule, "tenant.deleted", "{e:?}");
    }
    let (state, _) = p.platform.apps.state(&shop).await.unwrap();
    assert!(state.revisions.is_empty(), "nothing written: {state:?}");
    follower.abort();
    drop(other);
    rt.shutdown_background();
}
