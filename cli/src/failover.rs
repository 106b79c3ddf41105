//! Several gateways of one platform (`--endpoint a,b`): calls go to the gateway that answered
//! last; a call that cannot reach it (refused, reset, the gateway draining for a restart)
//! switches the following calls to the next gateway that answers, so the call's retry (the
//! same request id, see [`super::retry`]) lands there and takes effect once.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::transport::{Channel, Endpoint};

/// A channel to the first gateway of a list that answers, moving on when it stops answering.
#[derive(Clone)]
pub struct Failover {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("endpoints", &self.shared.endpoints.len())
            .finish_non_exhaustive()
    }
}

struct Shared {
    endpoints: Vec<Endpoint>,
    /// The gateway in use: its index and channel.
    current: Mutex<(usize, Channel)>,
    /// One switch at a time.
    switching: tokio::sync::Mutex<()>,
}

impl Failover {
    /// Calls go to `channel`, connected to `endpoints[index]`, until it fails.
    pub fn new(endpoints: Vec<Endpoint>, index: usize, channel: Channel) -> Self {
        Self {
            shared: Arc::new(Shared {
                endpoints,
                current: Mutex::new((index, channel)),
                switching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn current(&self) -> (usize, Channel) {
        self.shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Shared {
    /// The gateway at `failed` did not answer: use the next one that does (from the one after
    /// it, round the list), unless another call switched already.
    async fn switch_from(&self, failed: usize) {
        let _one = self.switching.lock().await;
        let in_use = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0;
        if in_use != failed {
            return;
        }
        let count = self.endpoints.len();
        for step in 1..=count {
            let index = (failed + step) % count;
            match self.endpoints[index].connect().await {
                Ok(channel) => {
                    tracing::debug!(endpoint = %self.endpoints[index].uri(), "switched gateway");
                    *self.current.lock().unwrap_or_else(PoisonError::into_inner) = (index, channel);
                    return;
                }
                Err(e) => {
                    tracing::debug!(endpoint = %self.endpoints[index].uri(), error = %e,
                        "gateway not reached");
                }
            }
        }
    }
}

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits for its channel's readiness itself (the channel may change).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let (index, mut channel) = self.current();
        let shared = self.shared.clone();
        Box::pin(async move {
            let answer = match std::future::poll_fn(|cx| channel.poll_ready(cx)).await {
                Ok(()) => channel.call(request).await,
                Err(e) => Err(e),
            };
            if answer.is_err() {
                shared.switch_from(index).await;
            }
            answer
        })
    }
}
