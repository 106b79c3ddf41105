//! The Runtime end to end with the process driver and real servers (nats-server, Postgres,
//! docker-registry, the S3 endpoint, the real apphost): publish → serving on dev through the
//! stage load balancer; promote → the same image on test with test's own database; a replica
//! killed → replaced and recorded; the agent restarted → converges without duplicates; the
//! app's logs shipped; a crashing image → failed rollout while the previous release serves;
//! CPU load → scale out, then in after the window; a retyped field → its migration shown,
//! the deploy refused, then forced: the data converted and the release recording it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use neo_gateway::api::{self, PublishStep};
use neo_protocol::{EntityRef, pb};
use neo_tests::build_stack::{base_image, edited, example, step};
use neo_tests::commands::request;
use neo_tests::eventually;
use neo_tests::gateway::req;
use neo_tests::runtime_stack::{RuntimeStack, get, http, post_json};

const TENANT: &str = "acme";

/// Catalog's deployment on `stage`.
async fn deployment(stack: &RuntimeStack, token: &str, stage: &str) -> pb::DeploymentState {
    stack
        .deployment(token, (TENANT, "catalog", stage))
        .await
        .unwrap()
}

/// Waits until release `number` of `stage` has the rollout status `status`.
async fn rollout(
    stack: &RuntimeStack,
    token: &str,
    stage: &str,
    number: u32,
    status: pb::RolloutStatus,
) -> pb::Release {
    eventually(Duration::from_secs(60), "the rollout", || async {
        let state = deployment(stack, token, stage).await;
        state
            .releases
            .into_iter()
            .find(|r| r.number == number && r.rollout() == status)
    })
    .await
}

/// The podgroup events of catalog on `stage`, decoded, in order.
async fn podgroup_events(stack: &RuntimeStack, stage: &str) -> Vec<pb::PodgroupEvent> {
    stack
        .podgroup_events(TENANT, "catalog", stage)
        .await
        .unwrap()
}

/// Follows catalog's log lines on `stage` through the gateway until one contains `text`.
async fn logged(stack: &RuntimeStack, token: &str, stage: &str, text: &str) -> pb::LogLine {
    let mut lines = stack
        .build
        .stack
        .runtime(token)
        .logs(api::LogsRequest {
            stage: stage.into(),
            app: "catalog".into(),
            text: text.into(),
            follow: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(response) = lines.message().await.unwrap() {
            if let Some(line) = response.lines.into_iter().next() {
                return line;
            }
        }
        panic!("the log stream ended");
    });
    found.await.expect("the line reaches neo logs")
}

