//! Canaries on Kubernetes, weighted by replicas: a second Deployment `{app}-canary` beside the
//! app's, both selected by its Service; its share of the replicas follows its weight, and
//! ending it deletes it; its pods are observed with their release, and its failure to start is
//! reported apart from the release's rollout; each release's pods' counts fill its side of the
//! canary's figures.

use std::collections::BTreeMap;

use neo_protocol::pb;
use neo_runtime_agent::driver::{CanaryDesired, Desired, Driver, Rollout};
use serde_json::{Value, json};

use crate::{
    DB_PASSWORD, DIGEST_3, DIGEST_4, NAMESPACE, PAYMENT_API_KEY, assert_golden, container_env,
    desired, differences, key, normalised, phase, pod, running, secret_values, secret_versions,
    secrets, setup, stored, versions,
};

/// A canary of release 4 at `weight` percent beside `desired`'s release, with the same secret
/// values (so it reads the app's Secret) and a setting of its own.
pub(crate) fn with_canary(desired: Desired, weight: u32) -> Desired {
    let canary = CanaryDesired {
        release: 4,
        image_digest: DIGEST_4.into(),
        image_reference: format!("registry.neo.test/acme/{}@{DIGEST_4}", desired.key.app),
        env: BTreeMap::from([("SHOP_CURRENCY".to_owned(), "CHF".to_owned())]),
        secrets: desired.secrets.clone(),
        secret_versions: desired.secret_versions.clone(),
        step: 0,
        weight,
        sticky: false,
        step_seconds: 60,
    };
    Desired {
        canary: Some(canary),
        ..desired
    }
}

/// `shop` release 3 with five replicas.
fn five() -> Desired {
    Desired {
        replicas: 5,
        ..desired("shop", 3, DIGEST_3)
    }
}

fn replicas(deployment: &Value) -> i64 {
    deployment["spec"]["replicas"].as_i64().expect("replicas")
}

/// Whether a `matchLabels` selector selects an object with `labels`.
fn matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .expect("matchLabels")
        .iter()
        .all(|(name, value)| labels.get(name) == Some(value))
}

fn template_labels(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["metadata"]["labels"]
}

