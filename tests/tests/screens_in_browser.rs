//! The generated screens in real headless Chromium (Debian's `chromium` through
//! `chromedriver`), against the real stack: catalog and orders published on dev and used
//! through the stage's load balancer, as a new user would.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use neo_harness::Browser;
use neo_tests::build_stack::example;
use neo_tests::eventually;
use neo_tests::gateway::req;
use neo_tests::runtime_stack::{RuntimeStack, get, http};

const TENANT: &str = "acme";

/// Where the screenshots go: `target/screens` under the build directory (kept after a run).
fn shots() -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("screens")
}

async fn publish(stack: &RuntimeStack, token: &str, app: &str) {
    stack
        .build
        .publish_deployed(token, TENANT, &example(app))
        .await
        .unwrap();
}

async fn serving(url: &str) {
    eventually(Duration::from_secs(90), url, || async {
        get(&format!("{url}/readyz"))
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
}

/// Fills orders' form for `customer` (quantity 1) with the product chosen by its label, runs
/// `before_sending` if any, and sends it.
async fn order(
    browser: &Browser,
    orders: &str,
    customer: &str,
    product: &str,
    before_sending: Option<impl std::future::Future<Output = ()>>,
) {
    browser
        .goto(&format!("{orders}/ui/order/new"))
        .await
        .unwrap();
    browser.fill("#field-customer", customer).await.unwrap();
    browser.fill("#field-quantity", "1").await.unwrap();
    browser.select("#field-product", product).await.unwrap();
    if let Some(step) = before_sending {
        step.await;
    }
    browser
        .click("form.record button[type=submit]")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_user_fills_the_generated_forms_of_catalog_and_orders() {
    let stack = RuntimeStack::start(&["dev"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    publish(&stack, &people.dave, "catalog").await;
    stack
        .build
        .stack
        .settings(&people.dave)
        .set_secret(req::set_secret(
            TENANT,
            "orders",
            "dev",
            "payment_api_key",
            "sk-test",
        ))
        .await
        .unwrap();
    publish(&stack, &people.dave, "orders").await;
    let catalog = stack.url("dev", TENANT, "catalog").unwrap();
    let orders = stack.url("dev", TENANT, "orders").unwrap();
    serving(&catalog).await;
    serving(&orders).await;

    let browser = Browser::start().await.unwrap();
    let shots = shots();

    // The catalog's home page, generated: its entities, and its own added page.
    browser.goto(&format!("{catalog}/")).await.unwrap();
    assert_eq!(browser.text("h1").await.unwrap(), "catalog");
    browser.screenshot(shots.join("home.png")).await.unwrap();
    browser.click("header a[href='ui/category']").await.unwrap();
    browser.wait_until_text("h1", "Category").await.unwrap();

    // A category through the generated form.
    browser.click("a.button").await.unwrap();
    browser.wait_until_text("h1", "New Category").await.unwrap();
    browser.fill("#field-title", "Lamps").await.unwrap();
    browser
        .click("form.record button[type=submit]")
        .await
        .unwrap();
    browser
        .wait_until_text("h1", "Category Lamps")
        .await
        .unwrap();

    // A product: a required field left empty is refused beside it, what was typed stays.
    browser
        .goto(&format!("{catalog}/ui/product/new"))
        .await
        .unwrap();
    browser.fill("#field-price", "12.50").await.unwrap();
    browser
        .select("#field-category", "Lamps (#1)")
        .await
        .unwrap();
    browser
        .click("form.record button[type=submit]")
        .await
        .unwrap();
    let error = browser
        .wait_until_text("#field-title-error", "title is required")
        .await
        .unwrap();
    assert_eq!(error, "title is required");
    browser
        .screenshot(shots.join("form-error.png"))
        .await
        .unwrap();
    browser.fill("#field-title", "Desk lamp").await.unwrap();
    browser
        .click("form.record button[type=submit]")
        .await
        .unwrap();
    browser
        .wait_until_text("h1", "Product Desk lamp")
        .await
        .unwrap();

    // In the list, and in its category.
    browser.click("header a[href='ui/product']").await.unwrap();
    let rows = browser.texts("tbody tr").await.unwrap();
    assert!(
        rows.iter()
            .any(|r| r.contains("Desk lamp") && r.contains("Lamps")),
        "{rows:?}"
    );
    browser.screenshot(shots.join("list.png")).await.unwrap();
    browser
        .click("tbody a[href='ui/category/1']")
        .await
        .unwrap();
    browser
        .wait_until_text("h1", "Category Lamps")
        .await
        .unwrap();
    // Its sections: the categories under it (none), and its products.
    let related = browser.texts("section.related").await.unwrap();
    assert!(
        related
            .iter()
            .any(|s| s.starts_with("Product") && s.contains("Desk lamp")),
        "{related:?}"
    );

    // Orders picks the product from catalog, live, on the same stage.
    order(
        &browser,
        &orders,
        "Ann",
        "Desk lamp (#1)",
        None::<std::future::Ready<()>>,
    )
    .await;
    browser.wait_until_text("h1", "Order Ann").await.unwrap();
    let record = browser.text("dl.record").await.unwrap();
    assert!(record.contains("Desk lamp (#1)"), "{record}");
    browser.screenshot(shots.join("order.png")).await.unwrap();

    // A product that is gone by the time the order is sent: refused beside its field.
    let bulb = http()
        .post(format!("{catalog}/api/product"))
        .json(&serde_json::json!({"title": "Spare bulb", "price": "2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bulb.status(), 201);
    let before_sending = async {
        let deleted = http()
            .delete(format!("{catalog}/api/product/2"))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 204);
    };
    order(
        &browser,
        &orders,
        "Bob",
        "Spare bulb (#2)",
        Some(before_sending),
    )
    .await;
    let refused = browser
        .wait_until_text("#field-product-error", "no Product with id 2 in catalog")
        .await
        .unwrap();
    assert_eq!(refused, "product: no Product with id 2 in catalog");
    browser.stop().await;
}
