//! `neo logs`, `neo status` and `neo scale` run in process against the stack.

use neo_cli::serde_json::{self, Value};
use neo_protocol::pb::{self, LogLevel, ReplicaPhase};
use neo_tests::cli::Neo;

use super::harness::{Runtime, now_ms};

#[tokio::test]
async fn neo_logs_status_and_scale_end_to_end() {
    let rt = Runtime::start().await;
    let image = rt.deployed("shop").await;
    let t = now_ms() - 10_000;
    rt.log(
        "acme/dev/shop",
        &[
            (LogLevel::Info, t, "started"),
            (LogLevel::Error, t + 1, "boom"),
        ],
    )
    .await;
    rt.health(
        "acme/dev/shop",
        pb::HealthReport {
            release: 1,
            image_digest: image.clone(),
            desired: 1,
            replicas: vec![pb::ReplicaStatus {
                id: "shop-1".into(),
                release: 1,
                phase: ReplicaPhase::Ready as i32,
                address: "127.0.0.1:4100".into(),
                ..Default::default()
            }],
            at_ms: now_ms(),
            agent: "agent-dev".into(),
            url: "http://127.0.0.1:9000/acme/shop/".into(),
            ..Default::default()
        },
    )
    .await;
    let neo = Neo::new(&rt.stack);
    neo.login("dave", Some("acme")).await.unwrap();

    let table = neo.ok(&["logs", "--stage", "dev", "--since", "1h"]).await;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].ends_with(" info  dev/shop/shop-0 started"),
        "{table}"
    );
    assert!(lines[1].ends_with(" error dev/shop/shop-1 boom"), "{table}");
    let (result, out) = neo
        .run(&[
            "--output", "json", "logs", "--level", "warn", "--grep", "bo",
        ])
        .await;
    result.unwrap();
    let line: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (line["level"].as_str(), line["text"].as_str()),
        (Some("error"), Some("boom"))
    );
    neo.fails(&["logs", "--since", "last tuesday"], 2).await;

    let status = neo.json(&["status"]).await;
    assert_eq!(status[0]["app"], "shop");
    assert_eq!(status[0]["release"], 1);
    assert_eq!(status[0]["image_digest"], image.as_str());
    assert_eq!(status[0]["replicas"][0]["phase"], "ready");
    let table = neo.ok(&["status", "--stage", "dev"]).await;
    assert!(table.contains("v1"), "{table}");
    assert!(table.contains("1/1"), "{table}");
    assert!(
        table.contains("http://127.0.0.1:9000/acme/shop/"),
        "{table}"
    );
    assert!(table.contains("shop-1"), "{table}");

    // Only the fields given change.
    let scaled = neo
        .json(&[
            "scale", "shop", "--stage", "dev", "--max", "4", "--window", "2m",
        ])
        .await;
    assert_eq!(scaled["policy"]["min_replicas"], 1);
    assert_eq!(scaled["policy"]["max_replicas"], 4);
    assert_eq!(scaled["policy"]["target_cpu_percent"], 70);
    assert_eq!(scaled["policy"]["scale_down_window_s"], 120);
    let status = neo.json(&["status", "shop"]).await;
    assert_eq!(status[0]["policy"]["max_replicas"], 4);
    neo.fails(&["scale", "shop", "--stage", "dev"], 2).await;
    let bad = neo
        .fails(&["scale", "shop", "--stage", "dev", "--min", "9"], 2)
        .await;
    assert!(bad.contains("policy.min_replicas"), "{bad}");
    neo.fails(&["scale", "ghost", "--stage", "dev", "--max", "2"], 3)
        .await;
    neo.fails(&["scale", "shop", "--stage", "test", "--max", "2"], 4)
        .await;
}