#[tokio::test]
async fn a_canary_is_a_second_deployment_weighted_by_replicas_and_ends_deleted() {
    let (api, driver, _events) = setup();
    driver.apply(&five()).await.expect("apply");
    let before = stored(&api, "deployments", "shop");
    let service = stored(&api, "services", "shop");

    // At 20 % of 5 replicas: the canary runs one, the release four.
    driver
        .apply(&with_canary(five(), 20))
        .await
        .expect("apply a canary");
    let main = stored(&api, "deployments", "shop");
    let canary = stored(&api, "deployments", "shop-canary");
    assert_eq!((replicas(&main), replicas(&canary)), (4, 1));
    assert_golden("canary-deployment", &normalised(canary.clone()));
    // The release's Deployment changes its count only (its selector cannot change), and the
    // Service (selecting the app, no release nor track) is untouched.
    let mut changed = Vec::new();
    differences(
        &normalised(before.clone()),
        &normalised(main.clone()),
        "",
        &mut changed,
    );
    assert_eq!(changed, ["/spec/replicas"]);
    assert_eq!(service, stored(&api, "services", "shop"));

    // The Service selects the pods of both; each Deployment selects its own only.
    let service_selector = &service["spec"]["selector"];
    let main_selector = &main["spec"]["selector"]["matchLabels"];
    let canary_selector = &canary["spec"]["selector"]["matchLabels"];
    // The release's keeps the app's selector (which a canary's pods also match: they belong to
    // the canary's ReplicaSet by owner reference and pod-template-hash).
    assert_eq!(main_selector, service_selector);
    assert!(matches(service_selector, template_labels(&main)));
    assert!(matches(service_selector, template_labels(&canary)));
    assert!(matches(canary_selector, template_labels(&canary)));
    assert!(!matches(canary_selector, template_labels(&main)));
    assert_eq!(canary_selector["dev.neo/track"], "canary");
    assert!(template_labels(&main).get("dev.neo/track").is_none());
    // The canary runs its release, image and settings; the same Secret (the same values).
    assert_eq!(canary["metadata"]["labels"]["dev.neo/release"], "4");
    assert_eq!(template_labels(&canary)["dev.neo/release"], "4");
    assert_eq!(
        canary["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.neo.test/acme/shop@{DIGEST_4}")
    );
    let env = container_env(&canary);
    assert_eq!(env["SHOP_CURRENCY"]["value"], "CHF");
    assert_eq!(
        env["NEO_SECRET_PAYMENT_API_KEY"]["valueFrom"]["secretKeyRef"]["name"],
        "shop-secrets"
    );
    assert_eq!(api.names("secrets", NAMESPACE), ["shop-secrets"]);

    // The next step, 50 %: the canary runs ceil(2.5) = 3, the release 2; counts only change.
    driver
        .apply(&with_canary(five(), 50))
        .await
        .expect("step to 50 %");
    let stepped = stored(&api, "deployments", "shop-canary");
    assert_eq!(
        (
            replicas(&stored(&api, "deployments", "shop")),
            replicas(&stepped)
        ),
        (2, 3)
    );
    let mut changed = Vec::new();
    differences(&normalised(canary), &normalised(stepped), "", &mut changed);
    assert_eq!(changed, ["/spec/replicas"]);

    // Rolled back: the release runs all five again, then the canary's Deployment goes.
    let at = api.requests().len();
    driver.apply(&five()).await.expect("roll back");
    assert_eq!(replicas(&stored(&api, "deployments", "shop")), 5);
    assert_eq!(api.names("deployments", NAMESPACE), ["shop"]);
    let deployment_requests: Vec<String> = api.requests()[at..]
        .iter()
        .filter(|r| r.path.contains("/deployments"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        deployment_requests,
        [
            "PATCH /apis/apps/v1/namespaces/neo-acme-dev/deployments/shop",
            "GET /apis/apps/v1/namespaces/neo-acme-dev/deployments",
            "DELETE /apis/apps/v1/namespaces/neo-acme-dev/deployments/shop-canary",
        ]
    );
    let list = api.requests()[at..]
        .iter()
        .find(|r| r.method == "GET" && r.path.ends_with("/deployments"))
        .cloned()
        .expect("the canary looked for");
    assert_eq!(
        list.query.get("labelSelector").map(String::as_str),
        Some("app.kubernetes.io/managed-by=neo,dev.neo/app=shop,dev.neo/track=canary")
    );

    // Promoted: the release's Deployment runs the canary's release, and no canary is left.
    driver
        .apply(&with_canary(five(), 20))
        .await
        .expect("a canary again");
    let promoted = Desired {
        replicas: 5,
        env: BTreeMap::from([("SHOP_CURRENCY".to_owned(), "CHF".to_owned())]),
        ..desired("shop", 4, DIGEST_4)
    };
    driver.apply(&promoted).await.expect("promote");
    assert_eq!(api.names("deployments", NAMESPACE), ["shop"]);
    let main = stored(&api, "deployments", "shop");
    assert_eq!(
        (
            replicas(&main),
            &main["metadata"]["labels"]["dev.neo/release"]
        ),
        (5, &json!("4"))
    );
}

#[tokio::test]
async fn a_canary_with_other_secret_values_reads_a_secret_of_its_own() {
    let (api, driver, _events) = setup();
    let mut rotated = with_canary(five(), 20);
    if let Some(canary) = rotated.canary.as_mut() {
        canary.secrets = secrets(&[
            ("NEO_SECRET_PAYMENT_API_KEY", "pk_live_canary"),
            ("NEO_SECRET_DB_PASSWORD", DB_PASSWORD),
        ]);
        canary.secret_versions = versions(&[("db_password", 2), ("payment_api_key", 2)]);
    }
    driver.apply(&rotated).await.expect("apply");

    assert_eq!(
        api.names("secrets", NAMESPACE),
        ["shop-secrets", "shop-secrets-canary"]
    );
    assert_golden(
        "canary-secret",
        &normalised(stored(&api, "secrets", "shop-secrets-canary")),
    );
    assert_eq!(
        secret_values(&api, "shop-secrets-canary")["NEO_SECRET_PAYMENT_API_KEY"],
        "pk_live_canary"
    );
    assert_eq!(
        secret_values(&api, "shop-secrets")["NEO_SECRET_PAYMENT_API_KEY"],
        PAYMENT_API_KEY
    );
    let canary = stored(&api, "deployments", "shop-canary");
    assert_eq!(
        container_env(&canary)["NEO_SECRET_PAYMENT_API_KEY"],
        json!({"name": "NEO_SECRET_PAYMENT_API_KEY", "valueFrom": {"secretKeyRef": {"name": "shop-secrets-canary", "key": "NEO_SECRET_PAYMENT_API_KEY"}}}),
    );
    assert_eq!(
        secret_versions(&canary).as_deref(),
        Some("db_password=2,payment_api_key=2")
    );
    assert!(!canary.to_string().contains("pk_live_canary"));

    // The same values again: it reads the app's Secret, and its own goes.
    driver
        .apply(&with_canary(five(), 20))
        .await
        .expect("apply the same values");
    assert_eq!(api.names("secrets", NAMESPACE), ["shop-secrets"]);
    assert_eq!(
        container_env(&stored(&api, "deployments", "shop-canary"))["NEO_SECRET_PAYMENT_API_KEY"]["valueFrom"]
            ["secretKeyRef"]["name"],
        "shop-secrets"
    );

    // Removed with the podgroup: its Deployment and Secret too.
    driver.apply(&rotated).await.expect("apply other values");
    driver.remove(&key("shop")).await.expect("remove");
    assert!(api.names("deployments", NAMESPACE).is_empty());
    assert!(api.names("secrets", NAMESPACE).is_empty());
}

#[tokio::test]
async fn ending_a_canary_leaves_an_app_called_like_it_alone() {
    let (api, driver, _events) = setup();
    // An app called `shop-canary`, and `shop` without a canary.
    driver
        .apply(&desired("shop-canary", 1, DIGEST_3))
        .await
        .expect("apply shop-canary");
    driver.apply(&five()).await.expect("apply shop");
    driver.remove(&key("shop")).await.expect("remove shop");
    assert_eq!(api.names("deployments", NAMESPACE), ["shop-canary"]);
    assert_eq!(api.names("secrets", NAMESPACE), ["shop-canary-secrets"]);
}

/// A pod of the canary (release 4) of `shop`.
fn canary_pod(name: &str, status: Value) -> Value {
    let mut pod = pod(name, status);
    pod["metadata"]["labels"]["dev.neo/release"] = json!("4");
    pod["metadata"]["labels"]["dev.neo/track"] = json!("canary");
    pod["metadata"]["labels"]["pod-template-hash"] = json!("5b8d4f");
    pod["spec"]["containers"][0]["image"] =
        json!(format!("registry.neo.test/acme/shop@{DIGEST_4}"));
    pod
}

#[tokio::test]
async fn the_canary_pods_are_observed_with_their_release_beside_the_release_rollout() {
    let (api, driver, _events) = setup();
    driver.apply(&with_canary(five(), 20)).await.expect("apply");
    for i in 0..4 {
        api.put(
            "pods",
            pod(
                &format!("shop-7d9c5f-main{i}"),
                running(true, "2026-05-01T12:00:20Z", &format!("10.1.0.{i}")),
            ),
        );
    }
    api.put(
        "pods",
        canary_pod(
            "shop-canary-5b8d4f-aaaaa",
            running(false, "2026-05-01T12:00:00Z", "10.1.0.9"),
        ),
    );
    api.set_status(
        "deployments",
        NAMESPACE,
        "shop",
        json!({
            "observedGeneration": 1, "replicas": 4, "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}],
        }),
    );
    api.set_status(
        "deployments",
        NAMESPACE,
        "shop-canary",
        json!({
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"}],
        }),
    );

    // One podgroup: the release's rollout (its Deployment only), the pods of both.
    let observed = driver.observe().await.expect("observe");
    assert_eq!(observed.len(), 1, "{observed:?}");
    let shop = &observed[0];
    assert_eq!((shop.key.clone(), shop.release), (key("shop"), 3));
    assert_eq!(shop.rollout, Rollout::Succeeded);
    assert_eq!(shop.canary_failed, None);
    let replicas: Vec<(&str, u32, pb::ReplicaPhase, &str)> = shop
        .replicas
        .iter()
        .map(|r| (r.id.as_str(), r.release, phase(r), r.image_digest.as_str()))
        .collect();
    assert_eq!(
        replicas,
        [
            ("shop-7d9c5f-main0", 3, pb::ReplicaPhase::Ready, DIGEST_3),
            ("shop-7d9c5f-main1", 3, pb::ReplicaPhase::Ready, DIGEST_3),
            ("shop-7d9c5f-main2", 3, pb::ReplicaPhase::Ready, DIGEST_3),
            ("shop-7d9c5f-main3", 3, pb::ReplicaPhase::Ready, DIGEST_3),
            (
                "shop-canary-5b8d4f-aaaaa",
                4,
                pb::ReplicaPhase::Starting,
                DIGEST_4
            ),
        ]
    );

    // Its pods never start; its progress deadline passes: the canary failed, not the release.
    api.set_status(
        "deployments",
        NAMESPACE,
        "shop-canary",
        json!({
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "unavailableReplicas": 1,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                            "message": "ReplicaSet \"shop-canary-5b8d4f\" has timed out progressing."}],
        }),
    );
    let observed = driver.observe().await.expect("observe");
    assert_eq!(observed[0].rollout, Rollout::Succeeded);
    assert_eq!(
        observed[0].canary_failed.as_deref(),
        Some(
            "canary release 4 cannot start: ProgressDeadlineExceeded: ReplicaSet \
             \"shop-canary-5b8d4f\" has timed out progressing."
        )
    );

    // Ended: no canary, no failure.
    driver.apply(&five()).await.expect("end the canary");
    let observed = driver.observe().await.expect("observe");
    assert_eq!(observed[0].canary_failed, None);
}

