//! A canary's steps and end reach its podgroup: `CanaryAdvanced` → `StepCanary` (its new
//! share of the traffic), `CanaryCompleted` → `EndCanary` promoted (with the release's image
//! and config, read from the deployment), `CanaryRolledBack` → `EndCanary` rolled back.

use std::sync::Arc;

use bytes::Bytes;
use neo_protocol::pb::{self, deployment_event::Event, podgroup_command::Command};
use neo_protocol::{EntityKind, EntityRef};
use prost::Message;

use super::{Reaction, Reactor, ReactorError};
use crate::platform::Platform;
use crate::stored::StoredMessage;

/// Steps and ends the podgroup's canary as the deployment judges it.
pub struct PodgroupFollowsCanary {
    platform: Arc<Platform>,
}

impl PodgroupFollowsCanary {
    /// Reads the deployment's releases from `platform`.
    pub fn new(platform: Arc<Platform>) -> Self {
        Self { platform }
    }
}

#[async_trait::async_trait]
impl Reactor for PodgroupFollowsCanary {
    fn name(&self) -> &'static str {
        "podgroup-follows-canary"
    }

    fn filter(&self) -> String {
        neo_protocol::subjects::kind_events(EntityKind::Deployment)
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        if !event.meta.event_type.starts_with("Canary") {
            return Ok(Vec::new());
        }
        let err = |reason: String, transient: bool| ReactorError {
            reactor: "podgroup-follows-canary",
            sequence: event.sequence,
            reason,
            transient,
        };
        let decoded = event
            .decode::<pb::DeploymentState>()
            .map_err(|e| err(e.to_string(), false))?;
        let command = match decoded.event {
            Some(Event::CanaryAdvanced(e)) => Command::StepCanary(pb::StepCanary {
                release: e.release,
                step: e.step,
                weight: e.weight,
            }),
            Some(Event::CanaryCompleted(e)) => {
                let (state, _) = self
                    .platform
                    .deployments
                    .state(&event.entity)
                    .await
                    .map_err(|e| err(e.to_string(), true))?;
                let Some(release) = state.releases.into_iter().find(|r| r.number == e.release)
                else {
                    return Err(err(format!("release {} missing", e.release), false));
                };
                Command::EndCanary(pb::EndCanary {
                    release: e.release,
                    promoted: true,
                    image_digest: release.image_digest,
                    config: release.config,
                    reason: e.reason,
                })
            }
            Some(Event::CanaryRolledBack(e)) => Command::EndCanary(pb::EndCanary {
                release: e.release,
                promoted: false,
                image_digest: String::new(),
                config: None,
                reason: e.reason,
            }),
            _ => return Ok(Vec::new()),
        };
        let (app, stage) = event
            .entity
            .id
            .app_and_stage()
            .ok_or_else(|| err(format!("{} is not an app_stage id", event.entity.id), false))?;
        let command = pb::PodgroupCommand {
            command: Some(command),
        };
        Ok(vec![Reaction {
            entity: EntityRef::podgroup(&event.entity.tenant, &app, &stage),
            command: Bytes::from(command.encode_to_vec()),
        }])
    }
}
