//! Reading a build's log from `NEO_BUILD_LOGS`: what is there, or (following) everything up to
//! the last line of the build's current attempt.

use std::pin::Pin;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::{Stream, StreamExt};
use neo_builder::buildlog::{LOG_STREAM, log_subject};
use neo_protocol::pb;
use prost::Message;
use tokio::sync::mpsc;
use tonic::Status;

use crate::error::unavailable;

/// A stream of log lines.
pub type Lines = Pin<Box<dyn Stream<Item = Result<pb::BuildLogLine, Status>> + Send>>;

/// The log of `build_id`: without `follow`, the lines written so far; with it, also the lines
/// to come until the end line of attempt `attempt` (or a later one).
///
/// # Errors
/// `UNAVAILABLE` when JetStream cannot be read.
pub async fn lines(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    build_id: &str,
    follow: bool,
    attempt: u32,
) -> Result<Lines, Status> {
    let stream = js
        .get_stream(LOG_STREAM)
        .await
        .map_err(|e| unavailable(format!("build log unavailable: {e}")))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: log_subject(tenant, build_id),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot read the build log: {e}")))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable(format!("cannot read the build log: {e}")))?;
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        if !follow && pending == 0 {
            return;
        }
        while let Some(next) = messages.next().await {
            let msg = match next {
                Ok(msg) => msg,
                Err(e) => {
                    let _ = tx
                        .send(Err(unavailable(format!("build log interrupted: {e}"))))
                        .await;
                    return;
                }
            };
            pending = msg.info().map(|i| i.pending).unwrap_or(0);
            let Ok(line) = pb::BuildLogLine::decode(msg.payload.clone()) else {
                continue;
            };
            let last = line.end && line.attempt >= attempt;
            if tx.send(Ok(line)).await.is_err() {
                return;
            }
            if (follow && last) || (!follow && pending == 0) {
                return;
            }
        }
    });
    Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
}
