//! The Kubernetes driver against an in-memory API server that speaks the real wire format.
//!
//! What is checked is what a cluster operator would look at: the objects as the API stored
//! them (against reviewed golden files under `tests/golden/kube/`; `UPDATE_GOLDEN=1` rewrites
//! them), how they were written, the health and log events, what `observe` and `remove` do.

mod apiserver;
mod canary;
mod isolation;
mod rbac;
mod scale_to_zero;
mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use apiserver::FakeApi;
use http::Method;
use k8s_openapi::api::core::v1::Secret;
use neo_protocol::pb;
use neo_runtime_agent::driver::kube::KubeDriver;
use neo_runtime_agent::driver::logline::now_ms;
use neo_runtime_agent::driver::{
    Desired, Driver, DriverError, DriverEvent, PodgroupKey, Rollout, SecretEnv,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const NAMESPACE: &str = "neo-acme-dev";
const DIGEST_3: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
const DIGEST_4: &str = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
/// The values of the fixture's secrets: none may appear outside the Secret.
const PAYMENT_API_KEY: &str = "pk_live_51Hq7uFAKEkeyForTests0000";
const DB_PASSWORD: &str = "correct horse battery staple";

fn key(app: &str) -> PodgroupKey {
    PodgroupKey {
        tenant: "acme".into(),
        app: app.into(),
        stage: "dev".into(),
    }
}

fn desired(app: &str, release: u32, digest: &str) -> Desired {
    Desired {
        key: key(app),
        release,
        image_digest: digest.into(),
        image_reference: format!("registry.neo.test/acme/{app}@{digest}"),
        replicas: 3,
        resources: pb::Resources {
            cpu_millis: 250,
            memory_mib: 512,
        },
        env: BTreeMap::from([
            ("SHOP_CURRENCY".to_owned(), "EUR".to_owned()),
            // The driver's own variables cannot be overridden.
            ("NEO_TENANT".to_owned(), "someone-else".to_owned()),
        ]),
        secrets: secrets(&[
            ("NEO_SECRET_PAYMENT_API_KEY", PAYMENT_API_KEY),
            ("NEO_SECRET_DB_PASSWORD", DB_PASSWORD),
        ]),
        secret_versions: versions(&[("db_password", 2), ("payment_api_key", 1)]),
        quota: Some(pb::Quota {
            max_apps: 10,
            max_replicas_per_app: 5,
        }),
        idle_to_zero_s: 0,
        canary: None,
    }
}

fn versions(entries: &[(&str, u32)]) -> BTreeMap<String, u32> {
    entries
        .iter()
        .map(|(name, version)| ((*name).to_owned(), *version))
        .collect()
}

fn secrets(entries: &[(&str, &str)]) -> SecretEnv {
    SecretEnv(
        entries
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    )
}

/// `desired` without secrets.
fn without_secrets(desired: Desired) -> Desired {
    Desired {
        secrets: SecretEnv::default(),
        secret_versions: BTreeMap::new(),
        ..desired
    }
}

/// A driver on a fresh fake cluster, and its event channel.
fn setup() -> (FakeApi, KubeDriver, mpsc::Receiver<DriverEvent>) {
    let api = FakeApi::new();
    let (tx, rx) = mpsc::channel(256);
    let driver = KubeDriver::new(api.client(), tx);
    (api, driver, rx)
}

/// The object without the fields the API server sets.
fn normalised(mut object: Value) -> Value {
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "managedFields",
        ] {
            meta.remove(field);
        }
    }
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    object
}

