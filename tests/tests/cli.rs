//! The `neo` client commands end to end, run in process against a real gateway stack: login and
//! the saved config, tenants, apps and uploads, builds, deploy → promote → roll back, events,
//! the parts of publish, impact and build logs that need no build worker, and the exit codes of
//! refusals and failures. (Publish with real workers is in `build_service.rs`.)

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::path::{Path, PathBuf};
use std::time::Duration;

use neo_builder::project::Project;
use neo_cli::serde_json::{self, Value, json};
use neo_cli::{self as cli, Context, Sink};
use neo_tests::cli::Neo;
use neo_tests::gateway::{People, ROOT, ROOT_PASSWORD, Stack, content_digest};

async fn stack() -> (Stack, People) {
    let stack = Stack::start().await.unwrap();
    let people = stack.people().await.unwrap();
    (stack, people)
}

fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("entities")).unwrap();
    std::fs::write(dir.path().join("model.json"), b"{\"name\":\"shop\"}").unwrap();
    std::fs::write(dir.path().join("entities/order.json"), vec![7u8; 200_000]).unwrap();
    dir
}

#[tokio::test]
async fn login_saves_the_token_and_logout_forgets_it() {
    let (stack, _people) = stack().await;
    let neo = Neo::new(&stack);
    assert_eq!(
        neo.fails(&["whoami"], 4).await,
        "not logged in: run `neo login --endpoint URL --user NAME [--tenant TENANT]`"
    );

    neo.login("alice", Some("acme")).await.unwrap();
    let saved = neo.saved();
    assert_eq!(saved.tenant.as_deref(), Some("acme"));
    assert_eq!(saved.user.as_deref(), Some("alice"));
    assert_eq!(saved.endpoint, Some(stack.gateway.endpoint()));
    assert!(!saved.token.unwrap().is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&neo.config).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let who = neo.json(&["whoami"]).await;
    assert_eq!(who["user"], "alice");
    assert_eq!(who["tenant"], "acme");
    assert_eq!(who["role"], "admin");

    neo.json(&["logout"]).await;
    assert_eq!(neo.saved().token, None);
    assert_eq!(neo.saved().tenant.as_deref(), Some("acme"));
    neo.fails(&["whoami"], 4).await;

    let wrong = neo.login("nobody", Some("acme")).await.unwrap_err();
    assert_eq!(wrong.exit_code(), 4, "{wrong}");
    neo.fails(&["--token", "not-a-token", "whoami"], 4).await;
}

#[tokio::test]
async fn tenants_stages_and_members() {
    let (stack, _people) = stack().await;
    let neo = Neo::new(&stack);
    neo.login_with(ROOT, ROOT_PASSWORD, None).await.unwrap();
    let created = neo
        .json(&[
            "tenant", "create", "gamma", "--stage", "dev", "--stage", "prod", "--admin", "bob",
        ])
        .await;
    assert_eq!(created["stages"], json!(["dev", "prod"]));
    assert_eq!(created["members"]["bob"], "admin");
    let tenants = neo.json(&["tenant", "list"]).await;
    assert_eq!(tenants, json!(["acme", "beta", "gamma"]));
    neo.fails(&["tenant", "create", "gamma"], 5).await;

    let tenant = neo
        .json(&[
            "--tenant", "gamma", "tenant", "stage", "add", "qa", "--after", "dev",
        ])
        .await;
    assert_eq!(tenant["stages"], json!(["dev", "qa", "prod"]));
    let tenant = neo
        .json(&[
            "--tenant", "gamma", "tenant", "member", "set", "dave", "devops",
        ])
        .await;
    assert_eq!(tenant["members"]["dave"], "devops");
    let refused = neo
        .fails(
            &["--tenant", "gamma", "tenant", "member", "remove", "bob"],
            5,
        )
        .await;
    assert!(refused.starts_with("refused by rule "), "{refused}");
    neo.fails(&["tenant", "get", "nope"], 3).await;

    let (result, table) = neo.run(&["tenant", "get", "gamma"]).await;
    result.unwrap();
    assert!(table.contains("dev → qa → prod"), "{table}");
    assert!(table.contains("devops"), "{table}");
}

