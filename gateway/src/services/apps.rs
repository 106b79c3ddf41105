//! `neo.gateway.v1.Apps`: create, get, list, revisions, and revision upload (client stream).

use std::sync::Arc;

use neo_protocol::pb::{self, app_command::Command};
use neo_protocol::{AppName, EntityKind, EntityRef, TenantName};
use prost::Message;
use tonic::{Request, Response, Status, Streaming};

use super::{Ctx, app, state_after, tenant};
use crate::api::{self, apps_server::Apps, upload_revision_request::Part};
use crate::auth::Action;
use crate::listing::{page_request, paginate, subject_tokens};
use crate::upload;

fn upload_part(m: api::UploadRevisionRequest) -> upload::Part<api::RevisionHeader> {
    match m.part {
        Some(Part::Header(h)) => upload::Part::Header(h),
        Some(Part::Chunk(c)) => upload::Part::Chunk(c),
        None => upload::Part::Empty,
    }
}

/// The apps service.
pub struct AppsService(pub Arc<Ctx>);

impl AppsService {
    async fn state(&self, t: &TenantName, a: &AppName) -> Result<(pb::AppState, u64), Status> {
        let (state, seq) = self
            .0
            .bus
            .state::<pb::AppState>(&EntityRef::app(t, a))
            .await?;
        if !state.exists {
            return Err(Status::not_found(format!(
                "app `{a}` does not exist in tenant `{t}`"
            )));
        }
        Ok((state, seq))
    }

    async fn get(&self, t: &TenantName, a: &AppName) -> Result<api::App, Status> {
        let (state, sequence) = self.state(t, a).await?;
        Ok(api::App {
            tenant: t.to_string(),
            name: a.to_string(),
            state: Some(state),
            sequence,
        })
    }
}

#[tonic::async_trait]
impl Apps for AppsService {
    async fn create_app(
        &self,
        request: Request<api::CreateAppRequest>,
    ) -> Result<Response<api::App>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let a = app("app", &request.get_ref().app)?;
        let p = self.0.allow(&request, Some(&t), Action::Develop)?;
        // A tenant-scoped token was issued for a tenant that existed (tenants are never
        // deleted in passing); only a platform admin's token can name any tenant.
        if p.claims.platform_admin {
            self.0.tenant_exists(&t).await?;
        }
        let command = pb::AppCommand {
            command: Some(Command::Create(pb::CreateApp {
                description: request.into_inner().description,
            })),
        };
        let accepted = self
            .0
            .bus
            .command(&EntityRef::app(&t, &a), p.user(), &command)
            .await?;
        Ok(Response::new(api::App {
            tenant: t.to_string(),
            name: a.to_string(),
            state: Some(state_after(&accepted)?),
            sequence: accepted.last_sequence,
        }))
    }

    async fn get_app(
        &self,
        request: Request<api::GetAppRequest>,
    ) -> Result<Response<api::App>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let a = app("app", &request.get_ref().app)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        Ok(Response::new(self.get(&t, &a).await?))
    }

    async fn list_apps(
        &self,
        request: Request<api::ListAppsRequest>,
    ) -> Result<Response<api::ListAppsResponse>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let page = page_request(request.get_ref().page.as_ref())?;
        let filter = format!("neo.evt.{t}.{}.*.AppCreated", EntityKind::App);
        let names = subject_tokens(&self.0.js, &filter, 4).await?;
        let (apps, next_page_token) = paginate(&names, Clone::clone, &page);
        Ok(Response::new(api::ListAppsResponse {
            apps,
            next_page_token,
        }))
    }

    async fn list_revisions(
        &self,
        request: Request<api::ListRevisionsRequest>,
    ) -> Result<Response<api::ListRevisionsResponse>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let a = app("app", &request.get_ref().app)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let page = page_request(request.get_ref().page.as_ref())?;
        let (state, _) = self.state(&t, &a).await?;
        let (revisions, next_page_token) =
            paginate(&state.revisions, |r| format!("{:010}", r.number), &page);
        Ok(Response::new(api::ListRevisionsResponse {
            revisions,
            next_page_token,
        }))
    }

    type PublishStream = super::publish::ProgressStream;

    async fn publish(
        &self,
        request: Request<Streaming<api::PublishRequest>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        super::publish::publish(&self.0, request).await
    }

    async fn upload_revision(
        &self,
        request: Request<Streaming<api::UploadRevisionRequest>>,
    ) -> Result<Response<pb::Revision>, Status> {
        let principal = self.0.authenticate(&request)?;
        let mut stream = request.into_inner();
        // The header first, to authorise before reading any content.
        let header = upload::header(&mut stream, upload_part).await?;
        let t = tenant("header.tenant", &header.tenant)?;
        let a = app("header.app", &header.app)?;
        principal.authorize(Some(&t), Action::Develop)?;
        self.state(&t, &a).await?;
        let content = upload::content(&mut stream, self.0.max_upload_bytes, upload_part).await?;
        let stored = upload::store(&self.0.revisions, &t, content).await?;
        let digest = stored.digest;
        let command = pb::AppCommand {
            command: Some(Command::CreateRevision(pb::CreateRevision {
                digest: digest.clone(),
                size: stored.size,
                author: principal.user().to_owned(),
                message: header.message,
                dependencies: header.dependencies,
                deploy_to: String::new(),
            })),
        };
        let accepted = self
            .0
            .bus
            .command(&EntityRef::app(&t, &a), principal.user(), &command)
            .await?;
        let revision = accepted
            .events
            .iter()
            .find_map(
                |e| match pb::AppEvent::decode(e.payload.clone()).ok()?.event {
                    Some(pb::app_event::Event::RevisionCreated(r)) => r.revision,
                    _ => None,
                },
            )
            .ok_or_else(|| {
                Status::internal("the platform accepted the revision but returned no revision")
            })?;
        tracing::info!(tenant = %t, app = %a, revision = revision.number, %digest, "revision uploaded");
        Ok(Response::new(revision))
    }
}
