//! The agents' RBAC in `deploy/agent-rbac.yaml` grants exactly what the kube driver uses: the
//! driver runs a podgroup's whole life (apply, a new release, secrets dropped, a canary started
//! and ended, at zero replicas behind the activator and woken, the pod watch and its logs,
//! observe, remove, purge) against the in-memory API server, and the (API group,
//! resource, verb) of every request it sent must be what the ClusterRole's rules allow, each
//! rule used.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use http::Method;
use neo_runtime_agent::driver::{Driver, DriverEvent};
use serde_json::Value;

use crate::apiserver::Recorded;
use crate::wire::parse_target;
use crate::{DIGEST_3, DIGEST_4, NAMESPACE, desired, key, pod, running, without_secrets};

/// `(API group, resource or resource/subresource, verb)`, as RBAC names a permission.
type Permission = (String, String, String);

/// The permissions the API server checks for `request`: its verb from the method and path,
/// and `create` too for a server-side apply that created the object.
fn permissions(request: &Recorded) -> Vec<Permission> {
    let target =
        parse_target(&request.path).unwrap_or_else(|| panic!("a resource path: {}", request.path));
    let segments: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let group = match segments.as_slice() {
        ["apis", group, ..] => (*group).to_owned(),
        _ => String::new(),
    };
    let resource = match &target.subresource {
        Some(sub) => format!("{}/{sub}", target.resource),
        None => target.resource.clone(),
    };
    let watching = request
        .query
        .get("watch")
        .is_some_and(|w| w == "true" || w == "1");
    let verbs: &[&str] = match (request.method.as_str(), target.name.is_some()) {
        ("GET", true) => &["get"],
        ("GET", false) if watching => &["watch"],
        ("GET", false) => &["list"],
        ("PATCH", _) if request.created => &["patch", "create"],
        ("PATCH", _) => &["patch"],
        ("DELETE", true) => &["delete"],
        ("DELETE", false) => &["deletecollection"],
        ("POST", _) => &["create"],
        ("PUT", _) => &["update"],
        (other, _) => panic!("an unexpected method {other} on {}", request.path),
    };
    verbs
        .iter()
        .map(|verb| (group.clone(), resource.clone(), (*verb).to_owned()))
        .collect()
}

/// The Python of the tools' venv (`ops/install-deps`), which has PyYAML (kubernetes-validate
/// needs it): the repository has no YAML crate.
fn python() -> PathBuf {
    let tools = std::env::var_os("NEO_TOOLS").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/neo-tools"),
        PathBuf::from,
    );
    tools.join("venv/bin/python")
}

/// The documents of a YAML file, as JSON.
fn yaml_documents(path: &std::path::Path) -> Vec<Value> {
    let python = python();
    let output = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml\n\
             print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d]))",
        ])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (ops/install-deps makes it)", python.display()));
    assert!(
        output.status.success(),
        "{}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON from PyYAML")
}

fn rbac_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/agent-rbac.yaml")
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// What the ClusterRole's rules grant, one permission each; no wildcard, resource name or
/// non-resource URL.
fn granted(role: &Value) -> BTreeSet<Permission> {
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for field in ["resourceNames", "nonResourceURLs"] {
            assert!(rule.get(field).is_none(), "{field} in {rule}");
        }
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    for name in [&group, &resource, &verb] {
                        assert!(!name.contains('*'), "a wildcard in {rule}");
                    }
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    granted
}

