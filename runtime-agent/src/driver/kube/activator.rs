//! Scale to zero on Kubernetes: the agent's activator stands in for an app's pods while it
//! has none, holds its requests, asks for a wake, and hands the requests to the first ready
//! pod.
//!
//! Requests on Kubernetes reach an app through its Service, never through the agent. So while
//! an app is at zero replicas, its Service gets a second EndpointSlice, `{app}-activator`
//! ([`endpoint_slice`]), naming the active agent's address and a port of the activator's own
//! for that app ([`ActivatorConfig::ports`]): the Service (unchanged, its selector too) then
//! sends its connections there, as do ingress controllers that read EndpointSlices. The slice
//! is written before the Deployment is scaled down, so no request finds neither.
//!
//! On a request, the activator notes it as the app's last ([`crate::activity::Activity`]), holds it (at most
//! [`crate::activity::MAX_HELD`] per app, for up to [`WAKE_WAIT`], then `503` with `Retry-After`), and asks the
//! agent once, however many wait, to wake the app ([`crate::activity::Activity::wake`]): the podgroup records
//! its wake-up with the request as the cause and the desired state brings a replica. When the
//! pod watch sees one ready ([`ReadyPods`]), every held request goes to it, and the slice is
//! deleted: the Service's own endpoints (the pods) take over. The app's port stays open
//! [`LINGER`] longer for connections routed before the change reached every node.
//!
//! While an app is awake, its idle window runs from the last request its pods counted: the
//! activator reads each ready pod's `GET /activityz` every [`ActivatorConfig::usage_every`]
//! ([`super::usage`]), for the apps whose policy lets them sleep only.
//!
//! The slices are the activator's state: a new active agent lists them ([`Activator::adopt`]),
//! opens the same ports and rewrites their address to its own. A standby opens none.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use kube::api::ListParams;
use kube::{Api, Client};
use neo_protocol::envelope::now_ms;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use super::objects::{self, FIELD_MANAGER, named_metadata, podgroup_labels};
use super::usage::Tracked;
use super::{KubeError, delete_if_present, server_side_apply};
use crate::activity::{WAKE_WAIT, WakeCall};
use crate::driver::PodgroupKey;
use crate::driver::process::edge::headers;
use crate::driver::process::lb::{self, Body};

/// `kubernetes.io/service-name`: the Service an EndpointSlice belongs to.
pub const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";
/// `endpointslice.kubernetes.io/managed-by`: who keeps an EndpointSlice (the endpoint slice
/// controller leaves others' alone); [`FIELD_MANAGER`] on the activator's.
pub const LABEL_SLICE_MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
/// The ports the activator takes its apps' requests on, one per app at zero.
pub const DEFAULT_PORTS: RangeInclusive<u16> = 40000..=40999;
/// How often the ready pods of the apps that may sleep are asked for their requests.
pub const USAGE_EVERY: Duration = Duration::from_secs(5);
/// How long an app's port stays open after its slice is deleted.
pub const LINGER: Duration = Duration::from_secs(10);
/// The largest body a held request may have (the stage edge's default).
const MAX_BODY: usize = 8 * 1024 * 1024;
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before a failed slice deletion is tried again; it doubles up to
/// [`LONGEST_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(5);

/// The activator's slice of `key`'s Service: `{app}-activator`. The endpoint slice
/// controller names its own `{service}-{random}`, and another app's would be
/// `{that app}-activator`, so it meets neither.
pub fn slice_name(key: &PodgroupKey) -> String {
    format!("{}-activator", key.app)
}

/// The label selector of every activator slice.
pub fn slice_selector() -> String {
    format!("{LABEL_SLICE_MANAGED_BY}={FIELD_MANAGER}")
}

/// The EndpointSlice sending `key`'s Service's connections to the activator at
/// `address:port`: one ready endpoint, the Service's port name (`http`).
pub fn endpoint_slice(key: &PodgroupKey, address: IpAddr, port: u16) -> EndpointSlice {
    let mut labels = podgroup_labels(key);
    labels.insert(LABEL_SERVICE_NAME.to_owned(), key.app.clone());
    labels.insert(LABEL_SLICE_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned());
    EndpointSlice {
        metadata: named_metadata(key, slice_name(key), labels),
        address_type: if address.is_ipv4() { "IPv4" } else { "IPv6" }.to_owned(),
        endpoints: vec![Endpoint {
            addresses: vec![address.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(true),
                serving: Some(true),
                terminating: Some(false),
            }),
            ..Endpoint::default()
        }],
        ports: Some(vec![EndpointPort {
            name: Some("http".to_owned()),
            port: Some(i32::from(port)),
            protocol: Some("TCP".to_owned()),
            app_protocol: None,
        }]),
    }
}