/// Compares `actual` with `tests/golden/kube/{name}.json` (or rewrites it with `UPDATE_GOLDEN=1`).
fn assert_golden(name: &str, actual: &Value) {
    let path = PathBuf::from(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("tests/golden/kube")
    .join(format!("{name}.json"));
    let text = format!("{}\n", serde_json::to_string_pretty(actual).expect("JSON"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("golden dir");
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    let expected: Value = serde_json::from_str(&expected).expect("golden JSON");
    assert_eq!(
        &expected,
        actual,
        "{name} differs from {}:\n{text}",
        path.display()
    );
}

/// The JSON paths at which `a` and `b` differ.
fn differences(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (p, q) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differences(p, q, &format!("{at}/{k}"), out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(p, q, &format!("{at}/{i}"), out);
            }
        }
        _ if a != b => out.push(at.to_owned()),
        _ => {}
    }
}

fn stored(api: &FakeApi, resource: &str, name: &str) -> Value {
    api.object(resource, NAMESPACE, name)
        .unwrap_or_else(|| panic!("no {resource} {name}"))
}

#[tokio::test]
async fn apply_writes_reviewed_objects_by_server_side_apply() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");

    let namespace = api
        .object("namespaces", "", NAMESPACE)
        .expect("the namespace");
    assert_golden("namespace", &normalised(namespace));
    assert_golden(
        "deployment",
        &normalised(stored(&api, "deployments", "shop")),
    );
    assert_golden("service", &normalised(stored(&api, "services", "shop")));
    assert_golden(
        "poddisruptionbudget",
        &normalised(stored(&api, "poddisruptionbudgets", "shop")),
    );
    assert_golden(
        "secret",
        &normalised(stored(&api, "secrets", "shop-secrets")),
    );
    assert_golden(
        "networkpolicy",
        &normalised(stored(&api, "networkpolicies", "neo-ingress")),
    );
    assert_golden(
        "resourcequota",
        &normalised(stored(&api, "resourcequotas", "neo-quota")),
    );
    assert_golden(
        "limitrange",
        &normalised(stored(&api, "limitranges", "neo-limits")),
    );

    // Every write is a server-side apply by the agent's field manager, forcing conflicts.
    let writes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    let paths: Vec<&str> = writes.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/neo-acme-dev",
            "/apis/networking.k8s.io/v1/namespaces/neo-acme-dev/networkpolicies/neo-ingress",
            "/api/v1/namespaces/neo-acme-dev/limitranges/neo-limits",
            "/api/v1/namespaces/neo-acme-dev/resourcequotas/neo-quota",
            // The Secret first: the Deployment's pods read it.
            "/api/v1/namespaces/neo-acme-dev/secrets/shop-secrets",
            "/apis/apps/v1/namespaces/neo-acme-dev/deployments/shop",
            "/api/v1/namespaces/neo-acme-dev/services/shop",
            "/apis/policy/v1/namespaces/neo-acme-dev/poddisruptionbudgets/shop",
        ]
    );
    for write in &writes {
        assert_eq!(write.method, "PATCH", "{}", write.path);
        assert_eq!(
            write.content_type.as_deref(),
            Some("application/apply-patch+yaml"),
            "{}",
            write.path
        );
        assert_eq!(
            write.query.get("fieldManager").map(String::as_str),
            Some("neo-runtime-agent")
        );
        assert_eq!(write.query.get("force").map(String::as_str), Some("true"));
    }
}

#[tokio::test]
async fn applying_twice_changes_nothing_and_a_new_release_changes_image_and_label_only() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");
    let objects = ["deployments", "services", "poddisruptionbudgets"];
    let before: Vec<Value> = objects.iter().map(|r| stored(&api, r, "shop")).collect();
    let secret = stored(&api, "secrets", "shop-secrets");

    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply again");
    let again: Vec<Value> = objects.iter().map(|r| stored(&api, r, "shop")).collect();
    assert_eq!(before, again, "a repeated apply must not change any object");
    assert_eq!(secret, stored(&api, "secrets", "shop-secrets"));

    driver
        .apply(&desired("shop", 4, DIGEST_4))
        .await
        .expect("apply release 4");
    let deployment = stored(&api, "deployments", "shop");
    let mut changed = Vec::new();
    differences(
        &normalised(before[0].clone()),
        &normalised(deployment.clone()),
        "",
        &mut changed,
    );
    assert_eq!(
        changed,
        [
            "/metadata/labels/dev.neo~1release".replace("~1", "/"),
            "/spec/template/metadata/labels/dev.neo~1release".replace("~1", "/"),
            "/spec/template/spec/containers/0/image".to_owned(),
        ]
    );
    assert_eq!(deployment["metadata"]["labels"]["dev.neo/release"], "4");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.neo.test/acme/shop@{DIGEST_4}")
    );
    assert_eq!(deployment["metadata"]["generation"], 2);
    // The Service, PDB and Secret do not carry the release: they are untouched.
    assert_eq!(before[1], stored(&api, "services", "shop"));
    assert_eq!(before[2], stored(&api, "poddisruptionbudgets", "shop"));
    assert_eq!(secret, stored(&api, "secrets", "shop-secrets"));
}

