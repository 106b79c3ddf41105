//! The Prometheus endpoint of `neo serve`, scraped over HTTP while the real platform serves
//! commands through NATS: its counters move with what happens.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::net::SocketAddr;

use neo_actors::HostConfig;
use neo_protocol::{EntityRef, TenantName};
use neo_tests::commands::{create_tenant, request};
use neo_tests::{Core, expect_accepted, expect_error, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Scrapes `/metrics` with a plain HTTP/1.1 request; returns each sample line's value.
async fn scrape(addr: SocketAddr) -> (String, BTreeMap<String, f64>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let samples = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect();
    (head.to_owned(), samples)
}

fn value(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_is_scraped_and_its_counters_move() {
    let core = Core::start().await.unwrap();
    let platform = core.platform(HostConfig::default()).await.unwrap();
    let (addr, task) = neo_server::metrics_http::serve(
        "127.0.0.1:0".parse().unwrap(),
        Some(platform.platform.clone()),
    )
    .await
    .unwrap();
    let accepted = r#"neo_commands_total{kind="tenant",outcome="accepted"}"#;
    let rejected = r#"neo_commands_total{kind="tenant",outcome="rejected"}"#;
    let appends = r#"neo_append_seconds_count{kind="tenant"}"#;
    let (_, before) = scrape(addr).await;

    let client = core.connect().await.unwrap();
    let acme = EntityRef::tenant(&TenantName::new("acme").unwrap());
    expect_accepted(
        send(&client, &acme, &request(create_tenant("alice")))
            .await
            .unwrap(),
    );
    // Creating it again is refused by a rule.
    expect_error(
        send(&client, &acme, &request(create_tenant("alice")))
            .await
            .unwrap(),
    );

    let (_, after) = scrape(addr).await;
    assert_eq!(
        value(&after, accepted) - value(&before, accepted),
        1.0,
        "{after:#?}"
    );
    assert_eq!(
        value(&after, rejected) - value(&before, rejected),
        1.0,
        "{after:#?}"
    );
    assert!(value(&after, appends) >= 1.0, "{after:#?}");
    assert!(
        value(&after, r#"neo_live_actors{kind="all"}"#) >= 1.0,
        "{after:#?}"
    );
    task.abort();
}
