//! Entity host behaviour over the in-memory store: idempotency, conflicts between hosts,
//! passivation, the live bound, snapshots and malformed events.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use neo_protocol::envelope::EventMeta;
use neo_protocol::{AppName, EntityRef, TenantName, pb};

use super::*;
use crate::store::memory::MemoryStore;
use crate::store::{EventStore, NewEvent};

fn app_ref(name: &str) -> EntityRef {
    EntityRef::app(
        &TenantName::new("acme").expect("valid"),
        &AppName::new(name).expect("valid"),
    )
}

fn create() -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: "shop".into(),
        })),
    }
}

fn revision(n: u32) -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::CreateRevision(
            pb::CreateRevision {
                digest: format!("sha256:{n:064x}"),
                size: 10,
                author: "alice".into(),
                message: format!("change {n}"),
                dependencies: vec![],
                ..Default::default()
            },
        )),
    }
}

async fn host(store: Arc<MemoryStore>, config: HostConfig) -> EntityHost<pb::AppState> {
    EntityHost::start(store, config).await.expect("host starts")
}

#[tokio::test]
async fn a_retried_command_id_writes_once_and_returns_the_original() {
    let store = Arc::new(MemoryStore::new());
    let h = host(store.clone(), HostConfig::default()).await;
    let e = app_ref("shop");
    let meta = CommandMeta::new("alice");
    let first = h
        .execute(&e, meta.clone(), create())
        .await
        .expect("created");
    let again = h.execute(&e, meta, create()).await.expect("same result");
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.events, again.events);
    assert_eq!(store.last_sequence(&e).await.expect("store"), 1);
}

