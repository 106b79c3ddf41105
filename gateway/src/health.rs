//! Health that tells the truth: `grpc.health.v1` reports the gateway and each of its services
//! `NOT_SERVING` while the event store (JetStream) cannot be reached, and `SERVING` again once
//! it can, so a load balancer or a Kubernetes gRPC probe stops sending calls that would hang.
//!
//! The check costs one small JetStream request (`$JS.API.INFO`) every [`CHECK_EVERY`]; while
//! the NATS connection itself is down no request is sent.

use std::time::Duration;

use tokio::task::JoinHandle;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the event store is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long one check may take before the store counts as unreachable.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether JetStream answers on `client` now.
pub async fn event_store_reachable(client: &async_nats::Client) -> bool {
    if client.connection_state() != async_nats::connection::State::Connected {
        return false;
    }
    let js = async_nats::jetstream::new(client.clone());
    matches!(
        tokio::time::timeout(CHECK_TIMEOUT, js.query_account()).await,
        Ok(Ok(_))
    )
}

/// Keeps `services` (and the server as a whole, `""`) at `SERVING` while the event store is
/// reachable and `NOT_SERVING` while it is not, until the task is aborted. Changes are logged.
pub fn watch(
    client: async_nats::Client,
    reporter: HealthReporter,
    services: Vec<&'static str>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut serving = true;
        loop {
            tokio::time::sleep(CHECK_EVERY).await;
            let now = event_store_reachable(&client).await;
            if now == serving {
                continue;
            }
            serving = now;
            let status = if now {
                tracing::info!("the event store is reachable again: SERVING");
                ServingStatus::Serving
            } else {
                tracing::warn!("the event store cannot be reached: NOT_SERVING");
                ServingStatus::NotServing
            };
            for name in std::iter::once("").chain(services.iter().copied()) {
                reporter.set_service_status(name, status).await;
            }
        }
    })
}
