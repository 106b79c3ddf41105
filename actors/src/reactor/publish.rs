//! 1-Click Publish as a chain of reactors: a revision created with a `deploy_to` stage is
//! built ([`BuildOnPublish`]), and its successful build is deployed to that stage
//! ([`DeployOnBuild`]), after the platform's impact analysis. Each command id is derived from the triggering
//! event, so a crash anywhere in the chain resumes without doing a step twice.

use bytes::Bytes;
use neo_protocol::pb::{self, app_event, build_event};
use neo_protocol::{AppName, EntityKind, EntityRef, subjects};
use prost::Message;

use super::{Reaction, Reactor, ReactorError};
use crate::stored::StoredMessage;

fn error(reactor: &'static str, event: &StoredMessage, reason: String) -> ReactorError {
    ReactorError {
        reactor,
        sequence: event.sequence,
        reason,
        transient: false,
    }
}

/// Requests the build of a revision published with a `deploy_to` stage.
pub struct BuildOnPublish;

#[async_trait::async_trait]
impl Reactor for BuildOnPublish {
    fn name(&self) -> &'static str {
        "publish-build"
    }

    fn filter(&self) -> String {
        subjects::kind_event_type(EntityKind::App, "RevisionCreated")
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        let err = |reason: String| error("publish-build", event, reason);
        let decoded = event
            .decode::<pb::AppState>()
            .map_err(|e| err(e.to_string()))?;
        let Some(app_event::Event::RevisionCreated(created)) = decoded.event else {
            return Ok(Vec::new());
        };
        let revision = created
            .revision
            .ok_or_else(|| err("revision missing".into()))?;
        if revision.deploy_to.is_empty() {
            return Ok(Vec::new());
        }
        let app = AppName::new(event.entity.id.as_str())
            .map_err(|e| err(format!("{} is not an app: {e}", event.entity.id)))?;
        let command = pb::BuildCommand {
            command: Some(pb::build_command::Command::Request(pb::RequestBuild {
                app: app.to_string(),
                revision: revision.number,
                revision_digest: revision.digest,
                deploy_to: revision.deploy_to,
            })),
        };
        Ok(vec![Reaction {
            entity: EntityRef::build(&event.entity.tenant, &app, revision.number),
            command: Bytes::from(command.encode_to_vec()),
        }])
    }
}

/// Deploys a successful build to the stage its publish named. The platform fills in the
/// blockers impact analysis finds (the deployment records a blocked deploy instead of a release
/// when there are any).
pub struct DeployOnBuild;

#[async_trait::async_trait]
impl Reactor for DeployOnBuild {
    fn name(&self) -> &'static str {
        "publish-deploy"
    }

    fn filter(&self) -> String {
        subjects::kind_event_type(EntityKind::Build, "BuildSucceeded")
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        let err = |reason: String| error("publish-deploy", event, reason);
        let decoded = event
            .decode::<pb::BuildState>()
            .map_err(|e| err(e.to_string()))?;
        let Some(build_event::Event::Succeeded(built)) = decoded.event else {
            return Ok(Vec::new());
        };
        if built.deploy_to.is_empty() {
            return Ok(Vec::new());
        }
        let app = AppName::new(&built.app).map_err(|e| err(format!("bad app: {e}")))?;
        let stage = neo_protocol::StageName::new(&built.deploy_to)
            .map_err(|e| err(format!("bad stage: {e}")))?;
        let command = pb::DeploymentCommand {
            command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
                app: app.to_string(),
                stage: stage.to_string(),
                build_id: event.entity.id.to_string(),
                revision: built.revision,
                image_digest: built.image_digest,
                ..Default::default()
            })),
        };
        Ok(vec![Reaction {
            entity: EntityRef::deployment(&event.entity.tenant, &app, &stage),
            command: Bytes::from(command.encode_to_vec()),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use neo_protocol::envelope::EventMeta;

    fn event(kind: EntityKind, id: &str, event_type: &str, payload: Vec<u8>) -> StoredMessage {
        StoredMessage {
            entity: EntityRef::parse("acme", kind.as_str(), id).unwrap(),
            sequence: 7,
            meta: EventMeta {
                event_type: event_type.into(),
                schema_version: 1,
                ..EventMeta::default()
            },
            payload: Bytes::from(payload),
        }
    }

    fn revision_created(deploy_to: &str) -> StoredMessage {
        let e = pb::AppEvent {
            event: Some(app_event::Event::RevisionCreated(pb::RevisionCreated {
                revision: Some(pb::Revision {
                    number: 3,
                    digest: format!("sha256:{}", "a".repeat(64)),
                    deploy_to: deploy_to.into(),
                    ..Default::default()
                }),
            })),
        };
        event(
            EntityKind::App,
            "shop",
            "RevisionCreated",
            e.encode_to_vec(),
        )
    }

    #[tokio::test]
    async fn a_published_revision_is_built_with_its_target_stage() {
        let reactions = BuildOnPublish
            .react(&revision_created("dev"))
            .await
            .unwrap();
        assert_eq!(reactions.len(), 1);
        assert_eq!(reactions[0].entity.id.as_str(), "shop_r3");
        let cmd = pb::BuildCommand::decode(reactions[0].command.clone()).unwrap();
        let Some(pb::build_command::Command::Request(r)) = cmd.command else {
            panic!("a build request: {cmd:?}");
        };
        assert_eq!((r.revision, r.deploy_to.as_str()), (3, "dev"));
    }

    #[tokio::test]
    async fn a_plain_upload_is_not_built() {
        assert!(
            BuildOnPublish
                .react(&revision_created(""))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn garbage_is_an_error_not_a_panic() {
        let e = event(
            EntityKind::App,
            "shop",
            "RevisionCreated",
            vec![0xff, 0xff, 0xff],
        );
        assert!(BuildOnPublish.react(&e).await.is_err());
    }
}
