//! Settings and secrets end to end with real servers and the real apphost: values set per
//! stage reach the replicas (settings through the app's `/api/_settings`, secrets in the
//! replica's environment), a change rolls a new release, a promotion is refused while the
//! target stage lacks what the build needs, stages never share values, and a known secret value
//! is found nowhere in clear: not in any stream or KV bucket, not in JetStream's files, not in
//! any Postgres table, not in a log line, not in an error. Deleting the tenant destroys its data
//! key.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use neo_gateway::api::{self, PublishStep};
use neo_protocol::{AppName, StageName, TenantName, pb};
use neo_tests::build_stack::step;
use neo_tests::eventually;
use neo_tests::gateway::req;
use neo_tests::runtime_stack::RuntimeStack;
use sqlx::Row as _;

const TENANT: &str = "acme";
const APP: &str = "shop";

/// Everything every component logs, at debug level, for the scan.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() -> Captured {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "debug,h2=info,hyper=info,hyper_util=info,tower=info,sqlx=warn,async_nats=info,rustls=info,reqwest=info,aws=info",
        ))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    captured
}

async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// An app that needs `currency` (no default) and secret `api_key`, and has `greeting`
/// with a default.
fn project(dir: &Path) {
    std::fs::write(
        dir.join("neo.toml"),
        r#"name = "shop"

[[entities]]
name = "Item"
fields = [{ name = "title", type = "text", required = true }]

[[settings]]
name = "currency"

[[settings]]
name = "greeting"
default = "hello"

[[secrets]]
name = "api_key"
"#,
    )
    .unwrap();
}

fn settings_client(
    stack: &RuntimeStack,
    token: &str,
) -> api::settings_client::SettingsClient<neo_tests::gateway::Authed> {
    stack.build.stack.settings(token)
}

async fn change(
    stack: &RuntimeStack,
    token: &str,
    stage: &str,
    set: &[(&str, &str)],
) -> api::StageSettings {
    settings_client(stack, token)
        .change_settings(api::ChangeSettingsRequest {
            tenant: TENANT.into(),
            app: APP.into(),
            stage: stage.into(),
            set: set
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            unset: vec![],
        })
        .await
        .unwrap()
        .into_inner()
}

