//! Events.Watch end to end (history then live, filters, resuming with no gap and no duplicate,
//! the principal of each event) and the gateway through a NATS outage.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neo_gateway::api;
use neo_protocol::pb;
use neo_tests::gateway::{
    People, Stack, StoredEvent, first_event, next_events, page, password, req,
};
use prost::Message;
use tonic::{Code, Status};

const QUIET: Duration = Duration::from_millis(700);
const PATIENCE: Duration = Duration::from_secs(10);

async fn stack() -> (Stack, People) {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    (stack, people)
}

/// A watch of acme's events with these filters.
fn filtered(kind: &str, entity_id: &str, event_type: &str, after: u64) -> api::WatchRequest {
    api::WatchRequest {
        kind: kind.into(),
        entity_id: entity_id.into(),
        event_type: event_type.into(),
        ..req::watch("acme", after)
    }
}

/// Asserts that `received` are exactly `expected`, in order, field by field.
#[track_caller]
fn assert_same(received: &[api::Event], expected: &[StoredEvent]) {
    let got: Vec<_> = received
        .iter()
        .map(|e| StoredEvent {
            sequence: e.sequence,
            kind: e.kind.clone(),
            entity_id: e.entity_id.clone(),
            event_type: e.event_type.clone(),
            who: e.who.clone(),
        })
        .collect();
    assert_eq!(got, expected);
    for e in received {
        assert_eq!(e.tenant, "acme", "{e:?}");
        assert!(e.time_ms > 0 && e.schema_version >= 1, "{e:?}");
        assert!(!e.command_id.is_empty(), "{e:?}");
    }
}

#[tokio::test]
async fn watch_replays_then_follows_and_resumes_without_gap_or_duplicate() {
    let (stack, people) = stack().await;
    let dave = people.dave.as_str();
    stack
        .app_with_revisions(dave, "acme", "shop", &[b"one", b"two"])
        .await
        .unwrap();
    let history = stack.stored_events("acme").await.unwrap();
    assert!(history.len() >= 8, "{history:?}");

    // Part of the history, then the watcher goes away while more happens, in both tenants.
    let mut events = stack.events(&people.vic);
    let mut stream = events.watch(req::watch("acme", 0)).await.unwrap();
    let mut received = next_events(stream.get_mut(), 4, PATIENCE).await.unwrap();
    assert_eq!(received.len(), 4);
    drop(stream);
    let cart: &[&[u8]] = &[b"cart"];
    stack
        .app_with_revisions(dave, "acme", "cart", cart)
        .await
        .unwrap();
    let bob = people.bob.as_str();
    stack
        .app_with_revisions(bob, "beta", "other", cart)
        .await
        .unwrap();

    // Resume from the last sequence received: the rest of the history, then live events.
    let last = received.last().unwrap().sequence;
    let stream = events.watch(req::watch("acme", last)).await.unwrap();
    let mut stream = stream.into_inner();
    let stored = stack.stored_events("acme").await.unwrap();
    let missing = stored.len() - received.len();
    received.extend(next_events(&mut stream, missing, PATIENCE).await.unwrap());
    assert_same(&received, &stored);
    let live = tokio::spawn({
        let mut apps = stack.apps(dave);
        async move { apps.create_app(req::create_app("acme", "live")).await }
    });
    let more = next_events(&mut stream, 1, PATIENCE).await.unwrap();
    live.await.unwrap().unwrap();
    let seen = (more[0].entity_id.as_str(), more[0].event_type.as_str());
    assert_eq!(seen, ("live", "AppCreated"));
    let payload = more[0].payload.as_ref().expect("a typed payload");
    assert_eq!(payload.type_url, "type.googleapis.com/neo.v1.AppEvent");
    let payload = pb::AppEvent::decode(payload.value.as_slice()).unwrap();
    assert!(matches!(
        payload.event,
        Some(pb::app_event::Event::Created(_))
    ));
    received.extend(more);
    // Nothing twice, nothing of beta.
    let extra = next_events(&mut stream, 1, QUIET).await.unwrap();
    assert!(extra.is_empty(), "unexpected {extra:?}");
    assert_same(&received, &stack.stored_events("acme").await.unwrap());
}

/// The events `watch` returns now, expected to be exactly `expected`.
async fn assert_watch(
    stack: &Stack,
    token: &str,
    watch: api::WatchRequest,
    expected: &[StoredEvent],
) {
    let case = format!("{watch:?}");
    let stream = stack.events(token).watch(watch).await;
    let mut stream = stream
        .unwrap_or_else(|e| panic!("{case}: {e:?}"))
        .into_inner();
    let received = next_events(&mut stream, expected.len() + 1, QUIET).await;
    let received = received.unwrap_or_else(|e| panic!("{case}: {e:?}"));
    assert_eq!(received.len(), expected.len(), "{case}: {received:?}");
    assert_same(&received, expected);
}

