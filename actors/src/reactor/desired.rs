//! Publishes each podgroup's desired state for its stage's agent.
//!
//! On every podgroup event that changes what should run (created, release assigned, scaled,
//! policy or resources changed) the podgroup's current state becomes a `DesiredPodgroup` on
//! `neo.desired.{stage}.{tenant}.{app}` (stream `NEO_DESIRED`, last message per subject). The
//! agent reads only its stage's prefix. Publishing the *current* state (not the event's) keeps
//! it level-triggered: a redelivered or late event can only republish the newest state.

use std::sync::Arc;

use async_nats::jetstream;
use bytes::Bytes;
use neo_protocol::pb;
use neo_protocol::{AppName, EntityKind, EntityRef, StageName, subjects};
use prost::Message;

use super::{Reaction, Reactor, ReactorError};
use crate::platform::Platform;
use crate::stored::StoredMessage;

/// Podgroup event types that do not change what should run.
const NOT_DESIRED: [&str; 2] = ["MetricsObserved", "ReplicaReplaced"];

/// Publishes podgroups' desired states.
pub struct DesiredOnPodgroupChange {
    js: jetstream::Context,
    platform: Arc<Platform>,
}

impl DesiredOnPodgroupChange {
    /// Publishes through `js`, reading states from `platform`.
    pub fn new(js: jetstream::Context, platform: Arc<Platform>) -> Self {
        Self { js, platform }
    }
}

/// The desired state of `podgroup` (of `tenant`) as of stream sequence `sequence`.
pub fn desired_of(
    tenant: &str,
    podgroup: &pb::PodgroupState,
    sequence: u64,
    traceparent: String,
) -> pb::DesiredPodgroup {
    pb::DesiredPodgroup {
        tenant: tenant.to_owned(),
        app: podgroup.app.clone(),
        stage: podgroup.stage.clone(),
        release: podgroup.release,
        image_digest: podgroup.image_digest.clone(),
        replicas: podgroup.desired,
        resources: podgroup.resources,
        removed: false,
        sequence,
        traceparent,
        settings: podgroup
            .config
            .as_ref()
            .map(|c| c.settings.clone())
            .unwrap_or_default(),
        secrets: podgroup
            .config
            .as_ref()
            .map(|c| c.secrets.clone())
            .unwrap_or_default(),
        tenant_quota: None,
        purge: false,
        idle_to_zero_s: podgroup.policy.map_or(0, |p| p.idle_to_zero_s),
        canary: podgroup.canary.as_ref().map(|c| pb::DesiredCanary {
            release: c.release,
            image_digest: c.image_digest.clone(),
            settings: c
                .config
                .as_ref()
                .map(|c| c.settings.clone())
                .unwrap_or_default(),
            secrets: c
                .config
                .as_ref()
                .map(|c| c.secrets.clone())
                .unwrap_or_default(),
            step: c.step,
            weight: c.weight,
            sticky: c.sticky,
            step_seconds: c.step_seconds,
        }),
    }
}

#[async_trait::async_trait]
impl Reactor for DesiredOnPodgroupChange {
    fn name(&self) -> &'static str {
        "runtime-desired"
    }

    fn filter(&self) -> String {
        subjects::kind_events(EntityKind::Podgroup)
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        if NOT_DESIRED.contains(&event.meta.event_type.as_str()) {
            return Ok(Vec::new());
        }
        let err = |reason: String, transient: bool| ReactorError {
            reactor: "runtime-desired",
            sequence: event.sequence,
            reason,
            transient,
        };
        let (state, sequence) = self
            .platform
            .podgroups
            .state(&event.entity)
            .await
            .map_err(|e| err(e.to_string(), true))?;
        let (Ok(app), Ok(stage)) = (AppName::new(&state.app), StageName::new(&state.stage)) else {
            return Err(err(
                format!("{} has no valid app and stage", event.entity),
                false,
            ));
        };
        let tenant = self
            .platform
            .tenants
            .state(&EntityRef::tenant(&event.entity.tenant))
            .await
            .map_err(|e| err(e.to_string(), true))?
            .0;
        let mut desired = desired_of(
            event.entity.tenant.as_str(),
            &state,
            sequence,
            // Under this reaction's span when tracing, else the event's trace as it came.
            neo_telemetry::trace::traceparent_or(
                &tracing::Span::current(),
                event.meta.traceparent.as_deref().unwrap_or_default(),
            ),
        );
        desired.tenant_quota = tenant.quota;
        // A late podgroup event of a deleted tenant: its podgroups stay gone.
        desired.removed = tenant.deleted;
        desired.purge = tenant.deleted;
        let subject = subjects::desired(&stage, &event.entity.tenant, &app);
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(
            "Nats-Msg-Id",
            format!("{}@{sequence}", event.entity).as_str(),
        );
        let ack = self
            .js
            .publish_with_headers(subject, headers, Bytes::from(desired.encode_to_vec()))
            .await
            .map_err(|e| err(e.to_string(), true))?;
        ack.await.map_err(|e| err(e.to_string(), true))?;
        tracing::debug!(entity = %event.entity, sequence, replicas = state.desired,
            release = state.release, "desired state published");
        Ok(Vec::new())
    }
}