#[tokio::test]
async fn api_errors_and_foreign_namespaces_are_backend_errors() {
    let (api, driver, _events) = setup();
    api.fail_next(
        Method::PATCH,
        "deployments",
        403,
        "deployments.apps \"shop\" is forbidden: exceeded quota: compute",
    );
    let err = driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect_err("the API refused");
    let DriverError::Backend(message) = err else {
        panic!("not a backend error: {err:?}");
    };
    assert!(
        message.contains("exceeded quota: compute") && message.contains("403"),
        "{message}"
    );

    // `a-b`/`c` and `a`/`b-c` would share `neo-a-b-c`: the second is refused.
    let first = Desired {
        key: PodgroupKey {
            tenant: "a-b".into(),
            app: "shop".into(),
            stage: "c".into(),
        },
        ..desired("shop", 1, DIGEST_3)
    };
    driver.apply(&first).await.expect("first owner");
    let second = Desired {
        key: PodgroupKey {
            tenant: "a".into(),
            app: "blog".into(),
            stage: "b-c".into(),
        },
        ..desired("blog", 1, DIGEST_3)
    };
    let err = driver
        .apply(&second)
        .await
        .expect_err("namespace of another tenant");
    assert!(err.to_string().contains("belongs to tenant a-b"), "{err}");
    assert!(api.object("deployments", "neo-a-b-c", "blog").is_none());
}

/// The values of a stored Secret, decoded.
fn secret_values(api: &FakeApi, name: &str) -> BTreeMap<String, String> {
    let secret: Secret =
        serde_json::from_value(stored(api, "secrets", name)).expect("a Secret as the API has it");
    secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, String::from_utf8(value.0).expect("UTF-8")))
        .collect()
}

/// The container's env entries by name.
fn container_env(deployment: &Value) -> BTreeMap<String, Value> {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("an env list")
        .iter()
        .map(|entry| {
            let name = entry["name"].as_str().expect("a name").to_owned();
            (name, entry.clone())
        })
        .collect()
}

fn secret_versions(deployment: &Value) -> Option<String> {
    deployment["spec"]["template"]["metadata"]["annotations"]["dev.neo/secret-versions"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test]
async fn secrets_go_to_a_secret_that_the_deployment_only_refers_to() {
    let (api, driver, _events) = setup();
    let mut desired = desired("shop", 3, DIGEST_3);
    // A setting of a secret's name: the secret wins (one entry, by reference).
    desired
        .env
        .insert("NEO_SECRET_DB_PASSWORD".to_owned(), "stale".to_owned());
    driver.apply(&desired).await.expect("apply");

    let secret = stored(&api, "secrets", "shop-secrets");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "neo"
    );
    assert_eq!(
        secret_values(&api, "shop-secrets"),
        BTreeMap::from([
            ("NEO_SECRET_DB_PASSWORD".to_owned(), DB_PASSWORD.to_owned()),
            (
                "NEO_SECRET_PAYMENT_API_KEY".to_owned(),
                PAYMENT_API_KEY.to_owned()
            ),
        ])
    );

    let deployment = stored(&api, "deployments", "shop");
    let env = container_env(&deployment);
    for name in ["NEO_SECRET_DB_PASSWORD", "NEO_SECRET_PAYMENT_API_KEY"] {
        assert_eq!(
            env[name],
            json!({"name": name, "valueFrom": {"secretKeyRef": {"name": "shop-secrets", "key": name}}}),
        );
    }
    let names: Vec<&str> = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("an env list")
        .iter()
        .filter_map(|entry| entry["name"].as_str())
        .collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| **n == "NEO_SECRET_DB_PASSWORD")
            .count(),
        1,
        "{names:?}"
    );
    let text = deployment.to_string();
    for value in [PAYMENT_API_KEY, DB_PASSWORD, "stale"] {
        assert!(
            !text.contains(value),
            "a secret value in the Deployment: {text}"
        );
    }
    // The pod template names the versions only (nothing to test a guessed value against).
    assert_eq!(
        secret_versions(&deployment).as_deref(),
        Some("db_password=2,payment_api_key=1")
    );
}