#[tokio::test]
async fn two_hosts_on_one_entity_lose_no_update() {
    let store = Arc::new(MemoryStore::new());
    let a = Arc::new(host(store.clone(), HostConfig::default()).await);
    let b = Arc::new(host(store.clone(), HostConfig::default()).await);
    let e = app_ref("shop");
    a.execute(&e, CommandMeta::new("alice"), create())
        .await
        .expect("created");
    let mut tasks = Vec::new();
    for n in 1..=60u32 {
        let h = if n % 2 == 0 { a.clone() } else { b.clone() };
        let e = e.clone();
        tasks.push(tokio::spawn(async move {
            h.execute(&e, CommandMeta::new("bob"), revision(n)).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("accepted after catching up");
    }
    let (state, _) = a.state(&e).await.expect("state");
    let numbers: Vec<u32> = state.revisions.iter().map(|r| r.number).collect();
    assert_eq!(numbers, (1..=60).collect::<Vec<_>>());
    let (replayed, _, _) = restore::<pb::AppState>(store.as_ref(), &e, false)
        .await
        .expect("replay");
    assert_eq!(state, replayed);
}

#[tokio::test]
async fn idle_actors_are_passivated_and_come_back_whole() {
    let store = Arc::new(MemoryStore::new());
    let config = HostConfig {
        idle_timeout: Duration::from_millis(100),
        ..HostConfig::default()
    };
    let h = host(store, config).await;
    let e = app_ref("shop");
    h.execute(&e, CommandMeta::new("a"), create())
        .await
        .expect("created");
    h.execute(&e, CommandMeta::new("a"), revision(1))
        .await
        .expect("rev");
    assert_eq!(h.live_count(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(h.live_count(), 0);
    let (state, sequence) = h.state(&e).await.expect("reactivated");
    assert_eq!((state.revisions.len(), sequence), (1, 2));
}

#[tokio::test]
async fn live_actors_stay_within_the_bound() {
    let store = Arc::new(MemoryStore::new());
    let config = HostConfig {
        max_live: 10,
        ..HostConfig::default()
    };
    let h = host(store, config).await;
    for i in 0..30 {
        let e = app_ref(&format!("app{i}"));
        h.execute(&e, CommandMeta::new("a"), create())
            .await
            .expect("created");
        assert!(h.live_count() <= 10, "{} live", h.live_count());
    }
    // An evicted entity still answers, rebuilt from the log.
    let (state, _) = h.state(&app_ref("app0")).await.expect("state");
    assert!(state.exists);
}

#[tokio::test]
async fn state_with_snapshots_equals_state_without() {
    let store = Arc::new(MemoryStore::new());
    let config = HostConfig {
        snapshot_every: 5,
        ..HostConfig::default()
    };
    let h = host(store.clone(), config).await;
    let e = app_ref("shop");
    h.execute(&e, CommandMeta::new("a"), create())
        .await
        .expect("created");
    for n in 1..=12 {
        h.execute(&e, CommandMeta::new("a"), revision(n))
            .await
            .expect("rev");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let snap = store
        .read_snapshot(&e)
        .await
        .expect("store")
        .expect("written");
    assert!(snap.sequence >= 5);
    let with = restore::<pb::AppState>(store.as_ref(), &e, true)
        .await
        .expect("with");
    let without = restore::<pb::AppState>(store.as_ref(), &e, false)
        .await
        .expect("without");
    assert_eq!(with.0, without.0);
    assert_eq!(with.1, without.1);
}

#[tokio::test]
async fn a_malformed_event_fails_only_its_entity() {
    let store = Arc::new(MemoryStore::new());
    let h = host(store.clone(), HostConfig::default()).await;
    let bad = app_ref("bad");
    store.inject(
        &bad,
        NewEvent {
            meta: EventMeta {
                event_type: "AppCreated".into(),
                schema_version: 1,
                command_id: "x".into(),
                ..EventMeta::default()
            },
            payload: Bytes::from_static(b"\xff\xff\xff\xff"),
        },
    );
    let err = h
        .execute(&bad, CommandMeta::new("a"), revision(1))
        .await
        .expect_err("cannot load");
    assert!(
        matches!(
            &err,
            HostError::Store(StoreError::Malformed { sequence: 1, .. })
        ),
        "{err}"
    );
    let good = app_ref("good");
    h.execute(&good, CommandMeta::new("a"), create())
        .await
        .expect("unaffected");
}

#[tokio::test]
async fn a_rejection_writes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let h = host(store.clone(), HostConfig::default()).await;
    let e = app_ref("shop");
    let err = h
        .execute(&e, CommandMeta::new("a"), revision(1))
        .await
        .expect_err("no app yet");
    assert!(
        matches!(err, HostError::Rejected(ref r) if r.rule == "app.not_found"),
        "{err}"
    );
    assert_eq!(store.last_sequence(&e).await.expect("store"), 0);
}

#[tokio::test]
async fn an_event_from_a_newer_schema_is_a_clear_error() {
    let store = Arc::new(MemoryStore::new());
    let h = host(store.clone(), HostConfig::default()).await;
    let e = app_ref("future");
    store.inject(
        &e,
        NewEvent {
            meta: EventMeta {
                event_type: "AppCreated".into(),
                schema_version: 9,
                command_id: "x".into(),
                ..EventMeta::default()
            },
            payload: Bytes::new(),
        },
    );
    let err = h.state(&e).await.expect_err("newer schema");
    assert!(err.to_string().contains("schema versions 1 to 1"), "{err}");
}

/// A tiny aggregate whose command 13 panics, to exercise supervision.
mod crashing {
    use crate::aggregate::{Aggregate, Rejection};

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Counter {
        #[prost(uint64, tag = "1")]
        pub total: u64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Add {
        #[prost(uint64, tag = "1")]
        pub n: u64,
    }

    impl Aggregate for Counter {
        const KIND: neo_protocol::EntityKind = neo_protocol::EntityKind::App;
        type Command = Add;
        type Event = Add;

        fn handle(&self, command: Add) -> Result<Vec<Add>, Rejection> {
            assert!(command.n != 13, "unlucky number");
            Ok(vec![command])
        }

        fn apply(&mut self, event: &Add) {
            self.total += event.n;
        }

        fn event_type(_: &Add) -> &'static str {
            "Added"
        }
    }
}

#[tokio::test]
async fn a_crashed_actor_is_rebuilt_from_the_log_by_its_supervisor() {
    let store = Arc::new(MemoryStore::new());
    let h: EntityHost<crashing::Counter> = EntityHost::start(store.clone(), HostConfig::default())
        .await
        .expect("host");
    let e = app_ref("counter");
    h.execute(&e, CommandMeta::new("a"), crashing::Add { n: 2 })
        .await
        .expect("added");
    h.execute(&e, CommandMeta::new("a"), crashing::Add { n: 3 })
        .await
        .expect("added");
    let err = h
        .execute(&e, CommandMeta::new("a"), crashing::Add { n: 13 })
        .await
        .expect_err("the actor panicked");
    assert!(matches!(err, HostError::Stopped(_)), "{err}");
    // The next command reaches a fresh actor that rebuilt the state from the log.
    let done = h
        .execute(&e, CommandMeta::new("a"), crashing::Add { n: 5 })
        .await
        .expect("added");
    assert_eq!(done.last_sequence, 3);
    let (state, _) = h.state(&e).await.expect("state");
    assert_eq!(state.total, 10);
}
