//! The database going away under a serving host: the API answers 503 at once, `/readyz` says
//! why and `/healthz` stays 200; when the database is back the host serves again by itself.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use support::{Host, Postgres, config_with_secret};

/// A request and how long it took.
async fn timed(host: &Host, method: &str, path: &str, body: &str) -> (support::Reply, Duration) {
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(5), host.send(method, path, body))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} hung for 5 s"));
    (reply, started.elapsed())
}

#[tokio::test]
async fn a_dead_database_answers_503_at_once_and_the_host_recovers_by_itself() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;
    let created = host
        .send("POST", "/api/order", r#"{"customer":"Ann"}"#)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);

    // The test cluster commits asynchronously: make the row survive the crash.
    sqlx::query("CHECKPOINT")
        .execute(&pg.pool().await)
        .await
        .unwrap();
    pg.stop();
    for (method, path, body) in [
        ("GET", "/api/order", ""),
        ("POST", "/api/order", r#"{"customer":"Bob"}"#),
        ("GET", "/api/order/1", ""),
    ] {
        let (reply, took) = timed(&host, method, path, body).await;
        assert_eq!(reply.status, 503, "{method} {path}: {}", reply.body);
        assert!(
            took < Duration::from_secs(1),
            "{method} {path} took {took:?}"
        );
        assert_eq!(
            reply.json()["error"],
            "the database is unavailable, try again shortly"
        );
    }
    let (ready, took) = timed(&host, "GET", "/readyz", "").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    let reason = ready.json()["reasons"][0].as_str().unwrap().to_owned();
    assert!(reason.starts_with("database: unavailable"), "{reason}");
    let (alive, _) = timed(&host, "GET", "/healthz", "").await;
    assert_eq!(
        alive.status, 200,
        "liveness does not depend on the database"
    );

    pg.start_again();
    host.wait_ready().await;
    let listed = host.get("/api/order").await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert!(listed.body.contains("Ann"), "{}", listed.body);
    host.stop().await.unwrap();
}
