//! `neo logs`, `neo status` and `neo scale` run in process against the stack.

use std::path::PathBuf;

use neo_ops::cli::serde_json::{self, Value};
use neo_ops::cli::{self, CliError, Context, Sink};
use neo_protocol::pb::{self, LogLevel, ReplicaPhase};
use neo_tests::gateway::{Stack, password};

use super::harness::{Runtime, now_ms};

/// `neo` run in process with its own config file.
struct Neo {
    _dir: tempfile::TempDir,
    config: PathBuf,
    endpoint: String,
}

impl Neo {
    fn new(stack: &Stack) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("neo/config.toml");
        Self {
            _dir: dir,
            config,
            endpoint: stack.gateway.endpoint(),
        }
    }

    async fn run(&self, args: &[&str]) -> (Result<(), CliError>, String) {
        let config = self.config.to_str().unwrap();
        let line = ["neo", "--config", config, "--timeout", "10"]
            .into_iter()
            .chain(args.iter().copied());
        let (global, command) = cli::parse(line).unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let mut cx = Context::load(global).unwrap();
        cx.sink = Sink::memory();
        let result = cli::execute(&mut cx, command).await;
        (result, cx.sink.contents())
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (result, out) = self.run(args).await;
        if let Err(e) = result {
            panic!("neo {args:?} failed: {e}");
        }
        out
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut with_json = vec!["--output", "json"];
        with_json.extend_from_slice(args);
        let out = self.ok(&with_json).await;
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("neo {args:?} printed {out}: {e}"))
    }

    async fn fails(&self, args: &[&str], exit: u8) -> String {
        let (result, out) = self.run(args).await;
        let error = result
            .err()
            .unwrap_or_else(|| panic!("neo {args:?} succeeded: {out}"));
        assert_eq!(error.exit_code(), exit, "neo {args:?}: {error}");
        error.to_string()
    }

    async fn login(&self, user: &str) {
        use neo_ops::cli::commands::login::{LoginArgs, login_with_password};
        let config = self.config.to_str().unwrap();
        let line = [
            "neo",
            "--config",
            config,
            "--endpoint",
            &self.endpoint,
            "--tenant",
            "acme",
            "--output",
            "json",
            "login",
            "--user",
            user,
        ];
        let (global, _) = cli::parse(line).unwrap();
        let mut cx = Context::load(global).unwrap();
        cx.sink = Sink::memory();
        let args = LoginArgs {
            user: Some(user.to_owned()),
            password_stdin: false,
        };
        login_with_password(&mut cx, args, password(user))
            .await
            .unwrap();
    }
}

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
    neo.login("dave").await;

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
    let status = neo.json(&["status", "--app", "shop"]).await;
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