#[tokio::test]
async fn upload_build_deploy_promote_and_roll_back() {
    let (stack, people) = stack().await;
    let neo = Neo::new(&stack);
    neo.login("alice", Some("acme")).await.unwrap();

    neo.json(&["app", "create", "shop", "--description", "a shop"])
        .await;
    neo.fails(&["app", "create", "shop"], 5).await;
    neo.fails(&["app", "create", "Not_A_Name"], 2).await;
    neo.fails(&["app", "get", "nope"], 3).await;

    let model = model_dir();
    let dir = model.path().to_str().unwrap();
    let first = neo
        .json(&["app", "upload", "shop", dir, "-m", "first"])
        .await;
    let project = Project::from_dir(model.path()).unwrap();
    assert_eq!(first["number"], 1);
    assert_eq!(first["digest"], project.digest());
    assert_eq!(first["message"], "first");
    let file = model.path().join("model.json");
    let second = neo
        .json(&["app", "upload", "shop", file.to_str().unwrap()])
        .await;
    assert_eq!(second["digest"], content_digest(b"{\"name\":\"shop\"}"));
    let revisions = neo.json(&["app", "revisions", "shop"]).await;
    assert_eq!(revisions.as_array().unwrap().len(), 2);
    assert_eq!(neo.json(&["app", "list"]).await, json!(["shop"]));
    let app = neo.json(&["app", "get", "shop"]).await;
    assert_eq!(app["description"], "a shop");

    let build = neo.json(&["build", "request", "shop", "1"]).await;
    assert_eq!(build["id"], "shop_r1");
    assert_eq!(build["status"], "requested");
    let refused = neo
        .fails(&["deploy", "shop", "--stage", "dev", "--revision", "1"], 5)
        .await;
    assert!(refused.contains("deploy.build_not_succeeded"), "{refused}");
    let image = stack.finish_build("acme", "shop", 1, 1).await.unwrap();
    let build = neo.json(&["build", "get", "shop_r1"]).await;
    assert_eq!(build["status"], "succeeded");
    assert_eq!(build["image_digest"], image);
    let builds = neo.json(&["build", "list", "shop"]).await;
    assert_eq!(builds[0]["id"], "shop_r1");

    let refused = neo.fails(&["promote", "shop", "--stage", "test"], 5).await;
    assert!(refused.starts_with("refused by rule "), "{refused}");
    let deployed = neo
        .json(&["deploy", "shop", "--stage", "dev", "--revision", "1"])
        .await;
    assert_eq!(deployed["current"], 1);
    assert_eq!(deployed["releases"][0]["origin"], "deploy");
    assert_eq!(deployed["releases"][0]["image_digest"], image);
    let promoted = neo.json(&["promote", "shop", "--stage", "test"]).await;
    assert_eq!(promoted["releases"][0]["origin"], "promotion");
    assert_eq!(promoted["releases"][0]["promoted_from"]["stage"], "dev");

    stack
        .built(&people.alice, "acme", "shop", 2, 2)
        .await
        .unwrap();
    neo.json(&["deploy", "shop", "--stage", "dev", "--revision", "2"])
        .await;
    let rolled = neo
        .json(&["rollback", "shop", "--stage", "dev", "--to", "v1"])
        .await;
    assert_eq!(rolled["current"], 3);
    assert_eq!(rolled["releases"][2]["origin"], "rollback");
    assert_eq!(rolled["releases"][2]["rolled_back_to"], 1);
    assert_eq!(rolled["releases"][2]["image_digest"], image);

    let releases = neo.json(&["releases", "shop", "--stage", "dev"]).await;
    let numbers: Vec<u64> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1], "newest first");
    let (result, table) = neo
        .run(&["deployment", "get", "shop", "--stage", "dev"])
        .await;
    result.unwrap();
    assert!(table.contains("v3 *"), "{table}");
    assert!(table.contains("rollback"), "{table}");

    // A viewer may read but not deploy.
    let viewer = Neo::new(&stack);
    viewer.login("vic", Some("acme")).await.unwrap();
    viewer.json(&["releases", "shop", "--stage", "dev"]).await;
    viewer
        .fails(&["deploy", "shop", "--stage", "test", "--revision", "2"], 4)
        .await;
}

