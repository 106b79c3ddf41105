//! The stage's edge in front of the load balancer, against a real backend over real sockets:
//! TLS, headers as the app sees them, size limits, slow clients cut off, rates per client and
//! per app, traversal refused; each refusal counted with its reason while other clients are
//! served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use neo_runtime_agent::driver::process::edge::rate::Rate;
use neo_runtime_agent::driver::process::edge::{AppLimits, Edge, EdgeConfig};
use neo_runtime_agent::driver::process::lb::{self, Routes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers with what it received: method, path, headers and body length.
async fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: Request<hyper::body::Incoming>| async move {
                        let (head, body) = request.into_parts();
                        let length = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes().len())
                            .unwrap_or(0);
                        let headers: serde_json::Map<String, serde_json::Value> = head
                            .headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").into()))
                            .collect();
                        let answer = serde_json::json!({
                            "method": head.method.as_str(),
                            "path": head.uri.to_string(),
                            "headers": headers,
                            "body": length,
                        });
                        let mut response =
                            Response::new(Full::new(Bytes::from(answer.to_string())));
                        // A hop-by-hop header the edge must not pass back.
                        response
                            .headers_mut()
                            .insert("keep-alive", "timeout=99".parse().unwrap());
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An edge with `config` in front of one app, `acme/shop`, served by an echo backend.
async fn edge(config: EdgeConfig) -> (SocketAddr, Arc<Routes>) {
    let backend = echo_backend().await;
    let routes = Arc::new(Routes::default());
    routes.set("acme", "shop", vec![backend]);
    routes.set_synced();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = lb::serve(listener, routes.clone(), Edge::new(config));
    // Served until the test process ends.
    std::mem::forget(task);
    (addr, routes)
}

fn config() -> EdgeConfig {
    let mut config = EdgeConfig::new("edgetest");
    config.header_timeout = Duration::from_millis(800);
    config.body_timeout = Duration::from_millis(800);
    config
}

fn client_from(source: IpAddr) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn client() -> reqwest::Client {
    client_from(IpAddr::from([127, 0, 0, 1]))
}

/// `neo_edge_refusals_total` for `reason` on the test's stage.
fn refusals(reason: &str) -> u64 {
    let text = neo_telemetry::metrics::global().encode();
    let line = format!("neo_edge_refusals_total{{stage=\"edgetest\",reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn tls_is_served_and_the_app_sees_forwarded_headers_but_no_hop_by_hop_ones() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("edge.pem"), dir.path().join("edge-key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let (addr, _routes) = edge(config().with_tls(&cert, &key).unwrap()).await;
    let https = reqwest::Client::builder()
        .no_proxy()
        .resolve("localhost", addr)
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let response = https
        .get(format!(
            "https://localhost:{}/acme/shop/api/product?page=2",
            addr.port()
        ))
        .header("x-forwarded-for", "203.0.113.9")
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["strict-transport-security"], "max-age=31536000");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(!headers.contains_key("keep-alive"), "{headers:?}");
    let seen: serde_json::Value = response.json().await.unwrap();
    assert_eq!(seen["path"], "/api/product?page=2");
    let sent = &seen["headers"];
    assert_eq!(sent["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(sent["x-forwarded-proto"], "https");
    assert_eq!(
        sent["x-forwarded-host"],
        format!("localhost:{}", addr.port())
    );
    assert!(sent.get("x-hop").is_none(), "{sent}");
    assert!(sent.get("proxy-authorization").is_none(), "{sent}");
    let traceparent = sent["traceparent"].as_str().unwrap();
    assert!(
        neo_runtime_agent::driver::process::edge::headers::is_traceparent(traceparent),
        "{traceparent}"
    );

    // Plain HTTP to the TLS address is served from loopback only (the stage's replicas read
    // their producers so), and said to be plain to the app, without HSTS.
    let plain = client()
        .get(format!("http://{addr}/acme/shop/api/product"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    assert!(!plain.headers().contains_key("strict-transport-security"));
    let seen: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "http");
}

#[tokio::test]
async fn oversized_headers_and_bodies_are_refused_while_others_are_served() {
    let (addr, routes) = edge(config()).await;
    let client = client();
    let url = format!("http://{addr}/acme/shop/api/product");

    let big = "x".repeat(20 << 10);
    let refused = client.get(&url).header("x-big", &big).send().await;
    if let Ok(response) = refused {
        assert_eq!(response.status(), 431);
    }
    let many = (0..150).fold(client.get(&url), |r, i| r.header(format!("x-h{i}"), "1"));
    assert_eq!(many.send().await.unwrap().status(), 431);

    // The app's own body limit, from its stage settings.
    routes.set_limits(
        "acme",
        "shop",
        AppLimits {
            max_body_bytes: Some(1024),
            rate: None,
        },
    );
    let response = client
        .post(&url)
        .body(vec![b'a'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("at most 1024 bytes") && text.contains("body_size"),
        "{text}"
    );
    let fits = client
        .post(&url)
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(fits.status(), 200);
    let seen: serde_json::Value = fits.json().await.unwrap();
    assert_eq!(seen["body"], 1000);
    assert!(refusals("header_size") >= 1);
    assert_eq!(refusals("body_size"), 1);
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_others_keep_being_served() {
    let (addr, _routes) = edge(config()).await;
    // Slow headers: a request line, one header, then nothing.
    let mut slow_headers = TcpStream::connect(addr).await.unwrap();
    slow_headers
        .write_all(b"GET /acme/shop/ HTTP/1.1\r\nHost: shop\r\n")
        .await
        .unwrap();
    // Slow body: the headers promise 100 bytes, 10 come.
    let mut slow_body = TcpStream::connect(addr).await.unwrap();
    slow_body
        .write_all(
            b"POST /acme/shop/ HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n0123456789",
        )
        .await
        .unwrap();
    let started = Instant::now();

    // Meanwhile another client is served at once.
    let response = client()
        .get(format!("http://{addr}/acme/shop/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() < Duration::from_millis(700));

    // Both slow connections end soon after the timeouts (800 ms), not when the client likes.
    for (what, stream) in [("headers", &mut slow_headers), ("body", &mut slow_body)] {
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the slow {what} connection is still open");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{what}: {text}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(refusals("slow_body"), 1);
    assert_eq!(refusals("slow_headers"), 1);
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_while_another_client_of_the_app_is_served() {
    let mut config = config();
    config.per_client = Rate { per_s: 2, burst: 5 };
    let (addr, routes) = edge(config).await;
    let url = format!("http://{addr}/acme/shop/");
    let greedy = client_from(IpAddr::from([127, 0, 0, 2]));
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(greedy.get(&url).send().await.unwrap());
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(&codes[..5], [200; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|c| *c == 429), "{codes:?}");
    let retry: u64 = statuses[7].headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry), "{retry}");

    // Another address is served meanwhile.
    let other = client_from(IpAddr::from([127, 0, 0, 3]));
    assert_eq!(other.get(&url).send().await.unwrap().status(), 200);
    assert_eq!(refusals("rate_client"), 3);

    // An app's own rate holds for all its clients together.
    routes.set_limits(
        "acme",
        "shop",
        AppLimits {
            max_body_bytes: None,
            rate: Some(Rate { per_s: 1, burst: 1 }),
        },
    );
    let first = client_from(IpAddr::from([127, 0, 0, 4]));
    let second = client_from(IpAddr::from([127, 0, 0, 5]));
    let codes = [
        first.get(&url).send().await.unwrap().status().as_u16(),
        second.get(&url).send().await.unwrap().status().as_u16(),
    ];
    assert!(codes.contains(&429), "{codes:?}");
    assert!(refusals("rate_app") >= 1);
}

#[tokio::test]
async fn traversal_and_unserved_methods_are_refused_and_counted() {
    let (addr, _routes) = edge(config()).await;
    for path in [
        "/acme/shop/../../etc/passwd",
        "/acme/shop/%2e%2e/%2e%2e/etc/passwd",
        "/acme/shop/a%2fb",
    ] {
        // Raw, so no client normalises the path first.
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
        assert!(answer.contains("(path)"), "{answer}");
    }
    let response = client()
        .request(reqwest::Method::TRACE, format!("http://{addr}/acme/shop/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(refusals("path"), 3);
    assert_eq!(refusals("method"), 1);
}
