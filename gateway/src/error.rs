//! Errors: the gateway's start-up error, and the one mapping from platform replies and
//! validation failures to gRPC statuses.

use neo_protocol::NameError;
use neo_protocol::pb::{self, ErrorCode};
use tonic::codegen::http;
use tonic::{Code, Status};

/// Metadata key carrying the domain rule that refused a call.
pub const RULE_METADATA: &str = "neo-rule";
/// Metadata key carrying the request field that was invalid.
pub const FIELD_METADATA: &str = "neo-field";

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be read.
    #[error("cannot read TLS file {path}: {source}")]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// NATS or JetStream refused to set up what the gateway needs.
    #[error("cannot set up {what} on NATS: {reason}")]
    Nats {
        /// What was being set up.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

fn with_metadata(mut status: Status, key: &'static str, value: &str) -> Status {
    if let Ok(v) = value.parse() {
        status.metadata_mut().insert(key, v);
    }
    status
}

/// An `INVALID_ARGUMENT` naming `field`.
pub fn invalid(field: &str, message: impl std::fmt::Display) -> Status {
    with_metadata(
        Status::invalid_argument(format!("{field}: {message}")),
        FIELD_METADATA,
        field,
    )
}

/// An `INVALID_ARGUMENT` for a name that failed validation.
pub fn bad_name(field: &str, e: NameError) -> Status {
    invalid(field, e)
}

/// A `FAILED_PRECONDITION` carrying the rule that refused.
pub fn refused(rule: &str, message: impl std::fmt::Display) -> Status {
    with_metadata(
        Status::failed_precondition(format!("{message} (rule {rule})")),
        RULE_METADATA,
        rule,
    )
}

/// `UNAVAILABLE`: the platform or NATS could not be reached; the caller may retry.
pub fn unavailable(message: impl std::fmt::Display) -> Status {
    Status::unavailable(message.to_string())
}

/// A message over the size limit is `RESOURCE_EXHAUSTED` ("too large", what a client can act
/// on), not the `OUT_OF_RANGE` tonic answers when it refuses to decode or encode one. Applied to
/// every response (`tower::util::MapResponseLayer`); the refusal is always trailers-only, its
/// status in the response headers.
pub fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    // tonic: "Error, decoded message length too large: found … bytes, the limit is: … bytes"
    // (percent-encoded in the header).
    let too_large = headers
        .get("grpc-status")
        .is_some_and(|s| s.as_bytes() == b"11")
        && headers.get("grpc-message").is_some_and(|m| {
            String::from_utf8_lossy(m.as_bytes())
                .replace("%20", " ")
                .contains("message length too large")
        });
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// Maps a platform reply error to the status a client can act on.
pub fn from_command_error(e: pb::CommandError) -> Status {
    let code = match ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal) {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::AlreadyExists => Code::AlreadyExists,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::Aborted => Code::Aborted,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Internal | ErrorCode::Unspecified => Code::Internal,
    };
    let mut message = e.message.clone();
    if !e.field.is_empty() {
        message = format!("{}: {message}", e.field);
    }
    if !e.rule.is_empty() {
        message = format!("{message} (rule {})", e.rule);
    }
    let mut status = Status::new(code, message);
    if !e.rule.is_empty() {
        status = with_metadata(status, RULE_METADATA, &e.rule);
    }
    if !e.field.is_empty() {
        status = with_metadata(status, FIELD_METADATA, &e.field);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_errors_keep_their_rule_and_field() {
        let s = from_command_error(pb::CommandError {
            code: ErrorCode::FailedPrecondition as i32,
            rule: "promotion.no_source".into(),
            field: String::new(),
            message: "stage dev has no current release".into(),
        });
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.metadata()
                .get(RULE_METADATA)
                .and_then(|v| v.to_str().ok()),
            Some("promotion.no_source")
        );
        assert!(s.message().contains("promotion.no_source"));
        let s = invalid("app", "bad");
        assert_eq!(s.code(), Code::InvalidArgument);
        assert!(s.message().starts_with("app:"));
    }
}
