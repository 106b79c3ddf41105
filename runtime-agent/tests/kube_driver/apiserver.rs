//! An in-memory Kubernetes API server speaking the real wire format, served to `kube::Client` as a tower service.
//!
//! It handles what the kube driver uses: server-side apply (`PATCH` with
//! `application/apply-patch+yaml`), GET, LIST with an equality label selector, DELETE, WATCH
//! (`?watch=true`, newline-delimited JSON events, resumable from a resourceVersion) and pod
//! logs (`/log`, with `follow=true`); deleting a namespace deletes what is in it. Server-set fields (uid, resourceVersion, generation,
//! creationTimestamp) are set as the API server sets them: a no-op apply changes nothing, and
//! the generation moves only when the spec does. Every request is recorded.
//!
//! Test helpers stand in for the controllers: [`FakeApi::put`] creates pods (the ReplicaSet
//! controller), [`FakeApi::set_status`] writes statuses (kubelet, Deployment controller),
//! [`FakeApi::append_log`] writes log lines (the container).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::wire::{Body, content, json_response, parse_target, selects, status_response, type_of};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `PATCH`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// A server-side apply that created the object (which the API server also authorizes as
    /// `create`).
    pub created: bool,
}

/// Something the watchers and log followers hear about.
#[derive(Debug, Clone)]
enum Signal {
    Change(Change),
    Log {
        namespace: String,
        pod: String,
        line: String,
    },
}

/// One stored change, as a watch event.
#[derive(Debug, Clone)]
struct Change {
    revision: u64,
    resource: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

/// An error the next matching request gets.
#[derive(Debug, Clone)]
struct Failure {
    method: Method,
    resource: String,
    code: u16,
    message: String,
}

#[derive(Debug, Default)]
struct State {
    /// `(resource, namespace, name)` → object.
    objects: BTreeMap<(String, String, String), Value>,
    revision: u64,
    history: Vec<Change>,
    requests: Vec<Recorded>,
    logs: HashMap<(String, String), Vec<String>>,
    failures: Vec<Failure>,
}

/// The server; clones share it.
#[derive(Clone)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
    signals: broadcast::Sender<Signal>,
}