/// Where the activator listens and how the cluster reaches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivatorConfig {
    /// The address its ports are opened on (`0.0.0.0` in a pod).
    pub listen: IpAddr,
    /// The address the cluster reaches this agent at (its pod IP), written in the slices.
    pub advertise: IpAddr,
    /// The ports it may open, one per app at zero.
    pub ports: RangeInclusive<u16>,
    /// How often the ready pods of the apps that may sleep are asked for their requests.
    pub usage_every: Duration,
}

impl ActivatorConfig {
    /// Listening on `listen`, reached at `advertise`, on [`DEFAULT_PORTS`], reading usage
    /// every [`USAGE_EVERY`].
    pub fn new(listen: IpAddr, advertise: IpAddr) -> Self {
        Self {
            listen,
            advertise,
            ports: DEFAULT_PORTS,
            usage_every: USAGE_EVERY,
        }
    }
}

/// What every app's port shares.
struct Shared {
    /// The ready pods, the apps' requests and wakes, the pods' port.
    tracked: Arc<Tracked>,
    http: HttpClient<HttpConnector, Body>,
}

/// One app at zero: its port, and whether it is wanted awake.
struct Sleeper {
    port: u16,
    waking: watch::Sender<bool>,
    /// Set once its slice is being deleted (it will not take it back).
    flipped: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Sleeper {
    /// Whether it still answers for the app at zero.
    fn serving(&self) -> bool {
        !self.task.is_finished() && !self.flipped.load(Ordering::Acquire)
    }

    /// Stops it and waits until its port is closed.
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The activator of one agent (see the module doc).
pub(super) struct Activator {
    config: ActivatorConfig,
    client: Client,
    shared: Arc<Shared>,
    sleepers: Mutex<HashMap<PodgroupKey, Sleeper>>,
    /// The slices of the previous active agent have been taken over.
    adopted: AtomicBool,
}

impl Activator {
    /// An activator writing slices through `client`, sending requests to the ready pods
    /// `tracked` knows and noting them in its activity.
    pub fn new(config: ActivatorConfig, client: Client, tracked: Arc<Tracked>) -> Self {
        let http = HttpClient::builder(TokioExecutor::new()).build_http();
        Self {
            config,
            client,
            shared: Arc::new(Shared { tracked, http }),
            sleepers: Mutex::default(),
            adopted: AtomicBool::new(false),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &ActivatorConfig {
        &self.config
    }

    /// `key` is at zero: its port answers for it and its slice names the port (written again
    /// at each call: the desired state is applied again at each resync).
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the slice cannot be written (or the last agent's read);
    /// [`KubeError::Activator`] when no port of the range can be opened.
    pub async fn sleep(&self, key: &PodgroupKey) -> Result<(), KubeError> {
        self.ensure_adopted().await?;
        let mut sleepers = self.sleepers.lock().await;
        let port = match sleepers.get(key) {
            Some(sleeper) if sleeper.serving() => {
                sleeper.waking.send_replace(false);
                sleeper.port
            }
            _ => {
                let earlier = match sleepers.remove(key) {
                    Some(done) => {
                        let port = done.port;
                        done.stop().await;
                        Some(port)
                    }
                    None => self.slice_port(key).await?,
                };
                let sleeper = self.open(key, earlier)?;
                let port = sleeper.port;
                sleepers.insert(key.clone(), sleeper);
                port
            }
        };
        drop(sleepers);
        self.write_slice(key, port).await
    }

    /// `key` is wanted awake: once a pod of it is ready, its slice is deleted (nothing to do
    /// when it is not asleep).
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the last agent's slices cannot be read.
    pub async fn wake(&self, key: &PodgroupKey) -> Result<(), KubeError> {
        self.ensure_adopted().await?;
        if let Some(sleeper) = self.sleepers.lock().await.get(key) {
            sleeper.waking.send_replace(true);
        }
        Ok(())
    }

    /// `key` is removed: its port closes and its slice is deleted.
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when the slice cannot be deleted.
    pub async fn forget(&self, key: &PodgroupKey) -> Result<(), KubeError> {
        if let Some(sleeper) = self.sleepers.lock().await.remove(key) {
            sleeper.stop().await;
        }
        delete_if_present(&self.slices(key), &slice_name(key)).await
    }

    /// This agent became active: takes over the slices the last active agent wrote (opening
    /// their ports here, preferably the same, and writing its own address in them).
    ///
    /// # Errors
    ///
    /// [`KubeError::Api`] when they cannot be listed or rewritten (tried again at the next
    /// apply).
    pub async fn adopt(&self) -> Result<(), KubeError> {
        let found = Api::<EndpointSlice>::all(self.client.clone())
            .list(&ListParams::default().labels(&slice_selector()))
            .await
            .map_err(|err| KubeError::api("list EndpointSlices", err))?;
        for slice in found.items {
            let Some(key) = objects::key_from_labels(slice.metadata.labels.as_ref()) else {
                continue;
            };
            let port = slice_port_of(&slice);
            let mut sleepers = self.sleepers.lock().await;
            let port = match sleepers.get(&key) {
                Some(sleeper) => sleeper.port,
                None => {
                    let sleeper = self.open(&key, port)?;
                    let port = sleeper.port;
                    sleepers.insert(key.clone(), sleeper);
                    port
                }
            };
            drop(sleepers);
            self.write_slice(&key, port).await?;
            tracing::info!(podgroup = %key, port, "activator: took over an app at zero");
        }
        self.adopted.store(true, Ordering::Release);
        Ok(())
    }

    /// This agent stands by: every port closes (the next active agent takes the slices over).
    pub async fn stand_by(&self) {
        let sleepers: Vec<Sleeper> = self.sleepers.lock().await.drain().map(|(_, s)| s).collect();
        for sleeper in sleepers {
            sleeper.stop().await;
        }
        self.adopted.store(false, Ordering::Release);
    }

    /// Adopts the last agent's slices unless done since this agent became active.
    async fn ensure_adopted(&self) -> Result<(), KubeError> {
        if self.adopted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.adopt().await
    }

    fn slices(&self, key: &PodgroupKey) -> Api<EndpointSlice> {
        Api::namespaced(self.client.clone(), &objects::namespace_name(key))
    }

    /// The port `key`'s slice names now, if it has one.
    async fn slice_port(&self, key: &PodgroupKey) -> Result<Option<u16>, KubeError> {
        let name = slice_name(key);
        let found = self
            .slices(key)
            .get_opt(&name)
            .await
            .map_err(|err| KubeError::api(format!("get EndpointSlice {name}"), err))?;
        Ok(found.as_ref().and_then(slice_port_of))
    }

    async fn write_slice(&self, key: &PodgroupKey, port: u16) -> Result<(), KubeError> {
        let slice = endpoint_slice(key, self.config.advertise, port);
        server_side_apply(&self.slices(key), &slice_name(key), &slice).await
    }

    /// Opens a port for `key` (`wanted` if it can, else the first free one of the range) and
    /// starts answering on it.
    fn open(&self, key: &PodgroupKey, wanted: Option<u16>) -> Result<Sleeper, KubeError> {
        let listener = wanted
            .into_iter()
            .chain(self.config.ports.clone())
            .find_map(|port| bind(SocketAddr::new(self.config.listen, port)))
            .ok_or_else(|| {
                KubeError::Activator(format!(
                    "no free port in {}-{} on {}",
                    self.config.ports.start(),
                    self.config.ports.end(),
                    self.config.listen
                ))
            })?;
        let port = listener
            .local_addr()
            .map_err(|e| KubeError::Activator(e.to_string()))?
            .port();
        let (waking, woken) = watch::channel(false);
        let flipped = Arc::new(AtomicBool::new(false));
        let port_of = Port {
            shared: self.shared.clone(),
            key: key.clone(),
            next: AtomicUsize::new(0),
        };
        let task = tokio::spawn(run_port(
            Arc::new(port_of),
            listener,
            woken,
            flipped.clone(),
            self.slices(key),
        ));
        tracing::info!(podgroup = %key, port, "activator: answering for the app at zero");
        Ok(Sleeper {
            port,
            waking,
            flipped,
            task,
        })
    }
}

/// The port a slice names.
fn slice_port_of(slice: &EndpointSlice) -> Option<u16> {
    slice
        .ports
        .as_ref()?
        .first()?
        .port
        .and_then(|p| u16::try_from(p).ok())
}

/// A listener on `addr`, or `None` when it is taken.
fn bind(addr: SocketAddr) -> Option<TcpListener> {
    let socket = std::net::TcpListener::bind(addr).ok()?;
    socket.set_nonblocking(true).ok()?;
    TcpListener::from_std(socket).ok()
}

/// One app's port.
struct Port {
    shared: Arc<Shared>,
    key: PodgroupKey,
    /// The round-robin position over its ready pods.
    next: AtomicUsize,
}

/// Answers on `listener` until the app is wanted awake and has a ready pod, then deletes its
/// slice (tried again with backoff until it is gone) and answers [`LINGER`] longer.
async fn run_port(
    port: Arc<Port>,
    listener: TcpListener,
    mut woken: watch::Receiver<bool>,
    flipped: Arc<AtomicBool>,
    slices: Api<EndpointSlice>,
) {
    let awake = {
        let port = port.clone();
        async move {
            let mut changes = port.shared.tracked.ready.subscribe();
            loop {
                if *woken.borrow_and_update() && !port.shared.tracked.ready.of(&port.key).is_empty()
                {
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    changed = woken.changed() => if changed.is_err() { return },
                }
            }
        }
    };
    answer_until(&listener, &port, awake).await;
    flipped.store(true, Ordering::Release);
    let name = slice_name(&port.key);
    let back = async {
        let mut waits = neo_client::retry::doubling(FIRST_BACKOFF, LONGEST_BACKOFF);
        while let Err(e) = delete_if_present(&slices, &name).await {
            tracing::warn!(podgroup = %port.key, error = %e,
                "activator: cannot hand the app back to its pods yet; trying again");
            tokio::time::sleep(waits.next().unwrap_or(LONGEST_BACKOFF)).await;
        }
        tracing::info!(podgroup = %port.key, "activator: the app is awake, its pods take its requests");
        tokio::time::sleep(LINGER).await;
    };
    answer_until(&listener, &port, back).await;
}

/// Answers the connections of `listener` until `until` ends.
async fn answer_until(listener: &TcpListener, port: &Arc<Port>, until: impl Future<Output = ()>) {
    let mut until = std::pin::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(serve_connection(port.clone(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!(podgroup = %port.key, error = %e, "activator: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn serve_connection(port: Arc<Port>, stream: TcpStream, peer: SocketAddr) {
    let service = hyper::service::service_fn(move |request| {
        let port = port.clone();
        async move { Ok::<_, Infallible>(answer(&port, peer, request).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(client = %peer, error = %e, "activator connection ended");
    }
}

/// Holds a request until the app has a ready pod (asking for a wake), then passes it on.
async fn answer(port: &Port, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let (tracked, key) = (&port.shared.tracked, &port.key);
    let app = tracked.activity.app(&key.tenant, &key.app);
    let now = now_ms();
    let _answering = app.begin(now);
    let mut pods = tracked.ready.of(key);
    if pods.is_empty() {
        let call = WakeCall {
            tenant: key.tenant.clone(),
            app: key.app.clone(),
            cause: format!("request {} {}", request.method(), request.uri().path()),
            at_ms: now,
        };
        let ready = tracked.ready.wait(key, WAKE_WAIT);
        match tracked.activity.hold_until_awake(&app, call, ready).await {
            Ok(ready) => pods = ready,
            Err(text) => return lb::plain(StatusCode::SERVICE_UNAVAILABLE, text),
        }
    }
    let (mut head, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return lb::plain(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a held request's body may have at most {MAX_BODY} bytes"),
            );
        }
        Err(e) => return lb::plain(StatusCode::BAD_REQUEST, format!("request body: {e}")),
    };
    // Passed on as the Service would (its Host kept), but for the hop-by-hop headers and the
    // client's address, added to X-Forwarded-For.
    headers::strip_hop_by_hop(&mut head.headers);
    headers::forwarded_for(&mut head.headers, peer.ip());
    let addrs: Vec<SocketAddr> = pods
        .iter()
        .map(|pod| SocketAddr::new(pod.ip, tracked.pod_port()))
        .collect();
    let rest = head
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
    lb::forward(
        &port.shared.http,
        &addrs,
        &port.next,
        &key.app,
        head,
        &rest,
        body,
    )
    .await
}
