//! `neo.gateway.v1.Runtime`: what runs on the stages, as their agents report it (log lines,
//! replicas and health), and the scale policy of each app on each stage.
//!
//! The tenant of every call is the request's, or the token's when the request names none; the
//! token must be scoped to it, and every subject read is built from it, so a caller never reads
//! another tenant's reports.
//!
//! # Layout
//!
//! - [`logs`]: `Logs`, filtered lines from stream `NEO_LOGS`, batched, optionally followed.
//! - [`status`]: `Status`, the deployment and podgroup entities joined with the latest
//!   `HealthReport` of each app and stage from stream `NEO_RUNTIME`.
//! - this module: the service, its authorisation, and `SetScalePolicy`.

pub mod logs;
pub mod status;

use std::sync::Arc;

use neo_actors::aggregates::tenant::stage_position;
use neo_protocol::pb::{self, podgroup_command::Command};
use neo_protocol::{AppName, EntityRef, StageName, TenantName};
use tonic::{Request, Response, Status};

use super::{Ctx, app, stage, state_after, tenant};
use crate::api::{self, runtime_server::Runtime};
use crate::auth::{Action, Principal};
use crate::error::invalid;

/// The runtime service.
pub struct RuntimeService(pub Arc<Ctx>);

/// The tenant a call is about: the request's, else the token's.
///
/// # Errors
/// `INVALID_ARGUMENT` (field `tenant`) for a bad name, or when neither names a tenant (a
/// platform admin's token).
fn scope(principal: &Principal, requested: &str) -> Result<TenantName, Status> {
    let name = if requested.is_empty() {
        principal.claims.tenant.as_str()
    } else {
        requested
    };
    if name.is_empty() {
        return Err(invalid(
            "tenant",
            "a platform token is scoped to no tenant: name one",
        ));
    }
    tenant("tenant", name)
}

/// An optional name filter: `None` when empty, else the validated name.
fn optional<T>(
    field: &str,
    value: &str,
    parse: fn(&str, &str) -> Result<T, Status>,
) -> Result<Option<T>, Status> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse(field, value).map(Some)
    }
}

/// The index of `stage` in the tenant's stage order, `NOT_FOUND` when it has no such stage.
///
/// # Errors
/// `NOT_FOUND` for an unknown tenant or stage; `UNAVAILABLE`.
async fn stage_index(ctx: &Ctx, t: &TenantName, s: &StageName) -> Result<usize, Status> {
    let (state, _) = ctx.tenant_state(t).await?;
    stage_position(&state.stages, t.as_str(), s.as_str()).map_err(|r| Status::not_found(r.message))
}

impl RuntimeService {
    /// Authenticates, resolves the tenant and allows a read of it.
    fn read_scope<T>(&self, request: &Request<T>, requested: &str) -> Result<TenantName, Status> {
        let principal = self.0.authenticate(request)?;
        let t = scope(&principal, requested)?;
        principal.authorize(Some(&t), Action::Read)?;
        Ok(t)
    }

    /// Sets the podgroup's policy on behalf of `user`; `NOT_FOUND` when it does not exist.
    async fn set_policy(
        &self,
        (t, a, s): (&TenantName, &AppName, &StageName),
        user: &str,
        policy: pb::ScalePolicy,
    ) -> Result<api::ScalePolicyResponse, Status> {
        let entity = EntityRef::podgroup(t, a, s);
        let (current, _) = self.0.bus.state::<pb::PodgroupState>(&entity).await?;
        if !current.exists {
            return Err(Status::not_found(format!(
                "app `{a}` has no podgroup on `{s}`: it was never deployed there"
            )));
        }
        let command = pb::PodgroupCommand {
            command: Some(Command::SetPolicy(pb::SetScalePolicy {
                policy: Some(policy),
            })),
        };
        let accepted = self
            .0
            .bus
            .command_naming(&entity, user, &command, &[("set_policy.", "")])
            .await?;
        tracing::info!(tenant = %t, app = %a, stage = %s, user, ?policy, "scale policy set");
        Ok(api::ScalePolicyResponse {
            tenant: t.to_string(),
            app: a.to_string(),
            stage: s.to_string(),
            podgroup: Some(state_after(&accepted)?),
            sequence: accepted.last_sequence,
        })
    }
}

#[tonic::async_trait]
impl Runtime for RuntimeService {
    type LogsStream = logs::LogStream;

    async fn logs(
        &self,
        request: Request<api::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let t = self.read_scope(&request, &request.get_ref().tenant)?;
        let query = logs::Query::from_request(t, request.get_ref())?;
        tracing::debug!(?query, "log stream opened");
        Ok(Response::new(logs::lines(&self.0.js, query).await?))
    }

    async fn status(
        &self,
        request: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let t = self.read_scope(&request, &request.get_ref().tenant)?;
        let r = request.get_ref();
        let s = optional("stage", &r.stage, stage)?;
        let a = optional("app", &r.app, app)?;
        let podgroups = status::status(&self.0, &t, s.as_ref(), a.as_ref()).await?;
        Ok(Response::new(api::StatusResponse { podgroups }))
    }

    async fn set_scale_policy(
        &self,
        request: Request<api::SetScalePolicyRequest>,
    ) -> Result<Response<api::ScalePolicyResponse>, Status> {
        let principal = self.0.authenticate(&request)?;
        let r = request.get_ref();
        let t = scope(&principal, &r.tenant)?;
        let a = app("app", &r.app)?;
        let s = stage("stage", &r.stage)?;
        let Some(policy) = r.policy else {
            return Err(invalid("policy", "a scale policy is required"));
        };
        // The tenant scope is checked before anything about the tenant is revealed.
        principal.authorize(Some(&t), Action::Read)?;
        let action = match stage_index(&self.0, &t, &s).await? {
            0 => Action::ScaleFirstStage,
            _ => Action::ScaleLaterStage,
        };
        principal.authorize(Some(&t), action)?;
        let response = self
            .set_policy((&t, &a, &s), principal.user(), policy)
            .await?;
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Claims, now_s};

    fn principal(tenant: &str) -> Principal {
        Principal {
            claims: Claims {
                sub: "u".into(),
                tenant: tenant.into(),
                role: "viewer".into(),
                platform_admin: tenant.is_empty(),
                iat: now_s(),
                iat_ms: 0,
                exp: now_s() + 60,
            },
        }
    }

    #[test]
    fn the_tenant_is_the_requests_else_the_tokens() {
        assert_eq!(scope(&principal("acme"), "").unwrap().as_str(), "acme");
        assert_eq!(scope(&principal("acme"), "beta").unwrap().as_str(), "beta");
        let none = scope(&principal(""), "").unwrap_err();
        assert_eq!(none.code(), tonic::Code::InvalidArgument);
        assert!(none.message().starts_with("tenant:"));
        assert!(scope(&principal("acme"), "a.*").is_err());
    }
}
