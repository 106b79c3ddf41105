//! How busy the host is, for its agent: `GET /activityz` says how many requests it has had
//! since it started, how many it is answering now, how many it answered 5xx, and how long its
//! answers took (counts per time bucket). On Kubernetes no load balancer of the agent's sees
//! an app's requests, so the agent reads this from each ready pod: to tell when the app has
//! been idle for its scale to zero window, and to measure a canary's release against the
//! current one. The probes and this endpoint are not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::json;
use crate::state::AppState;

/// The paths that are not the app's requests.
const NOT_COUNTED: [&str; 3] = ["/healthz", "/readyz", "/activityz"];

/// The upper bounds of the answer-time buckets, in microseconds: from 250 µs, each a quarter
/// more than the last, past a minute; one more bucket counts the slower answers.
pub fn bucket_bounds_us() -> Vec<u64> {
    let mut bounds = vec![250u64];
    while let Some(&last) = bounds.last()
        && last < 60_000_000
    {
        bounds.push(last + last.div_ceil(4));
    }
    bounds
}

/// The host's requests so far.
#[derive(Debug)]
pub struct Requests {
    total: AtomicU64,
    in_flight: AtomicU64,
    errors: AtomicU64,
    bounds_us: Vec<u64>,
    /// One count per bound, and one for the answers slower than the last.
    answered: Vec<AtomicU64>,
}

impl Default for Requests {
    fn default() -> Self {
        let bounds_us = bucket_bounds_us();
        let answered = (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            total: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            bounds_us,
            answered,
        }
    }
}

impl Requests {
    /// Counts an answer with `status` that took `took_us`.
    fn answered(&self, status: u16, took_us: u64) {
        if status >= 500 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let bucket = self.bounds_us.partition_point(|bound| *bound < took_us);
        if let Some(count) = self.answered.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }
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
    let _answering = Answering(requests);
    let started = Instant::now();
    let response = next.run(request).await;
    let took_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
    requests.answered(response.status().as_u16(), took_us);
    response
}

/// Counts a request down when dropped.
struct Answering<'a>(&'a Requests);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `GET /activityz`: `{"requests": N, "in_flight": M, "errors": E, "answer_us": {"bounds":
/// [...], "counts": [...]}}` (`counts` has one more entry than `bounds`: the slower answers).
pub async fn activityz(State(state): State<Arc<AppState>>) -> Response {
    let requests = &state.requests;
    let counts: Vec<u64> = requests
        .answered
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .collect();
    json(
        StatusCode::OK,
        &json!({
            "requests": requests.total.load(Ordering::Relaxed),
            "in_flight": requests.in_flight.load(Ordering::Acquire),
            "errors": requests.errors.load(Ordering::Relaxed),
            "answer_us": {"bounds": requests.bounds_us, "counts": counts},
        }),
    )
}
