//! Client-supplied request ids: a call's `neo-request-id` metadata makes the ids of the commands
//! it causes, so a call retried with the same request id (after `UNAVAILABLE`, a timeout, a
//! lost connection) takes effect once, whether or not the first try was written.
//!
//! [`RequestIdLayer`] keeps each call's id in a task-local for the length of the call;
//! [`command_id`] derives a command's id from it, the entity and the command's bytes, so the
//! same command of the same call always gets the same id and different commands different ones.
//! Without the metadata every command gets a fresh id.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tonic::Status;
use tonic::codegen::{Service, http};

use crate::error::invalid;

/// The metadata key (a gRPC header) carrying the request id.
pub const METADATA: &str = "neo-request-id";

/// The longest request id accepted.
const MAX_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The command id for `command` (encoded) to `entity` in the current call: derived from the
/// call's request id when it has one, else fresh.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the metadata when the request id is empty, longer than 128
/// characters, or has characters other than ASCII letters, digits, `-`, `_`, `.` and `:`.
pub fn command_id(entity: &neo_protocol::EntityRef, command: &[u8]) -> Result<String, Status> {
    let Ok(request) = REQUEST_ID.try_with(Clone::clone) else {
        return Ok(uuid::Uuid::new_v4().to_string());
    };
    validate()?;
    let mut hash = Sha256::new();
    hash.update(entity.to_string().as_bytes());
    hash.update([0]);
    hash.update(command);
    let digest = hex::encode(&hash.finalize()[..12]);
    Ok(format!("req:{request}:{digest}"))
}

/// Whether `id` is an acceptable request id: `Some(())`, else `None`.
fn check(id: &str) -> Option<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then_some(())
}

/// The current call's request id when it is malformed: checked once at the start of a call.
///
/// # Errors
/// `INVALID_ARGUMENT` naming the metadata.
pub fn validate() -> Result<(), Status> {
    match REQUEST_ID.try_with(|id| check(id).is_some()) {
        Ok(false) => Err(invalid(
            METADATA,
            format_args!(
                "a request id is 1 to {MAX_LEN} characters of letters, digits, `-`, `_`, `.` and `:`"
            ),
        )),
        _ => Ok(()),
    }
}

/// A tower layer that runs each call with its request id in scope.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestIdLayer;

impl<S> tower_layer::Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService { inner }
    }
}

/// See [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<http::Request<B>> for RequestIdService<S>
where
    S: Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let id = request
            .headers()
            .get(METADATA)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let call = self.inner.call(request);
        match id {
            Some(id) => Box::pin(REQUEST_ID.scope(id, call)),
            None => Box::pin(call),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neo_protocol::{AppName, EntityRef, TenantName};

    fn entity(app: &str) -> EntityRef {
        EntityRef::app(
            &TenantName::new("acme").unwrap(),
            &AppName::new(app).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_same_command_of_the_same_request_gets_the_same_id() {
        let id = |app: &'static str, bytes: &'static [u8]| {
            REQUEST_ID.scope("r-1".to_owned(), async move {
                command_id(&entity(app), bytes).unwrap()
            })
        };
        let first = id("shop", b"deploy v2").await;
        assert_eq!(first, id("shop", b"deploy v2").await);
        assert!(first.starts_with("req:r-1:"), "{first}");
        assert_ne!(first, id("shop", b"deploy v3").await);
        assert_ne!(first, id("cart", b"deploy v2").await);
    }

    #[tokio::test]
    async fn without_a_request_id_every_command_is_new() {
        let a = command_id(&entity("shop"), b"x").unwrap();
        let b = command_id(&entity("shop"), b"x").unwrap();
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn a_malformed_request_id_is_refused_naming_the_metadata() {
        for bad in ["", "a b", &"x".repeat(129), "ü"] {
            let e = REQUEST_ID
                .scope(bad.to_owned(), async { validate().unwrap_err() })
                .await;
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{bad:?}");
            assert!(e.message().contains(METADATA), "{e:?}");
        }
        REQUEST_ID
            .scope("0b6f-4c1e:retry.1_x".to_owned(), async {
                validate().unwrap()
            })
            .await;
    }
}