#[tokio::test]
async fn a_new_secret_version_rolls_the_pods_without_a_new_release() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");
    let before = stored(&api, "deployments", "shop");
    let first = secret_versions(&before).expect("secret versions");

    // Same release, one value rotated: a new version of it.
    let rotated = Desired {
        secrets: secrets(&[
            ("NEO_SECRET_PAYMENT_API_KEY", "pk_live_rotated"),
            ("NEO_SECRET_DB_PASSWORD", DB_PASSWORD),
        ]),
        secret_versions: versions(&[("db_password", 2), ("payment_api_key", 2)]),
        ..desired("shop", 3, DIGEST_3)
    };
    driver.apply(&rotated).await.expect("apply rotated");
    assert_eq!(
        secret_values(&api, "shop-secrets")["NEO_SECRET_PAYMENT_API_KEY"],
        "pk_live_rotated"
    );
    let after = stored(&api, "deployments", "shop");
    let mut changed = Vec::new();
    differences(
        &normalised(before.clone()),
        &normalised(after.clone()),
        "",
        &mut changed,
    );
    // Only the template's annotation: a new pod template, so the pods roll.
    assert_eq!(
        changed,
        ["/spec/template/metadata/annotations/dev.neo/secret-versions"]
    );
    assert_eq!(
        secret_versions(&after).as_deref(),
        Some("db_password=2,payment_api_key=2")
    );
    assert_eq!(after["metadata"]["generation"], 2);

    // Back to the first versions (a rollback): back to the first pod template.
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply the first values");
    assert_eq!(
        secret_versions(&stored(&api, "deployments", "shop")),
        Some(first)
    );

    // A secret dropped: gone from the Secret and from the env.
    let fewer = Desired {
        secrets: secrets(&[("NEO_SECRET_DB_PASSWORD", DB_PASSWORD)]),
        secret_versions: versions(&[("db_password", 2)]),
        ..desired("shop", 3, DIGEST_3)
    };
    driver.apply(&fewer).await.expect("apply fewer secrets");
    let keys: Vec<String> = secret_values(&api, "shop-secrets").into_keys().collect();
    assert_eq!(keys, ["NEO_SECRET_DB_PASSWORD"]);
    assert!(
        !container_env(&stored(&api, "deployments", "shop"))
            .contains_key("NEO_SECRET_PAYMENT_API_KEY")
    );
}

