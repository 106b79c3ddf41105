//! Tenants isolated at run time, on real servers: each app on each stage connects to the stage
//! database as its own role, which reads no other tenant's schema (Postgres says `permission
//! denied`), and a deleted tenant's replicas stop on every stage while its schemas and roles
//! are dropped; another tenant's app keeps serving; a consumer never reaches another tenant's
//! producer.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use neo_gateway::api;
use neo_harness::PostgresServer;
use neo_runtime_agent::driver::PodgroupKey;
use neo_runtime_agent::driver::database::{DatabaseError, StageDatabase, role};
use neo_tests::build_stack::example;
use neo_tests::eventually;
use neo_tests::gateway::req;
use neo_tests::runtime_stack::{RuntimeStack, get, post_json};
use serde_json::json;
use sqlx::PgPool;

fn key(tenant: &str, app: &str, stage: &str) -> PodgroupKey {
    PodgroupKey {
        tenant: tenant.into(),
        app: app.into(),
        stage: stage.into(),
    }
}

/// The error text of a statement run on `pool` (it must fail).
async fn refused(pool: &PgPool, sql: &str) -> String {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .expect_err(sql)
        .to_string()
}

#[tokio::test]
async fn each_app_gets_its_own_role_that_reads_no_other_tenants_schema() {
    let pg = PostgresServer::start().await.unwrap();
    pg.create_database("neo_dev").await.unwrap();
    let db = StageDatabase::new(&pg.url("neo_dev")).unwrap();
    let (x, y) = (key("x", "shop", "dev"), key("y", "shop", "dev"));
    let x_url = db.provision(&x).await.unwrap();
    let y_url = db.provision(&y).await.unwrap();
    assert!(!x_url.starts_with("postgres://postgres"), "{x_url}");
    assert_ne!(x_url, y_url);

    let as_x = PgPool::connect(&x_url).await.unwrap();
    let as_y = PgPool::connect(&y_url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE y_shop.cards (number text); INSERT INTO y_shop.cards VALUES ('4111')",
    )
    .execute(&as_y)
    .await
    .unwrap();
    sqlx::raw_sql("CREATE TABLE x_shop.orders (id int); INSERT INTO x_shop.orders VALUES (1)")
        .execute(&as_x)
        .await
        .unwrap();

    // App A of tenant X cannot read, change or add to tenant Y's schema.
    for sql in [
        "SELECT * FROM y_shop.cards",
        "DELETE FROM y_shop.cards",
        "CREATE TABLE y_shop.mine (id int)",
    ] {
        let error = refused(&as_x, sql).await;
        assert!(
            error.contains("permission denied for schema y_shop"),
            "{sql}: {error}"
        );
    }
    // Nor can it make a schema, be a superuser, or become the admin.
    let error = refused(&as_x, "CREATE SCHEMA y_shop_copy").await;
    assert!(error.contains("permission denied"), "{error}");
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&as_x)
            .await
            .unwrap();
    assert!(!superuser);
    let error = refused(&as_x, "SET ROLE postgres").await;
    assert!(error.contains("permission denied"), "{error}");
    // The admin without its password is refused over TCP.
    let no_password = format!("postgres://postgres@127.0.0.1:{}/neo_dev", pg.port());
    let error = PgPool::connect(&no_password).await.unwrap_err().to_string();
    assert!(error.contains("password"), "{error}");
    // Its own schema is its own.
    let mine: i32 = sqlx::query_scalar("SELECT id FROM x_shop.orders")
        .fetch_one(&as_x)
        .await
        .unwrap();
    assert_eq!(mine, 1);

    // The same app on another stage of the same cluster is another role.
    pg.create_database("neo_test").await.unwrap();
    let test_db = StageDatabase::new(&pg.url("neo_test")).unwrap();
    let x_test = test_db.provision(&key("x", "shop", "test")).await.unwrap();
    let as_x_on_test = PgPool::connect(&x_test.replace("/neo_test", "/neo_dev"))
        .await
        .unwrap();
    let error = refused(&as_x_on_test, "SELECT * FROM x_shop.orders").await;
    assert!(error.contains("permission denied"), "{error}");

    // After an agent restart the role and its password are the same: replicas keep working.
    let again = StageDatabase::new(&pg.url("neo_dev")).unwrap();
    assert_eq!(again.provision(&x).await.unwrap(), x_url);
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM x_shop.orders")
        .fetch_one(&PgPool::connect(&x_url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(still, 1);

    // A schema made before roles (by the admin) is handed over with its tables.
    let admin = PgPool::connect(&pg.url("neo_dev")).await.unwrap();
    sqlx::raw_sql("CREATE SCHEMA z_shop; CREATE TABLE z_shop.items (id int); INSERT INTO z_shop.items VALUES (7)")
        .execute(&admin)
        .await
        .unwrap();
    let z_url = db.provision(&key("z", "shop", "dev")).await.unwrap();
    let item: i32 = sqlx::query_scalar("SELECT id FROM z_shop.items")
        .fetch_one(&PgPool::connect(&z_url).await.unwrap())
        .await
        .unwrap();
    assert_eq!(item, 7);

    // Names that meet in one schema (`a-b`/`c`, `a`/`b-c`): the second is refused, not let in.
    db.provision(&key("a-b", "c", "dev")).await.unwrap();
    let taken = db.provision(&key("a", "b-c", "dev")).await.unwrap_err();
    assert!(
        matches!(&taken, DatabaseError::SchemaTaken { schema, .. } if schema == "a_b_c"),
        "{taken}"
    );

    // A deleted tenant's data goes: schema and role, and its sessions end.
    db.drop_app(&y).await.unwrap();
    db.drop_app(&y).await.unwrap();
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'y_shop')
              + (SELECT count(*) FROM pg_roles WHERE rolname = $1)",
    )
    .bind(role(&y))
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(left, 0);
    let error = PgPool::connect(&y_url).await.unwrap_err().to_string();
    assert!(
        error.contains("password authentication failed") || error.contains("does not exist"),
        "{error}"
    );
    // X's data is untouched.
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM x_shop.orders")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(still, 1);
}

