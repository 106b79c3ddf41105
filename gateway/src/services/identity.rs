//! `neo.gateway.v1.Identity`: login, user creation, who-am-I.

use std::sync::Arc;

use std::time::Duration;

use futures::StreamExt;
use neo_protocol::TenantName;
use neo_protocol::pb::Role;
use tonic::{Request, Response, Status};

use super::{Ctx, tenant};
use crate::api::{self, identity_server::Identity};
use crate::auth::{self, Action, Claims};
use crate::error::invalid;
use crate::identity::IdentityError;

/// The identity service.
pub struct IdentityService(pub Arc<Ctx>);

fn identity_status(e: IdentityError) -> Status {
    match e {
        IdentityError::BadName(n) => invalid("user", n),
        IdentityError::BadPassword => invalid("password", e),
        IdentityError::Exists(_) => Status::already_exists(e.to_string()),
        IdentityError::NotFound(_) => Status::not_found(e.to_string()),
        IdentityError::Unavailable(_) => Status::unavailable(e.to_string()),
        IdentityError::Corrupt(_) => Status::data_loss(e.to_string()),
    }
}

#[tonic::async_trait]
impl Identity for IdentityService {
    async fn login(
        &self,
        request: Request<api::LoginRequest>,
    ) -> Result<Response<api::LoginResponse>, Status> {
        let r = request.into_inner();
        if r.user.is_empty() {
            return Err(invalid("user", "required"));
        }
        let Some(user) = self
            .0
            .users
            .authenticate(&r.user, &r.password)
            .await
            .map_err(identity_status)?
        else {
            return Err(Status::unauthenticated("unknown user or wrong password"));
        };
        let tenant_name = if r.tenant.is_empty() {
            if !user.platform_admin {
                return Err(Status::permission_denied(
                    "only a platform admin may log in without a tenant: pass the tenant",
                ));
            }
            None
        } else {
            Some(tenant("tenant", &r.tenant)?)
        };
        let ttl = i64::try_from(self.0.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let answer = self
            .issue(&user.name, user.platform_admin, tenant_name.as_ref(), ttl)
            .await?;
        tracing::info!(user = %user.name, tenant = %answer.tenant, "login");
        Ok(Response::new(answer))
    }

    async fn switch_tenant(
        &self,
        request: Request<api::SwitchTenantRequest>,
    ) -> Result<Response<api::LoginResponse>, Status> {
        let principal = self.0.authenticate(&request)?;
        let t = tenant("tenant", &request.get_ref().tenant)?;
        // No longer than the presented token: switching never extends a session.
        let ttl = i64::try_from(self.0.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let left = principal.claims.exp.saturating_sub(auth::now_s()).min(ttl);
        let answer = self
            .issue(
                principal.user(),
                principal.claims.platform_admin,
                Some(&t),
                left,
            )
            .await?;
        tracing::info!(user = %principal.user(), tenant = %t, "switched tenant");
        Ok(Response::new(answer))
    }

    async fn list_my_tenants(
        &self,
        request: Request<api::ListMyTenantsRequest>,
    ) -> Result<Response<api::ListMyTenantsResponse>, Status> {
        let principal = self.0.authenticate(&request)?;
        let names: Vec<TenantName> = super::tenants::tenant_names(&self.0.js)
            .await?
            .into_iter()
            .filter_map(|n| TenantName::new(&n).ok())
            .collect();
        let (ctx, user) = (&self.0, principal.user());
        let memberships = futures::stream::iter(names)
            .map(|t| async move {
                let role = role_in(ctx, user, &t).await?;
                Ok::<_, Status>((t, role))
            })
            .buffered(16)
            .collect::<Vec<_>>()
            .await;
        let mut tenants = Vec::new();
        for membership in memberships {
            let (t, role) = membership?;
            if role != Role::Unspecified || principal.claims.platform_admin {
                tenants.push(api::Membership {
                    tenant: t.to_string(),
                    role: role as i32,
                });
            }
        }
        Ok(Response::new(api::ListMyTenantsResponse { tenants }))
    }

    async fn create_user(
        &self,
        request: Request<api::CreateUserRequest>,
    ) -> Result<Response<api::User>, Status> {
        let principal = self.0.authenticate(&request)?;
        // A platform admin, or the admin of the tenant the token is scoped to.
        let scope = tenant("tenant", &principal.claims.tenant).ok();
        principal.authorize(scope.as_ref(), Action::Administer)?;
        let r = request.into_inner();
        let user = self
            .0
            .users
            .create(&r.user, &r.password, false)
            .await
            .map_err(identity_status)?;
        tracing::info!(user = %user.name, by = %principal.user(), "user created");
        Ok(Response::new(api::User {
            name: user.name,
            platform_admin: user.platform_admin,
        }))
    }

    async fn logout(
        &self,
        request: Request<api::LogoutRequest>,
    ) -> Result<Response<api::LogoutResponse>, Status> {
        let principal = self.0.authenticate(&request)?;
        self.0
            .users
            .end_sessions(principal.user(), false)
            .await
            .map_err(identity_status)?;
        tracing::info!(user = %principal.user(), "logged out: every session ended");
        Ok(Response::new(api::LogoutResponse {
            user: principal.user().to_owned(),
        }))
    }

    async fn delete_user(
        &self,
        request: Request<api::DeleteUserRequest>,
    ) -> Result<Response<api::User>, Status> {
        let principal = self.0.allow(&request, None, Action::Platform)?;
        let r = request.into_inner();
        if neo_protocol::names::validate_name("user", &r.user).is_err() {
            return Err(invalid("user", format!("`{}` is not a user name", r.user)));
        }
        if r.user == principal.user() {
            return Err(crate::error::refused(
                "user.self_delete",
                "a platform admin cannot delete themselves",
            ));
        }
        self.0
            .users
            .end_sessions(&r.user, true)
            .await
            .map_err(identity_status)?;
        tracing::info!(user = %r.user, by = %principal.user(), "user deleted");
        Ok(Response::new(api::User {
            name: r.user,
            platform_admin: false,
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<api::WhoAmIRequest>,
    ) -> Result<Response<api::WhoAmIResponse>, Status> {
        let p = self.0.authenticate(&request)?;
        Ok(Response::new(api::WhoAmIResponse {
            user: p.claims.sub.clone(),
            tenant: p.claims.tenant.clone(),
            role: p.role() as i32,
            platform_admin: p.claims.platform_admin,
            expires_at: p.claims.exp,
        }))
    }
}

/// The default token lifetime.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(12 * 3600);

/// `user`'s role in `tenant` (UNSPECIFIED: not a member, or the tenant does not exist).
async fn role_in(ctx: &Ctx, user: &str, tenant: &TenantName) -> Result<Role, Status> {
    match ctx.tenant_state(tenant).await {
        Ok((state, _)) => Ok(state
            .members
            .get(user)
            .and_then(|r| Role::try_from(*r).ok())
            .unwrap_or(Role::Unspecified)),
        Err(e) if e.code() == tonic::Code::NotFound => Ok(Role::Unspecified),
        Err(e) => Err(e),
    }
}

impl IdentityService {
    /// A token for `user` scoped to `tenant` (the platform when `None`, for a platform admin)
    /// that lives `ttl_s` seconds.
    ///
    /// # Errors
    /// `PERMISSION_DENIED` when the user is not a member of the tenant (and no platform
    /// admin); `UNAVAILABLE`.
    async fn issue(
        &self,
        user: &str,
        platform_admin: bool,
        tenant: Option<&TenantName>,
        ttl_s: i64,
    ) -> Result<api::LoginResponse, Status> {
        let role = match tenant {
            Some(t) => role_in(&self.0, user, t).await?,
            None => Role::Unspecified,
        };
        if let Some(t) = tenant
            && role == Role::Unspecified
            && !platform_admin
        {
            return Err(Status::permission_denied(format!(
                "user `{user}` is not a member of tenant `{t}`"
            )));
        }
        let tenant_name = tenant.map(ToString::to_string).unwrap_or_default();
        let iat = auth::now_s();
        let claims = Claims {
            sub: user.to_owned(),
            tenant: tenant_name.clone(),
            role: auth::role_word(role).into(),
            platform_admin,
            iat,
            iat_ms: crate::revocation::now_ms(),
            exp: iat + ttl_s,
        };
        let token =
            auth::sign(&self.0.key, &claims).map_err(|e| Status::internal(e.to_string()))?;
        Ok(api::LoginResponse {
            token,
            expires_at: claims.exp,
            tenant: tenant_name,
            role: role as i32,
            platform_admin,
        })
    }
}
