//! The generated screens against a real Postgres, as a browser without script uses them: pages
//! read as HTML, forms posted, redirects followed by hand.
#![allow(clippy::unwrap_used)]

mod support;

use support::{Host, Postgres, Reply, config, config_with_secret, fixture};

/// Where a 303 sends the browser, resolved against the page that posted (relative to it).
fn location(reply: &Reply) -> String {
    assert_eq!(reply.status, 303, "{}", reply.body);
    reply.headers["location"].to_str().unwrap().to_owned()
}

/// The text of the element with `id`, roughly: what follows its opening tag up to the next `<`.
fn text_of(page: &str, id: &str) -> Option<String> {
    let at = page.find(&format!("id=\"{id}\""))?;
    let rest = &page[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(rest[start..end].to_owned())
}

#[tokio::test]
async fn forms_create_edit_and_delete_rows_and_say_what_is_wrong_beside_each_field() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;

    // The home page lists the entities; the project's own index.html still owns `/`.
    let home = host.get("/ui").await;
    assert_eq!(home.status, 200);
    assert!(home.content_type.starts_with("text/html"));
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"));
    assert!(home.body.contains(r#"href="ui/product""#) && home.body.contains(r#"href="ui/order""#));
    assert!(home.body.contains(r#"<base href="./">"#));
    assert_ne!(host.get("/").await.body, home.body);

    // An empty required field and a price that is no number: both refused, each beside its
    // field, what was typed kept.
    let refused = host
        .post_form("/ui/product", &[("title", ""), ("price", "cheap")])
        .await;
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        text_of(&refused.body, "field-title-error").as_deref(),
        Some("title is required")
    );
    let price_error = text_of(&refused.body, "field-price-error").unwrap();
    assert!(price_error.contains("decimal"), "{price_error}");
    assert!(refused.body.contains(r#"value="cheap""#));
    assert!(refused.body.contains(r#"aria-invalid="true""#));
    assert_eq!(
        host.get("/api/product").await.json()["items"],
        serde_json::json!([])
    );

    let created = host
        .post_form("/ui/product", &[("title", "Lamp"), ("price", "19.90")])
        .await;
    assert_eq!(location(&created), "../ui/product/1");
    let lamp = host.get("/ui/product/1").await;
    assert_eq!(lamp.status, 200);
    assert!(lamp.body.contains("<h1>Product Lamp</h1>"), "{}", lamp.body);
    assert!(lamp.body.contains("19.90"));
    assert!(lamp.body.contains(r#"<base href="../../">"#));
    // The orders of this product, with a link that starts one for it.
    assert!(lamp.body.contains(r#"href="ui/order/new?product=1""#));

    // The order form picks the product from a list, preselected from the link.
    let new_order = host.get("/ui/order/new?product=1").await;
    assert_eq!(new_order.status, 200);
    assert!(
        new_order
            .body
            .contains(r#"<option value="1" selected>Lamp (#1)</option>"#),
        "{}",
        new_order.body
    );
    let placed = host
        .post_form(
            "/ui/order",
            &[
                ("customer", "Ann"),
                ("product", "1"),
                ("quantity", "2"),
                ("paid", "true"),
                ("due", "2026-12-24"),
                ("placed_at", "2026-12-03T10:15"),
                ("total", ""),
            ],
        )
        .await;
    assert_eq!(location(&placed), "../ui/order/1");
    let order = host.get("/api/order/1").await.json();
    assert_eq!(order["placed_at"], "2026-12-03T10:15:00+00:00");
    assert_eq!(order["paid"], true);
    assert_eq!(order["total"], serde_json::Value::Null);
    // A reference to a row that does not exist is refused beside its field.
    let dangling = host
        .post_form("/ui/order", &[("customer", "Bob"), ("product", "99")])
        .await;
    assert_eq!(dangling.status, 422);
    assert!(
        text_of(&dangling.body, "field-product-error")
            .unwrap()
            .contains("no Product with id 99")
    );

    // The list shows the product's label as a link; the product's page lists the order.
    let orders = host.get("/ui/order").await;
    assert!(orders.body.contains(r#"<a href="ui/product/1">Lamp</a>"#));
    let lamp = host.get("/ui/product/1").await;
    assert!(lamp.body.contains(r#"<a href="ui/order/1">1</a>"#));

    // Editing: the form holds the row's values; a cleared required field is refused.
    let edit = host.get("/ui/order/1/edit").await;
    assert!(edit.body.contains(r#"value="2026-12-03T10:15:00""#));
    let cleared = host
        .post_form("/ui/order/1", &[("customer", ""), ("product", "1")])
        .await;
    assert_eq!(cleared.status, 422);
    assert_eq!(
        text_of(&cleared.body, "field-customer-error").as_deref(),
        Some("customer is required")
    );
    let saved = host
        .post_form("/ui/order/1", &[("customer", "Anna"), ("product", "1")])
        .await;
    assert_eq!(location(&saved), "../../ui/order/1");
    assert_eq!(host.get("/api/order/1").await.json()["customer"], "Anna");

    // A product with an order cannot go; the order can, and then the product.
    let kept = host.post_form("/ui/product/1/delete", &[]).await;
    assert_eq!(kept.status, 409);
    assert!(kept.body.contains("is referenced by other rows"));
    let gone = host.post_form("/ui/order/1/delete", &[]).await;
    assert_eq!(location(&gone), "../../../ui/order");
    assert_eq!(
        location(&host.post_form("/ui/product/1/delete", &[]).await),
        "../../../ui/product"
    );
    assert_eq!(host.get("/ui/product/1").await.status, 404);
    assert_eq!(host.get("/ui/nothing").await.status, 404);
}

#[tokio::test]
async fn lists_page_sort_and_filter() {
    let pg = Postgres::start();
    let host = Host::start_ready(config_with_secret(Some(&pg))).await;
    for i in 1..=30 {
        let body = format!(r#"{{"title":"Item {i:02}","price":"{i}.50"}}"#);
        assert_eq!(host.send("POST", "/api/product", &body).await.status, 201);
    }

    let first = host.get("/ui/product").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body.matches("<tr>").count(), 1 + 25);
    assert!(first.body.contains("Rows 1–25"));
    assert!(
        first
            .body
            .contains(r#"rel="next" href="ui/product?offset=25""#)
    );
    assert!(!first.body.contains(r#"rel="prev""#));
    let second = host.get("/ui/product?offset=25").await;
    assert!(second.body.contains("Rows 26–30"));
    assert!(second.body.contains(r#"rel="prev" href="ui/product""#));
    assert!(!second.body.contains(r#"rel="next""#));

    // Sorted by price, largest first: Item 30 leads; the heading links the other way round.
    let sorted = host.get("/ui/product?sort=-price").await;
    let item_30 = sorted.body.find("Item 30").unwrap();
    let item_29 = sorted.body.find("Item 29").unwrap();
    assert!(item_30 < item_29);
    assert!(sorted.body.contains(r#"aria-sort="descending""#));
    assert!(sorted.body.contains(r#"href="ui/product?sort=price""#));
    // The API sorts the same way.
    let api = host.get("/api/product?sort=-price&limit=1").await.json();
    assert_eq!(api["items"][0]["title"], "Item 30");
    assert_eq!(host.get("/api/product?sort=colour").await.status, 400);

    // A filter, with the other inputs left empty as a browser sends them.
    let filtered = host.get("/ui/product?title=Item+07&price=&sort=").await;
    assert_eq!(filtered.body.matches("<tr>").count(), 1 + 1);
    assert!(filtered.body.contains("Item 07"));
    let none = host.get("/ui/product?title=Nothing").await;
    assert!(none.body.contains("No Product matches these filters."));
}

#[tokio::test]
async fn rules_show_as_inputs_and_hints_and_refusals_name_their_field() {
    let pg = Postgres::start();
    let mut config = config(Some(&pg));
    config.bundle_dir = fixture("rules");
    let host = Host::start_ready(config).await;

    // Defaults fill the new form; an enumeration is a choice; the rules are said.
    let form = host.get("/ui/coupon/new").await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains(r#"<option value="new" selected>new</option>"#),
        "{}",
        form.body
    );
    assert!(
        form.body
            .contains(r#"name="percent" type="number" value="10" step="1" min="1" max="90""#),
        "{}",
        form.body
    );
    assert!(form.body.contains("up to 8 characters"));

    let broken = host
        .post_form(
            "/ui/coupon",
            &[("code", "abc"), ("percent", "95"), ("state", "new")],
        )
        .await;
    assert_eq!(broken.status, 422);
    assert!(
        text_of(&broken.body, "field-code-error")
            .unwrap()
            .contains("must match")
    );
    assert_eq!(
        text_of(&broken.body, "field-percent-error").as_deref(),
        Some("percent must be at most 90")
    );

    let fine = [("code", "ABC1"), ("percent", "20"), ("state", "new")];
    assert_eq!(host.post_form("/ui/coupon", &fine).await.status, 303);
    let twice = host.post_form("/ui/coupon", &fine).await;
    assert_eq!(twice.status, 422);
    assert_eq!(
        text_of(&twice.body, "field-code-error").as_deref(),
        Some("another Coupon has this code")
    );
}

#[tokio::test]
async fn a_projects_own_screen_replaces_the_generated_list() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    copy_dir(&fixture("rules"), &bundle);
    std::fs::create_dir_all(bundle.join("screens")).unwrap();
    std::fs::write(bundle.join("screens/coupon.html"), "<p>our coupons</p>").unwrap();
    std::fs::write(bundle.join("screens/report.html"), "<p>report</p>").unwrap();
    let mut config = config(None);
    config.bundle_dir = bundle;
    let host = Host::start(config).await;

    assert_eq!(host.get("/ui/coupon").await.body, "<p>our coupons</p>");
    // Without its own index.html, `/` is the generated home, which links the other screen.
    let home = host.get("/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body
            .contains(r#"<a href="screens/report.html">report</a>"#),
        "{}",
        home.body
    );
    assert!(!home.body.contains("screens/coupon.html"));
    // No database: a page that needs one says so with 503.
    let form = host.get("/ui/coupon/new").await;
    assert_eq!(form.status, 503);
    assert!(form.content_type.starts_with("text/html"));
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