/// The environments of the replicas of `tenant`'s `app` on `stage` that run from this stack's
/// images (other tests' replicas may run beside them).
fn replica_envs(
    data: &Path,
    tenant: &str,
    app: &str,
    stage: &str,
) -> Vec<BTreeMap<String, String>> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let data = data.to_string_lossy().into_owned();
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read(e.path().join("environ")).ok())
        .map(|raw| {
            raw.split(|b| *b == 0)
                .filter_map(|entry| {
                    let entry = String::from_utf8_lossy(entry);
                    let (k, v) = entry.split_once('=')?;
                    Some((k.to_owned(), v.to_owned()))
                })
                .collect::<BTreeMap<_, _>>()
        })
        .filter(|env| {
            env.get("NEO_TENANT").map(String::as_str) == Some(tenant)
                && env.get("NEO_APP").map(String::as_str) == Some(app)
                && env.get("NEO_STAGE").map(String::as_str) == Some(stage)
                && env
                    .get("NEO_BUNDLE_DIR")
                    .is_some_and(|d| d.starts_with(&data))
        })
        .collect()
}

/// Creates a row of `entity` in the app at `app_url`: its id.
async fn post(app_url: &str, entity: &str, row: serde_json::Value) -> i64 {
    let (status, body) = post_json(&format!("{app_url}/api/{entity}"), &row).await;
    assert_eq!(status, 201, "{body}");
    let created: serde_json::Value = serde_json::from_str(&body).unwrap();
    created["id"].as_i64().unwrap()
}

