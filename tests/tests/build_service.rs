//! The Build Service end to end, on real servers (nats-server, Postgres, docker-registry, the
//! embedded S3 endpoint): 1-Click Publish of the examples, images pulled back from the registry,
//! positioned model errors, unresolvable dependencies, a worker dying mid-build, content
//! addressing, and impact analysis.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use neo_builder::project::Project;
use neo_builder::queue::QueueConfig;
use neo_gateway::api::{self, PublishStep};
use neo_protocol::pb;
use neo_tests::build_stack::{BuildStack, edited, example, step};
use neo_tests::gateway::{refused, req};
use tonic::Code;

const TENANT: &str = "acme";

/// The files of a gzipped tar layer.
fn layer_files(layer: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
    let mut files = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        files.insert(path, content);
    }
    files
}

/// The image's layers written out as a root file system: its apphost runs there on its own, as
/// a container runtime would run it (the loader and libraries it needs are in the image).
fn starts_on_its_own(layers: &[&[u8]]) {
    let root = tempfile::tempdir().unwrap();
    let mut files = neo_harness::rootfs::Files::new();
    for layer in layers {
        files.extend(neo_harness::rootfs::unpack(layer).unwrap());
    }
    assert!(
        files.keys().any(|f| f.contains("ld-linux")),
        "no loader in the image: {:?}",
        files.keys()
    );
    neo_harness::rootfs::write_tree(root.path(), &files).unwrap();
    let output =
        neo_harness::rootfs::run_inside(root.path(), &files, "/app/apphost", &["--version"])
            .unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && out.contains("apphost"),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn steps(progress: &[api::PublishProgress]) -> Vec<PublishStep> {
    progress
        .iter()
        .filter(|p| p.step != PublishStep::BuildLog as i32)
        .map(|p| PublishStep::try_from(p.step).unwrap())
        .collect()
}

async fn publish_ok(stack: &BuildStack, token: &str, dir: &Path) -> api::PublishProgress {
    let progress = stack.publish(token, TENANT, dir).await.unwrap();
    assert_eq!(
        steps(&progress),
        vec![
            PublishStep::Uploaded,
            PublishStep::RevisionCreated,
            PublishStep::BuildRequested,
            PublishStep::BuildStarted,
            PublishStep::BuildSucceeded,
            PublishStep::Deployed,
        ],
        "{progress:#?}"
    );
    assert!(
        step(&progress, PublishStep::BuildLog).is_some(),
        "build log lines are streamed: {progress:#?}"
    );
    step(&progress, PublishStep::Deployed).unwrap().clone()
}

/// Waits until the read models have applied every event so far.
async fn settle(stack: &BuildStack) {
    let js = stack.stack.platform.store.context().clone();
    let mut stream = js
        .get_stream(neo_protocol::subjects::EVENTS_STREAM)
        .await
        .unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    stack
        .projections
        .wait_for(last, Duration::from_secs(20))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_examples_publish_and_their_images_hold_the_bundle() {
    let stack = BuildStack::start(1).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    for name in ["catalog", "orders", "reviews"] {
        let deployed = publish_ok(&stack, &people.dave, &example(name)).await;
        assert_eq!((deployed.stage.as_str(), deployed.release), ("dev", 1));

        let build = stack
            .stack
            .builds(&people.dave)
            .get_build(req::get_build(TENANT, &format!("{name}_r1")))
            .await
            .unwrap()
            .into_inner()
            .state
            .unwrap();
        assert_eq!(build.status(), pb::BuildStatus::Succeeded);
        assert_eq!(build.image_digest, deployed.image_digest);

        let (digest, layers) = stack.images.pull(&build.image_ref).await.unwrap();
        assert_eq!(digest, build.image_digest, "pulled by digest");
        assert_eq!(
            layers.len(),
            3,
            "the runtime and apphost base layers and the bundle layer"
        );
        let base = layer_files(&layers[1]);
        assert!(base.contains_key("app/apphost"), "{:?}", base.keys());
        let bundle = layer_files(&layers[2]);
        let model: serde_json::Value =
            serde_json::from_slice(&bundle["app/bundle/model.json"]).unwrap();
        assert_eq!(model["name"], name);
        assert!(
            bundle.contains_key("app/bundle/migrations/0001_schema.sql"),
            "{:?}",
            bundle.keys()
        );
        for screen in model["screens"].as_array().unwrap() {
            let path = format!("app/bundle/{}", screen.as_str().unwrap());
            assert!(bundle.contains_key(&path), "{path}: {:?}", bundle.keys());
        }
        if name != "catalog" {
            assert_eq!(model["dependencies"][0]["producer_app"], "catalog");
            assert_eq!(model["dependencies"][0]["producer_revision"], 1);
            assert_eq!(build.dependencies[0].entity, "Product");
        }
    }
    settle(&stack).await;
    let consumers = neo_actors::projections::queries::consumers_on_stage(
        stack.projections.pool(),
        TENANT,
        "dev",
        "catalog",
    )
    .await
    .unwrap();
    let apps: Vec<&str> = consumers.iter().map(|c| c.consumer_app.as_str()).collect();
    assert_eq!(apps, vec!["orders", "reviews"]);
}

#[test]
fn the_base_of_every_app_image_starts_the_real_apphost_on_its_own() {
    let apphost = neo_tests::runtime_stack::apphost_binary().unwrap();
    let base = neo_image::BaseImage::from_apphost(&apphost).unwrap();
    assert_eq!(
        base.layers.len(),
        2,
        "the runtime layer and the apphost layer"
    );
    let layers: Vec<&[u8]> = base.layers.iter().map(|l| l.tar_gz.as_slice()).collect();
    starts_on_its_own(&layers);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_model_with_errors_fails_with_positioned_messages() {
    let stack = BuildStack::start(1).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    let broken = Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../builder/tests/fixtures/broken");
    let content = Project::from_dir(&broken).unwrap().pack();
    let progress = stack
        .publish_bytes(&people.dave, TENANT, "broken", content)
        .await
        .unwrap();
    let failed = step(&progress, PublishStep::BuildFailed).expect("the build fails");
    assert!(step(&progress, PublishStep::Deployed).is_none());
    assert!(failed.diagnostics.len() > 3, "{failed:#?}");
    for d in &failed.diagnostics {
        assert_eq!(d.file, "neo.toml");
        assert!(d.line > 0 && d.column > 0 && !d.message.is_empty(), "{d:?}");
    }
    let state = stack
        .stack
        .builds(&people.dave)
        .get_build(req::get_build(TENANT, "broken_r1"))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    assert_eq!(state.status(), pb::BuildStatus::Failed);
    assert_eq!(state.diagnostics, failed.diagnostics);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_whose_producer_lacks_the_entity_or_does_not_exist_fails_with_the_reason() {
    let stack = BuildStack::start(1).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    publish_ok(&stack, &people.dave, &example("catalog")).await;

    let missing_entity = edited("orders", |m| {
        m.replace("entity = \"Product\"", "entity = \"Widget\"")
            .replace("ref:Product", "ref:Widget")
    })
    .unwrap();
    let progress = stack
        .publish(&people.dave, TENANT, missing_entity.path())
        .await
        .unwrap();
    let failed = step(&progress, PublishStep::BuildFailed).expect("the build fails");
    assert_eq!(failed.diagnostics.len(), 1, "{failed:#?}");
    let d = &failed.diagnostics[0];
    assert!(
        d.message.contains("exposes no entity `Widget`") && d.message.contains("Product"),
        "{d:?}"
    );
    assert_eq!(d.file, "neo.toml");

    let missing_app = edited("reviews", |m| {
        m.replace("app = \"catalog\"", "app = \"ghost\"")
    })
    .unwrap();
    let progress = stack
        .publish(&people.dave, TENANT, missing_app.path())
        .await
        .unwrap();
    let failed = step(&progress, PublishStep::BuildFailed).expect("the build fails");
    assert!(
        failed.diagnostics[0]
            .message
            .contains("`ghost` does not exist"),
        "{failed:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_uploads_share_one_blob() {
    let stack = BuildStack::start(0).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    let content = Project::from_dir(&example("catalog")).unwrap().pack();
    let mut digests = Vec::new();
    for app in ["one", "two"] {
        stack
            .stack
            .apps(&people.dave)
            .create_app(req::create_app(TENANT, app))
            .await
            .unwrap();
        let revision = stack
            .stack
            .upload(&people.dave, TENANT, app, &content)
            .await
            .unwrap();
        digests.push(revision.digest);
    }
    assert_eq!(digests[0], digests[1]);
    assert_eq!(digests[0], neo_revisions::content_digest(&content));
    let keys = stack.stack.s3.store.list(TENANT).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let stored = stack.stack.s3.store.get(TENANT, &digests[0]).await.unwrap();
    assert_eq!(stored.as_ref(), content.as_slice());
}

/// The `BuildStarted` events of one build, in order.
async fn build_started_events(stack: &BuildStack, build_id: &str) -> Vec<pb::BuildStarted> {
    let js = stack.stack.platform.store.context().clone();
    let stream = js
        .get_stream(neo_protocol::subjects::EVENTS_STREAM)
        .await
        .unwrap();
    let subject = format!("neo.evt.{TENANT}.build.{build_id}.BuildStarted");
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: subject,
            ..Default::default()
        })
        .await
        .unwrap();
    let pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.unwrap();
    let mut starts = Vec::new();
    for _ in 0..pending {
        let msg = futures::StreamExt::next(&mut messages)
            .await
            .unwrap()
            .unwrap();
        let event: pb::BuildEvent = prost::Message::decode(msg.payload.clone()).unwrap();
        if let Some(pb::build_event::Event::Started(s)) = event.event {
            starts.push(s);
        }
    }
    starts
}

/// Publishes catalog with one slow worker, which dies once the build has started (its task is
/// dropped: like a killed process, it stops extending its lease); a fresh worker then joins.
/// Returns the stack and the publish's progress.
async fn publish_while_the_first_worker_dies(
    queue: QueueConfig,
) -> (BuildStack, Vec<api::PublishProgress>) {
    let stack = BuildStack::start_with(0, queue).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    let doomed = stack.worker(queue, Duration::from_secs(3)).await.unwrap();
    let content = Project::from_dir(&example("catalog")).unwrap().pack();
    let publish = stack.publish_bytes(&people.dave, TENANT, "catalog", content);
    let kill = async {
        let builds = stack.stack.builds(&people.dave);
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(b) = builds
                .clone()
                .get_build(req::get_build(TENANT, "catalog_r1"))
                .await
                && b.get_ref()
                    .state
                    .as_ref()
                    .is_some_and(|s| s.status() == pb::BuildStatus::Started)
            {
                doomed.abort();
                let _replacement = stack.worker(queue, Duration::ZERO).await.unwrap();
                // Keep the replacement alive until the publish ends.
                std::future::pending::<()>().await;
            }
        }
    };
    let progress = tokio::select! {
        p = publish => p.unwrap(),
        () = kill => unreachable!(),
    };
    (stack, progress)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_build_loses_its_lease_and_another_worker_finishes() {
    let queue = QueueConfig {
        lease: Duration::from_secs(2),
        max_deliveries: 4,
        ..QueueConfig::default()
    };
    let (stack, progress) = publish_while_the_first_worker_dies(queue).await;
    assert!(
        step(&progress, PublishStep::Deployed).is_some(),
        "{progress:#?}"
    );
    let starts = build_started_events(&stack, "catalog_r1").await;
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_ne!(starts[0].worker, starts[1].worker);
    assert!(!starts[0].takeover && starts[1].takeover);
}

/// With every worker dying, the build ends failed as abandoned: never "started" forever.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_whose_workers_keep_dying_is_failed_as_abandoned() {
    let queue = QueueConfig {
        lease: Duration::from_secs(1),
        max_deliveries: 2,
        ..QueueConfig::default()
    };
    let (_stack, progress) = publish_while_the_first_worker_dies(queue).await;
    let failed = step(&progress, PublishStep::BuildFailed).expect("failed");
    assert!(failed.message.contains("abandoned"), "{failed:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn impact_analysis_blocks_a_breaking_producer_and_lets_a_compatible_one_through() {
    let stack = BuildStack::start(1).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    publish_ok(&stack, &people.dave, &example("catalog")).await;
    publish_ok(&stack, &people.dave, &example("orders")).await;
    settle(&stack).await;

    // catalog r2 drops Product.price, which orders uses: publishing it is blocked.
    let breaking = edited("catalog", |m| {
        m.replace(
            "  { name = \"price\", type = \"decimal\", required = true },\n",
            "",
        )
    })
    .unwrap();
    let progress = stack
        .publish(&people.dave, TENANT, breaking.path())
        .await
        .unwrap();
    let refused_step = step(&progress, PublishStep::DeployRefused).expect("deploy refused");
    assert!(
        refused_step.message.contains("orders r1") && refused_step.message.contains("price"),
        "{refused_step:#?}"
    );
    settle(&stack).await;

    let impact = stack
        .stack
        .deployments(&people.dave)
        .impact(req::impact(TENANT, "catalog", "dev", 2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(impact.blockers.len(), 1, "{impact:#?}");
    let blocker = &impact.blockers[0];
    assert_eq!(
        (
            blocker.consumer_app.as_str(),
            blocker.consumer_revision,
            blocker.entity.as_str(),
            blocker.field.as_str()
        ),
        ("orders", 1, "Product", "price")
    );

    // A plain deploy is refused; a forced one goes ahead and records the force.
    let deploy = |force| api::DeployRequest {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
        revision: 2,
        force,
    };
    let denied = stack
        .stack
        .deployments(&people.dave)
        .deploy(deploy(false))
        .await;
    refused(denied, Code::FailedPrecondition, "deploy.impact_blockers");
    let forced = stack
        .stack
        .deployments(&people.dave)
        .deploy(deploy(true))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap();
    let release = forced.releases.last().unwrap();
    assert!(release.forced);
    assert!(release.forced_blockers[0].contains("price"), "{release:?}");

    // catalog r3 only adds an optional field: no blockers, it deploys.
    let compatible = edited("catalog", |m| {
        m.replace(
            "  { name = \"in_stock\", type = \"boolean\" },\n",
            "  { name = \"in_stock\", type = \"boolean\" },\n  { name = \"colour\", type = \"text\" },\n",
        )
    }).unwrap();
    let deployed = publish_ok(&stack, &people.dave, compatible.path()).await;
    assert_eq!(deployed.release, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn history_and_why_follow_a_publish_across_entities() {
    let stack = BuildStack::start(1).await.unwrap();
    let people = stack.stack.people().await.unwrap();
    publish_ok(&stack, &people.dave, &example("catalog")).await;
    let events = stack.stack.events(&people.vic);
    let history = |kind: &str, id: &str| api::HistoryRequest {
        tenant: TENANT.into(),
        kind: kind.into(),
        entity_id: id.into(),
        after_sequence: 0,
        limit: 0,
    };

    // The build's history: who did what, in order, each caused by the build request.
    let build = events
        .clone()
        .history(history("build", "catalog_r1"))
        .await
        .unwrap()
        .into_inner();
    let types: Vec<&str> = build.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        vec!["BuildRequested", "BuildStarted", "BuildSucceeded"]
    );
    assert_eq!(build.events[0].who, "reactor:publish-build");
    assert!(
        build.events[1].who.starts_with("worker:builder-"),
        "{:?}",
        build.events[1]
    );
    let requested = format!("evt:{}", build.events[0].sequence);
    assert_eq!(build.events[1].causation_id, requested);
    assert_eq!(build.events[2].causation_id, requested);
    assert!(!build.more);

    // Why does the podgroup exist? podgroup ← release ← build ← request ← dave's revision.
    let podgroup = events
        .clone()
        .history(history("podgroup", "catalog_dev"))
        .await
        .unwrap()
        .into_inner();
    let created = podgroup.events.first().expect("the podgroup was created");
    let why = events
        .clone()
        .why(api::WhyRequest {
            tenant: TENANT.into(),
            sequence: created.sequence,
        })
        .await
        .unwrap()
        .into_inner();
    let chain: Vec<(&str, &str)> = why
        .chain
        .iter()
        .map(|e| (e.kind.as_str(), e.event_type.as_str()))
        .collect();
    assert_eq!(
        chain,
        vec![
            ("podgroup", "PodgroupCreated"),
            ("deployment", "ReleaseCreated"),
            ("build", "BuildSucceeded"),
            ("build", "BuildRequested"),
            ("app", "RevisionCreated"),
        ]
    );
    assert_eq!(why.root, "user dave");

    // The build as of its start (by time) and as of each event (by sequence).
    let state_at = |sequence: u64, time_ms: u64| api::StateAtRequest {
        tenant: TENANT.into(),
        kind: "build".into(),
        entity_id: "catalog_r1".into(),
        sequence,
        time_ms,
    };
    let mut by_hand = pb::BuildState::default();
    for event in &build.events {
        let payload = event.payload.as_ref().expect("a typed payload");
        assert_eq!(payload.type_url, "type.googleapis.com/neo.v1.BuildEvent");
        let decoded: pb::BuildEvent = prost::Message::decode(payload.value.as_slice()).unwrap();
        neo_actors::aggregate::Aggregate::apply(&mut by_hand, &decoded);
        let at = events
            .clone()
            .state_at(state_at(event.sequence, 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(at.sequence, event.sequence);
        let typed = at.state.expect("a typed state");
        assert_eq!(typed.type_url, "type.googleapis.com/neo.v1.BuildState");
        let state: pb::BuildState = prost::Message::decode(typed.value.as_slice()).unwrap();
        assert_eq!(state, by_hand, "as of {}", event.sequence);
    }
    let started = &build.events[1];
    let at = events
        .clone()
        .state_at(state_at(0, started.time_ms))
        .await
        .unwrap()
        .into_inner();
    assert!(at.sequence >= started.sequence, "{at:?}");
    let now = stack
        .stack
        .builds(&people.vic)
        .get_build(req::get_build(TENANT, "catalog_r1"))
        .await
        .unwrap()
        .into_inner();
    let latest: pb::BuildState = prost::Message::decode(
        events
            .clone()
            .state_at(state_at(0, 0))
            .await
            .unwrap()
            .into_inner()
            .state
            .expect("a typed state")
            .value
            .as_slice(),
    )
    .unwrap();
    assert_eq!(Some(latest), now.state);

    // Another tenant's reader sees nothing of it.
    let other = stack
        .stack
        .events(&people.bob)
        .why(api::WhyRequest {
            tenant: "beta".into(),
            sequence: created.sequence,
        })
        .await;
    refused(other, Code::NotFound, "");
}
