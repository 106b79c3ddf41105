//! Sorts the AWS SDK's errors into [`StorageError`]s, with messages that keep their cause.

use std::error::Error;
use std::fmt::Write as _;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::StorageError;

/// Where a failed call went: the operation and the endpoint, for messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The S3 operation, e.g. `PutObject`.
    pub operation: &'static str,
    /// The endpoint as configured (or a description of AWS's default).
    pub endpoint: &'a str,
}

/// Turns an SDK error into a [`StorageError`].
///
/// No answer (connect failure, timeout) is [`StorageError::Unavailable`] with the error's
/// whole source chain, so "dispatch failure" comes with e.g. "Connection refused"; HTTP 403
/// is [`StorageError::AccessDenied`]; HTTP 404 is [`StorageError::NotFound`] when `key`
/// names what was looked up; anything else is [`StorageError::Service`].
pub(crate) fn classify<E>(
    call: Call<'_>,
    key: Option<&str>,
    err: &SdkError<E, HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let Call {
        operation,
        endpoint,
    } = call;
    let Some(status) = status(err) else {
        let message = format!("{operation} to {endpoint}: {}", chain(err));
        return match err {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                StorageError::Unavailable(message)
            }
            _ => StorageError::Service { operation, message },
        };
    };
    let mut message = format!("{operation} at {endpoint}: HTTP {status}");
    if let Some(code) = err.code() {
        let _ = write!(message, " {code}");
    }
    if let Some(detail) = err.message() {
        let _ = write!(message, ": {detail}");
    }
    match (status, key) {
        (403, _) => StorageError::AccessDenied(format!(
            "{message} (check the access key id and the secret access key)"
        )),
        (404, Some(key)) => StorageError::NotFound {
            key: key.to_owned(),
        },
        _ => StorageError::Service { operation, message },
    }
}

/// The HTTP status of the response the error came with, if there was one.
pub(crate) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response()
        .map(|response| response.status().as_u16())
}

/// An error and its sources, joined by `": "`.
pub(crate) fn chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_joins_the_sources() {
        let err = Outer(std::io::Error::other("inner"));
        assert_eq!(chain(&err), "outer: inner");
    }
}
