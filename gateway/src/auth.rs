//! Authentication (signed, expiring bearer tokens) and authorisation (tenant scope and role).

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use neo_protocol::TenantName;
use neo_protocol::pb::Role;
use serde::{Deserialize, Serialize};
use tonic::Status;

/// The token issuer.
const ISSUER: &str = "neo";

/// What a token says about its bearer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// The tenant the token is scoped to (empty: the platform).
    pub tenant: String,
    /// The user's role in that tenant: `viewer`, `developer`, `devops`, `admin`, or empty.
    pub role: String,
    /// The user administers the whole platform.
    pub platform_admin: bool,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

/// Token errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Signing failed.
    #[error("cannot sign token: {0}")]
    Sign(String),
}

#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(flatten)]
    claims: Claims,
    iss: String,
}

/// Signs `claims` with `key` (HS256).
///
/// # Errors
/// [`AuthError::Sign`] if the claims cannot be encoded.
pub fn sign(key: &[u8], claims: &Claims) -> Result<String, AuthError> {
    let wire = Wire {
        claims: claims.clone(),
        iss: ISSUER.into(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &wire,
        &EncodingKey::from_secret(key),
    )
    .map_err(|e| AuthError::Sign(e.to_string()))
}

/// Checks a token's signature, issuer and expiry.
///
/// # Errors
/// `UNAUTHENTICATED`, saying why.
pub fn verify(key: &[u8], token: &str) -> Result<Claims, Status> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    jsonwebtoken::decode::<Wire>(token, &DecodingKey::from_secret(key), &validation)
        .map(|d| d.claims.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                Status::unauthenticated("token expired: log in again")
            }
            _ => Status::unauthenticated(format!("invalid token: {e}")),
        })
}

/// Unix seconds now.
pub fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The role word used in tokens.
pub fn role_word(role: Role) -> &'static str {
    match role {
        Role::Viewer => "viewer",
        Role::Developer => "developer",
        Role::Devops => "devops",
        Role::Admin => "admin",
        Role::Unspecified => "",
    }
}

fn role_from_word(word: &str) -> Role {
    match word {
        "viewer" => Role::Viewer,
        "developer" => Role::Developer,
        "devops" => Role::Devops,
        "admin" => Role::Admin,
        _ => Role::Unspecified,
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The verified claims.
    pub claims: Claims,
}

/// What a call wants to do, for the role check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Any read: get, list, watch.
    Read,
    /// Create apps, upload revisions, request and cancel builds.
    Develop,
    /// Deploy or roll back on the tenant's first stage.
    ReleaseFirstStage,
    /// Deploy, promote or roll back on a later stage.
    ReleaseLaterStage,
    /// Set the scale policy of an app on the first stage (who may deploy there).
    ScaleFirstStage,
    /// Set the scale policy of an app on a later stage (who may deploy there).
    ScaleLaterStage,
    /// Manage the tenant's stages and members, create users.
    Administer,
    /// Create or list tenants (platform admins only).
    Platform,
}

