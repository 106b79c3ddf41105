//! Projections end to end: the real platform on a real nats-server writes events, the
//! projection runner writes read models into a real Postgres; what a user would check is in
//! the tables, a rebuild reproduces them exactly and a restarted runner resumes without
//! applying anything twice.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::Duration;

use async_nats::jetstream;
use neo_actors::HostConfig;
use neo_actors::projections::sqlx::{self, PgPool};
use neo_actors::projections::{self, ConsumerUse, Projections, migrations};
use neo_harness::{PostgresServer, RegistryServer};
use neo_protocol::pb::{self, build_command::Command as Build};
use neo_protocol::{AppName, EntityRef, StageName, TenantName};
use neo_tests::commands::{self, request};
use neo_tests::{Core, PlatformProcess, expect_accepted, send};

const WAIT: Duration = Duration::from_secs(20);

/// stage, number, revision, image_digest, origin, promoted_from_stage, rolled_back_to, rollout
type ReleaseRow = (
    String,
    i64,
    i64,
    String,
    String,
    Option<String>,
    Option<i64>,
    String,
);

/// One nats-server, one platform process and one Postgres with database `neo`, all stopped
/// when dropped (even when the test fails).
struct World {
    // Kept for its Drop: the nats-server stops with the world.
    _core: Core,
    platform: PlatformProcess,
    client: async_nats::Client,
    pg: PostgresServer,
}

impl World {
    async fn start() -> World {
        let core = Core::start().await.unwrap();
        let platform = core.platform(HostConfig::default()).await.unwrap();
        let client = core.connect().await.unwrap();
        let pg = PostgresServer::start().await.unwrap();
        pg.create_database("neo").await.unwrap();
        World {
            _core: core,
            platform,
            client,
            pg,
        }
    }

    fn js(&self) -> jetstream::Context {
        self.platform.store.context().clone()
    }

    async fn projections(&self) -> Projections {
        Projections::connect(&self.pg.url("neo")).await.unwrap()
    }

    /// Sends `command` to `entity`, expects it accepted and returns the entity's last sequence.
    async fn send(&self, entity: &EntityRef, command: impl prost::Message) -> u64 {
        let reply = send(&self.client, entity, &request(command)).await.unwrap();
        expect_accepted(reply).last_sequence
    }

    async fn app(&self, name: &str) -> u64 {
        self.send(&app(name), commands::create_app()).await
    }

    async fn revision(&self, name: &str, n: u64) -> u64 {
        self.send(&app(name), commands::revision(n)).await
    }

    /// Requests, starts and succeeds build `{app}_r{revision}` with image `digest(image)`.
    async fn build(
        &self,
        name: &str,
        revision: u32,
        model: u64,
        image: u64,
        dependencies: Vec<pb::Dependency>,
        exposes: Vec<pb::ExposedEntity>,
    ) -> u64 {
        let b = build(name, revision);
        self.send(&b, request_build(name, revision, model)).await;
        self.send(&b, start_build(1)).await;
        self.send(
            &b,
            build_command(Build::Succeed(pb::SucceedBuild {
                attempt: 1,
                image_digest: commands::digest(image),
                image_ref: format!("127.0.0.1:5000/acme/{name}:r{revision}"),
                dependencies,
                exposes,
                ..Default::default()
            })),
        )
        .await
    }

    async fn deployment(&self, name: &str, stage: &str, command: pb::DeploymentCommand) -> u64 {
        self.send(&deployment(name, stage), command).await
    }
}

fn tenant() -> TenantName {
    TenantName::new("acme").unwrap()
}

fn app(name: &str) -> EntityRef {
    EntityRef::app(&tenant(), &AppName::new(name).unwrap())
}

fn build(name: &str, revision: u32) -> EntityRef {
    EntityRef::build(&tenant(), &AppName::new(name).unwrap(), revision)
}

fn deployment(name: &str, stage: &str) -> EntityRef {
    EntityRef::deployment(
        &tenant(),
        &AppName::new(name).unwrap(),
        &StageName::new(stage).unwrap(),
    )
}

fn build_command(command: Build) -> pb::BuildCommand {
    pb::BuildCommand {
        command: Some(command),
    }
}

fn request_build(name: &str, revision: u32, model: u64) -> pb::BuildCommand {
    build_command(Build::Request(pb::RequestBuild {
        app: name.into(),
        revision,
        revision_digest: commands::digest(model),
        deploy_to: String::new(),
    }))
}