/// One of the example apps under `examples/`.
fn example(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("../examples")
    .join(name)
}

#[tokio::test]
async fn upload_of_a_project_directory_records_its_project_digest() {
    let (stack, _people) = stack().await;
    let neo = Neo::new(&stack);
    neo.login("alice", Some("acme")).await.unwrap();
    neo.json(&["app", "create", "catalog"]).await;

    let catalog = example("catalog");
    let uploaded = neo
        .json(&["app", "upload", "catalog", catalog.to_str().unwrap()])
        .await;
    let expected = Project::from_dir(&catalog).unwrap().digest();
    assert_eq!(uploaded["digest"], expected);
    assert_eq!(uploaded["number"], 1);

    // Dot-files and `target/` are not part of the project: the same content, so the gateway
    // refuses it as unchanged.
    let copy = tempfile::tempdir().unwrap();
    neo_harness::copy_dir(&catalog, copy.path()).unwrap();
    std::fs::create_dir_all(copy.path().join(".git")).unwrap();
    std::fs::write(copy.path().join(".git/HEAD"), b"ref: refs/heads/main").unwrap();
    std::fs::create_dir_all(copy.path().join("target")).unwrap();
    std::fs::write(copy.path().join("target/junk"), b"junk").unwrap();
    assert_eq!(Project::from_dir(copy.path()).unwrap().digest(), expected);
    let unchanged = neo
        .fails(
            &["app", "upload", "catalog", copy.path().to_str().unwrap()],
            5,
        )
        .await;
    assert!(unchanged.contains("revision.unchanged"), "{unchanged}");

    // Another example is another content.
    let orders = example("orders");
    let other = neo
        .json(&["app", "upload", "catalog", orders.to_str().unwrap()])
        .await;
    assert_eq!(
        other["digest"],
        Project::from_dir(&orders).unwrap().digest()
    );
    assert_eq!(other["number"], 2);
}

