//! A deployment's releases drive its podgroup: the first creates the podgroup of that app and
//! stage, every later one (deploy, promotion, rollback) assigns its image to it, or starts it
//! as a canary beside the current one (a promotion with canary; its steps and end follow in
//! [`super::canary`]).

use bytes::Bytes;
use neo_protocol::pb;
use neo_protocol::{EntityKind, EntityRef};
use prost::Message;

use super::{Reaction, Reactor, ReactorError};
use crate::stored::StoredMessage;

/// Creates the podgroup of an app and stage at its first release; assigns later releases.
pub struct PodgroupOnFirstRelease;

#[async_trait::async_trait]
impl Reactor for PodgroupOnFirstRelease {
    fn name(&self) -> &'static str {
        "podgroup-on-first-release"
    }

    fn filter(&self) -> String {
        neo_protocol::subjects::kind_event_type(EntityKind::Deployment, "ReleaseCreated")
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        let err = |reason: String| ReactorError {
            reactor: "podgroup-on-first-release",
            sequence: event.sequence,
            reason,
            transient: false,
        };
        let decoded = event
            .decode::<pb::DeploymentState>()
            .map_err(|e| err(e.to_string()))?;
        let Some(pb::deployment_event::Event::ReleaseCreated(created)) = decoded.event else {
            return Ok(Vec::new());
        };
        let Some(release) = created.release else {
            return Err(err("release missing".into()));
        };
        let (app, stage) = event
            .entity
            .id
            .app_and_stage()
            .ok_or_else(|| err(format!("{} is not an app_stage id", event.entity.id)))?;
        let command = if release.number == 1 {
            pb::podgroup_command::Command::Create(pb::CreatePodgroup {
                app: app.to_string(),
                stage: stage.to_string(),
                release: release.number,
                image_digest: release.image_digest,
                policy: None,
                resources: None,
                config: release.config,
            })
        } else if let Some(canary) = release
            .canary
            .as_ref()
            .filter(|c| c.phase() == pb::CanaryPhase::Running)
        {
            let policy = canary.policy.clone().unwrap_or_default();
            pb::podgroup_command::Command::StartCanary(pb::StartCanary {
                canary: Some(pb::PodgroupCanary {
                    release: release.number,
                    image_digest: release.image_digest,
                    config: release.config,
                    step: canary.step,
                    weight: canary.weight,
                    sticky: policy.sticky,
                    step_seconds: policy.step_seconds,
                }),
            })
        } else {
            pb::podgroup_command::Command::AssignRelease(pb::AssignRelease {
                release: release.number,
                image_digest: release.image_digest,
                config: release.config,
            })
        };
        let command = pb::PodgroupCommand {
            command: Some(command),
        };
        Ok(vec![Reaction {
            entity: EntityRef::podgroup(&event.entity.tenant, &app, &stage),
            command: Bytes::from(command.encode_to_vec()),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neo_protocol::envelope::EventMeta;
    use neo_protocol::{AppName, StageName, TenantName};

    fn release_event(number: u32) -> StoredMessage {
        let t = TenantName::new("acme").unwrap();
        let a = AppName::new("shop").unwrap();
        let s = StageName::new("dev").unwrap();
        let event = pb::DeploymentEvent {
            event: Some(pb::deployment_event::Event::ReleaseCreated(
                pb::ReleaseCreated {
                    app: "shop".into(),
                    stage: "dev".into(),
                    release: Some(pb::Release {
                        number,
                        image_digest: format!("sha256:{}", "a".repeat(64)),
                        ..Default::default()
                    }),
                },
            )),
        };
        StoredMessage {
            entity: EntityRef::deployment(&t, &a, &s),
            sequence: 42,
            meta: EventMeta {
                event_type: "ReleaseCreated".into(),
                schema_version: 1,
                ..EventMeta::default()
            },
            payload: Bytes::from(event.encode_to_vec()),
        }
    }

    #[tokio::test]
    async fn first_release_creates_the_podgroup() {
        let reactions = PodgroupOnFirstRelease
            .react(&release_event(1))
            .await
            .unwrap();
        assert_eq!(reactions.len(), 1);
        assert_eq!(reactions[0].entity.kind, EntityKind::Podgroup);
        assert_eq!(reactions[0].entity.id.as_str(), "shop_dev");
        let cmd = pb::PodgroupCommand::decode(reactions[0].command.clone()).unwrap();
        let Some(pb::podgroup_command::Command::Create(c)) = cmd.command else {
            panic!("expected a create command, got {cmd:?}");
        };
        assert_eq!(
            (c.app.as_str(), c.stage.as_str(), c.release),
            ("shop", "dev", 1)
        );
    }

    #[tokio::test]
    async fn later_releases_are_assigned_to_the_podgroup() {
        let reactions = PodgroupOnFirstRelease
            .react(&release_event(2))
            .await
            .unwrap();
        assert_eq!(reactions.len(), 1);
        assert_eq!(reactions[0].entity.id.as_str(), "shop_dev");
        let cmd = pb::PodgroupCommand::decode(reactions[0].command.clone()).unwrap();
        let Some(pb::podgroup_command::Command::AssignRelease(a)) = cmd.command else {
            panic!("expected an assign command, got {cmd:?}");
        };
        assert_eq!(a.release, 2);
        assert_eq!(a.image_digest, format!("sha256:{}", "a".repeat(64)));
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let mut e = release_event(1);
        e.payload = Bytes::from_static(b"\xff\xff\xff");
        assert!(PodgroupOnFirstRelease.react(&e).await.is_err());
    }
}
