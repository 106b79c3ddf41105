//! The API's errors and their JSON form: `{"error": "...", "field": "..."}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tracing::{error, warn};

use crate::db;

/// A request the API refuses or could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; `field` names the culprit when there is one (400).
    #[error("{message}")]
    BadRequest {
        /// What is wrong.
        message: String,
        /// The field, parameter or body key at fault.
        field: Option<String>,
    },
    /// A value breaks one of its field's rules (`min`, `max`, `max_length`, `pattern`,
    /// `values`) (422).
    #[error("{message}")]
    Invalid {
        /// Which rule, and how.
        message: String,
        /// The field.
        field: String,
    },
    /// Another row has this value of a unique field (409).
    #[error("{message}")]
    Duplicate {
        /// What is duplicated.
        message: String,
        /// The unique field, when the database named it.
        field: Option<String>,
    },
    /// No such entity, row or file (404).
    #[error("{0}")]
    NotFound(String),
    /// The write conflicts with a row already there (409).
    #[error("{0}")]
    Conflict(String),
    /// The host is not ready to serve data (503).
    #[error("{0}")]
    Unavailable(String),
    /// The database failed; the detail goes to the log, not to the client (500).
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// The database cannot be reached or gave no connection in time (503, `Retry-After: 1`);
    /// the detail goes to the log.
    #[error("the database is unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
}

impl ApiError {
    /// A failed database call: 503 when the database is unavailable ([`db::is_unavailable`]),
    /// else 500.
    pub fn database(error: sqlx::Error) -> Self {
        if db::is_unavailable(&error) {
            Self::DatabaseUnavailable(error)
        } else {
            Self::Database(error)
        }
    }

    /// The field at fault, when the error names one.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            Self::BadRequest { field, .. } | Self::Duplicate { field, .. } => field.as_deref(),
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }

    /// A 400 naming `field`.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            Self::BadRequest {
                message,
                field: Some(field),
            } => (
                StatusCode::BAD_REQUEST,
                json!({"error": message, "field": field}),
            ),
            Self::BadRequest {
                message,
                field: None,
            } => (StatusCode::BAD_REQUEST, json!({"error": message})),
            Self::Invalid { message, field } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": message, "field": field}),
            ),
            Self::Duplicate {
                message,
                field: Some(field),
            } => (
                StatusCode::CONFLICT,
                json!({"error": message, "field": field}),
            ),
            Self::Duplicate {
                message,
                field: None,
            } => (StatusCode::CONFLICT, json!({"error": message})),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, json!({"error": m})),
            Self::Conflict(m) => (StatusCode::CONFLICT, json!({"error": m})),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, json!({"error": m})),
            Self::Database(e) => {
                error!(error = %e, "database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "database error"}),
                )
            }
            Self::DatabaseUnavailable(e) => {
                warn!(error = %e, "database unavailable");
                let mut response = super::json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &json!({"error": "the database is unavailable, try again shortly"}),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return response;
            }
        };
        super::json(status, &body)
    }
}