#[tokio::test]
async fn each_release_s_pods_count_their_answers_into_the_canary_s_figures() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use crate::scale_to_zero::{PodApp, until_reported};

    // The baseline's pod at 127.0.0.1 and the canary's at 127.0.0.2, on one port.
    let baseline = PodApp::start_on("127.0.0.1:0".parse().expect("addr")).await;
    let canary = PodApp::start_on(std::net::SocketAddr::from((
        [127, 0, 0, 2],
        baseline.addr.port(),
    )))
    .await;
    let (api, driver, mut events) = setup();
    let driver = driver.with_pod_port(baseline.addr.port());
    let _watching = driver.start_watching();
    driver
        .apply(&with_canary(five(), 50))
        .await
        .expect("apply a canary");
    api.put(
        "pods",
        pod("shop-1", running(true, "2026-05-01T12:00:20Z", "127.0.0.1")),
    );
    let mut canary_pod = pod(
        "shop-canary-1",
        running(true, "2026-05-01T12:00:20Z", "127.0.0.2"),
    );
    canary_pod["metadata"]["labels"]["dev.neo/release"] = json!("4");
    canary_pod["metadata"]["labels"]["dev.neo/track"] = json!("canary");
    api.put("pods", canary_pod);
    until_reported(&mut events, "shop-1", true).await;
    until_reported(&mut events, "shop-canary-1", true).await;

    // The canary serves once its pod is ready; both pods are read (every second).
    let figures = driver
        .canaries()
        .expect("the kube driver measures canaries")
        .app("acme", "shop");
    for _ in 0..100 {
        let read = |pod: &PodApp| pod.reads.load(Ordering::SeqCst);
        if figures.serving() && read(&baseline) > 0 && read(&canary) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(figures.serving(), "the canary has a ready pod");

    // A step: the baseline answers 100 within 1 ms; the canary 50, 20 of them 5xx, within
    // 100 ms.
    figures.restart();
    canary.bucket.store(2, Ordering::SeqCst);
    canary.errors.fetch_add(20, Ordering::SeqCst);
    canary.requests.fetch_add(50, Ordering::SeqCst);
    baseline.requests.fetch_add(100, Ordering::SeqCst);
    let mut both = figures.read();
    for _ in 0..100 {
        both = figures.read();
        if both.0.requests == 100 && both.1.requests == 50 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (base, measured) = both;
    assert_eq!((base.requests, base.errors), (100, 0));
    assert_eq!((measured.requests, measured.errors), (50, 20));
    assert_eq!((base.p95_ms, measured.p95_ms), (1.0, 100.0));

    // Ended: its figures are forgotten.
    driver.apply(&five()).await.expect("end the canary");
    let forgotten = driver.canaries().expect("canaries");
    assert!(forgotten.get("acme", "shop").is_none());
}
