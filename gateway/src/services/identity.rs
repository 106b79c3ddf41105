//! `neo.gateway.v1.Identity`: login, user creation, who-am-I.

use std::sync::Arc;

use std::time::Duration;

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
        let (tenant_name, role) = if r.tenant.is_empty() {
            if !user.platform_admin {
                return Err(Status::permission_denied(
                    "only a platform admin may log in without a tenant: pass the tenant",
                ));
            }
            (String::new(), Role::Unspecified)
        } else {
            let t = tenant("tenant", &r.tenant)?;
            let role = match self.0.tenant_state(&t).await {
                Ok((state, _)) => state
                    .members
                    .get(&user.name)
                    .and_then(|r| Role::try_from(*r).ok())
                    .unwrap_or(Role::Unspecified),
                Err(e) if e.code() == tonic::Code::NotFound => Role::Unspecified,
                Err(e) => return Err(e),
            };
            if role == Role::Unspecified && !user.platform_admin {
                return Err(Status::permission_denied(format!(
                    "user `{}` is not a member of tenant `{t}`",
                    user.name
                )));
            }
            (t.to_string(), role)
        };
        let iat = auth::now_s();
        let ttl = i64::try_from(self.0.token_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: user.name.clone(),
            tenant: tenant_name.clone(),
            role: auth::role_word(role).into(),
            platform_admin: user.platform_admin,
            iat,
            iat_ms: crate::revocation::now_ms(),
            exp: iat + ttl,
        };
        let token =
            auth::sign(&self.0.key, &claims).map_err(|e| Status::internal(e.to_string()))?;
        tracing::info!(user = %user.name, tenant = %tenant_name, "login");
        Ok(Response::new(api::LoginResponse {
            token,
            expires_at: claims.exp,
            tenant: tenant_name,
            role: role as i32,
            platform_admin: user.platform_admin,
        }))
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
