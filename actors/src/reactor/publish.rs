//! 1-Click Publish as a chain of reactors: a revision created with a `deploy_to` stage is
//! built ([`BuildOnPublish`]), and its successful build is deployed to that stage
//! ([`DeployOnBuild`]), after impact analysis. Each command id is derived from the triggering
//! event, so a crash anywhere in the chain resumes without doing a step twice.

use std::sync::Arc;

use bytes::Bytes;
use neo_model::impact::{self, Consumers};
use neo_protocol::pb::{self, app_event, build_event};
use neo_protocol::{AppName, EntityKind, EntityRef, subjects};
use prost::Message;

use super::{Reaction, Reactor, ReactorError};
use crate::platform::Platform;
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

/// Deploys a successful build to the stage its publish named, with the blockers impact
/// analysis finds (the deployment records a blocked deploy instead of a release when there
/// are any).
pub struct DeployOnBuild {
    consumers: Option<Arc<dyn Consumers>>,
    platform: Arc<Platform>,
}

impl DeployOnBuild {
    /// Checks impact against `consumers` (none: no read models, no check) and reads what
    /// producers exposed through `platform`.
    pub fn new(consumers: Option<Arc<dyn Consumers>>, platform: Arc<Platform>) -> Self {
        Self {
            consumers,
            platform,
        }
    }

    async fn blockers(
        &self,
        event: &StoredMessage,
        stage: &str,
        built: &pb::BuildSucceeded,
    ) -> Result<Vec<String>, ReactorError> {
        let Some(consumers) = &self.consumers else {
            return Ok(Vec::new());
        };
        let tenant = event.entity.tenant.as_str();
        // The read models being out of reach is an outage, not a verdict: the event comes back.
        let uses = consumers
            .on_stage(tenant, stage, &built.app)
            .await
            .map_err(|reason| ReactorError {
                transient: true,
                ..error(
                    "publish-deploy",
                    event,
                    format!("impact analysis: the read models: {reason}"),
                )
            })?;
        let mut previous = Vec::with_capacity(uses.len());
        for used in &uses {
            let exposed = exposed_at(
                &self.platform,
                &event.entity.tenant,
                &used.dependency.producer_app,
                used.dependency.producer_revision,
            )
            .await
            .map_err(|reason| ReactorError {
                transient: true,
                ..error("publish-deploy", event, reason)
            })?;
            previous.push(exposed);
        }
        let report = impact::analyse(
            uses.iter().zip(previous.iter().map(|p| p.as_deref())),
            &built.exposes,
        );
        Ok(report.blocker_lines())
    }
}

/// What `app` revision `revision` exposed, from its build (None when unknown).
///
/// # Errors
/// When the build cannot be read for an infrastructure failure (worth retrying).
pub async fn exposed_at(
    platform: &Platform,
    tenant: &neo_protocol::TenantName,
    app: &str,
    revision: u32,
) -> Result<Option<Vec<pb::ExposedEntity>>, String> {
    let Ok(app) = AppName::new(app) else {
        return Ok(None);
    };
    let reply = platform
        .query(&EntityRef::build(tenant, &app, revision))
        .await;
    let state = match reply.result {
        Some(pb::state_reply::Result::State(state)) => state,
        Some(pb::state_reply::Result::Error(e))
            if matches!(
                pb::ErrorCode::try_from(e.code),
                Ok(pb::ErrorCode::Unavailable | pb::ErrorCode::Internal)
            ) =>
        {
            return Err(format!(
                "cannot read build {app}_r{revision}: {}",
                e.message
            ));
        }
        _ => return Ok(None),
    };
    let Ok(state) = pb::BuildState::decode(state.state) else {
        return Ok(None);
    };
    Ok((state.status() == pb::BuildStatus::Succeeded).then_some(state.exposes))
}

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
        let blockers = self.blockers(event, stage.as_str(), &built).await?;
        let command = pb::DeploymentCommand {
            command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
                app: app.to_string(),
                stage: stage.to_string(),
                build_id: event.entity.id.to_string(),
                revision: built.revision,
                image_digest: built.image_digest,
                forced: false,
                blockers,
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
