//! Neo on a three-node NATS cluster (real nats-servers, `sync_interval: always`): every stream
//! and bucket gets three replicas, an existing single-replica stream is raised in place with
//! nothing lost, and killing the node that leads the event stream under a steady command load
//! loses no acknowledged command, doubles none, and commands succeed again within seconds; the
//! killed node comes back and catches up. Several platform processes share the commands, and
//! one drained (what SIGTERM does to `neo serve`) fails no call.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use neo_actors::HostConfig;
use neo_harness::NatsCluster;
use neo_protocol::{EntityRef, TenantName, pb, subjects};
use neo_tests::load::{Load, not_once};
use neo_tests::{Core, PlatformProcess, commands, eventually, send};

/// A steady load: one command every 20 ms.
const LOAD_EVERY: Duration = Duration::from_millis(20);

async fn replicas_of(js: &jetstream::Context, stream: &str) -> usize {
    js.get_stream(stream)
        .await
        .unwrap()
        .cached_info()
        .config
        .num_replicas
}

/// Creates tenant `name` (admin alice) over NATS.
async fn create_tenant(client: &async_nats::Client, name: &str) {
    let created = send(
        client,
        &EntityRef::tenant(&TenantName::new(name).unwrap()),
        &commands::request(commands::create_tenant("alice")),
    )
    .await
    .unwrap();
    assert!(
        matches!(created.result, Some(pb::command_reply::Result::Accepted(_))),
        "{created:?}"
    );
}

#[tokio::test]
async fn every_stream_and_bucket_gets_three_replicas_and_a_lone_replica_is_raised_in_place() {
    let cluster = NatsCluster::start("").await.unwrap();
    let client = cluster.connect().await.unwrap();
    assert_eq!(neo_client::streams::replicas(&client), 3);
    let js = jetstream::new(client.clone());

    // A stream made before the cluster profile, with one replica and data in it.
    js.create_stream(stream::Config {
        name: subjects::DESIRED_STREAM.into(),
        subjects: vec![subjects::DESIRED_ALL.into()],
        max_messages_per_subject: 1,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    // A new stream's replica may answer a moment after the create does ("no responders").
    eventually(Duration::from_secs(10), "the new stream acks", || {
        let js = js.clone();
        async move {
            let ack = js
                .publish("neo.desired.dev.acme.shop", "kept".into())
                .await
                .ok()?;
            ack.await.ok()
        }
    })
    .await;

    // The platform opens everything it uses.
    let _platform = PlatformProcess::start(client.clone(), HostConfig::default())
        .await
        .unwrap();
    neo_runtime_agent::streams::ensure(&js, neo_runtime_agent::streams::Retention::default())
        .await
        .unwrap();
    neo_builder::buildlog::ensure(&js).await.unwrap();
    for stream in [
        subjects::EVENTS_STREAM,
        subjects::DESIRED_STREAM,
        subjects::RUNTIME_STREAM,
        subjects::LOGS_STREAM,
        neo_builder::buildlog::LOG_STREAM,
        &format!("KV_{}", subjects::SNAPSHOT_BUCKET),
    ] {
        assert_eq!(replicas_of(&js, stream).await, 3, "{stream}");
    }
    // The raised stream kept its message.
    let kept = js
        .get_stream(subjects::DESIRED_STREAM)
        .await
        .unwrap()
        .get_last_raw_message_by_subject("neo.desired.dev.acme.shop")
        .await
        .unwrap();
    assert_eq!(kept.payload.as_ref(), b"kept");
}

#[tokio::test]
async fn killing_the_event_stream_leader_loses_nothing_acknowledged_and_commands_resume() {
    let mut cluster = NatsCluster::start("").await.unwrap();
    let client = cluster.connect().await.unwrap();
    let platform = PlatformProcess::start(client.clone(), HostConfig::default())
        .await
        .unwrap();
    let tenant = TenantName::new("acme").unwrap();
    create_tenant(&client, "acme").await;

    let load = Load::start(cluster.connect().await.unwrap(), "acme", LOAD_EVERY);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = cluster.leader_of(subjects::EVENTS_STREAM).await.unwrap();
    cluster.node(leader).kill();
    let killed = Instant::now();

    // Commands succeed again, on a new leader, within seconds.
    let mut n = 0;
    eventually(
        Duration::from_secs(30),
        "a command accepted after the kill",
        || {
            n += 1;
            let (client, tenant) = (client.clone(), tenant.clone());
            async move {
                let app = neo_protocol::AppName::new(format!("after-{n}")).ok()?;
                let reply = tokio::time::timeout(
                    Duration::from_secs(5),
                    send(
                        &client,
                        &EntityRef::app(&tenant, &app),
                        &commands::request(commands::create_app()),
                    ),
                )
                .await
                .ok()?
                .ok()?;
                matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))).then_some(())
            }
        },
    )
    .await;
    let gap = killed.elapsed();
    eprintln!("first command accepted {gap:?} after the leader was killed");
    assert_ne!(
        cluster.leader_of(subjects::EVENTS_STREAM).await,
        Some(leader)
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked = load.stop().await.unwrap();
    assert!(
        acked.len() > 50,
        "only {} commands acknowledged",
        acked.len()
    );

    // Every acknowledged command is in the log exactly once.
    let wrong = not_once(&client, "acme", &acked).await.unwrap();
    assert!(wrong.is_empty(), "not exactly once: {wrong:?}");

    // The killed node comes back and catches up.
    cluster.node(leader).restart().await.unwrap();
    cluster
        .wait_caught_up(leader, subjects::EVENTS_STREAM)
        .await
        .unwrap();
    drop(platform);
}

#[tokio::test]
async fn platform_processes_share_the_commands_and_one_drained_fails_no_call() {
    let core = Core::start().await.unwrap();
    let first = core.platform(HostConfig::default()).await.unwrap();
    let second = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    create_tenant(&client, "acme").await;
    // Eight senders, each on its own tenant's apps, one command every 5 ms each.
    let tenants: Vec<String> = (0..8).map(|i| format!("acme-{i}")).collect();
    let mut loads = Vec::new();
    for tenant in &tenants {
        let load = Load::start(
            core.connect().await.unwrap(),
            tenant,
            Duration::from_millis(5),
        );
        loads.push((tenant, load));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    first.drain().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (tenant, load) in loads {
        let outcome = load.outcome().await.unwrap();
        assert!(
            outcome.failed.is_empty(),
            "{tenant}: failed calls: {:?}",
            outcome.failed
        );
        assert!(
            outcome.acked.len() > 50,
            "{} acknowledged",
            outcome.acked.len()
        );
        let wrong = not_once(&client, tenant, &outcome.acked).await.unwrap();
        assert!(wrong.is_empty(), "{tenant}: not exactly once: {wrong:?}");
    }
    drop(second);
}
