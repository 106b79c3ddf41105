//! What needs no database: screens, settings, the contract, health.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::json;
use support::{Host, config};

#[tokio::test]
async fn screens_are_served_and_traversal_is_refused() {
    let host = Host::start(config(None)).await;
    let index = host.get("/").await;
    assert_eq!(index.status, 200);
    assert_eq!(index.content_type, "text/html; charset=utf-8");
    assert!(index.body.contains("<h1>Orders</h1>"));
    assert_eq!(host.get("/screens/index.html").await.body, index.body);
    let css = host.get("/screens/css/app.css").await;
    assert_eq!(
        (css.status, css.content_type.as_str()),
        (200, "text/css; charset=utf-8")
    );
    assert_eq!(host.get("/screens/css/missing.css").await.status, 404);
    assert_eq!(
        host.get("/screens/css").await.status,
        404,
        "a folder without index.html"
    );

    for path in [
        "/screens/../model.json",
        "/screens/css/../../model.json",
        "/screens/%2e%2e/model.json",
        "/screens/..%2fmodel.json",
        "/screens//etc/passwd",
        "/screens/..%5cmodel.json",
    ] {
        let r = host.get(path).await;
        assert!(r.status == 400 || r.status == 404, "{path}: {}", r.status);
        assert!(
            !r.body.contains("entities"),
            "{path} leaked the bundle: {}",
            r.body
        );
    }
    host.stop().await.unwrap();
}

#[tokio::test]
async fn settings_show_defaults_and_overrides_but_never_secrets() {
    let host = Host::start(config(None)).await;
    let r = host.get("/api/_settings").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"settings": {"currency": "EUR", "page_size": "20", "greeting": null}})
    );
    host.stop().await.unwrap();

    let mut cfg = config(None);
    cfg.settings.insert("CURRENCY".into(), "USD".into());
    cfg.settings.insert("GREETING".into(), "Hi".into());
    cfg.settings.insert("UNDECLARED".into(), "x".into());
    cfg.secrets
        .insert("PAYMENT_API_KEY".into(), "sk-test-123".into());
    let host = Host::start(cfg).await;
    let r = host.get("/api/_settings").await;
    assert_eq!(
        r.json(),
        json!({"settings": {"currency": "USD", "page_size": "20", "greeting": "Hi"}})
    );
    assert!(!r.body.contains("sk-test-123") && !r.body.contains("payment_api_key"));
    host.stop().await.unwrap();
}

#[tokio::test]
async fn the_contract_lists_entities_and_fields() {
    let host = Host::start(config(None)).await;
    let api = host.get("/api").await.json();
    assert_eq!(api["app"], "orders");
    assert_eq!(api["entities"][0]["name"], "Product");
    assert_eq!(api["entities"][1]["path"], "/api/order");
    assert_eq!(
        api["entities"][1]["fields"][6],
        json!({"name": "product", "type": "ref:Product", "required": false})
    );
    assert_eq!(host.get("/healthz").await.status, 200);
    let ready = host.get("/readyz").await;
    assert_eq!(ready.status, 503);
    let reasons = ready.json()["reasons"].clone();
    assert_eq!(
        reasons,
        json!([
            "secret payment_api_key is not set",
            "no database configured (NEO_DATABASE_URL)"
        ])
    );
    assert_eq!(host.get("/api/order").await.status, 503);
    assert_eq!(host.get("/nowhere").await.status, 404);
    host.stop().await.unwrap();
}

#[tokio::test]
async fn activityz_counts_the_apps_requests_not_the_probes() {
    let host = Host::start(config(None)).await;
    let fresh = host.get("/activityz").await.json();
    assert_eq!(
        (&fresh["requests"], &fresh["in_flight"]),
        (&json!(0), &json!(0))
    );
    for path in ["/healthz", "/readyz", "/activityz"] {
        host.get(path).await;
    }
    for path in ["/api", "/api/order", "/nowhere"] {
        host.get(path).await;
    }
    let activity = host.get("/activityz").await;
    assert_eq!(activity.status, 200);
    let activity = activity.json();
    assert_eq!(
        (&activity["requests"], &activity["in_flight"]),
        (&json!(3), &json!(0))
    );
    // `/api/order` answered 503 (no database): an error; each answer is in one time bucket.
    assert_eq!(activity["errors"], 1);
    let bounds = activity["answer_us"]["bounds"].as_array().expect("bounds");
    let counts = activity["answer_us"]["counts"].as_array().expect("counts");
    assert_eq!(counts.len(), bounds.len() + 1);
    assert_eq!(bounds[0], 250);
    assert!(bounds.last().and_then(|b| b.as_u64()).expect("a bound") >= 60_000_000);
    let answered: u64 = counts.iter().filter_map(|c| c.as_u64()).sum();
    assert_eq!(answered, 3);
    host.stop().await.unwrap();
}