#[tokio::test]
async fn without_secrets_there_is_no_secret_and_a_leftover_one_is_deleted() {
    let (api, driver, _events) = setup();
    driver
        .apply(&without_secrets(desired("shop", 3, DIGEST_3)))
        .await
        .expect("apply");
    assert!(api.names("secrets", NAMESPACE).is_empty());
    let deployment = stored(&api, "deployments", "shop");
    assert_eq!(secret_versions(&deployment), None);
    assert!(
        !deployment.to_string().contains("secretKeyRef"),
        "{deployment}"
    );
    // Nothing written for a Secret that never was: a read only.
    let secret_requests: Vec<String> = api
        .requests()
        .iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        secret_requests,
        ["GET /api/v1/namespaces/neo-acme-dev/secrets/shop-secrets"]
    );

    // Release 4 has secrets, release 5 none any more: its Secret goes, after the Deployment
    // stopped reading it.
    driver
        .apply(&desired("shop", 4, DIGEST_4))
        .await
        .expect("apply release 4");
    assert_eq!(api.names("secrets", NAMESPACE), ["shop-secrets"]);
    let before = api.requests().len();
    driver
        .apply(&without_secrets(desired("shop", 5, DIGEST_4)))
        .await
        .expect("apply release 5");
    let writes: Vec<String> = api.requests()[before..]
        .iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        writes,
        [
            "PATCH /api/v1/namespaces/neo-acme-dev",
            "PATCH /apis/networking.k8s.io/v1/namespaces/neo-acme-dev/networkpolicies/neo-ingress",
            "PATCH /api/v1/namespaces/neo-acme-dev/limitranges/neo-limits",
            "PATCH /api/v1/namespaces/neo-acme-dev/resourcequotas/neo-quota",
            "PATCH /apis/apps/v1/namespaces/neo-acme-dev/deployments/shop",
            "PATCH /api/v1/namespaces/neo-acme-dev/services/shop",
            "PATCH /apis/policy/v1/namespaces/neo-acme-dev/poddisruptionbudgets/shop",
            "DELETE /api/v1/namespaces/neo-acme-dev/secrets/shop-secrets",
        ]
    );
    assert!(api.names("secrets", NAMESPACE).is_empty());
    let deployment = stored(&api, "deployments", "shop");
    assert_eq!(secret_versions(&deployment), None);
    assert!(!container_env(&deployment).contains_key("NEO_SECRET_DB_PASSWORD"));
}

#[tokio::test]
async fn a_secret_name_that_cannot_be_a_secret_key_is_refused_without_its_value() {
    let (api, driver, _events) = setup();
    let bad = Desired {
        secrets: secrets(&[("NEO SECRET/KEY", PAYMENT_API_KEY)]),
        ..desired("shop", 3, DIGEST_3)
    };
    let err = driver.apply(&bad).await.expect_err("an invalid key");
    let message = err.to_string();
    assert!(message.contains("NEO SECRET/KEY"), "{message}");
    assert!(!message.contains(PAYMENT_API_KEY), "{message}");
    assert!(!format!("{bad:?}").contains(PAYMENT_API_KEY));
    assert!(api.requests().is_empty(), "nothing is sent");
}

/// A pod of release 3 of `shop`, as the ReplicaSet controller would create it.
fn pod(name: &str, status: Value) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "labels": {
                "app.kubernetes.io/managed-by": "neo",
                "app.kubernetes.io/name": "shop",
                "dev.neo/tenant": "acme",
                "dev.neo/stage": "dev",
                "dev.neo/app": "shop",
                "dev.neo/release": "3",
                "pod-template-hash": "7d9c5f",
            },
        },
        "spec": {"containers": [{"name": "app", "image": format!("registry.neo.test/acme/shop@{DIGEST_3}")}]},
        "status": status,
    })
}

/// A running pod's status: `ready`, its Ready condition last changed at `ready_changed`, the
/// container started at 12:00:10.
fn running(ready: bool, ready_changed: &str, ip: &str) -> Value {
    json!({
        "phase": "Running",
        "podIP": ip,
        "startTime": "2026-05-01T12:00:00Z",
        "conditions": [{
            "type": "Ready",
            "status": if ready { "True" } else { "False" },
            "lastTransitionTime": ready_changed,
        }],
        "containerStatuses": [{
            "name": "app", "image": "", "imageID": "", "ready": ready, "restartCount": 0,
            "state": {"running": {"startedAt": "2026-05-01T12:00:10Z"}},
        }],
    })
}

/// The next health event, skipping log events.
async fn next_health(events: &mut mpsc::Receiver<DriverEvent>) -> (PodgroupKey, pb::ReplicaStatus) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a health event in time")
            .expect("the channel is open");
        if let DriverEvent::Health { key, replica } = event {
            return (key, replica);
        }
    }
}

fn phase(replica: &pb::ReplicaStatus) -> pb::ReplicaPhase {
    pb::ReplicaPhase::try_from(replica.phase).expect("a known phase")
}

