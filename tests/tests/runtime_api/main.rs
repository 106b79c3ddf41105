//! The gateway's `Runtime` service end to end, on a real nats-server with the platform and the
//! gateway in process: synthetic agent reports (`HealthReport`s and `LogBatch`es published into
//! `NEO_RUNTIME` and `NEO_LOGS` as an agent would) read back through `Logs` and `Status`, scale
//! policies set through `SetScalePolicy`, tenant isolation, and `neo logs|status|scale`.

//!
//! # Layout
//!
//! - `harness`: the stack with the Runtime streams, publishing as an agent, the calls.
//! - `cli`: `neo logs|status|scale` end to end.
//! - here: the gRPC tests.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

mod cli;
mod harness;

use std::time::{Duration, Instant};

use neo_gateway::api;
use neo_protocol::pb::{self, LogLevel, ReplicaPhase};
use neo_protocol::{EntityRef, subjects};
use neo_tests::gateway::with_token;
use neo_tests::{commands, expect_accepted, send};
use prost::Message;
use tonic::Code;

use harness::{Runtime, code, invalid_field, logs_request, names, now_ms, texts};

#[tokio::test]
async fn logs_are_filtered_by_stage_app_level_time_and_text_and_stay_in_their_tenant() {
    let rt = Runtime::bare().await;
    let (vic, bob) = (rt.people.vic.as_str(), rt.people.bob.as_str());
    // No agent has run: no stream, no lines (and no error).
    let (none, _) = rt.logs(vic, logs_request()).await.unwrap();
    assert!(none.is_empty());
    rt.ensure_streams().await;

    let t = now_ms() - 30_000;
    use LogLevel::{Debug, Error, Info, Unspecified, Warn};
    rt.log(
        "acme/dev/shop",
        &[
            (Info, t + 1, "GET /orders 200"),
            (Warn, t + 2, "slow query on orders"),
            (Error, t + 3, "disk full"),
            (Debug, t + 4, "cache miss"),
        ],
    )
    .await;
    rt.log(
        "acme/test/shop",
        &[
            (Info, t + 5, "GET /orders 200 (test)"),
            (Error, t + 6, "timeout talking to cart"),
        ],
    )
    .await;
    rt.log("beta/dev/shop", &[(Error, t + 7, "beta's secret")])
        .await;
    rt.log(
        "acme/dev/cart",
        &[
            (Warn, t + 8, "retrying payment"),
            (Unspecified, t + 9, "raw line"),
        ],
    )
    .await;

    // Everything of acme, in order, labelled with where it came from.
    let (all, _) = rt.logs(vic, logs_request()).await.unwrap();
    assert_eq!(
        texts(&all),
        [
            "GET /orders 200",
            "slow query on orders",
            "disk full",
            "cache miss",
            "GET /orders 200 (test)",
            "timeout talking to cart",
            "retrying payment",
            "raw line",
        ]
    );
    assert!(all.iter().all(|l| l.tenant == "acme"));
    assert_eq!(
        (
            all[4].stage.as_str(),
            all[4].app.as_str(),
            all[4].replica.as_str()
        ),
        ("test", "shop", "shop-0")
    );

    let rt = &rt;
    let filtered = |stage: &str, app: &str, level: LogLevel, since, until, text: &str| {
        let request = api::LogsRequest {
            stage: stage.into(),
            app: app.into(),
            min_level: level as i32,
            since_ms: since,
            until_ms: until,
            text: text.into(),
            ..logs_request()
        };
        async move { texts(&rt.logs(vic, request).await.unwrap().0).join("|") }
    };
    assert_eq!(
        filtered("dev", "", Unspecified, 0, 0, "").await,
        "GET /orders 200|slow query on orders|disk full|cache miss|retrying payment|raw line"
    );
    assert_eq!(
        filtered("", "shop", Unspecified, 0, 0, "").await,
        "GET /orders 200|slow query on orders|disk full|cache miss|GET /orders 200 (test)|\
         timeout talking to cart"
    );
    assert_eq!(
        filtered("dev", "shop", Warn, 0, 0, "").await,
        "slow query on orders|disk full"
    );
    // A line without a level counts as INFO.
    assert_eq!(
        filtered("", "cart", Info, 0, 0, "").await,
        "retrying payment|raw line"
    );
    assert_eq!(
        filtered("", "", Unspecified, t + 2, t + 6, "").await,
        "slow query on orders|disk full|cache miss|GET /orders 200 (test)"
    );
    assert_eq!(
        filtered("", "", Unspecified, 0, 0, "orders").await,
        "GET /orders 200|slow query on orders|GET /orders 200 (test)"
    );
    assert_eq!(
        filtered("prod", "", Unspecified, 0, 0, "").await,
        "",
        "nothing on prod"
    );

    // Another tenant's token sees its own lines only, and cannot ask for acme's.
    let (beta, _) = rt.logs(bob, logs_request()).await.unwrap();
    assert_eq!(texts(&beta), ["beta's secret"]);
    assert_eq!(beta[0].tenant, "beta");
    let acme = api::LogsRequest {
        tenant: "acme".into(),
        ..logs_request()
    };
    code(rt.logs(bob, acme).await, Code::PermissionDenied);

    // Names that could widen the subject are refused, naming the field.
    for (name, request) in [
        (
            "stage",
            api::LogsRequest {
                stage: "*".into(),
                ..logs_request()
            },
        ),
        (
            "app",
            api::LogsRequest {
                app: "shop.>".into(),
                ..logs_request()
            },
        ),
        (
            "tenant",
            api::LogsRequest {
                tenant: "acme.*".into(),
                ..logs_request()
            },
        ),
        (
            "until_ms",
            api::LogsRequest {
                since_ms: 5,
                until_ms: 4,
                ..logs_request()
            },
        ),
    ] {
        invalid_field(rt.logs(vic, request).await, name);
    }
    code(
        rt.logs("not-a-token", logs_request()).await,
        Code::Unauthenticated,
    );
}

