//! The host's own endpoints: liveness, readiness, the app's contract and its settings.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::json;
use crate::state::AppState;

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> Response {
    json(StatusCode::OK, &json!({"status": "ok"}))
}

/// `GET /readyz`: 200 when ready, else 503 with the reasons.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let reasons = state.unready_reasons().await;
    if reasons.is_empty() {
        json(StatusCode::OK, &json!({"ready": true}))
    } else {
        json(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"ready": false, "reasons": reasons}),
        )
    }
}

/// `GET /api`: the entities and their fields, with each field's rules and default.
pub async fn contract(State(state): State<Arc<AppState>>) -> Response {
    let model = &state.bundle.model;
    let entities: Vec<Value> = model
        .entities
        .iter()
        .map(|e| {
            let fields: Vec<Value> = e
                .fields
                .iter()
                .map(|f| {
                    let mut field = json!({"name": f.name, "type": f.kind.to_string(), "required": f.required});
                    // The rules, as model.json has them (only those the field has).
                    if let (Value::Object(field), Ok(Value::Object(rules))) =
                        (&mut field, serde_json::to_value(&f.rules))
                    {
                        field.extend(rules);
                    }
                    field
                })
                .collect();
            json!({"name": e.name, "path": format!("/api/{}", e.table), "expose": e.expose, "fields": fields})
        })
        .collect();
    json(
        StatusCode::OK,
        &json!({"app": model.name, "description": model.description, "entities": entities}),
    )
}

/// `GET /api/_settings`: every declared setting and its value. Secrets are never listed.
pub async fn settings(State(state): State<Arc<AppState>>) -> Response {
    let settings: Map<String, Value> = state
        .settings
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                value.clone().map_or(Value::Null, Value::String),
            )
        })
        .collect();
    json(StatusCode::OK, &json!({"settings": settings}))
}