#[tokio::test]
async fn pod_status_changes_become_health_events() {
    let (api, driver, mut events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");
    let _watching = driver.start_watching();
    let pod_name = "shop-7d9c5f-x2k4q";

    // Scheduled and running, not ready yet (Ready=False since before the container started).
    api.put(
        "pods",
        pod(pod_name, running(false, "2026-05-01T12:00:00Z", "10.1.0.7")),
    );
    let (key, replica) = next_health(&mut events).await;
    assert_eq!(key, self::key("shop"));
    assert_eq!(replica.id, pod_name);
    assert_eq!(phase(&replica), pb::ReplicaPhase::Starting);
    assert_eq!(replica.release, 3);
    assert_eq!(replica.image_digest, DIGEST_3);
    assert_eq!(replica.address, "10.1.0.7");

    // The readiness probe passes.
    api.set_status(
        "pods",
        NAMESPACE,
        pod_name,
        running(true, "2026-05-01T12:00:20Z", "10.1.0.7"),
    );
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Ready);
    assert_eq!(replica.reason, "");

    // It stops answering /readyz after having been ready.
    api.set_status(
        "pods",
        NAMESPACE,
        pod_name,
        running(false, "2026-05-01T12:05:00Z", "10.1.0.7"),
    );
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Unhealthy);
    assert_eq!(replica.reason, "NotReady");

    // It crashes at every start.
    api.set_status(
        "pods",
        NAMESPACE,
        pod_name,
        json!({
            "phase": "Running",
            "podIP": "10.1.0.7",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-05-01T12:06:00Z"}],
            "containerStatuses": [{
                "name": "app", "image": "", "imageID": "", "ready": false, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s restarting failed container"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }],
        }),
    );
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Failed);
    assert_eq!(replica.reason, "CrashLoopBackOff");

    // The ReplicaSet controller deletes it.
    api.remove("pods", NAMESPACE, pod_name);
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Stopped);
    assert_eq!(replica.id, pod_name);
}

/// An apphost's `/readyz` on loopback: each connection gets the answer `answers` holds then
/// (`(status, body)`).
async fn readyz(answers: std::sync::Arc<std::sync::Mutex<(u16, String)>>) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (status, body) = answers.lock().expect("answers").clone();
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
        }
    });
    port
}

#[tokio::test]
async fn a_starting_pod_says_why_it_is_not_ready() {
    let answers = std::sync::Arc::new(std::sync::Mutex::new((
        503,
        r#"{"ready":false,"reasons":["secret payment_api_key is not set"]}"#.to_owned(),
    )));
    let port = readyz(answers.clone()).await;
    let api = FakeApi::new();
    let (tx, mut events) = mpsc::channel(256);
    let driver = KubeDriver::new(api.client(), tx).with_pod_port(port);
    let _watching = driver.start_watching();
    let pod_name = "shop-7d9c5f-w8d2m";

    // Running, not ready yet: first what its status says, then what its apphost answers.
    api.put(
        "pods",
        pod(
            pod_name,
            running(false, "2026-05-01T12:00:00Z", "127.0.0.1"),
        ),
    );
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Starting);
    assert_eq!(replica.reason, "");
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Starting);
    assert_eq!(
        replica.reason,
        "not ready: /readyz answered 503: secret payment_api_key is not set"
    );

    // The secret is set: the next answer is ready, and the probe passes.
    *answers.lock().expect("answers") = (200, r#"{"ready":true,"reasons":[]}"#.to_owned());
    api.set_status(
        "pods",
        NAMESPACE,
        pod_name,
        running(true, "2026-05-01T12:00:20Z", "127.0.0.1"),
    );
    let (_, replica) = next_health(&mut events).await;
    assert_eq!(phase(&replica), pb::ReplicaPhase::Ready);
    assert_eq!(replica.reason, "");
}

