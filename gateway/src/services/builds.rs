//! `neo.gateway.v1.Builds`: request, get, list, cancel.

use std::sync::Arc;

use neo_protocol::pb::{self, build_command::Command};
use neo_protocol::{EntityKind, EntityRef, TenantName};
use tonic::{Request, Response, Status};

use super::{Ctx, app, state_after, tenant};
use crate::api::{self, builds_server::Builds};
use crate::auth::Action;
use crate::error::{bad_name, invalid};
use crate::listing::{page_request, paginate, subject_tokens};
use crate::services::buildlog;

/// The builds service.
pub struct BuildsService(pub Arc<Ctx>);

fn build_ref(t: &TenantName, id: &str) -> Result<EntityRef, Status> {
    EntityRef::parse(t.as_str(), EntityKind::Build.as_str(), id)
        .map_err(|e| bad_name("build_id", e))
}

impl BuildsService {
    async fn run(
        &self,
        entity: &EntityRef,
        user: &str,
        command: pb::BuildCommand,
    ) -> Result<api::Build, Status> {
        let accepted = self.0.bus.command(entity, user, &command).await?;
        Ok(api::Build {
            tenant: entity.tenant.to_string(),
            id: entity.id.to_string(),
            state: Some(state_after(&accepted)?),
            sequence: accepted.last_sequence,
        })
    }

    async fn get(&self, entity: &EntityRef) -> Result<api::Build, Status> {
        let (state, sequence) = self.0.bus.state::<pb::BuildState>(entity).await?;
        if state.status == pb::BuildStatus::Unspecified as i32 {
            return Err(Status::not_found(format!(
                "build `{}` does not exist",
                entity.id
            )));
        }
        Ok(api::Build {
            tenant: entity.tenant.to_string(),
            id: entity.id.to_string(),
            state: Some(state),
            sequence,
        })
    }
}

#[tonic::async_trait]
impl Builds for BuildsService {
    async fn request_build(
        &self,
        request: Request<api::RequestBuildRequest>,
    ) -> Result<Response<api::Build>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let a = app("app", &request.get_ref().app)?;
        let p = self.0.allow(&request, Some(&t), Action::Develop)?;
        let number = request.get_ref().revision;
        if number == 0 {
            return Err(invalid("revision", "revisions are numbered from 1"));
        }
        let (app_state, _) = self
            .0
            .bus
            .state::<pb::AppState>(&EntityRef::app(&t, &a))
            .await?;
        if !app_state.exists {
            return Err(Status::not_found(format!(
                "app `{a}` does not exist in tenant `{t}`"
            )));
        }
        let revision = app_state
            .revisions
            .iter()
            .find(|r| r.number == number)
            .ok_or_else(|| Status::not_found(format!("app `{a}` has no revision {number}")))?;
        let entity = EntityRef::build(&t, &a, number);
        let command = pb::BuildCommand {
            command: Some(Command::Request(pb::RequestBuild {
                app: a.to_string(),
                revision: number,
                revision_digest: revision.digest.clone(),
                deploy_to: String::new(),
            })),
        };
        Ok(Response::new(self.run(&entity, p.user(), command).await?))
    }

    async fn get_build(
        &self,
        request: Request<api::GetBuildRequest>,
    ) -> Result<Response<api::Build>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let entity = build_ref(&t, &request.get_ref().build_id)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        Ok(Response::new(self.get(&entity).await?))
    }

    async fn list_builds(
        &self,
        request: Request<api::ListBuildsRequest>,
    ) -> Result<Response<api::ListBuildsResponse>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let page = page_request(request.get_ref().page.as_ref())?;
        let only = if request.get_ref().app.is_empty() {
            None
        } else {
            Some(app("app", &request.get_ref().app)?)
        };
        let filter = format!("neo.evt.{t}.{}.*.BuildRequested", EntityKind::Build);
        let mut ids = subject_tokens(&self.0.js, &filter, 4).await?;
        if let Some(a) = &only {
            ids.retain(|id| {
                EntityRef::parse(t.as_str(), "build", id)
                    .ok()
                    .and_then(|e| e.id.app_and_revision())
                    .is_some_and(|(x, _)| &x == a)
            });
        }
        let (ids, next_page_token) = paginate(&ids, Clone::clone, &page);
        let mut builds = Vec::with_capacity(ids.len());
        for id in ids {
            builds.push(self.get(&build_ref(&t, &id)?).await?);
        }
        Ok(Response::new(api::ListBuildsResponse {
            builds,
            next_page_token,
        }))
    }

    type BuildLogStream = buildlog::Lines;

    async fn build_log(
        &self,
        request: Request<api::BuildLogRequest>,
    ) -> Result<Response<Self::BuildLogStream>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let entity = build_ref(&t, &request.get_ref().build_id)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let build = self.get(&entity).await?;
        let state = build.state.unwrap_or_default();
        if state.status() == pb::BuildStatus::Unspecified {
            return Err(Status::not_found(format!(
                "build `{}` was never requested",
                entity.id
            )));
        }
        let lines = buildlog::lines(
            &self.0.js,
            t.as_str(),
            entity.id.as_str(),
            request.get_ref().follow,
            state.attempt,
        )
        .await?;
        Ok(Response::new(lines))
    }

    async fn cancel_build(
        &self,
        request: Request<api::CancelBuildRequest>,
    ) -> Result<Response<api::Build>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let entity = build_ref(&t, &request.get_ref().build_id)?;
        let p = self.0.allow(&request, Some(&t), Action::Develop)?;
        let command = pb::BuildCommand {
            command: Some(Command::Cancel(pb::CancelBuild {
                reason: request.into_inner().reason,
            })),
        };
        Ok(Response::new(self.run(&entity, p.user(), command).await?))
    }
}