#[tokio::test]
async fn a_backlog_of_lines_flows_in_large_batches() {
    let rt = Runtime::start().await;
    let t = now_ms();
    let (messages, per_message) = (50, 1000);
    for m in 0..messages {
        let lines: Vec<(LogLevel, u64, String)> = (0..per_message)
            .map(|i| {
                (
                    LogLevel::Info,
                    t + m,
                    format!("line {:06}", m * per_message + i),
                )
            })
            .collect();
        let lines: Vec<(LogLevel, u64, &str)> = lines
            .iter()
            .map(|(l, at, s)| (*l, *at, s.as_str()))
            .collect();
        rt.log("acme/prod/shop", &lines).await;
    }
    let started = Instant::now();
    let (lines, responses) = rt.logs(&rt.people.vic, logs_request()).await.unwrap();
    let elapsed = started.elapsed();
    let total = (messages * per_message) as usize;
    assert_eq!(lines.len(), total);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.text == format!("line {i:06}")),
        "in order"
    );
    assert!(responses < messages as usize, "{responses} responses");
    eprintln!(
        "{total} lines in {responses} responses, {elapsed:?}: {:.0} lines/s",
        total as f64 / elapsed.as_secs_f64()
    );

    // An agent writing all the while does not keep a call that does not follow going.
    let writer = {
        let js = rt.js.clone();
        let (t, s, a) = names("acme/prod/shop");
        let subject = subjects::runtime(&t, &s, &a, subjects::Channel::Logs.as_str());
        tokio::spawn(async move {
            loop {
                let line = pb::LogLine {
                    at_ms: now_ms(),
                    text: "more".into(),
                    ..Default::default()
                };
                let batch = pb::LogBatch { lines: vec![line] }.encode_to_vec();
                let Ok(ack) = js.publish(subject.clone(), batch.into()).await else {
                    return;
                };
                if ack.await.is_err() {
                    return;
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (lines, _) = rt.logs(&rt.people.vic, logs_request()).await.unwrap();
    writer.abort();
    assert!(lines.len() > total, "{} lines", lines.len());
}

#[tokio::test]
async fn follow_delivers_new_lines_at_once_and_only_the_callers() {
    let rt = Runtime::bare().await;
    let (vic, bob) = (rt.people.vic.as_str(), rt.people.bob.as_str());
    let follow = |token: &str, app: &str| {
        let request = api::LogsRequest {
            app: app.into(),
            follow: true,
            ..logs_request()
        };
        let request = with_token(request, token);
        let mut client = rt.client();
        async move { client.logs(request).await.unwrap().into_inner() }
    };
    // Followed before any agent ran: the lines come once the stream exists.
    let mut early = follow(vic, "shop").await;
    rt.ensure_streams().await;
    rt.log("acme/dev/shop", &[(LogLevel::Info, now_ms(), "first")])
        .await;
    let got = tokio::time::timeout(Duration::from_secs(5), early.message()).await;
    assert_eq!(texts(&got.unwrap().unwrap().unwrap().lines), ["first"]);

    let mut acme = follow(vic, "shop").await;
    let mut beta = follow(bob, "shop").await;
    let old = tokio::time::timeout(Duration::from_secs(5), acme.message()).await;
    assert_eq!(texts(&old.unwrap().unwrap().unwrap().lines), ["first"]);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sent = Instant::now();
    rt.log("acme/dev/shop", &[(LogLevel::Warn, now_ms(), "second")])
        .await;
    rt.log("acme/dev/cart", &[(LogLevel::Warn, now_ms(), "not shop")])
        .await;
    let next = tokio::time::timeout(Duration::from_secs(1), acme.message()).await;
    let next = next
        .expect("a followed line within a second")
        .unwrap()
        .unwrap();
    assert_eq!(texts(&next.lines), ["second"]);
    eprintln!("followed line delivered in {:?}", sent.elapsed());
    let quiet = tokio::time::timeout(Duration::from_millis(500), acme.message()).await;
    assert!(quiet.is_err(), "cart's line is filtered out: {quiet:?}");
    let other = tokio::time::timeout(Duration::from_millis(500), beta.message()).await;
    assert!(other.is_err(), "beta sees none of acme's lines: {other:?}");
    rt.log("beta/dev/shop", &[(LogLevel::Info, now_ms(), "beta's own")])
        .await;
    let own = tokio::time::timeout(Duration::from_secs(1), beta.message()).await;
    assert_eq!(texts(&own.unwrap().unwrap().unwrap().lines), ["beta's own"]);
}

#[tokio::test]
async fn status_joins_the_release_the_podgroup_and_the_latest_health_report() {
    let rt = Runtime::start().await;
    let (vic, bob) = (rt.people.vic.as_str(), rt.people.bob.as_str());
    let image = rt.deployed("shop").await;

    // Before any report: the release (rollout pending) and the podgroup, no replicas.
    let rows = rt.status(vic, "", "").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(
        (
            row.app.as_str(),
            row.stage.as_str(),
            row.release,
            row.revision
        ),
        ("shop", "dev", 1, 1)
    );
    assert_eq!(row.image_digest, image);
    assert_eq!(row.rollout(), pb::RolloutStatus::Pending);
    assert_eq!((row.desired, row.ready, row.reported_ms), (1, 0, 0));
    assert_eq!(row.policy.unwrap().max_replicas, 3);
    assert!(row.resources.is_some());

    // The agent records the rollout and reports twice: the latest report is shown.
    let (t, s, a) = names("acme/dev/shop");
    let rollout = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::RecordRollout(
            pb::RecordRollout {
                release: 1,
                status: pb::RolloutStatus::Succeeded as i32,
                reason: "2/2 ready".into(),
            },
        )),
    };
    let entity = EntityRef::deployment(&t, &a, &s);
    let rollout = commands::request(rollout);
    let reply = send(&rt.stack.platform.client, &entity, &rollout).await;
    expect_accepted(reply.unwrap());
    let replica = |id: &str, phase: ReplicaPhase| pb::ReplicaStatus {
        id: id.into(),
        release: 1,
        image_digest: image.clone(),
        phase: phase as i32,
        address: format!("127.0.0.1:4{}", id.len()),
        cpu_millis: 12.0,
        memory_bytes: 64 << 20,
        ..Default::default()
    };
    let report = |at_ms, replicas| pb::HealthReport {
        tenant: "acme".into(),
        app: "shop".into(),
        stage: "dev".into(),
        release: 1,
        image_digest: image.clone(),
        desired: 2,
        replicas,
        at_ms,
        agent: "agent-dev".into(),
        url: "http://127.0.0.1:9000/acme/shop/".into(),
    };
    let at = now_ms();
    rt.health(
        "acme/dev/shop",
        report(at, vec![replica("shop-a", ReplicaPhase::Starting)]),
    )
    .await;
    rt.health(
        "acme/dev/shop",
        report(
            at + 1,
            vec![
                replica("shop-a", ReplicaPhase::Ready),
                replica("shop-b", ReplicaPhase::Unhealthy),
            ],
        ),
    )
    .await;
    // An app the agent runs that the platform has no deployment of still shows.
    rt.health("acme/test/orphan", report(at, vec![])).await;
    // Another tenant's report never shows in acme's status.
    rt.health("beta/dev/shop", report(at, vec![])).await;

    let rows = rt.status(vic, "", "").await.unwrap();
    let shape: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.app.as_str(), r.stage.as_str()))
        .collect();
    assert_eq!(shape, [("orphan", "test"), ("shop", "dev")]);
    let row = &rows[1];
    assert_eq!(row.rollout(), pb::RolloutStatus::Succeeded);
    assert_eq!(row.rollout_reason, "2/2 ready");
    assert_eq!(
        (row.reported_ms, row.ready, row.running_release),
        (at + 1, 1, 1)
    );
    let phases: Vec<(&str, ReplicaPhase)> = row
        .replicas
        .iter()
        .map(|r| (r.id.as_str(), r.phase()))
        .collect();
    assert_eq!(
        phases,
        [
            ("shop-a", ReplicaPhase::Ready),
            ("shop-b", ReplicaPhase::Unhealthy)
        ]
    );
    assert_eq!(row.url, "http://127.0.0.1:9000/acme/shop/");
    assert_eq!(row.agent, "agent-dev");
    assert_eq!(rows[0].release, 0, "no deployment of the orphan");

    // Filters.
    let dev = rt.status(vic, "dev", "").await.unwrap();
    assert_eq!(dev.len(), 1);
    assert!(rt.status(vic, "prod", "").await.unwrap().is_empty());
    assert_eq!(rt.status(vic, "", "shop").await.unwrap().len(), 1);
    code(rt.status(vic, "qa", "").await, Code::NotFound);
    code(rt.status(vic, "", "ghost").await, Code::NotFound);
    invalid_field(rt.status(vic, "d*v", "").await, "stage");
    invalid_field(rt.status(vic, "", "shop.x").await, "app");

    // Beta's admin sees beta's report only, and nothing of acme.
    let beta = rt.status(bob, "", "").await.unwrap();
    assert_eq!(beta.len(), 1);
    assert_eq!((beta[0].app.as_str(), beta[0].release), ("shop", 0));
    let request = api::StatusRequest {
        tenant: "acme".into(),
        ..Default::default()
    };
    code(
        rt.client().status(with_token(request, bob)).await,
        Code::PermissionDenied,
    );
}

