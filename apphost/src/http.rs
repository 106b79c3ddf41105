//! The HTTP surface: routes, the per-request log line, and JSON responses.

mod activity;
mod entities;
mod error;
mod meta;
mod screens;
mod ui;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::{debug, info};

pub use activity::Requests;
pub use error::ApiError;

use crate::state::AppState;

/// The host's routes.
///
/// | Route | |
/// |---|---|
/// | `GET /healthz` | 200 while the process lives, database or not (liveness) |
/// | `GET /readyz` | 200 when ready, else 503 `{"ready": false, "reasons": [...]}` (within 0.5 s) |
/// | `GET /activityz` | `{"requests": N, "in_flight": M}`: the requests so far and being answered, probes not counted ([`activity`]) |
/// | `GET /api` | the app's contract: entities and fields |
/// | `GET /api/_settings` | declared settings and their values (never secrets) |
/// | `POST, GET /api/{entity}` | create; list (`limit`, `offset`, `<field>=<value>`) |
/// | `GET, PUT, PATCH, DELETE /api/{entity}/{id}` | read, replace, update, delete |
/// | `GET /api/{entity}/{id}/{related}` | the `related` rows that refer to this one (one-to-many; `?via=FIELD`) |
/// | `GET /ui`, `GET /ui/{entity}[/new, /{id}, /{id}/edit]` | the generated screens ([`ui`]) |
/// | `POST /ui/{entity}[/{id}, /{id}/delete]` | their forms: create, save, delete |
/// | `GET /` | the project's `screens/index.html`, else the generated home page |
/// | `GET /screens/{*path}` | the project's own screens |
///
/// An entity route answers 503 (`Retry-After: 1`) within [`crate::db::ACQUIRE_TIMEOUT`] when the
/// database is unavailable, instead of waiting for it.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(meta::healthz))
        .route("/readyz", get(meta::readyz))
        .route("/activityz", get(activity::activityz))
        .route("/api", get(meta::contract))
        .route("/api/_settings", get(meta::settings))
        .route("/api/{entity}", get(entities::list).post(entities::create))
        .route(
            "/api/{entity}/{id}",
            get(entities::read)
                .put(entities::replace)
                .patch(entities::update)
                .delete(entities::delete),
        )
        .route("/api/{entity}/{id}/{related}", get(entities::related))
        .route("/", get(screens::index))
        .route("/screens/{*path}", get(screens::file))
        .merge(ui::routes())
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            activity::count,
        ))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// One log line per request; the probes log at debug level so they do not drown the rest.
async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let duration_ms = start.elapsed().as_secs_f64() * 1000.0;
    let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
    if path == "/healthz" || path == "/readyz" || path == "/activityz" {
        debug!(method = %method, path, status, duration_ms, "request");
    } else {
        info!(method = %method, path, status, duration_ms, "request");
    }
    response
}

/// A JSON response from text that already is JSON.
fn json_text(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A JSON response.
fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    json_text(status, value.to_string())
}
