//! Replay of the event log on a real nats-server: one entity's state (now and as at a
//! sequence) against the host's and a hand fold, every event counted, malformed events named.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use async_nats::HeaderMap;
use bytes::Bytes;
use neo_actors::HostConfig;
use neo_actors::replay::{self, EntityState, ReplayError};
use neo_protocol::envelope::EventMeta;
use neo_protocol::{AppName, EntityRef, TenantName, pb, subjects};
use neo_tests::commands::{self, request};
use neo_tests::{Core, expect_accepted, send};

fn app(name: &str) -> EntityRef {
    EntityRef::app(
        &TenantName::new("acme").unwrap(),
        &AppName::new(name).unwrap(),
    )
}

/// Sends `command` to `entity` and returns the entity's last sequence after it.
async fn command(client: &async_nats::Client, entity: &EntityRef, command: pb::AppCommand) -> u64 {
    let reply = send(client, entity, &request(command)).await.unwrap();
    expect_accepted(reply).last_sequence
}

/// The app state the aggregate should reach after creation and revisions `1..=n`, by hand.
fn by_hand(n: u64) -> pb::AppState {
    pb::AppState {
        exists: true,
        description: "an app".into(),
        revisions: (1..=n)
            .map(|i| pb::Revision {
                number: i as u32,
                digest: commands::digest(i),
                size: 100,
                author: "alice".into(),
                message: format!("change {i}"),
                dependencies: vec![],
                deploy_to: String::new(),
            })
            .collect(),
        ..Default::default()
    }
}

fn app_state(state: EntityState) -> pb::AppState {
    match state {
        EntityState::App(s) => s,
        other => panic!("expected an app state, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_equals_the_host_and_a_hand_fold_now_and_as_at_a_sequence() {
    let core = Core::start().await.unwrap();
    let p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let js = p.store.context().clone();
    let (shop, blog) = (app("shop"), app("blog"));

    command(&client, &shop, commands::create_app()).await;
    command(&client, &blog, commands::create_app()).await;
    let after_first_revision = command(&client, &shop, commands::revision(1)).await;
    command(&client, &blog, commands::revision(7)).await;
    command(&client, &shop, commands::revision(2)).await;
    let last = command(&client, &shop, commands::revision(3)).await;

    // Now: the host's state, the replayed one and the hand fold agree.
    let reply = p.platform.query(&shop).await;
    let Some(pb::state_reply::Result::State(host)) = reply.result else {
        panic!("query failed: {reply:?}");
    };
    let (state, sequence) = replay::replay_entity(&js, &shop, None).await.unwrap();
    assert_eq!(sequence, last);
    assert_eq!(host.sequence, last);
    assert_eq!(Bytes::from(state.encode_to_vec()), host.state);
    assert_eq!(app_state(state), by_hand(3));

    // As at a middle sequence: only the events up to it; a sequence of another entity's
    // event (blog's revision) leaves the state as at the entity's previous event.
    for up_to in [after_first_revision, after_first_revision + 1] {
        let (state, sequence) = replay::replay_entity(&js, &shop, Some(up_to))
            .await
            .unwrap();
        assert_eq!(sequence, after_first_revision);
        assert_eq!(app_state(state), by_hand(1));
    }

    // An entity with no events, or none yet at the sequence: the empty state.
    let (state, sequence) = replay::replay_entity(&js, &app("none"), None)
        .await
        .unwrap();
    assert_eq!((state, sequence), (EntityState::App(Default::default()), 0));
    let (state, sequence) = replay::replay_entity(&js, &blog, Some(1)).await.unwrap();
    assert_eq!((state, sequence), (EntityState::App(Default::default()), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_all_counts_every_event_of_the_range() {
    let core = Core::start().await.unwrap();
    let p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let js = p.store.context().clone();
    let names = ["a", "b", "c", "d", "e"];
    let mut last = 0;
    for name in names {
        command(&client, &app(name), commands::create_app()).await;
        for i in 1..=3 {
            last = command(&client, &app(name), commands::revision(i)).await;
        }
    }
    assert_eq!(last, 20);

    let folded = replay::replay_all(&js, 1, last, true).await.unwrap();
    assert_eq!(
        (folded.events, folded.entities, folded.last_sequence),
        (20, 5, 20)
    );
    let read = replay::replay_all(&js, 1, u64::MAX, false).await.unwrap();
    assert_eq!(
        (read.events, read.entities, read.last_sequence),
        (20, 0, 20)
    );
    let middle = replay::replay_all(&js, 6, 10, true).await.unwrap();
    assert_eq!((middle.events, middle.last_sequence), (5, 10));
    let none = replay::replay_all(&js, 21, u64::MAX, true).await.unwrap();
    assert_eq!(none.events, 0);

    // Every replayed state equals the host's.
    let settings = replay::ReadSettings::default();
    let (_, replayer) = replay::replay_all_with(&js, 1, last, true, settings)
        .await
        .unwrap();
    for name in names {
        let (host, sequence) = p.platform.apps.state(&app(name)).await.unwrap();
        let folded = replayer.get(&app(name)).unwrap();
        assert_eq!(folded.state, EntityState::App(host));
        assert_eq!(folded.last_sequence, sequence);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_event_is_reported_with_its_sequence() {
    let core = Core::start().await.unwrap();
    let p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let js = p.store.context().clone();
    let shop = app("shop");
    command(&client, &shop, commands::create_app()).await;

    let meta = EventMeta {
        event_type: "RevisionCreated".into(),
        schema_version: 1,
        command_id: "bad".into(),
        ..Default::default()
    };
    let mut headers = HeaderMap::new();
    for (name, value) in meta.to_headers() {
        headers.insert(name, value);
    }
    let bad = js
        .publish_with_headers(
            subjects::event(&shop, "RevisionCreated"),
            headers,
            Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]),
        )
        .await
        .unwrap()
        .await
        .unwrap()
        .sequence;

    match replay::replay_entity(&js, &shop, None).await {
        Err(ReplayError::Malformed { sequence, .. }) => assert_eq!(sequence, bad),
        other => panic!("expected a malformed event, got {other:?}"),
    }
    match replay::replay_all(&js, 1, u64::MAX, true).await {
        Err(ReplayError::Malformed { sequence, .. }) => assert_eq!(sequence, bad),
        other => panic!("expected a malformed event, got {other:?}"),
    }
    // Up to the event before it, the entity replays; reading without folding counts it.
    let (state, sequence) = replay::replay_entity(&js, &shop, Some(bad - 1))
        .await
        .unwrap();
    assert_eq!((app_state(state).exists, sequence), (true, bad - 1));
    let read = replay::replay_all(&js, 1, u64::MAX, false).await.unwrap();
    assert_eq!(read.events, bad);
}