#[tokio::test]
async fn scale_policies_are_set_by_who_may_deploy_and_checked() {
    let rt = Runtime::start().await;
    rt.deployed("shop").await;
    let p = &rt.people;
    let policy = |min, max, cpu, memory, window| pb::ScalePolicy {
        min_replicas: min,
        max_replicas: max,
        target_cpu_percent: cpu,
        target_memory_percent: memory,
        scale_down_window_s: window,
        idle_to_zero_s: 0,
    };

    // Devops sets it; the desired count is clamped into the new bounds; Status shows it.
    let set = rt
        .set_policy(&p.otto, "shop", "dev", Some(policy(2, 5, 60, 70, 120)))
        .await
        .unwrap();
    let podgroup = set.podgroup.unwrap();
    assert_eq!(podgroup.policy, Some(policy(2, 5, 60, 70, 120)));
    assert_eq!(podgroup.desired, 2);
    assert!(set.sequence > 0);
    let row = rt.status(&p.vic, "dev", "shop").await.unwrap().remove(0);
    assert_eq!(row.policy, Some(policy(2, 5, 60, 70, 120)));
    assert_eq!(row.desired, 2);
    assert_eq!(row.podgroup_sequence, set.sequence);

    // A developer may scale on the first stage, as they may deploy there.
    rt.set_policy(&p.dave, "shop", "dev", Some(policy(1, 4, 60, 70, 120)))
        .await
        .unwrap();

    // Bad bounds name the request's field.
    invalid_field(
        rt.set_policy(&p.otto, "shop", "dev", Some(policy(6, 5, 60, 70, 120)))
            .await,
        "policy.min_replicas",
    );
    invalid_field(
        rt.set_policy(&p.otto, "shop", "dev", Some(policy(0, 0, 60, 70, 120)))
            .await,
        "policy.max_replicas",
    );
    invalid_field(
        rt.set_policy(&p.otto, "shop", "dev", Some(policy(1, 3, 0, 70, 120)))
            .await,
        "policy.target_cpu_percent",
    );
    invalid_field(rt.set_policy(&p.otto, "shop", "dev", None).await, "policy");
    invalid_field(
        rt.set_policy(&p.otto, "sh op", "dev", Some(policy(1, 3, 60, 70, 120)))
            .await,
        "app",
    );

    // Unknown app or stage.
    let ok = Some(policy(1, 3, 60, 70, 120));
    code(
        rt.set_policy(&p.otto, "ghost", "dev", ok).await,
        Code::NotFound,
    );
    code(
        rt.set_policy(&p.otto, "shop", "qa", ok).await,
        Code::NotFound,
    );
    code(
        rt.set_policy(&p.otto, "shop", "prod", ok).await,
        Code::NotFound,
    );

    // Who may not: a viewer, a developer on a later stage, another tenant.
    code(
        rt.set_policy(&p.vic, "shop", "dev", ok).await,
        Code::PermissionDenied,
    );
    let later = code(
        rt.set_policy(&p.dave, "shop", "test", ok).await,
        Code::PermissionDenied,
    );
    assert!(later.message().contains("scale policy"), "{later:?}");
    code(
        rt.set_policy(&p.bob, "shop", "dev", ok).await,
        Code::PermissionDenied,
    );
    let row = rt.status(&p.vic, "dev", "shop").await.unwrap().remove(0);
    assert_eq!(row.policy, Some(policy(1, 4, 60, 70, 120)), "unchanged");
}
