//! What every route answers with: an HTML page with its cookies, a redirect, the HTTP status
//! of a gateway refusal (and the field it names), a form's fields and a query's parameters.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::Markup;
use tonic::{Code, Status};

use crate::pages::layout;

/// The trailer naming the request field an `INVALID_ARGUMENT` is about.
pub const FIELD_TRAILER: &str = "neo-field";

/// An HTML answer with `status`, setting `cookies`.
pub fn html(status: StatusCode, markup: Markup, cookies: &[String]) -> Response {
    let mut response = (status, axum::response::Html(markup.into_string())).into_response();
    set_cookies(&mut response, cookies);
    response
}

/// `303 See Other` to `to`, setting `cookies`.
pub fn redirect(to: &str, cookies: &[String]) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(to) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    set_cookies(&mut response, cookies);
    response
}

fn set_cookies(response: &mut Response, cookies: &[String]) {
    for cookie in cookies {
        if let Ok(value) = HeaderValue::from_str(cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
}

/// The HTTP status of a gRPC refusal.
pub fn http_status(status: &Status) -> StatusCode {
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
        Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A refusal as a form shows it: the message, beside the field the gateway names (its
/// `neo-field` trailer), else above the form.
#[derive(Debug, Clone, Default)]
pub struct Refusal {
    /// The request field it is about ("" when none is named).
    pub field: String,
    /// What the gateway said.
    pub message: String,
}

impl Refusal {
    /// The refusal `status` carries.
    pub fn of(status: &Status) -> Self {
        let field = status
            .metadata()
            .get(FIELD_TRAILER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        Self {
            field,
            message: status.message().to_owned(),
        }
    }

    /// The form field it is about: the request field's last part (`policy.max_replicas` is
    /// the form's `max_replicas`).
    fn form_field(&self) -> &str {
        self.field.rsplit('.').next().unwrap_or_default()
    }

    /// The message when it is about `field`.
    pub fn about(this: Option<&Self>, field: &str) -> Option<String> {
        this.filter(|r| r.form_field() == field)
            .map(|r| r.message.clone())
    }

    /// The message when it names none of `fields` (shown above the form).
    pub fn general(this: Option<&Self>, fields: &[&str]) -> Option<String> {
        this.filter(|r| !fields.contains(&r.form_field()))
            .map(|r| r.message.clone())
    }
}

/// `status` naming `field` in its `neo-field` trailer (a refusal the portal makes itself, or
/// one whose field the form calls otherwise).
pub fn with_field(mut status: Status, field: &str) -> Status {
    if let Ok(value) = field.parse() {
        status.metadata_mut().insert(FIELD_TRAILER, value);
    }
    status
}

/// A page saying what the gateway refused.
pub fn failure(status: &Status) -> Response {
    html(
        http_status(status),
        layout::page("Error", None, layout::error(status.message())),
        &[],
    )
}

/// A form without its CSRF value: 403, saying why.
pub fn forged() -> Response {
    html(
        StatusCode::FORBIDDEN,
        layout::page(
            "Refused",
            None,
            layout::error(
                "This form is missing its CSRF value or it does not match your session: reload the page and try again.",
            ),
        ),
        &[],
    )
}

/// A form's fields (the last of a repeated name wins).
pub fn form(body: &[u8]) -> HashMap<String, String> {
    form_urlencoded::parse(body).into_owned().collect()
}

/// A query's parameters.
pub fn query(raw: Option<&str>) -> HashMap<String, String> {
    form(raw.unwrap_or_default().as_bytes())
}

/// Now, Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A path segment or query value, percent-encoded.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_refusals_map_to_http_statuses() {
        assert_eq!(
            http_status(&Status::permission_denied("")),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            http_status(&Status::failed_precondition("")),
            StatusCode::CONFLICT
        );
        assert_eq!(
            http_status(&Status::unauthenticated("")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            http_status(&Status::unavailable("")),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[test]
    fn a_refusal_goes_beside_the_field_it_names() {
        let status = with_field(
            Status::invalid_argument("name: must start with a letter"),
            "name",
        );
        let refusal = Refusal::of(&status);
        assert_eq!(
            Refusal::about(Some(&refusal), "name").as_deref(),
            Some("name: must start with a letter")
        );
        assert_eq!(Refusal::about(Some(&refusal), "value"), None);
        assert_eq!(Refusal::general(Some(&refusal), &["name", "value"]), None);
        assert!(Refusal::general(Some(&refusal), &["value"]).is_some());
        let nested = with_field(
            Status::invalid_argument("max replicas 0 is outside 1..=20"),
            "policy.max_replicas",
        );
        let nested = Refusal::of(&nested);
        assert!(Refusal::about(Some(&nested), "max_replicas").is_some());
    }
}
