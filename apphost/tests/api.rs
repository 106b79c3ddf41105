//! The entity REST API against a real Postgres: round trips, paging, filters, validation.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{Value, json};
use support::{Host, Postgres, config_with_secret};

#[tokio::test]
async fn create_read_list_update_patch_delete_round_trip() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;

    let product = host
        .send(
            "POST",
            "/api/product",
            r#"{"title":"Lamp","price":"19.90"}"#,
        )
        .await;
    assert_eq!(product.status, 201, "{}", product.body);
    assert!(product.content_type.starts_with("application/json"));
    let product_id = product.json()["id"].as_i64().unwrap();

    let big = "12345678901234567890.123456789";
    let body = json!({"customer": "Ann", "total": big, "quantity": 3, "paid": true, "due": "2025-02-28",
        "placed_at": "2025-02-01T10:30:00Z", "product": product_id});
    let created = host.send("POST", "/api/order", &body.to_string()).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let order = created.json();
    let id = order["id"].as_i64().unwrap();
    assert_eq!(order["customer"], "Ann");
    assert_eq!(
        order["total"], big,
        "decimals keep their precision, as strings"
    );
    assert_eq!(order["quantity"], 3);
    assert_eq!(order["paid"], true);
    assert_eq!(order["due"], "2025-02-28");
    assert_eq!(order["placed_at"], "2025-02-01T10:30:00+00:00");
    assert_eq!(order["product"], product_id);
    assert!(order["created_at"].is_string() && order["updated_at"].is_string());

    let read = host.get(&format!("/api/order/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), order);

    // A decimal given as a JSON number is accepted too.
    for (i, customer) in ["Bob", "Cid", "Dee", "Bob"].iter().enumerate() {
        let body = json!({"customer": customer, "total": 10.5, "paid": i % 2 == 0});
        assert_eq!(
            host.send("POST", "/api/order", &body.to_string())
                .await
                .status,
            201
        );
    }

    let all = host.get("/api/order").await.json();
    assert_eq!(all["limit"], 50);
    assert_eq!(all["items"].as_array().unwrap().len(), 5);
    assert_eq!(all["items"][1]["total"], "10.5");

    let page = host.get("/api/order?limit=2&offset=2").await.json();
    let customers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["customer"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["Cid", "Dee"], "pages are ordered by id");
    assert_eq!(
        (page["limit"].clone(), page["offset"].clone()),
        (json!(2), json!(2))
    );
    assert_eq!(
        host.get("/api/order?limit=100000").await.json()["limit"],
        500,
        "limit is capped"
    );

    let bobs = host.get("/api/order?customer=Bob").await.json();
    assert_eq!(bobs["items"].as_array().unwrap().len(), 2);
    let paid_bobs = host.get("/api/order?customer=Bob&paid=true").await.json();
    assert_eq!(paid_bobs["items"].as_array().unwrap().len(), 1);
    let by_total = host.get("/api/order?total=10.50").await.json();
    assert_eq!(
        by_total["items"].as_array().unwrap().len(),
        4,
        "decimal filters compare numerically"
    );
    let by_ref = host
        .get(&format!("/api/order?product={product_id}"))
        .await
        .json();
    assert_eq!(by_ref["items"][0]["id"], id);

    // PUT replaces: absent optional fields become null.
    let put = host
        .send(
            "PUT",
            &format!("/api/order/{id}"),
            r#"{"customer":"Ann B.","quantity":4}"#,
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let put = put.json();
    assert_eq!(put["customer"], "Ann B.");
    assert_eq!(put["quantity"], 4);
    assert_eq!(put["total"], Value::Null);
    assert_eq!(put["created_at"], order["created_at"]);

    // PATCH changes only what it is given; id and timestamps in the body are ignored.
    let patch = host
        .send(
            "PATCH",
            &format!("/api/order/{id}"),
            r#"{"paid":false,"id":999,"created_at":"x"}"#,
        )
        .await;
    assert_eq!(patch.status, 200, "{}", patch.body);
    let patch = patch.json();
    assert_eq!(
        (
            patch["customer"].clone(),
            patch["paid"].clone(),
            patch["id"].clone()
        ),
        (json!("Ann B."), json!(false), json!(id))
    );

    assert_eq!(
        host.send("DELETE", &format!("/api/order/{id}"), "")
            .await
            .status,
        204
    );
    assert_eq!(host.get(&format!("/api/order/{id}")).await.status, 404);
    assert_eq!(
        host.send("DELETE", &format!("/api/order/{id}"), "")
            .await
            .status,
        404
    );
    assert_eq!(
        host.send("PATCH", &format!("/api/order/{id}"), "{}")
            .await
            .status,
        404
    );
    assert_eq!(host.get("/api/invoice").await.status, 404);
    assert_eq!(host.get("/api/invoice/1").await.status, 404);

    host.stop().await.unwrap();
}

#[tokio::test]
async fn invalid_requests_are_refused_naming_the_field() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;

    let cases = [
        ("POST", "/api/order", r#"{"total":"1"}"#, "customer"),
        ("POST", "/api/order", r#"{"customer":null}"#, "customer"),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","quantity":"three"}"#,
            "quantity",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","quantity":1.5}"#,
            "quantity",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","total":"ten"}"#,
            "total",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","paid":"yes"}"#,
            "paid",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","due":"2025-02-30"}"#,
            "due",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","placed_at":"yesterday"}"#,
            "placed_at",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","product":"lamp"}"#,
            "product",
        ),
        (
            "POST",
            "/api/order",
            r#"{"customer":"A","colour":"red"}"#,
            "colour",
        ),
        ("POST", "/api/order", r#"{"customer":42}"#, "customer"),
    ];
    for (method, path, body, field) in cases {
        let r = host.send(method, path, body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
        assert!(
            r.json()["error"].as_str().unwrap().contains(field),
            "{}",
            r.body
        );
    }

    let created = host
        .send("POST", "/api/order", r#"{"customer":"A"}"#)
        .await
        .json();
    let id = created["id"].as_i64().unwrap();
    let r = host
        .send("PUT", &format!("/api/order/{id}"), r#"{"total":"2"}"#)
        .await;
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("customer")),
        "PUT needs required fields"
    );
    let r = host
        .send("PATCH", &format!("/api/order/{id}"), r#"{"customer":null}"#)
        .await;
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("customer"))
    );

    for bad in ["not json", "[1,2]", ""] {
        let r = host.send("POST", "/api/order", bad).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.json()["error"].is_string());
    }
    let r = host.get("/api/order?colour=red").await;
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("colour"))
    );
    let r = host.get("/api/order?quantity=many").await;
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (400, json!("quantity"))
    );
    let r = host.get("/api/order?limit=-1").await;
    assert_eq!((r.status, r.json()["field"].clone()), (400, json!("limit")));
    let r = host.get("/api/order/abc").await;
    assert_eq!((r.status, r.json()["field"].clone()), (400, json!("id")));

    // Nothing invalid got in.
    assert_eq!(
        host.get("/api/order").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    host.stop().await.unwrap();
}