/// `stored` filtered the way a watch with these filters should.
fn matching(stored: &[StoredEvent], watch: &api::WatchRequest) -> Vec<StoredEvent> {
    let matches = |filter: &str, value: &str| filter.is_empty() || filter == value;
    stored
        .iter()
        .filter(|e| matches(&watch.kind, &e.kind) && matches(&watch.entity_id, &e.entity_id))
        .filter(|e| matches(&watch.event_type, &e.event_type))
        .filter(|e| e.sequence > watch.after_sequence)
        .cloned()
        .collect()
}

#[tokio::test]
async fn watch_filters_by_kind_entity_and_event_type() {
    let (stack, people) = stack().await;
    let (dave, vic) = (people.dave.as_str(), people.vic.as_str());
    let shop: &[&[u8]] = &[b"one", b"two"];
    stack
        .app_with_revisions(dave, "acme", "shop", shop)
        .await
        .unwrap();
    let cart: &[&[u8]] = &[b"cart"];
    stack
        .app_with_revisions(dave, "acme", "cart", cart)
        .await
        .unwrap();
    stack.built(dave, "acme", "shop", 1, 1).await.unwrap();
    let stored = stack.stored_events("acme").await.unwrap();
    let middle = stored[stored.len() / 2].sequence;
    let cases = [
        filtered("app", "", "", 0),
        filtered("app", "shop", "", 0),
        filtered("", "", "RevisionCreated", 0),
        filtered("app", "shop", "RevisionCreated", 0),
        filtered("build", "", "", 0),
        filtered("tenant", "acme", "MemberSet", 0),
        filtered("app", "", "", middle),
        filtered("deployment", "", "", 0),
    ];
    for watch in cases {
        let expected = matching(&stored, &watch);
        assert_watch(&stack, vic, watch, &expected).await;
    }

    // Live: a matching event arrives, the others do not.
    let last = stored.last().unwrap().sequence;
    let mut events = stack.events(vic);
    let builds = events.watch(filtered("build", "", "", last)).await;
    let mut builds = builds.unwrap().into_inner();
    let noise: &[&[u8]] = &[b"noise"];
    stack
        .app_with_revisions(dave, "acme", "noise", noise)
        .await
        .unwrap();
    let request = req::request_build("acme", "cart", 1);
    stack.builds(dave).request_build(request).await.unwrap();
    let live = next_events(&mut builds, 2, Duration::from_secs(3)).await;
    let live = live.unwrap();
    let seen: Vec<_> = live
        .iter()
        .map(|e| (e.entity_id.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(seen, [("cart_r1", "BuildRequested")]);
}

#[tokio::test]
async fn watch_filters_by_entity_id_alone() {
    // WatchRequest documents each filter as "empty matches all", so an entity id without a
    // kind matches that id in every kind.
    let (stack, people) = stack().await;
    let one: &[&[u8]] = &[b"one"];
    let dave = people.dave.as_str();
    stack
        .app_with_revisions(dave, "acme", "shop", one)
        .await
        .unwrap();
    stack
        .app_with_revisions(dave, "acme", "cart", one)
        .await
        .unwrap();
    let stored = stack.stored_events("acme").await.unwrap();
    let watch = filtered("", "shop", "", 0);
    let expected = matching(&stored, &watch);
    assert_eq!(expected.len(), 2);
    assert_watch(&stack, &people.vic, watch, &expected).await;
}

#[tokio::test]
async fn each_event_names_the_user_whose_call_caused_it() {
    let (stack, people) = stack().await;
    let dave = people.dave.as_str();
    let one: &[&[u8]] = &[b"one"];
    stack
        .app_with_revisions(dave, "acme", "shop", one)
        .await
        .unwrap();
    let add = req::add_stage("acme", "qa", "test");
    stack.tenants(&people.alice).add_stage(add).await.unwrap();
    stack.built(dave, "acme", "shop", 1, 1).await.unwrap();
    let deploy = req::deploy("acme", "shop", "qa", 1);
    stack
        .deployments(&people.otto)
        .deploy(deploy)
        .await
        .unwrap();

    let stored = stack.stored_events("acme").await.unwrap();
    let mut events = stack.events(&people.alice);
    let stream = events.watch(req::watch("acme", 0)).await.unwrap();
    let received = next_events(&mut stream.into_inner(), stored.len(), PATIENCE).await;
    let received = received.unwrap();
    assert_same(&received, &stored);
    let who = |entity: &str, event_type: &str| -> Vec<&str> {
        received
            .iter()
            .filter(|e| e.entity_id == entity && e.event_type == event_type)
            .map(|e| e.who.as_str())
            .collect()
    };
    assert_eq!(who("acme", "TenantCreated"), ["root"]);
    assert_eq!(
        who("acme", "MemberSet"),
        ["root", "alice", "alice", "alice"]
    );
    assert_eq!(who("acme", "StageAdded"), ["alice"]);
    assert_eq!(who("shop", "AppCreated"), ["dave"]);
    assert_eq!(who("shop", "RevisionCreated"), ["dave"]);
    assert_eq!(who("shop_r1", "BuildRequested"), ["dave"]);
    assert_eq!(who("shop_qa", "ReleaseCreated"), ["otto"]);
}

/// Retries `f` every 250 ms until it succeeds or `limit` passes; the time it took.
async fn until_ok<T, F, Fut>(limit: Duration, mut f: F) -> Result<Duration, Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Status>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(_) => return Ok(start.elapsed()),
            Err(e) if start.elapsed() > limit => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// `call`'s outcome, failing the test if it takes longer than 30 s.
async fn within<T>(call: impl Future<Output = Result<T, Status>>) -> Result<(), Status> {
    let outcome = tokio::time::timeout(Duration::from_secs(30), call).await;
    outcome.expect("no answer within 30 s").map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_gives_unavailable_then_recovers_with_nothing_acknowledged_lost() {
    let (mut stack, people) = stack().await;
    let (dave, vic) = (people.dave.clone(), people.vic.clone());
    let two: &[&[u8]] = &[b"one", b"two"];
    let revisions = stack.app_with_revisions(&dave, "acme", "before", two).await;
    let revisions = revisions.unwrap();

    // A watcher reads the history so far.
    let watcher = stack.events(&vic).watch(req::watch("acme", 0)).await;
    let mut watcher = watcher.unwrap().into_inner();
    let history = stack.stored_events("acme").await.unwrap();
    let received = next_events(&mut watcher, history.len(), PATIENCE).await;
    let mut received = received.unwrap();
    assert_same(&received, &history);

    // A writer keeps creating apps through the outage and remembers what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (mut apps, acked, stop) = (stack.apps(&dave), acked.clone(), stop.clone());
        async move {
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let app = format!("w-{i}");
                match apps.create_app(req::create_app("acme", &app)).await {
                    Ok(_) => acked.lock().unwrap().push(app),
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    });
    while acked.lock().unwrap().len() < 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stack.core.nats.stop();
    let get = || req::get_app("acme", "before");
    let (mut a, mut b, mut c) = (stack.apps(&dave), stack.apps(&dave), stack.apps(&dave));
    let (mut events, dave_password) = (stack.events(&vic), password("dave"));
    let started = Instant::now();
    let (get_app, create_app, list_apps, login, watch) = tokio::join!(
        within(a.get_app(get())),
        within(b.create_app(req::create_app("acme", "during"))),
        within(c.list_apps(req::list_apps("acme", None))),
        within(stack.login("dave", &dave_password, "acme")),
        within(first_event(&mut events, req::watch("acme", 0))),
    );
    eprintln!("the calls failed within {:?}", started.elapsed());
    let outcomes = [
        ("GetApp", get_app),
        ("CreateApp", create_app),
        ("ListApps", list_apps),
        ("Login", login),
        ("Watch", watch),
    ];
    for (rpc, outcome) in outcomes {
        let status = outcome.expect_err(rpc);
        assert_eq!(status.code(), Code::Unavailable, "{rpc}: {status:?}");
    }

    stack.core.nats.restart().await.unwrap();
    let took = until_ok(Duration::from_secs(25), || {
        let mut apps = stack.apps(&dave);
        async move { apps.get_app(get()).await }
    })
    .await
    .unwrap_or_else(|e| panic!("no recovery within 25 s: {e:?}"));
    eprintln!("the gateway answered {took:?} after nats-server restarted");
    // Let the writer succeed a few times after the outage, then stop it.
    let during = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < during + 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= during + 3, "the writer did not recover");

    // Everything acknowledged is there.
    let mut apps = stack.apps(&dave);
    let before = apps.get_app(get()).await.unwrap().into_inner();
    assert_eq!(before.state.unwrap().revisions, revisions);
    let listed = apps.list_apps(req::list_apps("acme", page(500, ""))).await;
    let listed = listed.unwrap().into_inner().apps;
    for app in acked.iter().chain([&"before".to_owned()]) {
        assert!(listed.contains(app), "{app} lost: {listed:?}");
    }
    let stored = stack.stored_events("acme").await.unwrap();
    for app in &acked {
        let created = |e: &StoredEvent| &e.entity_id == app && e.event_type == "AppCreated";
        assert!(stored.iter().any(created), "{app} acknowledged, not stored");
    }

    // A watcher resumes from the last event it received: no gap, no duplicate.
    let last = received.last().unwrap().sequence;
    let mut events = stack.events(&vic);
    let resumed = events.watch(req::watch("acme", last)).await.unwrap();
    let missing = stored.len() - received.len();
    let rest = next_events(&mut resumed.into_inner(), missing, PATIENCE).await;
    received.extend(rest.unwrap());
    assert_same(&received, &stored);
}
