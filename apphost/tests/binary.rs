//! The `neo-apphost` binary: exit codes, JSON log lines, SIGTERM.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Postgres, fixture_bundle};

const BIN: &str = env!("CARGO_BIN_EXE_neo-apphost");

fn clean_command() -> Command {
    let mut c = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("NEO_") || key == "PORT" || key == "RUST_LOG" {
            c.env_remove(key);
        }
    }
    c
}

#[test]
fn a_bad_bundle_exits_with_code_2_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = clean_command()
        .env("NEO_BUNDLE_DIR", dir.path())
        .env("NEO_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model.json"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(line["level"], "ERROR");
    assert!(line["error"].as_str().unwrap().contains("model.json"));

    std::fs::write(
        dir.path().join("model.json"),
        r#"{"name": "x", "entities": [{"name": "E", "fields": [{"name": "a", "type": "blob"}]}]}"#,
    )
    .unwrap();
    let out = clean_command()
        .env("NEO_BUNDLE_DIR", dir.path())
        .env("NEO_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown type \"blob\""));
}

#[test]
fn serves_logs_json_lines_and_stops_cleanly_on_sigterm() {
    let pg = Postgres::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = clean_command()
        .env("NEO_BUNDLE_DIR", fixture_bundle())
        .env("PORT", port.to_string())
        .env("NEO_DATABASE_URL", pg.url())
        .env("NEO_SCHEMA", "shop_dev")
        .env("NEO_TENANT", "acme")
        .env("NEO_APP", "orders")
        .env("NEO_STAGE", "dev")
        .env("NEO_REPLICA", "orders-0")
        .env("NEO_SETTING_CURRENCY", "CHF")
        .env("NEO_SECRET_PAYMENT_API_KEY", "sk-live-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok()
                && support::request(addr, "GET", "/readyz", None).await.status == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "the binary never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let settings = support::request(addr, "GET", "/api/_settings", None).await;
        assert_eq!(settings.json()["settings"]["currency"], "CHF");
        let created =
            support::request(addr, "POST", "/api/order", Some(r#"{"customer":"Ann"}"#)).await;
        assert_eq!(created.status, 201);
    });

    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).expect("every stdout line is JSON"))
        .collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit on SIGTERM");

    let request = lines
        .iter()
        .find(|l| l["message"] == "request" && l["path"] == "/api/order")
        .expect("a log line for the request");
    assert_eq!(request["method"], "POST");
    assert_eq!(request["status"], 201);
    assert!(request["duration_ms"].is_number());
    assert!(request["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(request["level"], "INFO");
    for (key, value) in [
        ("tenant", "acme"),
        ("app", "orders"),
        ("stage", "dev"),
        ("replica", "orders-0"),
    ] {
        assert_eq!(request[key], value);
    }
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "SIGTERM: shutting down")
    );
    assert!(
        lines
            .iter()
            .all(|l| !l.to_string().contains("sk-live-secret")),
        "the secret is never logged"
    );

    // The schema came from NEO_SCHEMA.
    rt.block_on(async {
        let pool = pg.pool().await;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM shop_dev.\"order\"")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 1);
    });
}
