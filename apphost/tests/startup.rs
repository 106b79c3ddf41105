//! Starting and stopping: migrations under the lock, readiness, graceful shutdown.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Host, Postgres, config, config_with_secret, fixture_bundle};

#[tokio::test]
async fn two_hosts_starting_together_on_one_schema_both_become_ready() {
    let pg = Postgres::start();
    let (a, b) = tokio::join!(
        Host::start_ready(config_with_secret(Some(&pg))),
        Host::start_ready(config_with_secret(Some(&pg)))
    );
    let created = a.send("POST", "/api/order", r#"{"customer":"Ann"}"#).await;
    assert_eq!(created.status, 201);
    let id = created.json()["id"].as_i64().unwrap();
    assert_eq!(
        b.get(&format!("/api/order/{id}")).await.json()["customer"],
        "Ann"
    );

    let pool = pg.pool().await;
    let recorded: Vec<(String, String)> =
        sqlx::query_as("SELECT name, sha256 FROM orders._neo_migrations")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, "0001_schema.sql");
    assert_eq!(recorded[0].1.len(), 64);
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test]
async fn the_same_migration_is_applied_once_and_a_changed_one_again() {
    let pg = Postgres::start();
    let pool = pg.pool().await;
    let applied_at = || async {
        sqlx::query_scalar::<_, String>("SELECT applied_at::text FROM orders._neo_migrations")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    Host::start_ready(config_with_secret(Some(&pg)))
        .await
        .stop()
        .await
        .unwrap();
    let first = applied_at().await;
    Host::start_ready(config_with_secret(Some(&pg)))
        .await
        .stop()
        .await
        .unwrap();
    assert_eq!(
        applied_at().await,
        first,
        "an unchanged file is not applied again"
    );

    // A new revision adds a field: the changed file is applied again, the data stays.
    let dir = tempfile::tempdir().unwrap();
    neo_harness::copy_dir(&fixture_bundle(), dir.path()).unwrap();
    let schema = dir.path().join("migrations/0001_schema.sql");
    let mut sql = std::fs::read_to_string(&schema).unwrap();
    sql.push_str("ALTER TABLE \"order\" ADD COLUMN IF NOT EXISTS \"note\" TEXT;\n");
    std::fs::write(&schema, sql).unwrap();
    let model = dir.path().join("model.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    m["entities"][1]["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "note", "type": "text"}));
    std::fs::write(&model, m.to_string()).unwrap();

    let mut cfg = config_with_secret(Some(&pg));
    cfg.bundle_dir = dir.path().to_owned();
    let host = Host::start_ready(cfg).await;
    assert_ne!(applied_at().await, first);
    let r = host
        .send(
            "POST",
            "/api/order",
            r#"{"customer":"Ann","note":"fragile"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["note"].clone()),
        (201, json!("fragile"))
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_waits_for_every_declared_secret() {
    let pg = Postgres::start();
    let without = Host::start(config(Some(&pg))).await;
    let with = Host::start_ready(config_with_secret(Some(&pg))).await;

    // Once its database is migrated, only the secret is missing; the reason names it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = without.get("/readyz").await;
        assert_eq!(r.status, 503);
        assert!(!r.body.contains("sk-test-123"));
        if r.json()["reasons"] == json!(["secret payment_api_key is not set"]) {
            break;
        }
        assert!(Instant::now() < deadline, "{}", r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        without.get("/healthz").await.status,
        200,
        "alive though not ready"
    );

    let r = with.get("/readyz").await;
    assert_eq!((r.status, r.json()), (200, json!({"ready": true})));
    assert!(!r.body.contains("sk-test-123"));
    without.stop().await.unwrap();
    with.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_is_unavailable_until_the_database_answers() {
    // Nothing listens on the database port yet: the host serves, but is not ready.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = config_with_secret(None);
    cfg.database_url = Some(format!("postgres://postgres@127.0.0.1:{port}/postgres"));
    let host = Host::start(cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = host.get("/readyz").await;
    assert_eq!(r.status, 503);
    assert!(
        r.json()["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("database: "),
        "{}",
        r.body
    );
    assert_eq!(host.get("/api/order").await.status, 503);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_completes_the_request_in_flight() {
    let pg = Postgres::start();
    let mut host = Host::start_ready(config_with_secret(Some(&pg))).await;
    let id = host
        .send("POST", "/api/order", r#"{"customer":"Ann"}"#)
        .await
        .json()["id"]
        .as_i64()
        .unwrap();

    // Hold the row so the PATCH waits inside the database.
    let pool = pg.pool().await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM orders.\"order\" WHERE id = $1 FOR UPDATE")
        .bind(id)
        .execute(&mut *tx)
        .await
        .unwrap();
    let addr = host.addr;
    let patch = tokio::spawn(async move {
        support::request(
            addr,
            "PATCH",
            &format!("/api/order/{id}"),
            Some(r#"{"paid":true}"#),
        )
        .await
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the PATCH never reached the database"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    host.begin_shutdown();
    let server = host.take_task();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !server.is_finished(),
        "the server waits for the request in flight"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no new connections are accepted"
    );

    tx.commit().await.unwrap();
    let reply = patch.await.unwrap();
    assert_eq!(
        (reply.status, reply.json()["paid"].clone()),
        (200, json!(true)),
        "{}",
        reply.body
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
