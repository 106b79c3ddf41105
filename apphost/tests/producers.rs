//! Live dependencies: a consumer reads the producer's exposed entity through its API, checks
//! references on write, expands them on read, and says which producer is down.
#![allow(clippy::unwrap_used)]

mod support;

use support::{Host, Postgres, config, config_with_secret, fixture};

#[tokio::test]
async fn a_consumer_checks_expands_and_picks_the_producers_rows() {
    let pg = Postgres::start();
    let producer = Host::start_ready(config_with_secret(Some(&pg))).await;
    let lamp = producer
        .send(
            "POST",
            "/api/product",
            r#"{"title":"Lamp","price":"19.90"}"#,
        )
        .await;
    assert_eq!(lamp.status, 201);
    let mut consumer_config = config(Some(&pg));
    consumer_config.bundle_dir = fixture("consumer");
    consumer_config.producers = Some(format!("http://{}", producer.addr));
    let consumer = Host::start_ready(consumer_config).await;

    // A reference to the producer's row is checked there.
    let shipped = consumer
        .send("POST", "/api/shipment", r#"{"to":"Ann","product":1}"#)
        .await;
    assert_eq!(shipped.status, 201, "{}", shipped.body);
    let missing = consumer
        .send("POST", "/api/shipment", r#"{"to":"Bob","product":999}"#)
        .await;
    assert_eq!(missing.status, 422);
    assert_eq!(missing.json()["field"], "product");
    assert_eq!(
        missing.json()["error"],
        "product: no Product with id 999 in orders"
    );

    // Expanded on read, with only the fields the consumer declared.
    let one = consumer.get("/api/shipment/1?expand=product").await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(
        one.json()["product"],
        serde_json::json!({"id": 1, "title": "Lamp"})
    );
    let list = consumer.get("/api/shipment?expand=product").await.json();
    assert_eq!(list["items"][0]["product"]["title"], "Lamp");
    assert_eq!(consumer.get("/api/shipment/1").await.json()["product"], 1);
    let bad = consumer.get("/api/shipment?expand=to").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "expand");

    // The generated screens: the producer's rows as a picker, read-only, labelled.
    let form = consumer.get("/ui/shipment/new").await;
    assert!(
        form.body
            .contains(r#"<option value="1">Lamp (#1)</option>"#),
        "{}",
        form.body
    );
    let products = consumer.get("/ui/product").await;
    assert_eq!(products.status, 200);
    assert!(products.body.contains("Lamp") && !products.body.contains("19.90"));
    assert!(!products.body.contains("ui/product/new"));
    let shipments = consumer.get("/ui/shipment").await;
    assert!(shipments.body.contains("Lamp (#1)"), "{}", shipments.body);

    // The producer goes: a write that needs it is refused naming it, a read that expands
    // answers 503, the form still works with an id input.
    producer.stop().await.unwrap();
    let refused = consumer
        .send("POST", "/api/shipment", r#"{"to":"Cid","product":1}"#)
        .await;
    assert_eq!(refused.status, 422);
    let error = refused.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.starts_with("product: cannot check it: orders is unavailable"),
        "{error}"
    );
    assert_eq!(
        consumer.get("/api/shipment/1?expand=product").await.status,
        503
    );
    let form = consumer.get("/ui/shipment/new").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("orders is unavailable"), "{}", form.body);
    assert_eq!(consumer.get("/ui/product").await.status, 503);
}

#[tokio::test]
async fn without_a_producer_address_a_consumed_reference_cannot_be_checked() {
    let pg = Postgres::start();
    let mut config = config(Some(&pg));
    config.bundle_dir = fixture("consumer");
    let consumer = Host::start_ready(config).await;
    let refused = consumer
        .send("POST", "/api/shipment", r#"{"to":"Ann","product":1}"#)
        .await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("this stage gave no producer address")
    );
}