async fn set_secret(
    stack: &RuntimeStack,
    token: &str,
    stage: &str,
    name: &str,
    value: &str,
) -> Result<api::StageSettings, tonic::Status> {
    settings_client(stack, token)
        .set_secret(api::SetSecretRequest {
            tenant: TENANT.into(),
            app: APP.into(),
            stage: stage.into(),
            name: name.into(),
            value: value.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn deployment(stack: &RuntimeStack, token: &str, stage: &str) -> pb::DeploymentState {
    stack
        .build
        .stack
        .deployments(token)
        .get_deployment(req::get_deployment(TENANT, APP, stage))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap()
}

async fn succeeded(stack: &RuntimeStack, token: &str, stage: &str, number: u32) -> pb::Release {
    eventually(Duration::from_secs(60), "the rollout", || async {
        let state = deployment(stack, token, stage).await;
        let release = state.releases.into_iter().find(|r| r.number == number)?;
        assert_ne!(
            release.rollout(),
            pb::RolloutStatus::Failed,
            "release {number} on {stage} failed: {}",
            release.rollout_reason
        );
        (release.rollout() == pb::RolloutStatus::Succeeded).then_some(release)
    })
    .await
}

/// The app's settings as its replicas report them (`GET /api/_settings`).
async fn served_settings(stack: &RuntimeStack, stage: &str) -> serde_json::Value {
    let url = stack.url(stage, TENANT, APP).unwrap();
    let (status, body) = get(&format!("{url}/api/_settings")).await.unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["settings"].clone()
}

/// Whether the stage's replicas of the app run, each with `NEO_SECRET_API_KEY={value}` in its
/// environment.
async fn replicas_have_api_key(stack: &RuntimeStack, stage: &str, value: &str) -> bool {
    let key = neo_runtime_agent::driver::PodgroupKey {
        tenant: TENANT.into(),
        app: APP.into(),
        stage: stage.into(),
    };
    let pids = stack.stages.get(stage).unwrap().driver.pids(&key).await;
    let wanted = format!("NEO_SECRET_API_KEY={value}");
    let environments: Vec<String> = pids
        .iter()
        .filter_map(|pid| std::fs::read(format!("/proc/{pid}/environ")).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', "\n"))
        .collect();
    !environments.is_empty()
        && environments
            .iter()
            .all(|e| e.lines().any(|line| line == wanted))
}

/// Publishes the app (`project`) to dev and waits for its release 1 to roll out.
async fn publish_shop(stack: &RuntimeStack, token: &str) {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path());
    let progress = stack
        .build
        .publish(token, TENANT, dir.path())
        .await
        .unwrap();
    step(&progress, PublishStep::Deployed).unwrap_or_else(|| panic!("not deployed: {progress:#?}"));
    succeeded(stack, token, "dev", 1).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every message (payload and headers) of every stream, KV buckets included.
async fn scan_streams(client: &async_nats::Client, needle: &[u8]) -> usize {
    let js = async_nats::jetstream::new(client.clone());
    let mut names = js.stream_names();
    let mut scanned = 0;
    while let Some(name) = names.next().await {
        let name = name.unwrap();
        let mut stream = js.get_stream(&name).await.unwrap();
        let info = stream.info().await.unwrap().state.clone();
        for sequence in info.first_sequence..=info.last_sequence {
            let Ok(message) = stream.get_raw_message(sequence).await else {
                continue; // deleted or purged
            };
            assert!(
                !contains(&message.payload, needle),
                "stream {name} message {sequence} holds the secret in clear"
            );
            assert!(
                !contains(format!("{:?}", message.headers).as_bytes(), needle),
                "stream {name} message {sequence}'s headers hold the secret"
            );
            scanned += 1;
        }
    }
    scanned
}

/// Every file under `dir`.
fn scan_files(dir: &Path, needle: &[u8]) -> usize {
    let mut scanned = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            scanned += scan_files(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !contains(&bytes, needle),
                "{} holds the secret in clear",
                path.display()
            );
            scanned += 1;
        }
    }
    scanned
}

/// Every row of every table of every database of the Postgres server.
async fn scan_postgres(stack: &RuntimeStack, needle: &str) -> usize {
    let postgres = &stack.build.postgres;
    let admin = sqlx::PgPool::connect(&postgres.url("postgres"))
        .await
        .unwrap();
    let databases: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE NOT datistemplate")
            .fetch_all(&admin)
            .await
            .unwrap();
    let mut rows = 0;
    for database in databases {
        let pool = sqlx::PgPool::connect(&postgres.url(&database))
            .await
            .unwrap();
        let tables = sqlx::query(
            "SELECT table_schema, table_name FROM information_schema.tables
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
               AND table_type = 'BASE TABLE'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        for table in tables {
            let (schema, name): (String, String) = (table.get(0), table.get(1));
            let dump: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM \"{schema}\".\"{name}\" t"))
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            for row in &dump {
                assert!(
                    !row.contains(needle),
                    "{database}.{schema}.{name} holds the secret"
                );
            }
            rows += dump.len();
        }
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_and_secrets_reach_the_replicas_per_stage_and_the_secret_is_nowhere_in_clear() {
    let logs = capture_logs();
    let stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let secret = format!("s3cret-{}", uuid::Uuid::new_v4().simple());

    // Set on dev before anything runs there: no release yet.
    let dev = change(&stack, &people.dave, "dev", &[("currency", "CHF")]).await;
    assert_eq!((dev.release, dev.settings["currency"].as_str()), (0, "CHF"));
    let dev = set_secret(&stack, &people.dave, "dev", "api_key", &secret)
        .await
        .unwrap();
    assert_eq!(dev.secrets.len(), 1);
    assert_eq!(
        (dev.secrets[0].name.as_str(), dev.secrets[0].version),
        ("api_key", 1)
    );
    assert_eq!(dev.secrets[0].changed_by, "dave");
    assert!(
        !format!("{dev:?}").contains(&secret),
        "a reply never holds the value"
    );

    // Published: release 1 runs with dev's values.
    publish_shop(&stack, &people.dave).await;
    let served = served_settings(&stack, "dev").await;
    assert_eq!(served["currency"], "CHF");
    assert_eq!(served["greeting"], "hello", "the model's default");
    assert!(
        !served.to_string().contains(&secret),
        "secrets are never served"
    );
    assert!(
        replicas_have_api_key(&stack, "dev", &secret).await,
        "the replica's environment has the secret"
    );

    // A setting changes: rolled out as release 2 of the same image.
    let dev = change(&stack, &people.dave, "dev", &[("currency", "EUR")]).await;
    assert_eq!(dev.release, 2);
    let release = succeeded(&stack, &people.dave, "dev", 2).await;
    assert_eq!(release.origin(), pb::ReleaseOrigin::Config);
    let state = deployment(&stack, &people.dave, "dev").await;
    assert_eq!(state.releases[0].image_digest, release.image_digest);
    eventually(Duration::from_secs(30), "EUR served", || async {
        (served_settings(&stack, "dev").await["currency"] == "EUR").then_some(())
    })
    .await;

    // Test has nothing: the promotion is refused, naming what is missing; the diff shows it.
    let refused = stack
        .build
        .stack
        .deployments(&people.otto)
        .promote(req::promote(TENANT, APP, "test"))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused.message().contains("setting currency")
            && refused.message().contains("secret api_key"),
        "{refused:?}"
    );
    let diff = settings_client(&stack, &people.vic)
        .diff_settings(api::DiffSettingsRequest {
            tenant: TENANT.into(),
            app: APP.into(),
            from_stage: "dev".into(),
            to_stage: "test".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let blocking: Vec<(&str, bool)> = diff
        .entries
        .iter()
        .filter(|e| e.blocks_promotion)
        .map(|e| (e.name.as_str(), e.secret))
        .collect();
    assert_eq!(blocking, vec![("currency", false), ("api_key", true)]);
    let impact = stack
        .build
        .stack
        .deployments(&people.otto)
        .impact(api::ImpactRequest {
            tenant: TENANT.into(),
            app: APP.into(),
            stage: "test".into(),
            revision: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(impact.blockers.len(), 2, "{impact:?}");

    // Test gets its own values; the promotion then runs with them, not dev's.
    change(&stack, &people.otto, "test", &[("currency", "USD")]).await;
    let test_secret = format!("test-{secret}");
    set_secret(&stack, &people.otto, "test", "api_key", &test_secret)
        .await
        .unwrap();
    stack
        .build
        .stack
        .deployments(&people.otto)
        .promote(req::promote(TENANT, APP, "test"))
        .await
        .unwrap();
    succeeded(&stack, &people.otto, "test", 1).await;
    assert_eq!(served_settings(&stack, "test").await["currency"], "USD");
    assert!(replicas_have_api_key(&stack, "test", &test_secret).await);

    // A new secret value on dev: version 2, a new release whose replicas have it.
    let rotated = format!("{secret}-2");
    let dev = set_secret(&stack, &people.dave, "dev", "api_key", &rotated)
        .await
        .unwrap();
    assert_eq!((dev.secrets[0].version, dev.release), (2, 3));
    succeeded(&stack, &people.dave, "dev", 3).await;
    eventually(
        Duration::from_secs(30),
        "the new value in the replicas",
        || async {
            replicas_have_api_key(&stack, "dev", &rotated)
                .await
                .then_some(())
        },
    )
    .await;

    // Errors never echo a value: a bad name, a viewer, an unknown stage.
    for (token, stage, name) in [
        (&people.dave, "dev", "Bad-Name"),
        (&people.vic, "dev", "api_key"),
        (&people.dave, "nowhere", "api_key"),
    ] {
        let e = set_secret(&stack, token, stage, name, &secret)
            .await
            .unwrap_err();
        assert!(!format!("{e:?}").contains(&secret), "{e:?}");
    }

    // The scan: streams and KV buckets, JetStream's files, Postgres, the agents' replica
    // output, every log line of every component.
    let client = stack.build.stack.core.connect().await.unwrap();
    for value in [&secret, &test_secret, &rotated] {
        let needle = value.as_bytes();
        assert!(scan_streams(&client, needle).await > 50);
        assert!(scan_files(&stack.build.stack.core.nats.store_dir(), needle) > 0);
        assert!(scan_postgres(&stack, value).await > 0);
        scan_files(stack.data.path(), needle);
        let logged = logs.0.lock().unwrap().clone();
        assert!(logged.len() > 10_000, "the components logged");
        assert!(
            !contains(&logged, needle),
            "a log line holds the secret in clear"
        );
    }

    // Deleting the tenant destroys its data key: its secrets are unreadable everywhere.
    let t = TenantName::new(TENANT).unwrap();
    let a = AppName::new(APP).unwrap();
    let s = StageName::new("dev").unwrap();
    assert_eq!(
        stack
            .build
            .stack
            .secrets
            .reveal(&t, &a, &s)
            .await
            .unwrap()
            .len(),
        1
    );
    stack
        .build
        .stack
        .tenants(&people.root)
        .delete_tenant(api::DeleteTenantRequest {
            tenant: TENANT.into(),
            reason: "closing".into(),
        })
        .await
        .unwrap();
    let gone = stack
        .build
        .stack
        .secrets
        .reveal(&t, &a, &s)
        .await
        .unwrap_err();
    assert!(
        matches!(
            gone,
            neo_secrets::SecretsError::DataKeyDestroyed { .. }
                | neo_secrets::SecretsError::NoDataKey { .. }
        ),
        "{gone}"
    );
    let fetched =
        neo_secrets::fetch_stage_secrets(&client, &s, &t, &a, Duration::from_secs(5)).await;
    assert!(fetched.is_err(), "the agents' requests get nothing either");
}

/// Under least privilege (TLS NATS, one user per component), the agent of dev gets its
/// secrets through the platform's responder and the release runs with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_agent_on_its_own_nats_user_gets_its_stages_secrets() {
    let stack = RuntimeStack::start_secured(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    let secret = format!("s3cret-{}", uuid::Uuid::new_v4().simple());
    change(&stack, &people.dave, "dev", &[("currency", "CHF")]).await;
    set_secret(&stack, &people.dave, "dev", "api_key", &secret)
        .await
        .unwrap();
    publish_shop(&stack, &people.dave).await;
    assert!(
        replicas_have_api_key(&stack, "dev", &secret).await,
        "the replica's environment has the secret"
    );
}