#[tokio::test]
async fn publish_reports_model_errors_without_contacting_the_gateway() {
    let (stack, _people) = stack().await;
    let neo = Neo::new(&stack);
    neo.login("alice", Some("acme")).await.unwrap();

    let broken = tempfile::tempdir().unwrap();
    neo_harness::copy_dir(&example("reviews"), broken.path()).unwrap();
    let manifest = broken.path().join("neo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text = text.replacen("name = \"reviews\"", "name = \"Reviews!\"", 1);
    text.push_str(
        "\n[[entities]]\nname = \"Note\"\nfields = [{ name = \"body\", type = \"strng\" }]\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let dir = broken.path().to_str().unwrap();

    let events = stack.event_count().await.unwrap();
    let message = neo.fails(&["publish", dir, "-m", "broken"], 2).await;
    let mut lines = message.lines();
    assert!(
        lines.next().unwrap().starts_with("the model has "),
        "{message}"
    );
    let positioned: Vec<&str> = lines.collect();
    assert!(positioned.len() >= 2, "{message}");
    for line in &positioned {
        let mut parts = line.splitn(4, ':');
        assert_eq!(parts.next(), Some("neo.toml"), "{line}");
        assert!(parts.next().unwrap().parse::<u32>().unwrap() > 0, "{line}");
        assert!(parts.next().unwrap().parse::<u32>().unwrap() > 0, "{line}");
        assert!(!parts.next().unwrap().trim().is_empty(), "{line}");
    }
    assert!(message.contains("strng"), "{message}");

    // Nothing reached the gateway: no app, no event, and an unreachable gateway changes nothing.
    neo.fails(&["app", "get", "reviews"], 3).await;
    assert_eq!(stack.event_count().await.unwrap(), events);
    let offline = neo
        .fails(
            &[
                "--endpoint",
                "http://127.0.0.1:1",
                "publish",
                dir,
                "--app",
                "x",
            ],
            2,
        )
        .await;
    assert_eq!(offline, message);
    let empty = tempfile::tempdir().unwrap();
    let missing = neo
        .fails(&["publish", empty.path().to_str().unwrap()], 2)
        .await;
    assert!(missing.contains("\nneo.toml:1:1: "), "{missing}");
}

#[tokio::test]
async fn impact_build_log_and_forced_deploys_without_workers() {
    let (stack, _people) = stack().await;
    let neo = Neo::new(&stack);
    neo.login("alice", Some("acme")).await.unwrap();
    neo.json(&["app", "create", "catalog"]).await;
    let catalog = example("catalog");
    neo.json(&["app", "upload", "catalog", catalog.to_str().unwrap()])
        .await;

    // No succeeded build (and, in this stack, no read models): a clear refusal, exit 5.
    let refused = neo
        .fails(
            &["impact", "catalog", "--stage", "dev", "--revision", "1"],
            5,
        )
        .await;
    assert!(
        refused.starts_with("refused by rule impact.unavailable")
            || refused.starts_with("refused by rule deploy.build_not_succeeded"),
        "{refused}"
    );
    neo.fails(
        &["impact", "catalog", "--stage", "dev", "--revision", "0"],
        2,
    )
    .await;

    // Build logs: an unknown build is not found.
    let missing = neo.fails(&["build", "log", "ghost_r1"], 3).await;
    assert!(missing.starts_with("not found"), "{missing}");
    neo.fails(&["build", "log", "ghost_r1", "--follow"], 3)
        .await;

    // --force does not skip the build check, and with no blockers records no force.
    let forced = [
        "deploy",
        "catalog",
        "--stage",
        "dev",
        "--revision",
        "1",
        "--force",
    ];
    let refused = neo.fails(&forced, 5).await;
    assert!(refused.contains("deploy.build_not_succeeded"), "{refused}");
    neo.json(&["build", "request", "catalog", "1"]).await;
    // A requested build has no log lines yet: nothing printed, and no wait without --follow.
    let (result, out) = neo.run(&["build", "log", "catalog_r1"]).await;
    result.unwrap();
    assert_eq!(out, "");
    let image = stack.finish_build("acme", "catalog", 1, 1).await.unwrap();
    let deployed = neo.json(&forced).await;
    assert_eq!(deployed["releases"][0]["image_digest"], image);
    assert_eq!(deployed["releases"][0]["forced"], false);
    assert_eq!(deployed["releases"][0]["forced_blockers"], json!([]));
    let (result, table) = neo.run(&["releases", "catalog", "--stage", "dev"]).await;
    result.unwrap();
    assert!(table.contains("FORCED"), "{table}");
}

#[tokio::test]
async fn events_watch_prints_events_as_json_lines() {
    let (stack, _people) = stack().await;
    let neo = Neo::new(&stack);
    neo.login("alice", Some("acme")).await.unwrap();
    neo.json(&["app", "create", "shop"]).await;

    let config = neo.config.to_str().unwrap().to_owned();
    let line = [
        "neo", "--config", &config, "-o", "json", "events", "watch", "--kind", "app",
    ];
    let (global, command) = cli::parse(line).unwrap();
    let mut cx = Context::load(global).unwrap();
    let sink = Sink::memory();
    cx.sink = sink.clone();
    let watch = tokio::spawn(async move { cli::execute(&mut cx, command).await });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !sink.contents().contains("\"entity_id\":\"shop\"") {
        assert!(!watch.is_finished(), "the watch ended: {:?}", watch.await);
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event: {}",
            sink.contents()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    watch.abort();
    let first: Value = serde_json::from_str(sink.contents().lines().next().unwrap()).unwrap();
    assert_eq!(first["kind"], "app");
    assert_eq!(first["tenant"], "acme");
    assert!(first["sequence"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn an_unreachable_gateway_is_exit_6() {
    let error = neo_tests::cli::run_at("http://127.0.0.1:1", 2, &["whoami"])
        .await
        .unwrap_err();
    assert_eq!(error.exit_code(), 6, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("cannot connect to http://127.0.0.1:1")
    );
}

#[tokio::test]
async fn with_two_gateways_a_call_goes_to_the_one_that_answers() {
    let (stack, _people) = stack().await;
    // A second gateway of the same platform (same NATS, same token key).
    let second = neo_gateway::Gateway::start(
        stack.core.connect().await.unwrap(),
        neo_gateway::GatewayConfig::loopback(stack.key.clone()),
        neo_gateway::Backends {
            revisions: stack.s3.store.clone(),
            consumers: None,
            secrets: Some(stack.secrets.clone()),
        },
    )
    .await
    .unwrap();
    let mut neo = Neo::new(&stack);
    neo.endpoint = format!("{},{}", second.endpoint(), stack.gateway.endpoint());
    neo.login("alice", Some("acme")).await.unwrap();
    assert_eq!(neo.saved().endpoint.as_deref(), Some(neo.endpoint.as_str()));
    let before = neo.json(&["whoami"]).await;
    assert_eq!(before["user"], "alice");

    // One gateway goes away: every call still answers, through the other.
    second.shutdown().await;
    for n in 0..5 {
        let app = format!("failover-{n}");
        neo.ok(&["app", "create", &app]).await;
    }
    let apps = neo.json(&["app", "list"]).await.to_string();
    for n in 0..5 {
        assert!(apps.contains(&format!("failover-{n}")), "{apps}");
    }
}

#[tokio::test]
async fn publish_lists_what_the_stage_lacks_with_the_command_to_set_each() {
    let build = neo_tests::build_stack::BuildStack::start(1).await.unwrap();
    let _people = build.stack.people().await.unwrap();
    let neo = Neo::new(&build.stack);
    neo.login("dave", Some("acme")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("neo.toml"),
        r#"name = "shop"

[[entities]]
name = "Item"
fields = [{ name = "title", type = "text", required = true }]

[[settings]]
name = "region"

[[settings]]
name = "currency"
default = "EUR"

[[secrets]]
name = "payment_api_key"
"#,
    )
    .unwrap();
    let project = dir.path().to_str().unwrap();

    // Deployed, but dev lacks a setting without a default and a secret: each is named with
    // the command that sets it (the setting with a default is not).
    let out = neo.ok(&["publish", project, "-m", "first"]).await;
    assert!(out.contains("deployed to dev"), "{out}");
    assert!(
        out.contains("shop on dev will not start until the stage has what its build needs"),
        "{out}"
    );
    assert!(
        out.contains("neo settings set shop --stage dev region=VALUE"),
        "{out}"
    );
    assert!(
        out.contains("neo secrets set shop --stage dev payment_api_key"),
        "{out}"
    );
    assert!(!out.contains("currency"), "{out}");

    // Set as told, the next publish lists nothing.
    neo.ok(&["settings", "set", "shop", "--stage", "dev", "region=eu"])
        .await;
    let secrets = tempfile::tempdir().unwrap();
    let value = secrets.path().join("key");
    std::fs::write(&value, "k-123").unwrap();
    neo.ok(&[
        "secrets",
        "set",
        "shop",
        "--stage",
        "dev",
        "payment_api_key",
        "--value-file",
        value.to_str().unwrap(),
    ])
    .await;
    let manifest = std::fs::read_to_string(dir.path().join("neo.toml")).unwrap();
    std::fs::write(
        dir.path().join("neo.toml"),
        manifest.replace(
            r#"fields = [{ name = "title", type = "text", required = true }]"#,
            r#"fields = [{ name = "title", type = "text", required = true }, { name = "note", type = "text" }]"#,
        ),
    )
    .unwrap();
    let out = neo
        .ok(&["publish", project, "-m", "second", "--wait", "0"])
        .await;
    assert!(out.contains("deployed to dev"), "{out}");
    assert!(!out.contains("will not start"), "{out}");
}