fn start_build(attempt: u32) -> pb::BuildCommand {
    build_command(Build::Start(pb::StartBuild {
        attempt,
        worker: "builder-1".into(),
        takeover: false,
    }))
}

fn dependency(producer: &str, entity: &str, revision: u32, fields: &[&str]) -> pb::Dependency {
    pb::Dependency {
        producer_app: producer.into(),
        entity: entity.into(),
        producer_revision: revision,
        fields: fields.iter().map(|f| (*f).to_owned()).collect(),
    }
}

fn exposed(entity: &str, fields: &[(&str, &str)]) -> pb::ExposedEntity {
    pb::ExposedEntity {
        name: entity.into(),
        fields: fields
            .iter()
            .map(|(name, ty)| pb::FieldSpec {
                name: (*name).into(),
                r#type: (*ty).into(),
                required: true,
            })
            .collect(),
    }
}

fn deployment_command(command: pb::deployment_command::Command) -> pb::DeploymentCommand {
    pb::DeploymentCommand {
        command: Some(command),
    }
}

fn rollback(to_release: u32) -> pb::DeploymentCommand {
    deployment_command(pb::deployment_command::Command::Rollback(pb::Rollback {
        to_release,
        ..Default::default()
    }))
}

fn rollout(release: u32, status: pb::RolloutStatus, reason: &str) -> pb::DeploymentCommand {
    deployment_command(pb::deployment_command::Command::RecordRollout(
        pb::RecordRollout {
            release,
            status: status.into(),
            reason: reason.into(),
        },
    ))
}

