//! Scale to zero on Kubernetes: an app that may sleep has its pods' requests read from their
//! `/activityz`; at zero, its Service gets the activator's EndpointSlice, the activator holds
//! its requests, asks for one wake however many wait, and hands them to the first ready pod,
//! then gives the Service back to the pods; a new active agent takes the slices over.
//!
//! A local HTTP server stands in for the pods (each pod's IP is 127.0.0.1, the driver reaches
//! pods on the server's port).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use neo_runtime_agent::driver::kube::KubeDriver;
use neo_runtime_agent::driver::kube::activator::ActivatorConfig;
use neo_runtime_agent::driver::logline::now_ms;
use neo_runtime_agent::driver::{Desired, Driver, DriverEvent};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::apiserver::FakeApi;
use crate::{
    DIGEST_3, NAMESPACE, assert_golden, desired, key, next_health, normalised, pod, running,
    stored, without_secrets,
};

/// The upper bounds (µs) of the stand-in's answer-time buckets.
const BOUNDS_US: [u64; 3] = [1_000, 10_000, 100_000];

/// The pods' stand-in: counts the requests to `/api/…` and answers `/activityz` as the
/// apphost does (every answer in the time bucket `bucket`); a test may add to its counts.
pub(crate) struct PodApp {
    pub addr: SocketAddr,
    pub requests: Arc<AtomicU64>,
    pub errors: Arc<AtomicU64>,
    pub bucket: Arc<AtomicUsize>,
    /// How many times `/activityz` was read.
    pub reads: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl PodApp {
    async fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// On `addr` (port 0: any).
    pub(crate) async fn start_on(addr: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        let bucket = Arc::new(AtomicUsize::new(0));
        let reads = Arc::new(AtomicU64::new(0));
        let counts = (
            requests.clone(),
            errors.clone(),
            bucket.clone(),
            reads.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = counts.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<_>| {
                        let (requests, errors, bucket, reads) = counts.clone();
                        async move {
                            let path = request.uri().path().to_owned();
                            let body = if path == "/activityz" {
                                reads.fetch_add(1, Ordering::SeqCst);
                                let n = requests.load(Ordering::SeqCst);
                                let mut answered = [0u64; BOUNDS_US.len() + 1];
                                answered[bucket.load(Ordering::SeqCst)] = n;
                                serde_json::json!({
                                    "requests": n, "in_flight": 0,
                                    "errors": errors.load(Ordering::SeqCst),
                                    "answer_us": {"bounds": BOUNDS_US, "counts": answered},
                                })
                                .to_string()
                            } else {
                                requests.fetch_add(1, Ordering::SeqCst);
                                format!("shop answered {path}")
                            };
                            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(body))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            requests,
            errors,
            bucket,
            reads,
            task,
        }
    }
}

impl Drop for PodApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Free ports on `ip` for an activator (a few in a row from a free one).
fn ports(ip: IpAddr) -> std::ops::RangeInclusive<u16> {
    let probe = std::net::TcpListener::bind((ip, 0)).expect("a free port");
    let first = probe.local_addr().expect("addr").port();
    first..=first.saturating_add(20)
}

/// A driver on `api` whose activator listens and is reached at `ip`, reaching pods on
/// `pod_port` and reading their usage every 100 ms.
pub(crate) fn driver_at(
    api: &FakeApi,
    ip: IpAddr,
    pod_port: u16,
) -> (KubeDriver, mpsc::Receiver<DriverEvent>) {
    let (tx, rx) = mpsc::channel(256);
    let mut activator = ActivatorConfig::new(ip, ip);
    activator.ports = ports(ip);
    activator.usage_every = Duration::from_millis(100);
    let driver = KubeDriver::new(api.client(), tx)
        .with_activator(activator)
        .with_pod_port(pod_port);
    (driver, rx)
}

/// `shop` with `replicas` and a policy that lets it sleep after a minute.
fn shop(replicas: u32) -> Desired {
    Desired {
        replicas,
        idle_to_zero_s: 60,
        ..without_secrets(desired("shop", 3, DIGEST_3))
    }
}

fn http() -> reqwest::Client {
    // The process uses ring; another test may have installed it already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("a client")
}

/// The activator's slice of `shop`, once it is there.
async fn slice(api: &FakeApi) -> Value {
    for _ in 0..100 {
        if let Some(slice) = api.object("endpointslices", NAMESPACE, "shop-activator") {
            return slice;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no activator slice");
}

/// The port a slice names.
fn slice_port(slice: &Value) -> u16 {
    let port = slice["ports"][0]["port"].as_u64().expect("a port");
    u16::try_from(port).expect("a port number")
}

/// Waits until the pod watch reported `name` with `ready`ness.
pub(crate) async fn until_reported(
    events: &mut mpsc::Receiver<DriverEvent>,
    name: &str,
    ready: bool,
) {
    loop {
        let (_, replica) = next_health(events).await;
        let is_ready = replica.phase == neo_protocol::pb::ReplicaPhase::Ready as i32;
        if replica.id == name && is_ready == ready {
            return;
        }
    }
}

#[tokio::test]
async fn an_app_at_zero_is_answered_by_the_activator_woken_once_and_handed_back_to_its_pods() {
    let pods = PodApp::start().await;
    let api = FakeApi::new();
    let loopback = IpAddr::from([127, 0, 0, 1]);
    let (driver, mut events) = driver_at(&api, loopback, pods.addr.port());
    let _watching = driver.start_watching();
    let activity = driver.activity().expect("an activator's activity");
    driver.apply(&shop(1)).await.expect("apply");
    let service = stored(&api, "services", "shop");
    api.put(
        "pods",
        pod("shop-1", running(true, "2026-05-01T12:00:20Z", "127.0.0.1")),
    );
    until_reported(&mut events, "shop-1", true).await;

    // Awake, its idle window runs from the last request its pods counted.
    assert_eq!(activity.last_request_ms("acme", "shop", now_ms()), 0);
    let direct = http()
        .get(format!("http://{}/api/product", pods.addr))
        .send()
        .await
        .expect("a request to the pod");
    assert_eq!(direct.status(), 200);
    let asked_at = now_ms();
    let mut noted = 0;
    for _ in 0..100 {
        noted = activity.last_request_ms("acme", "shop", now_ms());
        if noted > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        noted + 1000 >= asked_at,
        "the pod's request was noted ({noted})"
    );
    assert!(
        api.object("endpointslices", NAMESPACE, "shop-activator")
            .is_none()
    );

    // At zero: the Service (unchanged) gets the activator's slice, then the pods go.
    driver.apply(&shop(0)).await.expect("apply at zero");
    let at_zero = slice(&api).await;
    let port = slice_port(&at_zero);
    let mut golden = normalised(at_zero.clone());
    golden["ports"][0]["port"] = Value::from(40000);
    assert_golden("activator-endpointslice", &golden);
    assert_eq!(at_zero["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(
        at_zero["metadata"]["labels"]["kubernetes.io/service-name"],
        "shop"
    );
    assert_eq!(stored(&api, "services", "shop"), service);
    assert_eq!(stored(&api, "deployments", "shop")["spec"]["replicas"], 0);
    let slice_written = api
        .requests()
        .iter()
        .position(|r| r.path.ends_with("/endpointslices/shop-activator") && r.method == "PATCH");
    let scaled_down = api
        .requests()
        .iter()
        .rposition(|r| r.path.ends_with("/deployments/shop") && r.method == "PATCH");
    assert!(
        slice_written < scaled_down,
        "the slice is written before the pods go"
    );
    api.remove("pods", NAMESPACE, "shop-1");
    until_reported(&mut events, "shop-1", false).await;

    // Twenty requests at once reach the activator: held, one wake asked.
    let served_before = pods.requests.load(Ordering::SeqCst);
    let client = http();
    let held: Vec<_> = (0..20)
        .map(|i| {
            let request = client
                .get(format!("http://127.0.0.1:{port}/api/product?n={i}"))
                .header("host", "shop.neo-acme-dev.svc");
            tokio::spawn(async move {
                let response = request.send().await.expect("an answer");
                let status = response.status().as_u16();
                (status, response.text().await.unwrap_or_default())
            })
        })
        .collect();
    let wake = activity
        .next_wake(Duration::from_secs(10))
        .await
        .expect("a wake asked");
    assert_eq!(
        (wake.tenant.as_str(), wake.app.as_str(), wake.cause.as_str()),
        ("acme", "shop", "request GET /api/product")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        activity
            .next_wake(Duration::from_millis(100))
            .await
            .is_none(),
        "one wake for twenty requests"
    );
    assert!(held.iter().all(|h| !h.is_finished()), "all are held");

    // Woken (as the agent's wake brings a replica): the slice stays until a pod is ready.
    driver.apply(&shop(1)).await.expect("apply awake");
    assert_eq!(stored(&api, "deployments", "shop")["spec"]["replicas"], 1);
    assert!(
        api.object("endpointslices", NAMESPACE, "shop-activator")
            .is_some()
    );
    api.put(
        "pods",
        pod("shop-2", running(true, "2026-05-01T12:05:00Z", "127.0.0.1")),
    );
    for request in held {
        let (status, body) = request.await.expect("the request's task");
        assert_eq!((status, body.as_str()), (200, "shop answered /api/product"));
    }
    assert_eq!(pods.requests.load(Ordering::SeqCst), served_before + 20);

    // The pods take the Service's requests again: the slice is deleted.
    let mut gone = false;
    for _ in 0..100 {
        if api
            .object("endpointslices", NAMESPACE, "shop-activator")
            .is_none()
        {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the activator's slice is deleted once a pod is ready");
    // A connection routed before the change reached every node is still answered.
    let late = http()
        .get(format!("http://127.0.0.1:{port}/api/late"))
        .send()
        .await
        .expect("a late request");
    assert_eq!(late.status(), 200);

    // Removed: nothing of the activator is left.
    driver.apply(&shop(0)).await.expect("asleep again");
    slice(&api).await;
    driver.remove(&key("shop")).await.expect("remove");
    assert!(
        api.object("endpointslices", NAMESPACE, "shop-activator")
            .is_none()
    );
}

#[tokio::test]
async fn a_new_active_agent_takes_over_the_apps_at_zero() {
    let pods = PodApp::start().await;
    let api = FakeApi::new();
    let first_ip = IpAddr::from([127, 0, 0, 1]);
    let (first, _first_events) = driver_at(&api, first_ip, pods.addr.port());
    first.activate().await;
    first.apply(&shop(0)).await.expect("apply at zero");
    let port = slice_port(&slice(&api).await);

    // The first agent loses its lease; the next one (elsewhere) takes the slice over.
    first.stand_by().await;
    let second_ip = IpAddr::from([127, 0, 0, 2]);
    let (second, _second_events) = driver_at(&api, second_ip, pods.addr.port());
    second.activate().await;
    let taken = stored(&api, "endpointslices", "shop-activator");
    assert_eq!(taken["endpoints"][0]["addresses"][0], "127.0.0.2");
    assert_eq!(slice_port(&taken), port, "the same port where it is free");

    // Its activator answers there: the request is held and a wake asked of it.
    let request = http()
        .get(format!("http://127.0.0.2:{port}/api/product"))
        .send();
    let held = tokio::spawn(request);
    let activity = second.activity().expect("activity");
    let wake = activity
        .next_wake(Duration::from_secs(10))
        .await
        .expect("a wake asked of the new agent");
    assert_eq!(wake.app, "shop");
    assert!(
        first
            .activity()
            .expect("activity")
            .next_wake(Duration::from_millis(100))
            .await
            .is_none(),
        "the standby asks nothing"
    );
    held.abort();
}
