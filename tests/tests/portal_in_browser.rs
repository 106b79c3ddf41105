//! The portal in real headless Chromium (Debian's `chromium` through `chromedriver`), served
//! over TLS against the real stack (nats-server, Postgres, the registry, S3, the platform, a
//! build worker, the process runtime on dev and test), used as a DevOps engineer and as a
//! viewer would: sign in, the published catalog on the board, a promotion confirmed and the
//! board changing without a reload, a build's log followed as it streams, a secret set and
//! never shown, logs filtered by level and text and tailed live, a metrics chart's points, the
//! audit trail, the app page, the board at 390 px; a viewer offered nothing and refused when
//! it tries. Each page's screenshot goes under `$CARGO_TARGET_DIR/portal` (the README's are
//! copies, `docs/portal/*.png`).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use neo_gateway::api;
use neo_harness::Browser;
use neo_portal::gateway::Gateway;
use neo_portal::{Portal, PortalConfig};
use neo_protocol::{AppName, StageName, TenantName, pb, subjects};
use neo_tests::build_stack::{edited, example};
use neo_tests::eventually;
use neo_tests::gateway::{password, req};
use neo_tests::runtime_stack::RuntimeStack;
use prost::Message;

/// Where the screenshots go (kept after a run).
fn shot(name: &str) -> PathBuf {
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    target.join("portal").join(format!("{name}.png"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap()
}

/// The portal over TLS with a certificate for 127.0.0.1 (the browser ignores its issuer).
async fn portal(stack: &RuntimeStack, dir: &std::path::Path) -> Portal {
    let files = neo_server::certs::init(dir, &["127.0.0.1".to_owned()]).unwrap();
    let tls = neo_server::portal::server_config(&files.cert, &files.key).unwrap();
    let config = PortalConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(Arc::new(tls)),
    };
    Portal::start(config, Gateway::new(stack.build.stack.channel()))
        .await
        .unwrap()
}

/// Loads `url` again until `css`'s text contains `needle` (what the page shows changes with
/// the agents' reports, which are not events).
async fn until_shown(browser: &Browser, url: &str, css: &str, needle: &str) -> String {
    eventually(
        Duration::from_secs(120),
        &format!("{css} shows {needle}"),
        || async {
            browser.goto(url).await.ok()?;
            let text = browser.text_now(css).await.ok()??;
            text.contains(needle).then_some(text)
        },
    )
    .await
}

async fn sign_in(browser: &Browser, base: &str, user: &str) {
    browser.goto(&format!("{base}/login")).await.unwrap();
    browser.fill("#user", user).await.unwrap();
    browser.fill("#password", &password(user)).await.unwrap();
    browser.fill("#tenant", "acme").await.unwrap();
    browser.click("#sign-in").await.unwrap();
    browser.wait_until_text("#who-user", user).await.unwrap();
}

/// Publishes log lines of catalog on dev as its agent does.
async fn log(stack: &RuntimeStack, lines: &[(pb::LogLevel, &str)]) {
    let at = now_ms();
    let batch = pb::LogBatch {
        lines: lines
            .iter()
            .map(|(level, text)| pb::LogLine {
                replica: "catalog-dev-probe".into(),
                level: *level as i32,
                at_ms: at,
                text: (*text).to_owned(),
                stream: "stdout".into(),
                ..Default::default()
            })
            .collect(),
    };
    let subject = subjects::runtime(
        &TenantName::new("acme").unwrap(),
        &StageName::new("dev").unwrap(),
        &AppName::new("catalog").unwrap(),
        subjects::Channel::Logs.as_str(),
    );
    let js = async_nats::jetstream::new(stack.build.stack.platform.client.clone());
    js.publish(subject, batch.encode_to_vec().into())
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_devops_engineer_and_a_viewer_use_the_portal_in_chromium() {
    let stack = RuntimeStack::start(&["dev", "test"]).await.unwrap();
    let people = stack.build.stack.people().await.unwrap();
    stack
        .build
        .publish_deployed(&people.dave, "acme", &example("catalog"))
        .await
        .unwrap();
    let certs = tempfile::tempdir().unwrap();
    let portal = portal(&stack, certs.path()).await;
    let base = portal.url();
    let mut browser = Browser::start().await.unwrap();
    browser.set_timeout(Duration::from_secs(60));

    // Sign in; catalog is on the board at dev once its replica is ready.
    sign_in(&browser, &base, "otto").await;
    until_shown(
        &browser,
        &format!("{base}/"),
        "#cell-catalog-dev",
        "1/1 ready",
    )
    .await;
    let dev = browser.text("#cell-catalog-dev").await.unwrap();
    assert!(dev.contains("v1 · revision 1"), "{dev}");
    browser.screenshot(shot("board")).await.unwrap();

    // Promote it to test after reading its impact.
    browser.click("#cell-catalog-test a.action").await.unwrap();
    browser.wait_for("#impact").await.unwrap();
    browser.screenshot(shot("promote")).await.unwrap();
    browser.click("#confirm").await.unwrap();
    browser
        .wait_until_text("#cell-catalog-test", "v1 · revision 1")
        .await
        .unwrap();

    // The board changes without a reload: a settings change on test (made elsewhere) is a new
    // release, and the board element found before it is still the page's.
    let board = browser.wait_for("#board").await.unwrap();
    let mut change = api::ChangeSettingsRequest {
        tenant: "acme".into(),
        app: "catalog".into(),
        stage: "test".into(),
        ..Default::default()
    };
    change.set.insert("greeting".into(), "hello".into());
    stack
        .build
        .stack
        .settings(&people.otto)
        .change_settings(change)
        .await
        .unwrap();
    browser
        .wait_until_text("#cell-catalog-test", "v2 · revision 1")
        .await
        .unwrap();
    assert!(
        board.text().await.unwrap().contains("v2 · revision 1"),
        "the same page, refreshed in place"
    );

    // A new revision on dev promoted to test as a canary: the board shows its step and share
    // with the buttons that end it; aborted there, v2 serves everything again.
    let r2 = edited("catalog", |m| {
        m.replace(
            "The products we sell, in categories",
            "The products we sell",
        )
    })
    .unwrap();
    stack
        .build
        .publish_deployed(&people.dave, "acme", r2.path())
        .await
        .unwrap();
    browser
        .goto(&format!("{base}/promote?app=catalog&stage=test"))
        .await
        .unwrap();
    browser.wait_for("#impact").await.unwrap();
    browser.click("#canary").await.unwrap();
    browser.click("#confirm").await.unwrap();
    let cell = browser
        .wait_until_text("#cell-catalog-test", "canary v3: step 1 of 2")
        .await
        .unwrap();
    assert!(cell.contains("(v2 the rest)"), "{cell}");
    browser
        .click("#cell-catalog-test form[action='/canary/abort'] button")
        .await
        .unwrap();
    browser
        .wait_until_text("#cell-catalog-test", "canary v3 rolled back to v2")
        .await
        .unwrap();

    // A secret: a bad name is refused beside its field; a good one is set and its value is
    // never shown back.
    let settings = format!("{base}/apps/catalog/dev/settings");
    browser.goto(&settings).await.unwrap();
    browser.fill("#secret-name", "Not A Name").await.unwrap();
    browser.fill("#secret-value", "whatever").await.unwrap();
    browser.click("#secret-form button").await.unwrap();
    browser.wait_for("#field-secret-name-error").await.unwrap();
    browser
        .fill("#secret-name", "payment_api_key")
        .await
        .unwrap();
    browser
        .fill("#secret-value", "s3cr3t-value-42")
        .await
        .unwrap();
    browser.click("#secret-form button").await.unwrap();
    browser.wait_until_text("#done", "version 1").await.unwrap();
    browser.goto(&settings).await.unwrap();
    let row = browser.text("#secret-payment_api_key").await.unwrap();
    assert!(
        row.contains("payment_api_key") && row.contains('1'),
        "{row}"
    );
    let source = browser.source().await.unwrap();
    assert!(
        !source.contains("s3cr3t-value-42"),
        "the value never comes back"
    );
    browser.screenshot(shot("settings")).await.unwrap();

    // A build's log, followed while it runs: orders is published meanwhile.
    browser.set_timeout(Duration::from_secs(180));
    let orders = example("orders");
    let publish = stack.build.publish_deployed(&people.dave, "acme", &orders);
    let follow = async {
        let builds = stack.build.stack.builds(&people.dave);
        eventually(Duration::from_secs(60), "orders' build requested", || {
            let mut builds = builds.clone();
            async move {
                builds
                    .get_build(req::get_build("acme", "orders_r1"))
                    .await
                    .ok()
            }
        })
        .await;
        browser
            .goto(&format!("{base}/builds/orders_r1"))
            .await
            .unwrap();
        browser
            .wait_until_text("#build-status", "built")
            .await
            .unwrap();
        let lines = browser.texts("#build-log li").await.unwrap();
        assert!(!lines.is_empty(), "the log's lines are on the page");
        browser.screenshot(shot("build")).await.unwrap();
    };
    let (published, ()) = tokio::join!(publish, follow);
    published.unwrap();
    browser.set_timeout(Duration::from_secs(60));

    // Logs: by level, then by text too.
    log(
        &stack,
        &[
            (pb::LogLevel::Info, "portal-check: order 17 placed"),
            (pb::LogLevel::Warn, "portal-check: order 18 is slow"),
            (pb::LogLevel::Error, "portal-check: payment failed"),
        ],
    )
    .await;
    let rows = until_shown(
        &browser,
        &format!("{base}/logs?app=catalog&text=portal-check"),
        "#log-lines",
        "payment failed",
    )
    .await;
    assert!(rows.contains("order 17 placed"), "{rows}");
    browser.select("#level", "warn").await.unwrap();
    browser.click("#filter").await.unwrap();
    browser
        .wait_until_text("#log-count", "2 lines")
        .await
        .unwrap();
    let rows = browser.texts("#log-lines tr").await.unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| !r.contains("order 17")), "{rows:?}");
    browser.fill("#text", "order").await.unwrap();
    browser.click("#filter").await.unwrap();
    browser
        .wait_until_text("#log-count", "1 lines")
        .await
        .unwrap();
    let rows = browser.texts("#log-lines tr").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].contains("order 18 is slow"), "{rows:?}");
    browser.screenshot(shot("logs")).await.unwrap();

    // The live tail: a line written after the page opened appears on it.
    browser
        .goto(&format!("{base}/logs?app=catalog&text=portal-tail&tail=1"))
        .await
        .unwrap();
    browser.wait_for("#log-lines").await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    log(&stack, &[(pb::LogLevel::Info, "portal-tail: a new line")]).await;
    browser
        .wait_until_text("#log-lines", "portal-tail: a new line")
        .await
        .unwrap();

    // Metrics: the chart draws the recorded observations.
    eventually(
        Duration::from_secs(120),
        "cpu points on the chart",
        || async {
            browser
                .goto(&format!("{base}/metrics?app=catalog&stage=dev&span=15m"))
                .await
                .ok()?;
            let points = browser.count("#chart-cpu circle.point").await.ok()?;
            (points > 0).then_some(())
        },
    )
    .await;
    browser.screenshot(shot("metrics")).await.unwrap();

    // Audit: the test stage's history, why its first release happened, the hash chain.
    browser
        .goto(&format!("{base}/audit?kind=deployment&id=catalog_test"))
        .await
        .unwrap();
    browser
        .wait_until_text("table.events", "ReleaseCreated")
        .await
        .unwrap();
    browser.screenshot(shot("audit")).await.unwrap();
    browser
        .click("table.events a[href^='/audit/why']")
        .await
        .unwrap();
    browser.wait_until_text("#why-root", "otto").await.unwrap();
    browser.goto(&format!("{base}/audit/verify")).await.unwrap();
    browser.wait_for("#verify-ok").await.unwrap();

    // The app: its revision, its releases per stage.
    browser.goto(&format!("{base}/apps/catalog")).await.unwrap();
    browser.wait_for("#revision-1").await.unwrap();
    browser
        .wait_until_text("#stage-test", "promoted from dev v1")
        .await
        .unwrap();
    browser.screenshot(shot("app")).await.unwrap();

    // Readable at 390 px.
    browser.resize(390, 844).await.unwrap();
    browser.goto(&format!("{base}/")).await.unwrap();
    browser.wait_for("#cell-catalog-dev").await.unwrap();
    browser.screenshot(shot("board-390")).await.unwrap();
    browser.resize(1280, 900).await.unwrap();

    // A viewer is offered nothing; the promotion it asks for anyway is refused by the server.
    browser.click("form.signout button").await.unwrap();
    browser.wait_for("#sign-in").await.unwrap();
    sign_in(&browser, &base, "vic").await;
    browser.wait_for("#cell-catalog-dev").await.unwrap();
    assert_eq!(
        browser.count("a.action").await.unwrap(),
        0,
        "a viewer is offered no action"
    );
    browser
        .goto(&format!("{base}/promote?app=catalog&stage=test"))
        .await
        .unwrap();
    browser.wait_for("#impact").await.unwrap();
    browser.click("#confirm").await.unwrap();
    let refused = browser.text("#release-error").await.unwrap();
    assert!(refused.contains("viewer"), "{refused}");

    browser.stop().await;
    portal.shutdown().await;
}