#[tokio::test]
async fn field_rules_are_enforced_naming_the_field_and_defaults_fill_in() {
    let pg = Postgres::start();
    let mut config = neo_apphost::Config::new(support::fixture("rules"));
    config.database_url = Some(pg.url());
    let host = Host::start_ready(config).await;

    // Defaults fill what a create leaves out; rules kept, the row is stored.
    let r = host.send("POST", "/api/coupon", r#"{"code":"ABC1"}"#).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    assert_eq!(
        (
            created["percent"].clone(),
            created["state"].clone(),
            created["shown"].clone()
        ),
        (json!(10), json!("new"), json!(true))
    );

    // Each rule refused with 422, naming the field and the rule.
    let cases = [
        (r#"{"code":"ABCDEFGH1"}"#, "code", "at most 8 characters"),
        (r#"{"code":"abc1"}"#, "code", "pattern"),
        (r#"{"code":"ABC2","percent":0}"#, "percent", "at least 1"),
        (r#"{"code":"ABC2","percent":91}"#, "percent", "at most 90"),
        (
            r#"{"code":"ABC2","minimum":"0.25"}"#,
            "minimum",
            "at least 0.5",
        ),
        (
            r#"{"code":"ABC2","state":"lost"}"#,
            "state",
            "one of: new, used",
        ),
    ];
    for (body, field, rule) in cases {
        let r = host.send("POST", "/api/coupon", body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
        let error = r.json()["error"].as_str().unwrap().to_owned();
        assert!(
            error.contains(field) && error.contains(rule),
            "{body}: {error}"
        );
    }
    let id = created["id"].as_i64().unwrap();
    let r = host
        .send("PATCH", &format!("/api/coupon/{id}"), r#"{"percent":95}"#)
        .await;
    assert_eq!(
        (r.status, r.json()["field"].clone()),
        (422, json!("percent"))
    );

    // A second row with the same unique value: 409 naming the field.
    let r = host.send("POST", "/api/coupon", r#"{"code":"ABC1"}"#).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["field"], "code", "{}", r.body);
    assert_eq!(r.json()["error"], "another Coupon has this code");

    // The contract shows each field's rules.
    let contract = host.get("/api").await.json();
    let code = &contract["entities"][0]["fields"][0];
    assert_eq!(
        (code["unique"].clone(), code["max_length"].clone()),
        (json!(true), json!(8))
    );
    assert_eq!(
        contract["entities"][0]["fields"][3]["values"],
        json!(["new", "used"])
    );

    // Nothing that broke a rule got in.
    let items = host.get("/api/coupon").await.json()["items"].clone();
    assert_eq!(items.as_array().unwrap().len(), 1, "{items}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_row_lists_the_rows_that_refer_to_it() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;
    let lamp = host
        .send("POST", "/api/product", r#"{"title":"Lamp","price":"20"}"#)
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    let desk = host
        .send("POST", "/api/product", r#"{"title":"Desk","price":"90"}"#)
        .await
        .json()["id"]
        .as_i64()
        .unwrap();
    for (customer, product, quantity) in [("A", lamp, 1), ("B", lamp, 2), ("C", desk, 1)] {
        let body = json!({"customer": customer, "product": product, "quantity": quantity});
        assert_eq!(
            host.send("POST", "/api/order", &body.to_string())
                .await
                .status,
            201
        );
    }

    // The lamp's orders, and only those; paged and filtered like a list.
    let orders = host.get(&format!("/api/product/{lamp}/order")).await.json();
    let customers: Vec<&str> = orders["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["customer"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["A", "B"]);
    let filtered = host
        .get(&format!("/api/product/{lamp}/order?quantity=2&limit=5"))
        .await
        .json();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["limit"], 5);
    let via = host
        .get(&format!("/api/product/{desk}/order?via=product"))
        .await
        .json();
    assert_eq!(via["items"][0]["customer"], "C");

    // What does not exist, or does not refer, is said so.
    assert_eq!(host.get("/api/product/999/order").await.status, 404);
    assert_eq!(
        host.get(&format!("/api/order/{lamp}/product")).await.status,
        404
    );
    let r = host
        .get(&format!("/api/product/{lamp}/order?via=customer"))
        .await;
    assert_eq!((r.status, r.json()["field"].clone()), (400, json!("via")));
    host.stop().await.unwrap();
}

#[tokio::test]
async fn references_name_existing_rows_and_a_referenced_row_stays() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;
    let dangling = host
        .send("POST", "/api/order", r#"{"customer":"Ann","product":99}"#)
        .await;
    assert_eq!(dangling.status, 422, "{}", dangling.body);
    assert_eq!(dangling.json()["field"], "product");
    assert_eq!(dangling.json()["error"], "product: no Product with id 99");

    let lamp = host
        .send("POST", "/api/product", r#"{"title":"Lamp","price":"5"}"#)
        .await
        .json();
    let body = json!({"customer": "Ann", "product": lamp["id"]});
    let order = host.send("POST", "/api/order", &body.to_string()).await;
    assert_eq!(order.status, 201);
    let patch = host.send("PATCH", "/api/order/1", r#"{"product":7}"#).await;
    assert_eq!(patch.status, 422);

    let kept = host.send("DELETE", "/api/product/1", "").await;
    assert_eq!(kept.status, 409);
    assert_eq!(
        kept.json()["error"],
        "Product 1 is referenced by other rows (Order.product)"
    );
    assert_eq!(host.send("DELETE", "/api/order/1", "").await.status, 204);
    assert_eq!(host.send("DELETE", "/api/product/1", "").await.status, 204);
}
