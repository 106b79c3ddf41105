//! Tenants deleted for good: every command on one of their entities is refused
//! (`tenant.deleted`) on every path into the platform (the gateway, the NATS intake, the
//! agents' stage commands, the reactors), so nothing is written for a tenant whose data key is
//! destroyed. The platform notes a deletion it makes at once; [`follow`] tells every platform
//! process of the deletions any of them made (the `TenantDeleted` events, from the start of the
//! log, then as they come). A lookup per command; nothing polls.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures::StreamExt;
use neo_protocol::pb::{self, ErrorCode};
use neo_protocol::{EntityKind, EntityRef, subjects};
use tokio::task::JoinHandle;

use super::Platform;

/// The tenants deleted, by name.
#[derive(Debug, Default)]
pub(super) struct Deleted(RwLock<HashSet<String>>);

impl Deleted {
    pub(super) fn insert(&self, tenant: &str) {
        if let Ok(mut deleted) = self.0.write() {
            deleted.insert(tenant.to_owned());
        }
    }

    /// Refuses a command on an entity of a deleted tenant (its tenant entity included: its
    /// own rules answer, e.g. that the name is never reused).
    pub(super) fn check(&self, entity: &EntityRef) -> Result<(), pb::CommandError> {
        if entity.kind == EntityKind::Tenant {
            return Ok(());
        }
        let deleted = self
            .0
            .read()
            .is_ok_and(|d| d.contains(entity.tenant.as_str()));
        if deleted {
            return Err(pb::CommandError {
                code: ErrorCode::FailedPrecondition as i32,
                rule: "tenant.deleted".into(),
                field: String::new(),
                message: format!(
                    "tenant {} was deleted: nothing of it may change any more",
                    entity.tenant
                ),
            });
        }
        Ok(())
    }
}

impl Platform {
    /// Notes that `tenant` was deleted: commands on its entities are refused from now on.
    pub fn tenant_deleted(&self, tenant: &str) {
        self.deleted.insert(tenant);
    }
}

/// Follows every `TenantDeleted` event into `platform` until the task is aborted; re-attaches
/// after a NATS outage.
pub fn follow(js: jetstream::Context, platform: Arc<Platform>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(e) = consume(&js, &platform).await {
                tracing::warn!(error = %e, "following tenant deletions failed; again in 1 s");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn consume(js: &jetstream::Context, platform: &Platform) -> Result<(), async_nats::Error> {
    let stream = js.get_stream_no_info(subjects::EVENTS_STREAM).await?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::kind_event_type(EntityKind::Tenant, "TenantDeleted"),
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        if let Ok((entity, _)) = subjects::parse_event(&message.subject) {
            platform.tenant_deleted(entity.tenant.as_str());
        }
    }
    Ok(())
}