async fn serving(url: &str, what: &str) {
    eventually(Duration::from_secs(60), what, || async {
        get(&format!("{url}/healthz"))
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_tenant_stops_on_every_stage_and_its_data_is_dropped() {
    let stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    for (token, tenant) in [(&people.bob, "beta"), (&people.dave, "acme")] {
        stack
            .build
            .publish_deployed(token, tenant, &example("catalog"))
            .await
            .unwrap();
    }
    stack
        .build
        .stack
        .deployments(&people.bob)
        .promote(req::promote("beta", "catalog", "test"))
        .await
        .unwrap();
    let beta_dev = stack.url("dev", "beta", "catalog").unwrap();
    let beta_test = stack.url("test", "beta", "catalog").unwrap();
    let acme_dev = stack.url("dev", "acme", "catalog").unwrap();
    for (url, what) in [
        (&beta_dev, "beta on dev"),
        (&beta_test, "beta on test"),
        (&acme_dev, "acme on dev"),
    ] {
        serving(url, what).await;
    }

    // Each replica holds its own role's URL, never the stage's admin.
    let admin_dev = stack.build.postgres.url("neo_dev");
    let envs = replica_envs(stack.data.path(), "beta", "catalog", "dev");
    assert!(
        !envs.is_empty(),
        "no replica of beta's catalog on dev found"
    );
    let beta_url = envs[0]["NEO_DATABASE_URL"].clone();
    assert_ne!(beta_url, admin_dev);
    assert!(beta_url.starts_with("postgres://neo_"), "{beta_url}");
    let acme_url =
        replica_envs(stack.data.path(), "acme", "catalog", "dev")[0]["NEO_DATABASE_URL"].clone();
    let as_acme = PgPool::connect(&acme_url).await.unwrap();
    let error = refused(&as_acme, "SELECT * FROM beta_catalog.product").await;
    assert!(
        error.contains("permission denied for schema beta_catalog"),
        "{error}"
    );

    // A consumer reads its own tenant's producers only: acme's orders is told where acme's
    // apps answer, and a product of beta's catalog is no product to it.
    let beta_product = post(
        &beta_dev,
        "product",
        json!({"title": "Beta kettle", "price": "9"}),
    )
    .await;
    stack
        .build
        .stack
        .settings(&people.dave)
        .set_secret(req::set_secret(
            "acme",
            "orders",
            "dev",
            "payment_api_key",
            "sk-test",
        ))
        .await
        .unwrap();
    stack
        .build
        .publish_deployed(&people.dave, "acme", &example("orders"))
        .await
        .unwrap();
    let acme_orders = stack.url("dev", "acme", "orders").unwrap();
    serving(&acme_orders, "acme's orders on dev").await;
    for env in replica_envs(stack.data.path(), "acme", "orders", "dev") {
        let producers = &env["NEO_PRODUCERS"];
        assert!(producers.ends_with("/acme/{app}"), "{producers}");
    }
    let order = json!({"customer": "Ann", "product": beta_product, "quantity": 1});
    let (status, body) = post_json(&format!("{acme_orders}/api/order"), &order).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains(&format!("no Product with id {beta_product} in catalog")),
        "{body}"
    );

    stack
        .build
        .stack
        .tenants(&people.root)
        .delete_tenant(api::DeleteTenantRequest {
            tenant: "beta".into(),
            reason: "closing".into(),
        })
        .await
        .unwrap();

    // Stopped on every stage: no replica left, the load balancers no longer route to it.
    let data = stack.data.path().to_owned();
    eventually(Duration::from_secs(60), "beta's replicas stopped", || {
        let data = data.clone();
        async move {
            let left: usize = ["dev", "test"]
                .iter()
                .map(|stage| replica_envs(&data, "beta", "catalog", stage).len())
                .sum();
            (left == 0).then_some(())
        }
    })
    .await;
    // The route goes with the podgroup, a moment after its replicas (503 "no ready replica"
    // meanwhile).
    for url in [&beta_dev, &beta_test] {
        eventually(Duration::from_secs(15), "beta's route removed", || async {
            let answer = get(&format!("{url}/healthz")).await;
            answer
                .as_ref()
                .is_none_or(|(status, _)| *status == 404)
                .then_some(())
        })
        .await;
    }
    // Its schemas and roles are dropped on both stages' databases.
    for stage in ["dev", "test"] {
        let admin = PgPool::connect(&stack.build.postgres.url(&format!("neo_{stage}")))
            .await
            .unwrap();
        eventually(Duration::from_secs(30), "beta's schema dropped", || async {
            let left: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_namespace WHERE nspname = 'beta_catalog'",
            )
            .fetch_one(&admin)
            .await
            .ok()?;
            (left == 0).then_some(())
        })
        .await;
    }
    let error = PgPool::connect(&beta_url).await.unwrap_err().to_string();
    assert!(error.contains("password authentication failed"), "{error}");

    // The other tenant keeps serving, with its data.
    let (status, _) = get(&format!("{acme_dev}/api/product")).await.unwrap();
    assert_eq!(status, 200);
    assert!(!replica_envs(stack.data.path(), "acme", "catalog", "dev").is_empty());
}