/// Every row of every read-model table as text, table by table, rows in a fixed order.
async fn dump(pool: &PgPool) -> Vec<String> {
    let mut out = Vec::new();
    for table in migrations::TABLES {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT t::text FROM {table} t ORDER BY 1"))
                .fetch_all(pool)
                .await
                .unwrap();
        out.push(format!("-- {table}: {} rows", rows.len()));
        out.extend(rows);
    }
    out
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The tenant with two stages more, three apps with builds, and deployments on two stages:
///
/// - `orders` (the producer) exposes `Order`; r1 runs on dev.
/// - `shop` r1 uses `Order.id,total`, r2 uses `Order.id`: r1 deployed to dev, promoted to test;
///   r2 deployed to dev, then dev rolled back to v1 (so dev runs r1 again, as release v3).
/// - `report` uses `Order.total`: built (after a failed attempt) but never deployed.
/// - `legacy` is archived.
async fn scenario(w: &World) -> u64 {
    let t = EntityRef::tenant(&tenant());
    w.send(&t, commands::create_tenant("alice")).await;
    w.send(
        &t,
        pb::TenantCommand {
            command: Some(pb::tenant_command::Command::AddStage(pb::AddStage {
                name: "qa".into(),
                after: "test".into(),
            })),
        },
    )
    .await;
    w.send(
        &t,
        pb::TenantCommand {
            command: Some(pb::tenant_command::Command::SetMember(pb::SetMember {
                user: "bob".into(),
                role: pb::Role::Developer.into(),
            })),
        },
    )
    .await;

    w.app("orders").await;
    w.revision("orders", 1).await;
    let order = exposed("Order", &[("id", "text"), ("total", "decimal")]);
    w.build("orders", 1, 1, 101, vec![], vec![order]).await;
    w.deployment("orders", "dev", commands::deploy("orders", "dev", 1, 101))
        .await;

    w.app("shop").await;
    w.revision("shop", 2).await;
    let uses_all = vec![dependency("orders", "Order", 1, &["id", "total"])];
    w.build("shop", 1, 2, 201, uses_all, vec![]).await;
    w.deployment("shop", "dev", commands::deploy("shop", "dev", 1, 201))
        .await;
    w.deployment("shop", "test", commands::promote("shop", "test"))
        .await;
    w.deployment("shop", "test", rollout(1, pb::RolloutStatus::Succeeded, ""))
        .await;
    w.revision("shop", 3).await;
    let uses_id = vec![dependency("orders", "Order", 1, &["id"])];
    w.build("shop", 2, 3, 202, uses_id, vec![]).await;
    w.deployment("shop", "dev", commands::deploy("shop", "dev", 2, 202))
        .await;
    w.deployment("shop", "dev", rollback(1)).await;
    w.deployment(
        "shop",
        "dev",
        rollout(3, pb::RolloutStatus::Failed, "crash loop"),
    )
    .await;

    w.app("report").await;
    w.revision("report", 4).await;
    let b = build("report", 1);
    w.send(&b, request_build("report", 1, 4)).await;
    w.send(&b, start_build(1)).await;
    w.send(
        &b,
        build_command(Build::Fail(pb::FailBuild {
            attempt: 1,
            reason: "model does not compile".into(),
            diagnostics: vec![],
        })),
    )
    .await;
    w.send(&b, request_build("report", 1, 4)).await;
    w.send(&b, start_build(2)).await;
    w.send(
        &b,
        build_command(Build::Succeed(pb::SucceedBuild {
            attempt: 2,
            image_digest: commands::digest(401),
            image_ref: "127.0.0.1:5000/acme/report:r1".into(),
            dependencies: vec![dependency("orders", "Order", 1, &["total"])],
            exposes: vec![],
            ..Default::default()
        })),
    )
    .await;

    w.app("legacy").await;
    w.send(
        &app("legacy"),
        pb::AppCommand {
            command: Some(pb::app_command::Command::Archive(pb::ArchiveApp {
                reason: "replaced by shop".into(),
            })),
        },
    )
    .await
}

/// The stream's last sequence.
async fn last_sequence(js: &jetstream::Context) -> u64 {
    let stream = js
        .get_stream(neo_protocol::subjects::EVENTS_STREAM)
        .await
        .unwrap();
    stream.cached_info().state.last_sequence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_models_hold_what_users_check_and_rebuild_identically() {
    let w = World::start().await;
    let p = w.projections().await;
    assert_eq!(p.position().await.unwrap(), 0);
    scenario(&w).await;
    // An event nobody can read: logged, counted, passed over; never blocks the projection.
    let js = w.js();
    js.publish("neo.evt.acme.app.junk.AppCreated", "garbage".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let last = last_sequence(&js).await;
    assert_eq!(p.catch_up(&js).await.unwrap(), last);
    assert_eq!(p.position().await.unwrap(), last);
    assert_eq!(p.skipped(), 1);
    let pool = p.pool();

    // The tenant: stages in promotion order, members.
    let (stages, suspended): (Vec<String>, bool) =
        sqlx::query_as("SELECT stages, suspended FROM tenants WHERE tenant = 'acme'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(stages, ["dev", "test", "qa", "prod"]);
    assert!(!suspended);
    let members: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_name, role FROM tenant_members WHERE tenant = 'acme' ORDER BY user_name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        members,
        [
            ("alice".to_owned(), "admin".to_owned()),
            ("bob".to_owned(), "developer".to_owned())
        ]
    );

    // Apps and revisions.
    let apps: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT app, archived, archive_reason FROM apps WHERE tenant = 'acme' ORDER BY app",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let names: Vec<&str> = apps.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(names, ["legacy", "orders", "report", "shop"]);
    assert_eq!((apps[0].1, apps[0].2.as_str()), (true, "replaced by shop"));
    assert!(!apps[3].1);
    let revisions: Vec<(i64, String, String, String)> = sqlx::query_as(
        "SELECT number, digest, author, message FROM revisions
         WHERE tenant = 'acme' AND app = 'shop' ORDER BY number",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        revisions,
        [
            (1, commands::digest(2), "alice".into(), "change 2".into()),
            (2, commands::digest(3), "alice".into(), "change 3".into()),
        ]
    );

    // Builds: the retried one shows its second attempt and the image.
    let builds: Vec<(String, String, i64, String, String, String)> = sqlx::query_as(
        "SELECT build_id, status, attempt, worker, image_digest, reason FROM builds
         WHERE tenant = 'acme' ORDER BY build_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let ids: Vec<&str> = builds.iter().map(|b| b.0.as_str()).collect();
    assert_eq!(ids, ["orders_r1", "report_r1", "shop_r1", "shop_r2"]);
    assert!(
        builds
            .iter()
            .all(|b| b.1 == "succeeded" && b.3 == "builder-1")
    );
    assert_eq!(builds[1].2, 2, "report built on its second attempt");
    assert_eq!(builds[1].4, commands::digest(401));
    assert_eq!(
        builds[1].5, "",
        "the failed attempt's reason is cleared by the retry"
    );

    // Dependency edges and exposed fields, from BuildSucceeded.
    let edges: Vec<(String, i64, String, i64, String, Vec<String>)> = sqlx::query_as(
        "SELECT consumer_app, consumer_revision, producer_app, producer_revision, entity, fields
         FROM dependency_edges WHERE tenant = 'acme'
         ORDER BY consumer_app, consumer_revision, producer_app, entity",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        edges,
        [
            (
                "report".into(),
                1,
                "orders".into(),
                1,
                "Order".into(),
                s(&["total"])
            ),
            (
                "shop".into(),
                1,
                "orders".into(),
                1,
                "Order".into(),
                s(&["id", "total"])
            ),
            (
                "shop".into(),
                2,
                "orders".into(),
                1,
                "Order".into(),
                s(&["id"])
            ),
        ]
    );
    let fields: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT field, field_type, position FROM exposed_fields
         WHERE tenant = 'acme' AND app = 'orders' AND revision = 1 AND entity = 'Order'
         ORDER BY position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        fields,
        [
            ("id".into(), "text".into(), 0),
            ("total".into(), "decimal".into(), 1)
        ]
    );

    // Releases: deploy, promotion, rollback (with the rolled-back-to release's image).
    let releases: Vec<ReleaseRow> = sqlx::query_as(
        "SELECT stage, number, revision, image_digest, origin, promoted_from_stage,
                    rolled_back_to, rollout
             FROM releases WHERE tenant = 'acme' AND app = 'shop' ORDER BY stage, number",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let (d201, d202) = (commands::digest(201), commands::digest(202));
    assert_eq!(
        releases,
        [
            (
                "dev".into(),
                1,
                1,
                d201.clone(),
                "deploy".into(),
                None,
                None,
                "pending".into()
            ),
            (
                "dev".into(),
                2,
                2,
                d202.clone(),
                "deploy".into(),
                None,
                None,
                "pending".into()
            ),
            (
                "dev".into(),
                3,
                1,
                d201.clone(),
                "rollback".into(),
                None,
                Some(1),
                "failed".into()
            ),
            (
                "test".into(),
                1,
                1,
                d201.clone(),
                "promotion".into(),
                Some("dev".into()),
                None,
                "succeeded".into()
            ),
        ]
    );
    let reason: String = sqlx::query_scalar(
        "SELECT rollout_reason FROM releases
         WHERE tenant = 'acme' AND app = 'shop' AND stage = 'dev' AND number = 3",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(reason, "crash loop");

    // Deployments: the current release of each app and stage.
    let deployments: Vec<(String, String, i64, i64, String, String, String)> = sqlx::query_as(
        "SELECT app, stage, current_release, revision, build_id, image_digest, rollout
         FROM deployments WHERE tenant = 'acme' ORDER BY app, stage",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        deployments,
        [
            (
                "orders".into(),
                "dev".into(),
                1,
                1,
                "orders_r1".into(),
                commands::digest(101),
                "pending".into()
            ),
            (
                "shop".into(),
                "dev".into(),
                3,
                1,
                "shop_r1".into(),
                d201.clone(),
                "failed".into()
            ),
            (
                "shop".into(),
                "test".into(),
                1,
                1,
                "shop_r1".into(),
                d201,
                "succeeded".into()
            ),
        ]
    );

    // Impact analysis: on dev, shop's current release (r1 again, after the rollback) uses
    // Order.id and Order.total; report uses Order too but runs nowhere.
    let on_dev = projections::consumers_on_stage(pool, "acme", "dev", "orders")
        .await
        .unwrap();
    assert_eq!(
        on_dev,
        [ConsumerUse {
            consumer_app: "shop".into(),
            consumer_revision: 1,
            dependency: dependency("orders", "Order", 1, &["id", "total"]),
        }]
    );
    let on_test = projections::consumers_on_stage(pool, "acme", "test", "orders")
        .await
        .unwrap();
    assert_eq!(on_test.len(), 1);
    assert_eq!(on_test[0].consumer_app, "shop");
    assert!(
        projections::consumers_on_stage(pool, "acme", "prod", "orders")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        projections::consumers_on_stage(pool, "acme", "dev", "shop")
            .await
            .unwrap()
            .is_empty(),
        "nobody consumes shop"
    );

    // Every row carries the sequence that last changed it, never beyond the position.
    let max_seq: i64 = sqlx::query_scalar("SELECT max(last_seq) FROM deployments")
        .fetch_one(pool)
        .await
        .unwrap();
    assert!(max_seq > 0 && u64::try_from(max_seq).unwrap() <= last);

    // Catching up again changes nothing.
    let before = dump(pool).await;
    assert_eq!(p.catch_up(&js).await.unwrap(), last);
    assert_eq!(dump(pool).await, before);

    // Rebuild: drop, migrate, replay from 1 → the same tables, row for row.
    assert_eq!(p.rebuild(&js).await.unwrap(), last);
    let after = dump(pool).await;
    assert_eq!(after, before);
    assert_eq!(p.skipped(), 2, "the unreadable event was passed over again");
    assert_eq!(before.len(), 11 + 29, "11 tables, 29 rows: {before:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_runners_resume_from_the_stored_position_without_duplicates() {
    let w = World::start().await;
    let js = w.js();
    w.send(
        &EntityRef::tenant(&tenant()),
        commands::create_tenant("alice"),
    )
    .await;
    w.app("shop").await;
    for n in 1..=20 {
        w.revision("shop", n).await;
    }
    let first = w.projections().await;
    let position = first.catch_up(&js).await.unwrap();
    assert_eq!(count(first.pool(), "revisions").await, 20);
    drop(first);

    // A new process: it starts from the stored position, so nothing is applied twice.
    let second = w.projections().await;
    assert_eq!(second.position().await.unwrap(), position);
    assert_eq!(second.catch_up(&js).await.unwrap(), position);
    let snapshot = dump(second.pool()).await;

    // Two runners follow the live stream at once (two platform processes): each event is
    // applied by exactly one of them.
    let a = second.run(js.clone());
    let b = w.projections().await.run(js.clone());
    let mut last = 0;
    for n in 21..=140 {
        last = w.revision("shop", n).await;
    }
    second.wait_for(last, WAIT).await.unwrap();
    assert_eq!(count(second.pool(), "revisions").await, 140);
    let numbers: Vec<i64> =
        sqlx::query_scalar("SELECT number FROM revisions WHERE app = 'shop' ORDER BY number")
            .fetch_all(second.pool())
            .await
            .unwrap();
    assert_eq!(numbers, (1..=140).collect::<Vec<i64>>());
    a.abort();
    b.abort();
    let _ = a.await;
    let _ = b.await;

    // Stopped, the stream moves on; a restarted runner picks up exactly the rest.
    for n in 141..=150 {
        last = w.revision("shop", n).await;
    }
    let third = w.projections().await;
    assert!(third.position().await.unwrap() < last);
    let runner = third.run(js.clone());
    third.wait_for(last, WAIT).await.unwrap();
    runner.abort();
    let _ = runner.await;
    assert_eq!(count(third.pool(), "revisions").await, 150);
    assert_eq!(third.catch_up(&js).await.unwrap(), last);
    assert_eq!(count(third.pool(), "revisions").await, 150);
    assert_eq!(third.skipped(), 0);

    // The earlier rows were not touched by the later runners.
    let shop_r1: Vec<String> = snapshot
        .iter()
        .filter(|row| row.starts_with("(acme,shop,1,"))
        .cloned()
        .collect();
    assert_eq!(shop_r1.len(), 1, "{snapshot:#?}");
    let now = dump(third.pool()).await;
    assert!(now.contains(&shop_r1[0]));

    // Waiting for a sequence that never comes times out with the position reached.
    let err = third
        .wait_for(last + 1000, Duration::from_millis(100))
        .await;
    assert!(
        matches!(err, Err(projections::ProjectionError::Timeout { position, .. }) if position == last)
    );
}

#[tokio::test]
async fn postgres_and_registry_servers_start_and_stop() {
    let pg = PostgresServer::start().await.unwrap();
    pg.create_database("neo").await.unwrap();
    let pool = PgPool::connect(&pg.url("neo")).await.unwrap();
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(one, 1);
    pool.close().await;
    let port = pg.port();
    drop(pg);
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    );

    let registry = RegistryServer::start().await.unwrap();
    let host = registry.host();
    assert!(tokio::net::TcpStream::connect(&host).await.is_ok());
    drop(registry);
    assert!(tokio::net::TcpStream::connect(&host).await.is_err());
}