#[tokio::test]
async fn observe_reports_replicas_and_the_rollout() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");

    // Nothing observed by the controller yet.
    let observed = driver.observe().await.expect("observe");
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].key, key("shop"));
    assert_eq!(observed[0].release, 3);
    assert_eq!(observed[0].rollout, Rollout::Progressing);
    assert!(observed[0].replicas.is_empty());

    for (i, name) in [
        "shop-7d9c5f-aaaaa",
        "shop-7d9c5f-bbbbb",
        "shop-7d9c5f-ccccc",
    ]
    .iter()
    .enumerate()
    {
        api.put(
            "pods",
            pod(
                name,
                running(true, "2026-05-01T12:00:20Z", &format!("10.1.0.{i}")),
            ),
        );
    }
    api.set_status(
        "deployments",
        NAMESPACE,
        "shop",
        json!({
            "observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable", "message": "ReplicaSet \"shop-7d9c5f\" has successfully progressed."},
            ],
        }),
    );
    let observed = driver.observe().await.expect("observe");
    assert_eq!(observed[0].rollout, Rollout::Succeeded);
    let replicas: Vec<(&str, pb::ReplicaPhase, &str)> = observed[0]
        .replicas
        .iter()
        .map(|r| (r.id.as_str(), phase(r), r.address.as_str()))
        .collect();
    assert_eq!(
        replicas,
        [
            ("shop-7d9c5f-aaaaa", pb::ReplicaPhase::Ready, "10.1.0.0"),
            ("shop-7d9c5f-bbbbb", pb::ReplicaPhase::Ready, "10.1.0.1"),
            ("shop-7d9c5f-ccccc", pb::ReplicaPhase::Ready, "10.1.0.2"),
        ]
    );

    // Release 4: the controller has not seen the new generation, so the old status says nothing.
    driver
        .apply(&desired("shop", 4, DIGEST_4))
        .await
        .expect("apply release 4");
    let observed = driver.observe().await.expect("observe");
    assert_eq!(observed[0].release, 4);
    assert_eq!(observed[0].rollout, Rollout::Progressing);

    // Its pods crash; the progress deadline passes.
    api.set_status(
        "deployments",
        NAMESPACE,
        "shop",
        json!({
            "observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3, "unavailableReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet \"shop-6f7b8c\" has timed out progressing."},
            ],
        }),
    );
    let observed = driver.observe().await.expect("observe");
    assert_eq!(
        observed[0].rollout,
        Rollout::Failed(
            "ProgressDeadlineExceeded: ReplicaSet \"shop-6f7b8c\" has timed out progressing."
                .into()
        )
    );
}

#[tokio::test]
async fn remove_deletes_exactly_what_apply_created() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply shop");
    driver
        .apply(&desired("blog", 1, DIGEST_3))
        .await
        .expect("apply blog");
    api.put(
        "configmaps",
        json!({"metadata": {"name": "shop", "namespace": NAMESPACE}, "data": {"owner": "someone else"}}),
    );
    let before = api.requests().len();

    driver.remove(&key("shop")).await.expect("remove");

    let deletes: Vec<String> = api.requests()[before..]
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        deletes,
        [
            // Whether it runs a canary (none): a read, by labels.
            "GET /apis/apps/v1/namespaces/neo-acme-dev/deployments",
            "DELETE /apis/apps/v1/namespaces/neo-acme-dev/deployments/shop",
            "DELETE /api/v1/namespaces/neo-acme-dev/services/shop",
            "DELETE /apis/policy/v1/namespaces/neo-acme-dev/poddisruptionbudgets/shop",
            "DELETE /api/v1/namespaces/neo-acme-dev/secrets/shop-secrets",
        ]
    );
    assert_eq!(api.names("deployments", NAMESPACE), ["blog"]);
    assert_eq!(api.names("secrets", NAMESPACE), ["blog-secrets"]);
    assert_eq!(api.names("services", NAMESPACE), ["blog"]);
    assert_eq!(api.names("poddisruptionbudgets", NAMESPACE), ["blog"]);
    assert_eq!(api.names("configmaps", NAMESPACE), ["shop"]);
    assert!(api.object("namespaces", "", NAMESPACE).is_some());

    // Removing again: everything is already gone, which is fine.
    driver.remove(&key("shop")).await.expect("remove again");
    let observed = driver.observe().await.expect("observe");
    let apps: Vec<&str> = observed.iter().map(|o| o.key.app.as_str()).collect();
    assert_eq!(apps, ["blog"]);
}

