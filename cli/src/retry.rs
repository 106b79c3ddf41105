//! Retrying a call the gateway could not complete (`UNAVAILABLE`: the platform or NATS was out
//! of reach, or the connection dropped). Every call of one `neo` invocation carries the same
//! request id (metadata `neo-request-id`, see [`super::connect`]), from which the gateway derives
//! the ids of the commands it sends, so a call that was written before it failed is not written
//! again when it is retried: it takes effect once.

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

use super::progress::spinner;

/// The waits between tries: about 15 s in all.
const DELAYS: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
];

/// Runs `call` with a spinner showing `message`; while it answers `UNAVAILABLE` (or its
/// connection breaks), tries again after each of [`DELAYS`], saying why on the spinner. The
/// last answer is returned.
///
/// # Errors
/// The call's error: the last `UNAVAILABLE`, or any other status at once.
pub async fn unary<R, F, Fut>(message: impl Into<String>, call: F) -> Result<R, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, Status>>,
{
    unary_with(&DELAYS, message, call).await
}

/// Whether a call that ended with `status` may be tried again: `UNAVAILABLE`, or a connection
/// that broke under it (tonic's `UNKNOWN` "transport error": a gateway that went away mid-call;
/// the retry carries the same request id, so it takes effect once either way).
fn retryable(status: &Status) -> bool {
    let broken = || {
        std::error::Error::source(status)
            .is_some_and(|source| source.downcast_ref::<tonic::transport::Error>().is_some())
            || status.message() == "transport error"
    };
    status.code() == Code::Unavailable || (status.code() == Code::Unknown && broken())
}

/// [`unary`] with other delays.
async fn unary_with<R, F, Fut>(
    delays: &[Duration],
    message: impl Into<String>,
    mut call: F,
) -> Result<R, Status>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<R, Status>>,
{
    let message = message.into();
    let spinner = spinner(message.clone());
    let mut delays = delays.iter();
    let result = loop {
        match call().await {
            Err(status) if retryable(&status) => match delays.next() {
                Some(delay) => {
                    tracing::debug!(status = %status.message(), ?delay, "retrying with the same request id");
                    spinner.set_message(format!(
                        "{message} (unavailable: {}; retrying)",
                        status.message()
                    ));
                    tokio::time::sleep(*delay).await;
                }
                None => break Err(status),
            },
            other => break other,
        }
    };
    spinner.finish_and_clear();
    result
}

/// `retrying!(message, client.method(request))`: the call through [`unary`], with a clone of
/// the client and the request for each try.
#[macro_export]
macro_rules! retrying {
    ($message:expr, $client:ident . $method:ident ( $request:expr )) => {
        $crate::retry::unary($message, || {
            let mut client = $client.clone();
            let request = $request.clone();
            async move { client.$method(request).await }
        })
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const QUICK: [Duration; 5] = [Duration::from_millis(1); 5];

    #[tokio::test]
    async fn unavailable_is_retried_until_it_passes_and_other_errors_are_not() {
        let tries = Cell::new(0);
        let ok = unary_with(&QUICK, "x", || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move {
                if n < 3 {
                    Err(Status::unavailable("down"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(ok.unwrap(), 3);

        tries.set(0);
        let refused = unary_with(&QUICK, "x", || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(Status::failed_precondition("no")) }
        })
        .await;
        assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(tries.get(), 1);

        tries.set(0);
        let down = unary_with(&QUICK, "x", || {
            tries.set(tries.get() + 1);
            async { Err::<(), _>(Status::unavailable("down")) }
        })
        .await;
        assert_eq!(down.unwrap_err().code(), Code::Unavailable);
        assert_eq!(tries.get(), QUICK.len() + 1);

        // A connection broken under the call is retried; another unknown error is not.
        for (message, tried) in [("transport error", 2), ("the handler panicked", 1)] {
            tries.set(0);
            let _ = unary_with(&QUICK, "x", || {
                tries.set(tries.get() + 1);
                let n = tries.get();
                async move {
                    if n < 2 {
                        Err(Status::unknown(message))
                    } else {
                        Ok(())
                    }
                }
            })
            .await;
            assert_eq!(tries.get(), tried, "{message}");
        }
    }
}
