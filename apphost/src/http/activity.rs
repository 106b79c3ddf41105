//! How busy the host is, for its agent: `GET /activityz` says how many requests it has had
//! since it started and how many it is answering now. On Kubernetes no load balancer of the
//! agent's sees an app's requests, so the agent reads this from each ready pod to tell when
//! the app has been idle for its scale to zero window. The probes and this endpoint are not
//! counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::json;
use crate::state::AppState;

/// The paths that are not the app's requests.
const NOT_COUNTED: [&str; 3] = ["/healthz", "/readyz", "/activityz"];

/// The host's requests so far.
#[derive(Debug, Default)]
pub struct Requests {
    total: AtomicU64,
    in_flight: AtomicU64,
}

/// Counts every request but the probes' while it is answered.
pub async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if NOT_COUNTED.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let requests = &state.requests;
    requests.total.fetch_add(1, Ordering::Relaxed);
    requests.in_flight.fetch_add(1, Ordering::AcqRel);
    // Counted down even when the client goes away mid-answer (the future is dropped).
    let _answered = Answered(requests);
    next.run(request).await
}

/// Counts a request down when dropped.
struct Answered<'a>(&'a Requests);

impl Drop for Answered<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /activityz`: `{"requests": N, "in_flight": M}`.
pub async fn activityz(State(state): State<Arc<AppState>>) -> Response {
    let requests = &state.requests;
    json(
        StatusCode::OK,
        &json!({
            "requests": requests.total.load(Ordering::Relaxed),
            "in_flight": requests.in_flight.load(Ordering::Acquire),
        }),
    )
}