/// Waits until a request matching `wanted` has been recorded.
async fn until_requested(
    api: &crate::apiserver::FakeApi,
    what: &str,
    wanted: impl Fn(&Recorded) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !api.requests().iter().any(&wanted) {
        assert!(tokio::time::Instant::now() < deadline, "no {what} in time");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_agent_cluster_role_grants_exactly_what_the_kube_driver_uses() {
    let api = crate::apiserver::FakeApi::new();
    let (driver, mut events) =
        crate::scale_to_zero::driver_at(&api, std::net::IpAddr::from([127, 0, 0, 1]), 8080);
    driver.activate().await;

    // A podgroup with secrets and a quota, then a new release, then without secrets (the
    // leftover Secret is read, then deleted).
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");
    driver
        .apply(&desired("shop", 4, DIGEST_4))
        .await
        .expect("apply release 4");
    driver
        .apply(&without_secrets(desired("shop", 4, DIGEST_4)))
        .await
        .expect("apply without secrets");
    // A canary beside it, with secrets of its own, then ended (its Deployment is looked for by
    // labels, then deleted with its Secret).
    let mut canary = crate::canary::with_canary(without_secrets(desired("shop", 4, DIGEST_4)), 20);
    if let Some(canary) = canary.canary.as_mut() {
        canary.secrets = crate::secrets(&[("NEO_SECRET_PAYMENT_API_KEY", "pk_canary")]);
    }
    driver.apply(&canary).await.expect("apply a canary");
    driver
        .apply(&without_secrets(desired("shop", 4, DIGEST_4)))
        .await
        .expect("end the canary");
    // At zero behind the activator (the last agent's slices listed, its own read, then
    // written), then woken.
    let asleep = neo_runtime_agent::driver::Desired {
        replicas: 0,
        idle_to_zero_s: 60,
        ..without_secrets(desired("shop", 4, DIGEST_4))
    };
    driver.apply(&asleep).await.expect("apply at zero");
    driver
        .apply(&without_secrets(desired("shop", 4, DIGEST_4)))
        .await
        .expect("woken");

    // The pod watch sees a running pod and follows its log; the first attempt to open the log
    // fails, so the follower reads the pod to see whether it still runs, and opens it again.
    let _watching = driver.start_watching();
    until_requested(&api, "pod watch", |r| {
        r.path == "/api/v1/pods" && r.query.get("watch").is_some_and(|w| w == "true")
    })
    .await;
    api.fail_next(Method::GET, "pods", 503, "the container is starting");
    let pod_name = "shop-7d9c5f-x2k4q";
    api.put(
        "pods",
        pod(pod_name, running(true, "2026-05-01T12:00:20Z", "10.1.0.7")),
    );
    let pod_path = format!("/api/v1/namespaces/{NAMESPACE}/pods/{pod_name}");
    until_requested(&api, "read of the followed pod", |r| {
        r.method == "GET" && r.path == pod_path
    })
    .await;
    api.append_log(NAMESPACE, pod_name, r#"{"level":"INFO","message":"up"}"#);
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("a log event in time")
            .expect("the channel is open");
        if matches!(event, DriverEvent::Logs(_)) {
            break;
        }
    }
    driver.observe().await.expect("observe");

    // Removed, then purged with its tenant (the namespace goes).
    driver.remove(&key("shop")).await.expect("remove");
    driver.purge(&key("shop")).await.expect("purge");
    assert!(api.object("namespaces", "", NAMESPACE).is_none());

    let used: BTreeSet<Permission> = api.requests().iter().flat_map(permissions).collect();
    let documents = yaml_documents(&rbac_file());
    let kind = |kind: &str| -> &Value {
        documents
            .iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {}", rbac_file().display()))
    };
    let role = kind("ClusterRole");
    let granted = granted(role);
    let missing: Vec<&Permission> = used.difference(&granted).collect();
    let unused: Vec<&Permission> = granted.difference(&used).collect();
    assert!(
        missing.is_empty() && unused.is_empty(),
        "the driver used but the ClusterRole does not grant: {missing:?}\n\
         the ClusterRole grants but the driver never used: {unused:?}"
    );
    // Reading secrets is a get, never a list or watch of them.
    assert!(!granted.contains(&(String::new(), "secrets".into(), "list".into())));

    // The ServiceAccount in neo-system holds that role, and only it.
    let account = kind("ServiceAccount");
    assert_eq!(
        (
            &account["metadata"]["name"],
            &account["metadata"]["namespace"]
        ),
        (&Value::from("neo-agent"), &Value::from("neo-system"))
    );
    let binding = kind("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "neo-agent", "namespace": "neo-system"}])
    );
}

#[test]
fn a_rule_the_driver_does_not_need_is_found() {
    // The comparison is not blind: an extra verb, a wildcard and a missing one all show.
    let role = serde_json::json!({"rules": [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list"]},
    ]});
    let grants = granted(&role);
    let used = BTreeSet::from([
        (String::new(), "pods".to_owned(), "get".to_owned()),
        (
            "apps".to_owned(),
            "deployments".to_owned(),
            "patch".to_owned(),
        ),
    ]);
    assert_eq!(
        grants.difference(&used).count(),
        2,
        "pods list and deployments list are unused"
    );
    assert_eq!(
        used.difference(&grants).count(),
        1,
        "deployments patch is missing"
    );
    let wildcard = serde_json::json!({"rules": [{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}]});
    assert!(std::panic::catch_unwind(|| granted(&wildcard)).is_err());
}
