//! A steady load for fault tests: commands sent over NATS all through a fault, and the check
//! that every command the platform acknowledged is in the event log exactly once.

use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use neo_protocol::{AppName, EntityRef, TenantName, pb, subjects};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::commands;

/// Creates apps `{tenant}-load-{n}` in a tenant, one command every `every`, until stopped; keeps the
/// command id of each one the platform acknowledged.
pub struct Load {
    stop: watch::Sender<bool>,
    task: JoinHandle<Outcome>,
}

/// What the load saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The ids of the commands the platform acknowledged.
    pub acked: Vec<String>,
    /// The commands that failed (`id: why`): refused, an error, or no answer within 5 s.
    pub failed: Vec<String>,
}

impl Load {
    /// Starts the load on `client` in `tenant`.
    pub fn start(client: async_nats::Client, tenant: &str, every: Duration) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let tenant = tenant.to_owned();
        let task = tokio::spawn(async move {
            let mut outcome = Outcome::default();
            let mut n = 0u64;
            while !*stopped.borrow() {
                n += 1;
                // Command ids are unique across the stream (its de-duplication): the tenant is in it.
                let id = format!("{tenant}-load-{n}");
                let (Ok(t), Ok(a)) = (TenantName::new(&tenant), AppName::new(&id)) else {
                    break;
                };
                let entity = EntityRef::app(&t, &a);
                let request = commands::request_with_id(&id, commands::create_app());
                let sent = tokio::time::timeout(
                    Duration::from_secs(5),
                    crate::send(&client, &entity, &request),
                )
                .await;
                match sent {
                    Ok(Ok(reply))
                        if matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))) =>
                    {
                        outcome.acked.push(id);
                    }
                    Ok(Ok(reply)) => outcome.failed.push(format!("{id}: {:?}", reply.result)),
                    Ok(Err(e)) => outcome.failed.push(format!("{id}: {e:#}")),
                    Err(_) => outcome.failed.push(format!("{id}: no answer within 5 s")),
                }
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    _ = stopped.changed() => {}
                }
            }
            outcome
        });
        Self { stop, task }
    }

    /// Stops the load and returns the acknowledged command ids.
    ///
    /// # Errors
    /// When the load task panicked.
    pub async fn stop(self) -> anyhow::Result<Vec<String>> {
        Ok(self.outcome().await?.acked)
    }

    /// Stops the load and returns what it saw: acknowledged and failed commands.
    ///
    /// # Errors
    /// When the load task panicked.
    pub async fn outcome(self) -> anyhow::Result<Outcome> {
        let _ = self.stop.send(true);
        Ok(self.task.await?)
    }
}

/// The acknowledged commands that are not in `tenant`'s event log exactly once (missing or
/// doubled), read back from JetStream over `client`.
///
/// # Errors
/// When the log cannot be read.
pub async fn not_once(
    client: &async_nats::Client,
    tenant: &str,
    acked: &[String],
) -> anyhow::Result<Vec<String>> {
    let js = async_nats::jetstream::new(client.clone());
    let mut counts = std::collections::HashMap::<String, usize>::new();
    // Read from where the last reading stopped: a consumer stalled by a cluster that is still
    // settling after a kill (no message for 10 s) is replaced, for up to a minute.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut next = 1;
    'read: loop {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the log could not be read to its end within a minute (at sequence {next})"
        );
        let consumer = match js.get_stream(subjects::EVENTS_STREAM).await {
            Ok(stream) => stream
                .create_consumer(OrderedConfig {
                    filter_subject: format!("neo.evt.{tenant}.app.*.AppCreated"),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: next,
                    },
                    ..Default::default()
                })
                .await
                .ok(),
            Err(_) => None,
        };
        let Some(consumer) = consumer else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        if consumer.cached_info().num_pending == 0 {
            break;
        }
        let Ok(mut messages) = consumer.messages().await else {
            continue;
        };
        loop {
            let Ok(Some(Ok(msg))) =
                tokio::time::timeout(Duration::from_secs(10), messages.next()).await
            else {
                continue 'read;
            };
            let Ok(info) = msg.info() else {
                continue 'read;
            };
            let id = msg
                .headers
                .as_ref()
                .and_then(|h| {
                    neo_protocol::envelope::EventMeta::from_headers(|n| {
                        h.get(n).map(|v| v.as_str())
                    })
                    .ok()
                })
                .map(|meta| meta.command_id)
                .unwrap_or_default();
            *counts.entry(id).or_default() += 1;
            next = info.stream_sequence + 1;
            if info.pending == 0 {
                break 'read;
            }
        }
    }
    Ok(acked
        .iter()
        .filter(|id| counts.get(*id).copied() != Some(1))
        .cloned()
        .collect())
}
