//! A tenant's changes that reach every stage it runs on: a new quota is republished in each of
//! its podgroups' desired states (the agents' ResourceQuota), and a deleted tenant's podgroups
//! are all marked `removed` and `purge`, so every stage's agent stops their replicas and drops
//! their data.
//!
//! The tenant's podgroups are the subjects `neo.desired.*.{tenant}.*` of `NEO_DESIRED` (last
//! message per subject): nothing else is indexed.

use async_nats::jetstream;
use bytes::Bytes;
use futures::TryStreamExt;
use neo_protocol::{EntityKind, pb, subjects};
use prost::Message;

use super::{Reaction, Reactor, ReactorError};
use crate::stored::StoredMessage;

/// Republishes a tenant's desired states when its quota changes or it is deleted.
pub struct DesiredOnTenantChange {
    js: jetstream::Context,
}

impl DesiredOnTenantChange {
    /// Publishes through `js`.
    pub fn new(js: jetstream::Context) -> Self {
        Self { js }
    }
}

/// What a tenant event changes in each of its desired states.
enum Change {
    /// The tenant's quota is now this.
    Quota(Option<pb::Quota>),
    /// The tenant was deleted.
    Deleted,
}

impl Change {
    /// The change a tenant event makes, if any.
    fn of(event: &pb::tenant_event::Event) -> Option<Self> {
        match event {
            pb::tenant_event::Event::QuotaSet(set) => Some(Self::Quota(set.quota)),
            pb::tenant_event::Event::Deleted(_) => Some(Self::Deleted),
            _ => None,
        }
    }

    fn apply(&self, desired: &mut pb::DesiredPodgroup) {
        match self {
            Self::Quota(quota) => desired.tenant_quota = *quota,
            Self::Deleted => {
                desired.removed = true;
                desired.purge = true;
                desired.replicas = 0;
            }
        }
    }
}

impl DesiredOnTenantChange {
    /// Republishes the last desired state on `subject` with `change`, only if it is still the
    /// last (`Nats-Expected-Last-Subject-Sequence`): a podgroup change published meanwhile is
    /// read again and changed in turn, never overwritten by an older state.
    async fn republish(
        &self,
        stream: &jetstream::stream::Stream,
        subject: &str,
        change: &Change,
        event: &StoredMessage,
    ) -> Result<(), String> {
        for _ in 0..MAX_RACES {
            let message = stream
                .direct_get_last_for_subject(subject)
                .await
                .map_err(|e| e.to_string())?;
            let Ok(mut desired) = pb::DesiredPodgroup::decode(message.payload.as_ref()) else {
                tracing::warn!(%subject, "skipping an unreadable desired state");
                return Ok(());
            };
            change.apply(&mut desired);
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{}@{}:{subject}", event.entity, event.sequence).as_str(),
            );
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                message.sequence.to_string().as_str(),
            );
            let published = self
                .js
                .publish_with_headers(
                    subject.to_owned(),
                    headers,
                    Bytes::from(desired.encode_to_vec()),
                )
                .await
                .map_err(|e| e.to_string())?
                .await;
            match published {
                Ok(_) => {
                    tracing::info!(%subject, tenant = %event.entity.tenant,
                        removed = desired.removed, "desired state republished for a tenant change");
                    return Ok(());
                }
                Err(e) if crate::store::jetstream::wrong_last_sequence(&e) => {
                    tracing::debug!(%subject, "the desired state moved meanwhile; reading it again");
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Err(format!("{subject} kept moving while it was republished"))
    }
}

/// Times a desired state may move under a republish before the event is tried again later.
const MAX_RACES: usize = 5;

#[async_trait::async_trait]
impl Reactor for DesiredOnTenantChange {
    fn name(&self) -> &'static str {
        "runtime-tenant"
    }

    fn filter(&self) -> String {
        subjects::kind_events(EntityKind::Tenant)
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        let err = |reason: String, transient: bool| ReactorError {
            reactor: "runtime-tenant",
            sequence: event.sequence,
            reason,
            transient,
        };
        let decoded = event
            .decode::<pb::TenantState>()
            .map_err(|e| err(e.to_string(), false))?;
        let Some(change) = decoded.event.as_ref().and_then(Change::of) else {
            return Ok(Vec::new());
        };
        let stream = self
            .js
            .get_stream(subjects::DESIRED_STREAM)
            .await
            .map_err(|e| err(e.to_string(), true))?;
        let filter = subjects::desired_tenant(&event.entity.tenant);
        let names: Vec<(String, usize)> = stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| err(e.to_string(), true))?
            .try_collect()
            .await
            .map_err(|e| err(e.to_string(), true))?;
        for (subject, _) in names {
            self.republish(&stream, &subject, &change, event)
                .await
                .map_err(|e| err(e, true))?;
        }
        Ok(Vec::new())
    }
}