impl FakeApi {
    /// An empty cluster.
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            signals: broadcast::channel(4096).0,
        }
    }

    /// A client of this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// One stored object.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        self.lock().objects.get(&key).cloned()
    }

    /// The names of the stored objects of a resource in a namespace.
    pub fn names(&self, resource: &str, namespace: &str) -> Vec<String> {
        self.lock()
            .objects
            .keys()
            .filter(|(r, ns, _)| r == resource && ns == namespace)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// The next `method` request on `resource` fails with `code` and `message`.
    pub fn fail_next(&self, method: Method, resource: &str, code: u16, message: &str) {
        self.lock().failures.push(Failure {
            method,
            resource: resource.to_owned(),
            code,
            message: message.to_owned(),
        });
    }

    /// Stores `object` as a controller would (create or replace, status included).
    pub fn put(&self, resource: &str, object: Value) {
        let namespace = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut state = self.lock();
        self.store(&mut state, resource, &namespace, &name, object, true);
    }

    /// Replaces the status of a stored object.
    pub fn set_status(&self, resource: &str, namespace: &str, name: &str, status: Value) {
        let mut state = self.lock();
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let Some(mut object) = state.objects.get(&key).cloned() else {
            panic!("no {resource} {namespace}/{name} to set the status of");
        };
        object["status"] = status;
        self.store(&mut state, resource, namespace, name, object, true);
    }

    /// Deletes a stored object, as a controller would.
    pub fn remove(&self, resource: &str, namespace: &str, name: &str) {
        let mut state = self.lock();
        self.delete(&mut state, resource, namespace, name);
    }

    /// The container of `pod` writes `line`.
    pub fn append_log(&self, namespace: &str, pod: &str, line: &str) {
        let mut state = self.lock();
        state
            .logs
            .entry((namespace.to_owned(), pod.to_owned()))
            .or_default()
            .push(line.to_owned());
        let _ = self.signals.send(Signal::Log {
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            line: line.to_owned(),
        });
    }

    /// Stores `object`, setting the server's fields; returns whether anything changed.
    fn store(
        &self,
        state: &mut State,
        resource: &str,
        namespace: &str,
        name: &str,
        mut object: Value,
        keep_given_status: bool,
    ) -> (Value, bool) {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let existing = state.objects.get(&key).cloned();
        if let Some((api_version, kind)) = type_of(resource) {
            object["apiVersion"] = json!(api_version);
            object["kind"] = json!(kind);
        }
        let (uid, created, mut generation) = match &existing {
            Some(old) => (
                old["metadata"]["uid"].clone(),
                old["metadata"]["creationTimestamp"].clone(),
                old["metadata"]["generation"].as_i64().unwrap_or(1),
            ),
            None => (
                json!(format!("uid-{resource}-{namespace}-{name}")),
                json!("2026-05-01T12:00:00Z"),
                1,
            ),
        };
        if let Some(old) = &existing {
            if !keep_given_status {
                match old.get("status") {
                    Some(status) => object["status"] = status.clone(),
                    None => {
                        if let Some(map) = object.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            if old.get("spec") != object.get("spec") {
                generation += 1;
            }
            if content(old) == content(&object) && old.get("status") == object.get("status") {
                return (old.clone(), false);
            }
        }
        state.revision += 1;
        let meta = &mut object["metadata"];
        meta["uid"] = uid;
        meta["creationTimestamp"] = created;
        meta["generation"] = json!(generation);
        meta["resourceVersion"] = json!(state.revision.to_string());
        state.objects.insert(key, object.clone());
        let change = Change {
            revision: state.revision,
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            kind: if existing.is_some() {
                "MODIFIED"
            } else {
                "ADDED"
            },
            object: object.clone(),
        };
        state.history.push(change.clone());
        let _ = self.signals.send(Signal::Change(change));
        (object, true)
    }

    fn delete(&self, state: &mut State, resource: &str, namespace: &str, name: &str) -> bool {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        let Some(mut object) = state.objects.remove(&key) else {
            return false;
        };
        state.revision += 1;
        object["metadata"]["resourceVersion"] = json!(state.revision.to_string());
        let change = Change {
            revision: state.revision,
            resource: resource.to_owned(),
            namespace: namespace.to_owned(),
            kind: "DELETED",
            object,
        };
        state.history.push(change.clone());
        let _ = self.signals.send(Signal::Change(change));
        true
    }

    fn handle(&self, parts: http::request::Parts, body: Bytes) -> Response<Body> {
        let query: BTreeMap<String, String> =
            form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let path = parts.uri.path().to_owned();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut state = self.lock();
        state.requests.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            created: false,
        });
        let Some(target) = parse_target(&path) else {
            return status_response(404, "NotFound", &format!("no route {path}"));
        };
        if let Some(at) = state
            .failures
            .iter()
            .position(|f| f.method == parts.method && f.resource == target.resource)
        {
            let failure = state.failures.remove(at);
            return status_response(failure.code, "Forbidden", &failure.message);
        }
        if type_of(&target.resource).is_none() {
            return status_response(
                404,
                "NotFound",
                &format!(
                    "the server could not find the requested resource {}",
                    target.resource
                ),
            );
        }
        let (resource, namespace) = (target.resource.as_str(), target.namespace.as_str());
        match (&parts.method, &target.name, target.subresource.as_deref()) {
            (&Method::PATCH, Some(name), None) => {
                if content_type.as_deref() != Some("application/apply-patch+yaml") {
                    return status_response(
                        415,
                        "UnsupportedMediaType",
                        "only server-side apply here",
                    );
                }
                if query.get("fieldManager").is_none_or(|m| m.is_empty()) {
                    return status_response(
                        400,
                        "BadRequest",
                        "fieldManager is required for apply",
                    );
                }
                let Ok(applied) = serde_json::from_slice::<Value>(&body) else {
                    return status_response(400, "BadRequest", "the apply body is not JSON");
                };
                if applied["metadata"]["name"].as_str() != Some(name.as_str()) {
                    return status_response(
                        400,
                        "BadRequest",
                        "the name in the body differs from the path",
                    );
                }
                let existed = state.objects.contains_key(&(
                    resource.to_owned(),
                    namespace.to_owned(),
                    name.clone(),
                ));
                let (object, _) = self.store(&mut state, resource, namespace, name, applied, false);
                let code = if existed {
                    StatusCode::OK
                } else {
                    if let Some(request) = state.requests.last_mut() {
                        request.created = true;
                    }
                    StatusCode::CREATED
                };
                json_response(code, &object)
            }
            (&Method::GET, Some(name), None) => {
                match state
                    .objects
                    .get(&(resource.to_owned(), namespace.to_owned(), name.clone()))
                {
                    Some(object) => json_response(StatusCode::OK, object),
                    None => status_response(
                        404,
                        "NotFound",
                        &format!("{resource} \"{name}\" not found"),
                    ),
                }
            }
            (&Method::DELETE, Some(name), None) => {
                if resource == "namespaces" {
                    // The namespace controller: what is in it goes with it.
                    let inside: Vec<(String, String, String)> = state
                        .objects
                        .keys()
                        .filter(|(_, ns, _)| ns == name)
                        .cloned()
                        .collect();
                    for (resource, ns, object) in inside {
                        self.delete(&mut state, &resource, &ns, &object);
                    }
                }
                if self.delete(&mut state, resource, namespace, name) {
                    status_response(200, "", "")
                } else {
                    status_response(404, "NotFound", &format!("{resource} \"{name}\" not found"))
                }
            }
            (&Method::GET, Some(name), Some("log")) => self.logs(state, namespace, name, &query),
            (&Method::GET, None, None)
                if query.get("watch").is_some_and(|w| w == "true" || w == "1") =>
            {
                self.watch(state, resource, namespace, &query)
            }
            (&Method::GET, None, None) => {
                let selector = query.get("labelSelector");
                let items: Vec<Value> = state
                    .objects
                    .iter()
                    .filter(|((r, ns, _), object)| {
                        r == resource
                            && (namespace.is_empty() || ns == namespace)
                            && selects(selector, object)
                    })
                    .map(|(_, object)| object.clone())
                    .collect();
                let (api_version, kind) = type_of(resource).unwrap_or(("v1", "Unknown"));
                json_response(
                    StatusCode::OK,
                    &json!({
                        "apiVersion": api_version,
                        "kind": format!("{kind}List"),
                        "metadata": {"resourceVersion": state.revision.to_string()},
                        "items": items,
                    }),
                )
            }
            _ => status_response(405, "MethodNotAllowed", "not supported by the fake"),
        }
    }

    /// A watch: stored changes after `resourceVersion` (or every object as ADDED without
    /// one), then live changes, as newline-delimited JSON.
    fn watch(
        &self,
        state: MutexGuard<'_, State>,
        resource: &str,
        namespace: &str,
        query: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let selector = query.get("labelSelector").cloned();
        let matches = {
            let (resource, namespace, selector) =
                (resource.to_owned(), namespace.to_owned(), selector.clone());
            move |change: &Change| {
                change.resource == resource
                    && (namespace.is_empty() || change.namespace == namespace)
                    && selects(selector.as_ref(), &change.object)
            }
        };
        let since: u64 = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        let mut backlog: VecDeque<Bytes> = VecDeque::new();
        let frame = |kind: &str, object: &Value| {
            Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
        };
        if since == 0 {
            for ((r, ns, _), object) in &state.objects {
                let change = Change {
                    revision: 0,
                    resource: r.clone(),
                    namespace: ns.clone(),
                    kind: "ADDED",
                    object: object.clone(),
                };
                if matches(&change) {
                    backlog.push_back(frame("ADDED", object));
                }
            }
        } else {
            for change in state
                .history
                .iter()
                .filter(|c| c.revision > since && matches(c))
            {
                backlog.push_back(frame(change.kind, &change.object));
            }
        }
        let receiver = self.signals.subscribe();
        drop(state);
        let stream =
            futures::stream::unfold((backlog, receiver), move |(mut backlog, mut receiver)| {
                let matches = matches.clone();
                async move {
                    loop {
                        if let Some(bytes) = backlog.pop_front() {
                            return Some((
                                Ok::<_, Infallible>(http_body::Frame::data(bytes)),
                                (backlog, receiver),
                            ));
                        }
                        match receiver.recv().await {
                            Ok(Signal::Change(change)) if matches(&change) => {
                                backlog.push_back(frame(change.kind, &change.object));
                            }
                            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(StreamBody::new(stream).boxed_unsync())
            .expect("a valid response")
    }

    /// A pod's log: the lines so far, then (with `follow=true`) new ones until the pod goes.
    fn logs(
        &self,
        state: MutexGuard<'_, State>,
        namespace: &str,
        pod: &str,
        query: &BTreeMap<String, String>,
    ) -> Response<Body> {
        if !state
            .objects
            .contains_key(&("pods".to_owned(), namespace.to_owned(), pod.to_owned()))
        {
            return status_response(404, "NotFound", &format!("pods \"{pod}\" not found"));
        }
        let backlog: VecDeque<Bytes> = state
            .logs
            .get(&(namespace.to_owned(), pod.to_owned()))
            .into_iter()
            .flatten()
            .map(|line| Bytes::from(format!("{line}\n")))
            .collect();
        let follow = query.get("follow").is_some_and(|f| f == "true");
        let receiver = follow.then(|| self.signals.subscribe());
        drop(state);
        let (namespace, pod) = (namespace.to_owned(), pod.to_owned());
        let stream =
            futures::stream::unfold((backlog, receiver), move |(mut backlog, mut receiver)| {
                let (namespace, pod) = (namespace.clone(), pod.clone());
                async move {
                    loop {
                        if let Some(bytes) = backlog.pop_front() {
                            return Some((
                                Ok::<_, Infallible>(http_body::Frame::data(bytes)),
                                (backlog, receiver),
                            ));
                        }
                        let rx = receiver.as_mut()?;
                        match rx.recv().await {
                            Ok(Signal::Log {
                                namespace: ns,
                                pod: p,
                                line,
                            }) if ns == namespace && p == pod => {
                                backlog.push_back(Bytes::from(format!("{line}\n")));
                            }
                            Ok(Signal::Change(change))
                                if change.kind == "DELETED"
                                    && change.resource == "pods"
                                    && change.namespace == namespace
                                    && change.object["metadata"]["name"].as_str()
                                        == Some(pod.as_str()) =>
                            {
                                return None;
                            }
                            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                            Err(broadcast::error::RecvError::Closed) => return None,
                        }
                    }
                }
            });
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "text/plain")
            .body(StreamBody::new(stream).boxed_unsync())
            .expect("a valid response")
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<kube::client::Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => Bytes::new(),
            };
            Ok(this.handle(parts, body))
        })
    }
}
