//! Tenants isolated on Kubernetes: pods under the Pod Security `restricted` profile without a
//! service-account token, each tenant's stage namespace closed to all but its own apps and the
//! stage's edge, held to the tenant's quota, and gone with a deleted tenant; each app with its
//! own role on a real stage database, in its Secret; every golden manifest valid against
//! Kubernetes' own schemas.

use std::path::PathBuf;

use neo_protocol::pb;
use neo_runtime_agent::driver::{Desired, Driver};
use serde_json::{Value, json};

use crate::{DIGEST_3, NAMESPACE, container_env, desired, key, secret_values, setup, stored};

/// What the Pod Security `restricted` profile (Kubernetes' Pod Security Standards) forbids in
/// `pod` (a pod spec), one line per violation.
fn restricted_violations(pod: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let security = &pod["securityContext"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == json!(true) {
            found.push(format!("{host} is set"));
        }
    }
    for volume in pod["volumes"].as_array().into_iter().flatten() {
        let allowed = [
            "name",
            "emptyDir",
            "configMap",
            "secret",
            "projected",
            "downwardAPI",
            "persistentVolumeClaim",
            "ephemeral",
            "csi",
        ];
        for field in volume.as_object().into_iter().flatten().map(|(k, _)| k) {
            if !allowed.contains(&field.as_str()) {
                found.push(format!("volume type {field}"));
            }
        }
    }
    let pod_seccomp = security["seccompProfile"]["type"].as_str();
    let pod_non_root = security["runAsNonRoot"] == json!(true);
    if security["runAsUser"] == json!(0) {
        found.push("the pod runs as user 0".into());
    }
    for container in pod["containers"].as_array().into_iter().flatten() {
        let name = container["name"].as_str().unwrap_or("?");
        let context = &container["securityContext"];
        if context["privileged"] == json!(true) {
            found.push(format!("{name}: privileged"));
        }
        if context["allowPrivilegeEscalation"] != json!(false) {
            found.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        let drops_all = context["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.contains(&json!("ALL")));
        if !drops_all {
            found.push(format!("{name}: capabilities do not drop ALL"));
        }
        for added in context["capabilities"]["add"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if added != "NET_BIND_SERVICE" {
                found.push(format!("{name}: adds capability {added}"));
            }
        }
        if !(pod_non_root || context["runAsNonRoot"] == json!(true)) {
            found.push(format!("{name}: runAsNonRoot is not true"));
        }
        if context["runAsUser"] == json!(0) {
            found.push(format!("{name}: runs as user 0"));
        }
        let seccomp = context["seccompProfile"]["type"].as_str().or(pod_seccomp);
        if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
            found.push(format!("{name}: seccompProfile is {seccomp:?}"));
        }
        for port in container["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_i64().is_some_and(|p| p != 0) {
                found.push(format!("{name}: hostPort"));
            }
        }
    }
    found
}

#[tokio::test]
async fn pods_meet_the_restricted_profile_and_mount_no_token() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");
    let deployment = stored(&api, "deployments", "shop");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(restricted_violations(pod), Vec::<String>::new(), "{pod:#}");
    // A canary's pods too: the same template.
    driver
        .apply(&crate::canary::with_canary(
            desired("shop", 3, DIGEST_3),
            20,
        ))
        .await
        .expect("apply a canary");
    let canary = stored(&api, "deployments", "shop-canary");
    let canary_pod = &canary["spec"]["template"]["spec"];
    assert_eq!(
        restricted_violations(canary_pod),
        Vec::<String>::new(),
        "{canary_pod:#}"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let container = &pod["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // Not root: the user the image config sets.
    assert_eq!(
        container["securityContext"]["runAsUser"],
        json!(neo_image::APP_USER_ID)
    );
    // The one writable place is an emptyDir at /tmp, bounded.
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "tmp", "mountPath": "/tmp"}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}])
    );

    // The checker is not blind: a privileged, root pod with a host path fails it on each count.
    let mut bad = pod.clone();
    bad["securityContext"] = json!({"runAsUser": 0});
    bad["hostNetwork"] = json!(true);
    bad["volumes"] = json!([{"name": "host", "hostPath": {"path": "/"}}]);
    bad["containers"][0]["securityContext"] = json!({"privileged": true});
    assert_eq!(
        restricted_violations(&bad).len(),
        8,
        "{:?}",
        restricted_violations(&bad)
    );

    // The namespace enforces the profile, so the cluster refuses any other pod in it.
    let namespace = api.object("namespaces", "", NAMESPACE).expect("namespace");
    let labels = &namespace["metadata"]["labels"];
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted");
    assert_eq!(
        labels["pod-security.kubernetes.io/enforce-version"],
        "latest"
    );
}

