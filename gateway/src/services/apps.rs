//! `neo.gateway.v1.Apps`: create, get, list, revisions, and revision upload (client stream).

use bytes::BytesMut;
use futures::StreamExt;
use neo_protocol::pb::{self, app_command::Command};
use neo_protocol::{AppName, EntityKind, EntityRef, TenantName};
use prost::Message;
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status, Streaming};

use super::{Shared, app, state_after, tenant};
use crate::api::{self, apps_server::Apps, upload_revision_request::Part};
use crate::auth::Action;
use crate::error::invalid;
use crate::listing::{page_request, paginate, subject_tokens};

/// The apps service.
pub struct AppsService(pub Shared);

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

    type PublishStream =
        std::pin::Pin<Box<dyn futures::Stream<Item = Result<api::PublishProgress, Status>> + Send>>;

    async fn publish(
        &self,
        _request: Request<tonic::Streaming<api::PublishRequest>>,
    ) -> Result<Response<Self::PublishStream>, Status> {
        Err(Status::unimplemented("publish: not yet"))
    }

    async fn upload_revision(
        &self,
        request: Request<Streaming<api::UploadRevisionRequest>>,
    ) -> Result<Response<pb::Revision>, Status> {
        let principal = self.0.authenticate(&request)?;
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(api::UploadRevisionRequest {
                part: Some(Part::Header(h)),
            })) => h,
            Some(Ok(_)) => {
                return Err(invalid(
                    "header",
                    "the first message must be the revision header",
                ));
            }
            Some(Err(e)) => return Err(e),
            None => return Err(invalid("header", "empty upload")),
        };
        let t = tenant("header.tenant", &header.tenant)?;
        let a = app("header.app", &header.app)?;
        principal.authorize(Some(&t), Action::Develop)?;
        self.state(&t, &a).await?;
        let limit = self.0.max_upload_bytes;
        let mut content = BytesMut::new();
        let mut hasher = Sha256::new();
        while let Some(message) = stream.next().await {
            match message?.part {
                Some(Part::Chunk(chunk)) => {
                    if content.len() + chunk.len() > limit {
                        return Err(Status::resource_exhausted(format!(
                            "revision content exceeds the {limit}-byte limit"
                        )));
                    }
                    hasher.update(&chunk);
                    content.extend_from_slice(&chunk);
                }
                Some(Part::Header(_)) => {
                    return Err(invalid("header", "only the first message may be a header"));
                }
                None => return Err(invalid("part", "a message must carry a header or a chunk")),
            }
        }
        if content.is_empty() {
            return Err(invalid("chunk", "the revision has no content"));
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        self.0.blobs.put(&digest, &content).await?;
        let command = pb::AppCommand {
            command: Some(Command::CreateRevision(pb::CreateRevision {
                digest: digest.clone(),
                size: content.len() as u64,
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