#[tokio::test]
async fn pod_logs_become_log_events_with_their_level() {
    let (api, driver, mut events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");
    let pod_name = "shop-7d9c5f-x2k4q";
    api.put(
        "pods",
        pod(pod_name, running(true, "2026-05-01T12:00:20Z", "10.1.0.7")),
    );
    // Written before the driver follows the log, and after.
    api.append_log(
        NAMESPACE,
        pod_name,
        r#"{"timestamp":"2026-05-01T12:00:11.500Z","level":"INFO","target":"apphost","message":"listening on 0.0.0.0:8080"}"#,
    );
    let _watching = driver.start_watching();
    let start = now_ms();
    tokio::time::sleep(Duration::from_millis(200)).await;
    api.append_log(
        NAMESPACE,
        pod_name,
        r#"{"timestamp":"2026-05-01T12:00:12.000Z","level":"WARN","message":"slow query","ms":812}"#,
    );
    api.append_log(
        NAMESPACE,
        pod_name,
        r#"{"level":"ERROR","message":"database unreachable"}"#,
    );
    api.append_log(NAMESPACE, pod_name, "panicked at src/main.rs:10: boom");

    let mut lines: Vec<pb::LogLine> = Vec::new();
    while lines.len() < 4 {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("log lines in time")
            .expect("the channel is open");
        if let DriverEvent::Logs(batch) = event {
            lines.extend(batch);
        }
    }
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in &lines {
        assert_eq!(
            (
                line.tenant.as_str(),
                line.app.as_str(),
                line.stage.as_str(),
                line.replica.as_str()
            ),
            ("acme", "shop", "dev", pod_name)
        );
        assert_eq!(line.stream, "stdout");
    }
    let levels: Vec<pb::LogLevel> = lines
        .iter()
        .map(|l| pb::LogLevel::try_from(l.level).expect("a known level"))
        .collect();
    assert_eq!(
        levels,
        [
            pb::LogLevel::Info,
            pb::LogLevel::Warn,
            pb::LogLevel::Error,
            pb::LogLevel::Info
        ]
    );
    assert_eq!(lines[0].at_ms, 1_777_636_811_500);
    assert_eq!(lines[1].at_ms, 1_777_636_812_000);
    // Without a timestamp, the time it was read.
    assert!(lines[2].at_ms >= start && lines[3].at_ms >= start);
    assert_eq!(lines[3].text, "panicked at src/main.rs:10: boom");
}

#[tokio::test]
async fn from_kubeconfig_builds_a_tls_client_from_the_file() {
    let path = std::env::temp_dir().join(format!("neo-kube-driver-{}.yaml", std::process::id()));
    // Nothing listens on port 1 of loopback: the client is built, the request fails.
    std::fs::write(
        &path,
        "apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:1
    insecure-skip-tls-verify: true
users:
- name: agent
  user:
    token: not-a-real-token
contexts:
- name: local
  context:
    cluster: local
    user: agent
    namespace: neo-system
current-context: local
",
    )
    .expect("write kubeconfig");
    let (tx, _rx) = mpsc::channel(1);
    let driver = KubeDriver::from_kubeconfig(Some(&path), tx).await;
    let _ = std::fs::remove_file(&path);
    let driver = driver.expect("a driver from the kubeconfig");
    assert_eq!(driver.client().default_namespace(), "neo-system");
    let err = driver.observe().await.expect_err("no API server there");
    assert!(
        matches!(&err, DriverError::Backend(m) if m.starts_with("list Deployments: ")),
        "{err:?}"
    );

    let (tx, _rx) = mpsc::channel(1);
    let missing = std::env::temp_dir().join("neo-kube-driver-missing.yaml");
    let err = KubeDriver::from_kubeconfig(Some(&missing), tx)
        .await
        .expect_err("no such file");
    assert!(err.to_string().starts_with("kubeconfig: "), "{err}");
}