impl Principal {
    /// Reads and verifies the bearer token of a request.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when the token is missing, malformed, forged or expired.
    pub fn from_request<T>(key: &[u8], request: &tonic::Request<T>) -> Result<Self, Status> {
        let header = request.metadata().get("authorization").ok_or_else(|| {
            Status::unauthenticated("missing `authorization: Bearer <token>`: log in first")
        })?;
        let value = header
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("authorization must be `Bearer <token>`"))?;
        Ok(Self {
            claims: verify(key, token.trim())?,
        })
    }

    /// The user name, recorded as the principal of the events the call causes.
    pub fn user(&self) -> &str {
        &self.claims.sub
    }

    /// The caller's role in its tenant.
    pub fn role(&self) -> Role {
        role_from_word(&self.claims.role)
    }

    /// Allows `action` on `tenant`, or says why not.
    ///
    /// # Errors
    /// `PERMISSION_DENIED` naming the tenant or the role that is missing.
    pub fn authorize(&self, tenant: Option<&TenantName>, action: Action) -> Result<(), Status> {
        if self.claims.platform_admin {
            return Ok(());
        }
        if action == Action::Platform {
            return Err(Status::permission_denied(
                "only a platform admin may do this",
            ));
        }
        let Some(tenant) = tenant else {
            return Err(Status::permission_denied("this call needs a tenant"));
        };
        if self.claims.tenant != tenant.as_str() {
            return Err(Status::permission_denied(format!(
                "your token is for tenant `{}`, not `{tenant}`",
                self.claims.tenant
            )));
        }
        let role = self.role();
        let allowed = match action {
            Action::Read => role != Role::Unspecified,
            Action::Develop => matches!(role, Role::Developer | Role::Admin),
            Action::ReleaseFirstStage | Action::ScaleFirstStage => {
                matches!(role, Role::Developer | Role::Devops | Role::Admin)
            }
            Action::ReleaseLaterStage | Action::ScaleLaterStage => {
                matches!(role, Role::Devops | Role::Admin)
            }
            Action::Administer => role == Role::Admin,
            Action::Platform => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "role `{}` in tenant `{tenant}` may not {}",
                role_word(role),
                match action {
                    Action::Read => "read",
                    Action::Develop => "create apps, upload revisions or build",
                    Action::ReleaseFirstStage => "deploy or roll back on the first stage",
                    Action::ReleaseLaterStage => "deploy, promote or roll back on a later stage",
                    Action::ScaleFirstStage => "set the scale policy on the first stage",
                    Action::ScaleLaterStage => "set the scale policy on a later stage",
                    Action::Administer => "manage the tenant's stages, members or users",
                    Action::Platform => "administer the platform",
                }
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(tenant: &str, role: &str, exp: i64) -> Claims {
        Claims {
            sub: "u".into(),
            tenant: tenant.into(),
            role: role.into(),
            platform_admin: false,
            iat: now_s(),
            exp,
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_before_expiry() {
        let c = claims("acme", "viewer", now_s() + 60);
        let t = sign(b"k1", &c).unwrap();
        assert_eq!(verify(b"k1", &t).unwrap(), c);
        assert_eq!(
            verify(b"k2", &t).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let old = sign(b"k1", &claims("acme", "viewer", now_s() - 600)).unwrap();
        assert!(
            verify(b"k1", &old)
                .unwrap_err()
                .message()
                .contains("expired")
        );
    }

    #[test]
    fn roles_allow_what_they_should() {
        let acme = TenantName::new("acme").unwrap();
        let beta = TenantName::new("beta").unwrap();
        let p = |role: &str| Principal {
            claims: claims("acme", role, now_s() + 60),
        };
        assert!(p("viewer").authorize(Some(&acme), Action::Read).is_ok());
        assert!(p("viewer").authorize(Some(&acme), Action::Develop).is_err());
        assert!(
            p("developer")
                .authorize(Some(&acme), Action::ReleaseFirstStage)
                .is_ok()
        );
        assert!(
            p("developer")
                .authorize(Some(&acme), Action::ReleaseLaterStage)
                .is_err()
        );
        assert!(
            p("devops")
                .authorize(Some(&acme), Action::ReleaseLaterStage)
                .is_ok()
        );
        assert!(p("devops").authorize(Some(&acme), Action::Develop).is_err());
        assert!(
            p("developer")
                .authorize(Some(&acme), Action::ScaleFirstStage)
                .is_ok()
        );
        assert!(
            p("developer")
                .authorize(Some(&acme), Action::ScaleLaterStage)
                .is_err()
        );
        assert!(
            p("viewer")
                .authorize(Some(&acme), Action::ScaleFirstStage)
                .is_err()
        );
        assert!(
            p("admin")
                .authorize(Some(&acme), Action::Administer)
                .is_ok()
        );
        assert!(p("admin").authorize(Some(&beta), Action::Read).is_err());
        assert!(p("admin").authorize(Some(&acme), Action::Platform).is_err());
    }
}