#[tokio::test]
async fn a_tenant_namespace_lets_in_only_its_apps_and_the_stage_edge_within_its_quota() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");

    let policy = stored(&api, "networkpolicies", "neo-ingress");
    let spec = &policy["spec"];
    // Every pod of the namespace, ingress only (apps still reach their database).
    assert_eq!(spec["podSelector"], json!({}));
    assert_eq!(spec["policyTypes"], json!(["Ingress"]));
    let rules = spec["ingress"].as_array().expect("ingress rules");
    assert_eq!(rules.len(), 2, "{spec:#}");
    // The tenant's own apps: pods of this namespace (no namespaceSelector: only this one).
    assert_eq!(rules[0]["from"], json!([{"podSelector": {}}]));
    assert!(rules[0].get("ports").is_none());
    // The stage's edge, and the agents (asking a starting replica why it is not ready), on the
    // app port only; no other namespace, no ipBlock.
    assert_eq!(
        rules[1]["from"],
        json!([
            {"namespaceSelector": {"matchLabels": {"dev.neo/role": "edge", "dev.neo/stage": "dev"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}},
             "podSelector": {"matchLabels": {"app.kubernetes.io/name": "neo-agent"}}},
        ])
    );
    assert_eq!(
        rules[1]["ports"],
        json!([{"port": 8080, "protocol": "TCP"}])
    );

    // The quota of the tenant (10 apps of up to 5 replicas; one surge pod each; each app may
    // run a canary beside it, a Deployment and a Secret more).
    let quota = stored(&api, "resourcequotas", "neo-quota");
    assert_eq!(
        quota["spec"]["hard"],
        json!({"count/deployments.apps": "20", "pods": "60", "secrets": "20", "services": "10"})
    );
    let limits = stored(&api, "limitranges", "neo-limits");
    assert_eq!(
        limits["spec"]["limits"],
        json!([{"type": "Container",
                "default": {"cpu": "250m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "250m", "memory": "256Mi"}}])
    );

    // A new quota reaches the namespace with the next apply; 0 is unlimited (left out).
    let raised = Desired {
        quota: Some(pb::Quota {
            max_apps: 20,
            max_replicas_per_app: 0,
        }),
        ..desired("shop", 3, DIGEST_3)
    };
    driver.apply(&raised).await.expect("apply a new quota");
    assert_eq!(
        stored(&api, "resourcequotas", "neo-quota")["spec"]["hard"],
        json!({"count/deployments.apps": "40", "secrets": "40", "services": "20"})
    );
}

#[tokio::test]
async fn a_purged_podgroup_takes_its_tenant_namespace_and_nothing_of_another_tenant() {
    let (api, driver, _events) = setup();
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply shop");
    driver
        .apply(&desired("blog", 1, DIGEST_3))
        .await
        .expect("apply blog");
    // Another tenant on the same stage.
    let other = Desired {
        key: neo_runtime_agent::driver::PodgroupKey {
            tenant: "beta".into(),
            app: "shop".into(),
            stage: "dev".into(),
        },
        ..desired("shop", 3, DIGEST_3)
    };
    driver.apply(&other).await.expect("apply beta's shop");

    driver.purge(&key("shop")).await.expect("purge");
    assert!(api.object("namespaces", "", NAMESPACE).is_none());
    for resource in ["deployments", "services", "secrets", "networkpolicies"] {
        assert!(api.names(resource, NAMESPACE).is_empty(), "{resource}");
    }
    assert_eq!(api.names("deployments", "neo-beta-dev"), ["shop"]);
    // Purging again (every podgroup of the tenant is purged): nothing left, which is fine.
    driver.purge(&key("blog")).await.expect("purge again");

    // A namespace of that name labelled for another tenant stays.
    api.put(
        "namespaces",
        json!({"metadata": {"name": NAMESPACE, "labels": {"dev.neo/tenant": "acme-dev-x", "dev.neo/stage": "dev"}}}),
    );
    driver
        .purge(&key("shop"))
        .await
        .expect("purge a foreign namespace");
    assert!(api.object("namespaces", "", NAMESPACE).is_some());
}

#[test]
fn every_golden_manifest_passes_the_kubernetes_schemas() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/kube");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("the golden directory")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let text = neo_harness::kubernetes::validate(&files).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(text.matches("passed").count(), files.len(), "{text}");
}

#[tokio::test]
async fn each_app_gets_its_own_database_role_through_its_secret_and_loses_it_when_purged() {
    use neo_runtime_agent::driver::database::{StageDatabase, role};
    let pg = neo_harness::postgres::PostgresServer::start()
        .await
        .expect("postgres");
    pg.create_database("neo_dev").await.expect("database");
    let database = StageDatabase::new(&pg.url("neo_dev"))
        .expect("admin URL")
        .replicas_reach_at("postgres.neo-system.svc:5432")
        .expect("replica host");
    let (api, driver, _events) = setup();
    let driver = driver.with_database(database);
    driver
        .apply(&desired("shop", 3, DIGEST_3))
        .await
        .expect("apply");

    // The URL is in the Secret, with the app's own role, at the address pods reach.
    let url = secret_values(&api, "shop-secrets")["NEO_DATABASE_URL"].clone();
    let parsed = url::Url::parse(&url).expect("a URL");
    assert_eq!(parsed.username(), role(&key("shop")));
    assert_eq!(
        (parsed.host_str(), parsed.port()),
        (Some("postgres.neo-system.svc"), Some(5432))
    );
    assert_eq!(
        container_env(&stored(&api, "deployments", "shop"))["NEO_DATABASE_URL"],
        json!({"name": "NEO_DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop-secrets", "key": "NEO_DATABASE_URL"}}}),
    );
    assert!(
        !stored(&api, "deployments", "shop")
            .to_string()
            .contains(parsed.password().unwrap_or("-"))
    );

    // That role logs in (here, at the test server's address) and owns only the app's schema.
    let mut local = parsed.clone();
    local.set_host(Some("127.0.0.1")).expect("host");
    local.set_port(Some(pg.port())).expect("port");
    let pool = sqlx::PgPool::connect(local.as_str()).await.expect("login");
    sqlx::raw_sql("CREATE TABLE acme_shop.orders (id int)")
        .execute(&pool)
        .await
        .expect("its own schema");
    let other = sqlx::raw_sql("CREATE SCHEMA elsewhere")
        .execute(&pool)
        .await
        .expect_err("a schema of its own making");
    assert!(other.to_string().contains("permission denied"), "{other}");
    pool.close().await;

    // Purged with its tenant: the role is gone, and the URL no longer logs in.
    driver.purge(&key("shop")).await.expect("purge");
    assert!(sqlx::PgPool::connect(local.as_str()).await.is_err());
}
