//! `neo.gateway.v1.Tenants`: create, get, list; stages and members.

use std::sync::Arc;

use neo_protocol::pb::{self, Role, tenant_command::Command};
use neo_protocol::{EntityRef, TenantName};
use tonic::{Request, Response, Status};

use super::{Ctx, stage, state_after, tenant};
use crate::api::{self, tenants_server::Tenants};
use crate::auth::Action;
use crate::bus::FieldNames;
use crate::error::invalid;
use crate::listing::{page_request, paginate, subject_tokens};

/// The tenants service.
pub struct TenantsService(pub Arc<Ctx>);

/// The tenant commands' fields as the Tenants requests call them.
const TENANT_FIELDS: FieldNames<'static> = &[
    ("create.", ""),
    ("add_stage.name", "stage"),
    ("add_stage.", ""),
    ("remove_stage.name", "stage"),
    ("set_member.", ""),
    ("remove_member.", ""),
];

impl TenantsService {
    async fn run(
        &self,
        t: &TenantName,
        principal: &str,
        command: Command,
    ) -> Result<api::Tenant, Status> {
        let entity = EntityRef::tenant(t);
        let command = pb::TenantCommand {
            command: Some(command),
        };
        let accepted = self
            .0
            .bus
            .command_naming(&entity, principal, &command, TENANT_FIELDS)
            .await?;
        Ok(api::Tenant {
            name: t.to_string(),
            state: Some(state_after(&accepted)?),
            sequence: accepted.last_sequence,
        })
    }

    async fn get(&self, t: &TenantName) -> Result<api::Tenant, Status> {
        let (state, sequence) = self.0.tenant_state(t).await?;
        Ok(api::Tenant {
            name: t.to_string(),
            state: Some(state),
            sequence,
        })
    }
}

#[tonic::async_trait]
impl Tenants for TenantsService {
    async fn create_tenant(
        &self,
        request: Request<api::CreateTenantRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let p = self.0.allow(&request, None, Action::Platform)?;
        let r = request.into_inner();
        let t = tenant("name", &r.name)?;
        for (i, s) in r.stages.iter().enumerate() {
            stage(&format!("stages[{i}]"), s)?;
        }
        if !r.admin.is_empty()
            && !self
                .0
                .users
                .exists(&r.admin)
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?
        {
            return Err(invalid(
                "admin",
                format!("user `{}` does not exist", r.admin),
            ));
        }
        let command = Command::Create(pb::CreateTenant {
            display_name: r.display_name,
            stages: r.stages,
            admin: r.admin,
        });
        Ok(Response::new(self.run(&t, p.user(), command).await?))
    }

    async fn get_tenant(
        &self,
        request: Request<api::GetTenantRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        Ok(Response::new(self.get(&t).await?))
    }

    async fn list_tenants(
        &self,
        request: Request<api::ListTenantsRequest>,
    ) -> Result<Response<api::ListTenantsResponse>, Status> {
        self.0.allow(&request, None, Action::Platform)?;
        let page = page_request(request.get_ref().page.as_ref())?;
        let names = tenant_names(&self.0.js).await?;
        let (tenants, next_page_token) = paginate(&names, Clone::clone, &page);
        Ok(Response::new(api::ListTenantsResponse {
            tenants,
            next_page_token,
        }))
    }

    async fn add_stage(
        &self,
        request: Request<api::AddStageRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let p = self.0.allow(&request, Some(&t), Action::Administer)?;
        let r = request.into_inner();
        stage("stage", &r.stage)?;
        if !r.after.is_empty() {
            stage("after", &r.after)?;
        }
        let command = Command::AddStage(pb::AddStage {
            name: r.stage,
            after: r.after,
        });
        Ok(Response::new(self.run(&t, p.user(), command).await?))
    }

    async fn remove_stage(
        &self,
        request: Request<api::RemoveStageRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let p = self.0.allow(&request, Some(&t), Action::Administer)?;
        let r = request.into_inner();
        stage("stage", &r.stage)?;
        let command = Command::RemoveStage(pb::RemoveStage { name: r.stage });
        Ok(Response::new(self.run(&t, p.user(), command).await?))
    }

    async fn set_member(
        &self,
        request: Request<api::SetMemberRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let p = self.0.allow(&request, Some(&t), Action::Administer)?;
        let r = request.into_inner();
        if Role::try_from(r.role).unwrap_or(Role::Unspecified) == Role::Unspecified {
            return Err(invalid("role", "one of viewer, developer, devops, admin"));
        }
        if !self
            .0
            .users
            .exists(&r.user)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
        {
            return Err(Status::not_found(format!(
                "user `{}` does not exist",
                r.user
            )));
        }
        let command = Command::SetMember(pb::SetMember {
            user: r.user,
            role: r.role,
        });
        Ok(Response::new(self.run(&t, p.user(), command).await?))
    }

    async fn remove_member(
        &self,
        request: Request<api::RemoveMemberRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let p = self.0.allow(&request, Some(&t), Action::Administer)?;
        let r = request.into_inner();
        if r.user.is_empty() {
            return Err(invalid("user", "required"));
        }
        let command = Command::RemoveMember(pb::RemoveMember { user: r.user });
        Ok(Response::new(self.run(&t, p.user(), command).await?))
    }

    async fn delete_tenant(
        &self,
        request: Request<api::DeleteTenantRequest>,
    ) -> Result<Response<api::Tenant>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        let p = self.0.allow(&request, Some(&t), Action::Platform)?;
        let reason = request.into_inner().reason;
        let command = Command::Delete(pb::DeleteTenant { reason });
        let deleted = self.run(&t, p.user(), command).await?;
        if let Ok(mut known) = self.0.known_tenants.lock() {
            known.remove(&t);
        }
        // The platform's reactor destroys the data key too (should this process die now);
        // done here as well so the key is gone when the call returns.
        if let Some(store) = &self.0.secrets {
            let report = store
                .shred_tenant(&t)
                .await
                .map_err(super::settings::secrets_status)?;
            tracing::info!(tenant = %t, user = %p.user(), ?report, "tenant deleted; data key destroyed");
        }
        Ok(Response::new(deleted))
    }
}

/// Every tenant created but the deleted ones (a deleted tenant is not listed at all), in name
/// order.
///
/// # Errors
/// `UNAVAILABLE` when JetStream does not answer.
pub async fn tenant_names(js: &async_nats::jetstream::Context) -> Result<Vec<String>, Status> {
    let with_event = |event_type: &str| {
        format!(
            "neo.evt.*.{}.*.{event_type}",
            neo_protocol::EntityKind::Tenant
        )
    };
    let deleted = subject_tokens(js, &with_event("TenantDeleted"), 2).await?;
    let mut names = subject_tokens(js, &with_event("TenantCreated"), 2).await?;
    names.retain(|name| !deleted.contains(name));
    Ok(names)
}
