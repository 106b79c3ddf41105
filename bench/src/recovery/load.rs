//! The steady load of `neo bench recovery`, and the check that what the platform
//! acknowledged is in the event log exactly once.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt as _;
use neo_protocol::envelope::EventMeta;
use neo_protocol::{AppName, EntityKind, EntityRef, TenantName, pb, subjects};
use prost::Message as _;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{Fault, TENANT};

/// One command this often.
const LOAD_EVERY: Duration = Duration::from_millis(50);
/// How long one command may wait for its reply.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The steady load of one fault: `CreateApp` of `load-{fault}-{n}` (also the command id) over
/// NATS request/reply every [`LOAD_EVERY`], until stopped; the ids acknowledged.
pub(super) struct Load {
    stop: watch::Sender<bool>,
    task: JoinHandle<Vec<String>>,
}

impl Load {
    /// Starts the load of `fault` on `client`.
    pub(super) fn start(client: async_nats::Client, fault: Fault) -> Self {
        let (stop, mut stopped) = watch::channel(false);
        let prefix = format!("load-{}", fault.name().replace('_', "-"));
        let task = tokio::spawn(async move {
            let mut acked = Vec::new();
            let Ok(tenant) = TenantName::new(TENANT) else {
                return acked;
            };
            for n in 1u64.. {
                if *stopped.borrow() {
                    break;
                }
                let id = format!("{prefix}-{n}");
                if let Ok(app) = AppName::new(&id)
                    && create_app(
                        &client,
                        &EntityRef::app(&tenant, &app),
                        &id,
                        "recovery bench load",
                        LOAD_TIMEOUT,
                    )
                    .await
                {
                    acked.push(id);
                }
                tokio::select! {
                    () = tokio::time::sleep(LOAD_EVERY) => {}
                    _ = stopped.changed() => {}
                }
            }
            acked
        });
        Self { stop, task }
    }

    /// Stops the load; the command ids the platform acknowledged.
    pub(super) async fn stop(self) -> anyhow::Result<Vec<String>> {
        let _ = self.stop.send(true);
        self.task.await.context("the load task")
    }
}

/// Sends `CreateApp` (with `description`) to `entity` over NATS request/reply with command id
/// `id`, waiting at most `timeout`; whether the platform accepted it.
pub(crate) async fn create_app(
    client: &async_nats::Client,
    entity: &EntityRef,
    id: &str,
    description: &str,
    timeout: Duration,
) -> bool {
    let command = pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: description.to_owned(),
        })),
    };
    let request = pb::CommandRequest {
        command_id: id.to_owned(),
        principal: "bench".into(),
        command: command.encode_to_vec().into(),
        ..Default::default()
    };
    let sent = client.request(subjects::command(entity), request.encode_to_vec().into());
    let Ok(Ok(reply)) = tokio::time::timeout(timeout, sent).await else {
        return false;
    };
    matches!(
        pb::CommandReply::decode(reply.payload).map(|r| r.result),
        Ok(Some(pb::command_reply::Result::Accepted(_)))
    )
}

/// How many `AppCreated` events of `tenant` carry each command id.
pub(crate) async fn command_counts(
    js: &async_nats::jetstream::Context,
    tenant: &str,
) -> anyhow::Result<HashMap<String, usize>> {
    let consumer = js
        .get_stream(subjects::EVENTS_STREAM)
        .await?
        .create_consumer(OrderedConfig {
            filter_subject: subjects::kind_event_type(EntityKind::App, "AppCreated"),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    let mut counts = HashMap::new();
    if consumer.cached_info().num_pending == 0 {
        return Ok(counts);
    }
    let mut messages = consumer.messages().await?;
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .context("reading the AppCreated events back")?
            .context("the read ended early")??;
        let ours = subjects::parse_event(msg.subject.as_str())
            .is_ok_and(|(entity, _)| entity.tenant.as_str() == tenant);
        let meta = msg
            .headers
            .as_ref()
            .and_then(|h| EventMeta::from_headers(|n| h.get(n).map(|v| v.as_str())).ok());
        if let Some(meta) = meta
            && ours
        {
            *counts.entry(meta.command_id).or_default() += 1;
        }
        if msg.info().map(|i| i.pending).unwrap_or(0) == 0 {
            return Ok(counts);
        }
    }
}
