//! The JetStream event store against a real nats-server: append, conflicts, de-duplication,
//! atomic batches, loading, snapshots and the stream's configuration upgrade.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::Duration;

use async_nats::jetstream::stream;
use bytes::Bytes;
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig, upgrade_stream_config};
use neo_actors::store::{EventStore, NewEvent, StoreError};
use neo_protocol::envelope::EventMeta;
use neo_protocol::{AppName, EntityRef, TenantName, pb, subjects};
use neo_tests::Core;

fn app(name: &str) -> EntityRef {
    EntityRef::app(
        &TenantName::new("acme").unwrap(),
        &AppName::new(name).unwrap(),
    )
}

fn event(command_id: &str, event_type: &str, body: &'static [u8]) -> NewEvent {
    NewEvent {
        meta: EventMeta {
            event_type: event_type.into(),
            schema_version: 1,
            command_id: command_id.into(),
            correlation_id: command_id.into(),
            who: "tester".into(),
            time_ms: 1,
            ..EventMeta::default()
        },
        payload: Bytes::from_static(body),
    }
}

#[tokio::test]
async fn appends_with_expected_sequence_and_loads_in_order() {
    let core = Core::start().await.unwrap();
    let store = core.store().await.unwrap();
    let (a, b) = (app("a"), app("b"));
    let first = store
        .append(&a, 0, vec![event("c1", "AppCreated", b"1")])
        .await
        .unwrap();
    store
        .append(&b, 0, vec![event("c2", "AppCreated", b"x")])
        .await
        .unwrap();
    let second = store
        .append(
            &a,
            first.last_sequence,
            vec![event("c3", "RevisionCreated", b"2")],
        )
        .await
        .unwrap();
    assert_eq!(store.last_sequence(&a).await.unwrap(), second.last_sequence);
    let loaded = store.load(&a, 0, u64::MAX).await.unwrap();
    let types: Vec<_> = loaded.iter().map(|e| e.meta.event_type.as_str()).collect();
    assert_eq!(types, ["AppCreated", "RevisionCreated"]);
    assert_eq!(loaded[1].meta.command_id, "c3");
    assert_eq!(loaded[1].payload.as_ref(), b"2");
    // Only the events after a sequence.
    let tail = store.load(&a, first.last_sequence, u64::MAX).await.unwrap();
    assert_eq!(tail.len(), 1);
    assert_eq!(store.last_sequence(&app("none")).await.unwrap(), 0);
    assert!(
        store
            .load(&app("none"), 0, u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_stale_writer_gets_a_conflict_and_writes_nothing() {
    let core = Core::start().await.unwrap();
    let store = core.store().await.unwrap();
    let a = app("a");
    store
        .append(&a, 0, vec![event("c1", "AppCreated", b"1")])
        .await
        .unwrap();
    let err = store
        .append(&a, 0, vec![event("c2", "AppCreated", b"1")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { expected: 0, .. }),
        "{err}"
    );
    // A multi-event command with a stale sequence writes none of its events.
    let err = store
        .append(
            &a,
            0,
            vec![
                event("c3", "TenantCreated", b"1"),
                event("c3", "MemberSet", b"2"),
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert_eq!(store.load(&a, 0, u64::MAX).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_same_command_id_is_written_once() {
    let core = Core::start().await.unwrap();
    let store = core.store().await.unwrap();
    let a = app("a");
    let first = store
        .append(&a, 0, vec![event("same", "AppCreated", b"1")])
        .await
        .unwrap();
    // The server checks the expected sequence first: a retry after the entity moved on is a
    // conflict (the host then finds the command id in the log); either way nothing is written.
    match store
        .append(&a, 0, vec![event("same", "AppCreated", b"1")])
        .await
    {
        Ok(again) => {
            assert!(again.duplicate);
            assert_eq!(again.last_sequence, first.last_sequence);
        }
        Err(e) => assert!(matches!(e, StoreError::Conflict { .. }), "{e}"),
    }
    // Without a sequence race (another entity's subject, same id), de-duplication answers.
    let dup = store
        .append(&app("other"), 0, vec![event("same", "AppCreated", b"1")])
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.last_sequence, first.last_sequence);
    assert_eq!(store.load(&a, 0, u64::MAX).await.unwrap().len(), 1);
    assert!(
        store
            .load(&app("other"), 0, u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn several_events_of_one_command_commit_atomically_and_in_order() {
    let core = Core::start().await.unwrap();
    let store = core.store().await.unwrap();
    let t = app("t");
    let appended = store
        .append(
            &t,
            0,
            vec![
                event("c1", "TenantCreated", b"a"),
                event("c1", "MemberSet", b"b"),
                event("c1", "MemberSet", b"c"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(appended.last_sequence - appended.first_sequence, 2);
    let loaded = store.load(&t, 0, u64::MAX).await.unwrap();
    let bodies: Vec<_> = loaded.iter().map(|e| e.payload.as_ref()).collect();
    assert_eq!(bodies, [b"a", b"b", b"c"]);
    assert_eq!(loaded[0].sequence, appended.first_sequence);
}

#[tokio::test]
async fn loads_more_events_than_one_batch() {
    let core = Core::start().await.unwrap();
    let store = core.store().await.unwrap();
    let a = app("long");
    let mut last = 0;
    for i in 0..2500 {
        last = store
            .append(
                &a,
                last,
                vec![event(&format!("c{i}"), "RevisionCreated", b"r")],
            )
            .await
            .unwrap()
            .last_sequence;
    }
    let all = store.load(&a, 0, u64::MAX).await.unwrap();
    assert_eq!(all.len(), 2500);
    assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence));
    assert_eq!(
        store.load(&a, 0, all[1099].sequence).await.unwrap().len(),
        1100
    );
}

#[tokio::test]
async fn snapshots_round_trip_in_kv() {
    let core = Core::start().await.unwrap();
    let store = core.store().await.unwrap();
    let a = app("a");
    assert!(store.read_snapshot(&a).await.unwrap().is_none());
    let snap = pb::Snapshot {
        state: Bytes::from_static(b"state"),
        sequence: 7,
        recent_commands: vec![],
        ..Default::default()
    };
    store.write_snapshot(&a, &snap).await.unwrap();
    assert_eq!(store.read_snapshot(&a).await.unwrap(), Some(snap));
}

#[tokio::test]
async fn an_existing_stream_is_upgraded_in_place_keeping_its_events() {
    let core = Core::start().await.unwrap();
    let client = core.connect().await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: subjects::EVENTS_STREAM.into(),
        subjects: vec![subjects::EVENTS_ALL.into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(30),
        ..Default::default()
    })
    .await
    .unwrap();
    js.publish("neo.evt.acme.app.old.AppCreated", "old".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let store = JetStreamStore::open(client, StoreConfig::default())
        .await
        .unwrap();
    let mut s = js.get_stream(subjects::EVENTS_STREAM).await.unwrap();
    let config = s.info().await.unwrap().config.clone();
    assert!(config.deny_delete && config.deny_purge && config.allow_direct);
    assert!(config.allow_atomic_publish);
    assert_eq!(
        config.duplicate_window,
        StoreConfig::default().duplicate_window
    );
    assert_eq!(s.info().await.unwrap().state.messages, 1);
    assert_eq!(store.last_sequence(&app("old")).await.unwrap(), 1);
}

#[test]
fn a_memory_stream_is_never_silently_recreated() {
    let existing = stream::Config {
        name: subjects::EVENTS_STREAM.into(),
        storage: stream::StorageType::Memory,
        ..Default::default()
    };
    let err = upgrade_stream_config(Some(existing), &StoreConfig::default(), 1).unwrap_err();
    assert!(err.to_string().contains("file storage"), "{err}");
}