async fn publish_catalog(stack: &RuntimeStack, token: &str) -> api::PublishProgress {
    let progress = stack
        .build
        .publish(token, TENANT, &example("catalog"))
        .await
        .unwrap();
    step(&progress, PublishStep::Deployed)
        .unwrap_or_else(|| panic!("not deployed: {progress:#?}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_published_app_serves_is_promoted_heals_and_survives_an_agent_restart() {
    neo_tests::test_logs();
    let mut stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let deployed = publish_catalog(&stack, &people.dave).await;

    // Served on dev through the stage's load balancer, storing in dev's database.
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    eventually(
        Duration::from_secs(60),
        "catalog serving on dev",
        || async {
            get(&format!("{dev}/healthz"))
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    let product = serde_json::json!({"title": "Teapot", "price": "12.50"});
    let (status, body) = post_json(&format!("{dev}/api/product"), &product).await;
    assert_eq!(status, 201, "{body}");
    let (status, listed) = get(&format!("{dev}/api/product")).await.unwrap();
    assert_eq!(status, 200);
    assert!(listed.contains("Teapot"), "{listed}");
    let release = rollout(&stack, &people.dave, "dev", 1, pb::RolloutStatus::Succeeded).await;
    assert_eq!(release.image_digest, deployed.image_digest);

    // Promoted: the same digest serves on test, with test's own (empty) database.
    stack
        .build
        .stack
        .deployments(&people.otto)
        .promote(req::promote(TENANT, "catalog", "test"))
        .await
        .unwrap();
    let test = stack.url("test", TENANT, "catalog").unwrap();
    let (_, listed) = eventually(
        Duration::from_secs(60),
        "catalog serving on test",
        || async {
            get(&format!("{test}/api/product"))
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    assert!(
        !listed.contains("Teapot"),
        "test has its own database: {listed}"
    );
    let promoted = rollout(
        &stack,
        &people.otto,
        "test",
        1,
        pb::RolloutStatus::Succeeded,
    )
    .await;
    assert_eq!(promoted.image_digest, deployed.image_digest);

    // The app's own log lines reach `neo logs` (the apphost logs each request it serves).
    let marker = format!("/api/product/{}", uuid::Uuid::new_v4());
    let (status, _) = get(&format!("{dev}{marker}")).await.unwrap();
    assert_eq!(status, 400, "not a record id");
    let line = logged(&stack, &people.dave, "dev", &marker).await;
    assert_eq!((line.tenant.as_str(), line.stage.as_str()), (TENANT, "dev"));
    assert!(line.replica.starts_with("catalog-r1-"), "{line:?}");

    // kill -9 the dev replica: replaced, and the replacement is a podgroup event.
    let dev_runtime = stack.stages.get("dev").unwrap();
    let key = neo_runtime_agent::driver::PodgroupKey {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
    };
    let pids = dev_runtime.driver.pids(&key).await;
    assert_eq!(pids.len(), 1, "one replica by default: {pids:?}");
    std::process::Command::new("kill")
        .args(["-9", &pids[0].to_string()])
        .status()
        .unwrap();
    let replaced = eventually(Duration::from_secs(30), "the replacement event", || async {
        podgroup_events(&stack, "dev")
            .await
            .into_iter()
            .find_map(|e| match e.event {
                Some(pb::podgroup_event::Event::ReplicaReplaced(r)) => Some(r),
                _ => None,
            })
    })
    .await;
    assert!(replaced.reason.contains("signal 9"), "{replaced:?}");
    eventually(Duration::from_secs(30), "catalog serving again", || async {
        get(&format!("{dev}/api/product"))
            .await
            .filter(|(s, b)| *s == 200 && b.contains("Teapot"))
    })
    .await;
    let healed = dev_runtime.driver.pids(&key).await;
    assert_eq!(healed.len(), 1);
    assert_ne!(healed, pids);

    // The agent killed and restarted: it adopts the running replica, starts no other.
    let old = stack.stages.remove("dev").unwrap();
    old.abandon().await;
    let restarted = stack.agent("dev").await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        restarted.driver.pids(&key).await,
        healed,
        "adopted, no duplicate"
    );
    let url = format!("http://{}/{TENANT}/catalog/api/product", restarted.lb_addr);
    eventually(
        Duration::from_secs(30),
        "serving after the restart",
        || async { get(&url).await.filter(|(s, _)| *s == 200) },
    )
    .await;
    stack.stages.insert("dev".into(), restarted);
    for (_, runtime) in std::mem::take(&mut stack.stages) {
        runtime.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_image_that_crashes_at_start_fails_its_rollout_and_the_previous_release_serves() {
    neo_tests::test_logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let deployed = publish_catalog(&stack, &people.dave).await;
    rollout(&stack, &people.dave, "dev", 1, pb::RolloutStatus::Succeeded).await;

    // Release 2: the same bundle on a base whose program exits at once.
    stack
        .deploy_example_on(
            (TENANT, "catalog", "dev"),
            (&deployed.build_id, &deployed.digest),
            1,
            &base_image().unwrap(),
        )
        .await
        .unwrap();
    let failed = rollout(&stack, &people.dave, "dev", 2, pb::RolloutStatus::Failed).await;
    assert!(
        failed.rollout_reason.contains("failed to start"),
        "the reason says why: {}",
        failed.rollout_reason
    );
    // Release 1 keeps serving.
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    let (status, _) = get(&format!("{dev}/api/product")).await.unwrap();
    assert_eq!(status, 200);
    let state = deployment(&stack, &people.dave, "dev").await;
    let first = state.releases.iter().find(|r| r.number == 1).unwrap();
    assert_eq!(first.rollout(), pb::RolloutStatus::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cpu_load_scales_out_and_back_in_after_the_window() {
    neo_tests::test_logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    publish_catalog(&stack, &people.dave).await;
    rollout(&stack, &people.dave, "dev", 1, pb::RolloutStatus::Succeeded).await;

    // A policy that a few busy clients exceed: 10% of 250 millicores, back in after 4 s.
    let podgroup = EntityRef::podgroup(
        &TENANT.parse().unwrap(),
        &"catalog".parse().unwrap(),
        &"dev".parse().unwrap(),
    );
    let policy = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::SetPolicy(
            pb::SetScalePolicy {
                policy: Some(pb::ScalePolicy {
                    min_replicas: 1,
                    max_replicas: 3,
                    target_cpu_percent: 10,
                    target_memory_percent: 100,
                    scale_down_window_s: 4,
                    idle_to_zero_s: 0,
                }),
            },
        )),
    };
    let reply = stack
        .build
        .stack
        .platform
        .platform
        .dispatch(&podgroup, request(policy))
        .await;
    assert!(
        matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))),
        "{reply:?}"
    );

    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let busy = busy.clone();
            let url = format!("{dev}/api/product");
            tokio::spawn(async move {
                let client = http();
                while busy.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = client.get(&url).send().await;
                }
            })
        })
        .collect();
    let key = neo_runtime_agent::driver::PodgroupKey {
        tenant: TENANT.into(),
        app: "catalog".into(),
        stage: "dev".into(),
    };
    let driver = &stack.stages.get("dev").unwrap().driver;
    let out = eventually(Duration::from_secs(60), "a scale-out", || async {
        podgroup_events(&stack, "dev")
            .await
            .into_iter()
            .find_map(|e| match e.event {
                Some(pb::podgroup_event::Event::Autoscaled(a)) if a.to > a.from => Some(a),
                _ => None,
            })
    })
    .await;
    assert!(out.observation.unwrap().cpu_percent > 10.0, "{out:?}");
    eventually(Duration::from_secs(30), "the added replicas", || async {
        (driver.pids(&key).await.len() > 1).then_some(())
    })
    .await;

    busy.store(false, std::sync::atomic::Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let back = eventually(Duration::from_secs(60), "the scale-in", || async {
        podgroup_events(&stack, "dev")
            .await
            .into_iter()
            .find_map(|e| match e.event {
                Some(pb::podgroup_event::Event::Autoscaled(a)) if a.to == 1 && a.from > 1 => {
                    Some(a)
                }
                _ => None,
            })
    })
    .await;
    assert!(
        back.reason.contains("cpu") || back.reason.contains("memory"),
        "{back:?}"
    );
    eventually(Duration::from_secs(30), "one replica again", || async {
        (driver.pids(&key).await.len() == 1).then_some(())
    })
    .await;
}

/// The products catalog serves on dev, by title: (price, description).
async fn products(dev: &str) -> Vec<(String, serde_json::Value, serde_json::Value)> {
    let (status, body) = get(&format!("{dev}/api/product?sort=title")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    let page: serde_json::Value = serde_json::from_str(&body).unwrap();
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["title"].as_str().unwrap_or_default().to_owned(),
                p["price"].clone(),
                p["description"].clone(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retyped_field_shows_its_migration_is_refused_and_migrates_when_forced() {
    neo_tests::test_logs();
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let token = people.dave.as_str();
    publish_catalog(&stack, token).await;
    rollout(&stack, token, "dev", 1, pb::RolloutStatus::Succeeded).await;
    let dev = stack.url("dev", TENANT, "catalog").unwrap();
    for product in [
        serde_json::json!({"title": "Mug", "price": "3", "description": "handmade"}),
        serde_json::json!({"title": "Teapot", "price": "12.50", "description": "42"}),
    ] {
        let (status, body) = post_json(&format!("{dev}/api/product"), &product).await;
        assert_eq!(status, 201, "{body}");
    }

    // Revision 2: prices in whole units, descriptions as numbers, no release date.
    let retyped = edited("catalog", |m| {
        m.replace(
            "{ name = \"price\", type = \"decimal\", required = true }",
            "{ name = \"price\", type = \"integer\", required = true }",
        )
        .replace(
            "{ name = \"description\", type = \"text\" }",
            "{ name = \"description\", type = \"integer\" }",
        )
        .replace("  { name = \"released_on\", type = \"date\" },\n", "")
    })
    .unwrap();
    let progress = stack
        .build
        .publish(token, TENANT, retyped.path())
        .await
        .unwrap();
    let refused = step(&progress, PublishStep::DeployRefused)
        .unwrap_or_else(|| panic!("the publish deploys over a data loss: {progress:#?}"));
    assert!(
        refused
            .message
            .contains("data: Product.price: decimal → integer"),
        "{refused:#?}"
    );

    // Impact shows what the migration does to the data, and which changes lose some.
    let mut deployments = stack.build.stack.deployments(token);
    let impact = deployments
        .impact(req::impact(TENANT, "catalog", "dev", 2))
        .await
        .unwrap()
        .into_inner();
    let changes: Vec<(&str, bool, &str)> = impact
        .data_changes
        .iter()
        .map(|c| (c.field.as_str(), c.loses_data, c.message.as_str()))
        .collect();
    assert_eq!(
        changes,
        [
            (
                "description",
                true,
                "text → integer: values that do not read as integer are emptied"
            ),
            (
                "price",
                true,
                "decimal → integer: values are rounded to whole numbers"
            ),
            (
                "released_on",
                false,
                "dropped: its column and values are kept, no longer served"
            ),
        ],
        "{impact:#?}"
    );
    let blocked: Vec<&str> = impact.blockers.iter().map(|b| b.field.as_str()).collect();
    assert_eq!(blocked, ["description", "price"], "{impact:#?}");

    // Deployed without force: refused, naming the loss; nothing changes on dev.
    let refusal = deployments
        .deploy(req::deploy(TENANT, "catalog", "dev", 2))
        .await
        .unwrap_err();
    assert_eq!(refusal.code(), tonic::Code::FailedPrecondition);
    assert!(
        refusal
            .message()
            .contains("data: Product.description: text → integer"),
        "{refusal:?}"
    );
    assert_eq!(deployment(&stack, token, "dev").await.current, 1);

    // Forced: the release records the force and the migration; the replicas convert the data.
    deployments
        .deploy(api::DeployRequest {
            force: true,
            ..req::deploy(TENANT, "catalog", "dev", 2)
        })
        .await
        .unwrap();
    let release = rollout(&stack, token, "dev", 2, pb::RolloutStatus::Succeeded).await;
    assert!(release.forced, "{release:#?}");
    assert_eq!(
        release.forced_blockers,
        [
            "data: Product.description: text → integer: values that do not read as integer are emptied",
            "data: Product.price: decimal → integer: values are rounded to whole numbers",
        ]
    );
    assert_eq!(release.data_changes.len(), 3, "{release:#?}");
    let migrated = eventually(Duration::from_secs(30), "the migrated rows", || async {
        let rows = products(&dev).await;
        (rows.iter().all(|(_, price, _)| price.is_i64())).then_some(rows)
    })
    .await;
    assert_eq!(
        migrated,
        [
            (
                "Mug".to_owned(),
                serde_json::json!(3),
                serde_json::Value::Null
            ),
            (
                "Teapot".to_owned(),
                serde_json::json!(13),
                serde_json::json!(42)
            ),
        ]
    );
}

/// The schema migration of a one-entity app `probe` whose `Item` has `fields`.
fn probe_schema(fields: &str) -> String {
    let manifest =
        format!("name = \"probe\"\n\n[[entities]]\nname = \"Item\"\nfields = [{fields}]\n");
    let files = std::collections::BTreeMap::from([("neo.toml".to_owned(), manifest.into_bytes())]);
    let model = neo_model::load(&files).unwrap();
    neo_builder::bundle::schema_sql(&model)
}

/// Applies a schema migration as the apphost does: one transaction, in the app's schema.
async fn migrate(pool: &sqlx::PgPool, sql: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL search_path TO acme_probe")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn the_schema_migration_converts_each_retyped_column_as_impact_says() {
    use neo_runtime_agent::driver::PodgroupKey;
    use neo_runtime_agent::driver::database::StageDatabase;
    let pg = neo_harness::PostgresServer::start().await.unwrap();
    pg.create_database("neo_dev").await.unwrap();
    let key = PodgroupKey {
        tenant: "acme".into(),
        app: "probe".into(),
        stage: "dev".into(),
    };
    let url = StageDatabase::new(&pg.url("neo_dev"))
        .unwrap()
        .provision(&key)
        .await
        .unwrap();
    // As the app's own role, as on a stage.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();

    // (field, type before, type after, the values stored before, what they become).
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        [&'static str; 2],
        [Option<&'static str>; 2],
    );
    let cases: [Case; 7] = [
        (
            "a",
            "text",
            "decimal",
            ["12.5", "abc"],
            [Some("12.5"), None],
        ),
        (
            "b",
            "decimal",
            "integer",
            ["12.5", "3"],
            [Some("13"), Some("3")],
        ),
        (
            "c",
            "datetime",
            "date",
            ["2026-03-04T23:30:00Z", "2026-01-01T00:00:00Z"],
            [Some("2026-03-04"), Some("2026-01-01")],
        ),
        (
            "d",
            "date",
            "datetime",
            ["2026-03-04", "2026-01-01"],
            [
                Some("2026-03-04 00:00:00+00"),
                Some("2026-01-01 00:00:00+00"),
            ],
        ),
        ("e", "boolean", "integer", ["true", "false"], [None, None]),
        ("f", "integer", "text", ["7", "-2"], [Some("7"), Some("-2")]),
        (
            "g",
            "text",
            "boolean",
            ["yes", "maybe"],
            [Some("true"), None],
        ),
    ];
    let fields = |retyped: bool| {
        cases
            .iter()
            .map(|c| {
                let ty = if retyped { c.2 } else { c.1 };
                format!("{{ name = \"{}\", type = \"{ty}\" }}", c.0)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    migrate(&pool, &probe_schema(&fields(false))).await;
    for row in 0..2 {
        let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
        let values: Vec<String> = cases.iter().map(|c| format!("'{}'", c.3[row])).collect();
        sqlx::raw_sql(&format!(
            "SET search_path TO acme_probe; INSERT INTO item ({}) VALUES ({})",
            names.join(", "),
            values.join(", ")
        ))
        .execute(&pool)
        .await
        .unwrap();
    }

    let after = probe_schema(&fields(true));
    migrate(&pool, &after).await;
    // Applied again (a replica restarting), it changes nothing.
    migrate(&pool, &after).await;
    for (field, from, to, _, expected) in &cases {
        let mut tx = pool.begin().await.unwrap();
        sqlx::raw_sql("SET LOCAL search_path TO acme_probe; SET LOCAL timezone TO 'UTC'")
            .execute(&mut *tx)
            .await
            .unwrap();
        let values: Vec<Option<String>> =
            sqlx::query_scalar(&format!("SELECT {field}::text FROM item ORDER BY id"))
                .fetch_all(&mut *tx)
                .await
                .unwrap();
        let expected: Vec<Option<String>> = expected.iter().map(|v| v.map(str::to_owned)).collect();
        assert_eq!(values, expected, "{field}: {from} → {to}");
    }
}
