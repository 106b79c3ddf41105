//! Authentication (signed, expiring bearer tokens) and authorisation (tenant scope and role).

use std::collections::HashMap;
use std::sync::Mutex;
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
    /// Issued at (Unix milliseconds), what revocations compare with (absent in tokens from
    /// before it: `iat`).
    #[serde(default)]
    pub iat_ms: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
}

impl Claims {
    /// When the token was issued, in Unix milliseconds.
    pub fn issued_ms(&self) -> i64 {
        if self.iat_ms > 0 {
            self.iat_ms
        } else {
            self.iat.saturating_mul(1000)
        }
    }
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

/// Seconds a token is still accepted after its `exp`.
const LEEWAY_S: i64 = 5;

/// The checks every token passes: HS256, issuer, expiry with [`LEEWAY_S`], required claims.
fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = LEEWAY_S.unsigned_abs();
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation
}

fn decode(key: &DecodingKey, validation: &Validation, token: &str) -> Result<Claims, Status> {
    jsonwebtoken::decode::<Wire>(token, key, validation)
        .map(|d| d.claims.claims)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                Status::unauthenticated("token expired: log in again")
            }
            _ => Status::unauthenticated(format!("invalid token: {e}")),
        })
}

/// The most verified tokens a [`Verifier`] remembers; past it, it forgets the expired ones,
/// then all.
const REMEMBERED: usize = 4096;

/// Verifies tokens (signature, issuer, expiry), remembering those it has verified: a client
/// sends the same token with call after call, and checking its signature and decoding its JSON
/// is most of what authenticating a call costs.
///
/// # Guarantees
/// A token is accepted only if it was verified with this key, byte for byte the same; a
/// remembered token is still refused once it has expired, with the same status as a first
/// verification gives.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    verified: Mutex<HashMap<Box<str>, Claims>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier of tokens signed with `key`.
    pub fn new(key: &[u8]) -> Self {
        Self {
            key: DecodingKey::from_secret(key),
            validation: validation(),
            verified: Mutex::default(),
        }
    }

    /// Checks a token's signature, issuer and expiry.
    ///
    /// # Errors
    /// `UNAUTHENTICATED`, saying why.
    pub fn verify(&self, token: &str) -> Result<Claims, Status> {
        let now = now_s();
        let unexpired = |c: &Claims| c.exp.saturating_add(LEEWAY_S) >= now;
        if let Ok(verified) = self.verified.lock()
            && let Some(claims) = verified.get(token)
            && unexpired(claims)
        {
            return Ok(claims.clone());
        }
        let claims = decode(&self.key, &self.validation, token)?;
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() >= REMEMBERED {
                verified.retain(|_, c| unexpired(c));
                if verified.len() >= REMEMBERED {
                    verified.clear();
                }
            }
            verified.insert(token.into(), claims.clone());
        }
        Ok(claims)
    }
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

impl Action {
    /// Whether a member of a tenant with `role` may do this there (the one rule the gateway
    /// enforces, and the portal follows to offer only what will be allowed).
    pub fn allowed_for(self, role: Role) -> bool {
        match self {
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
        }
    }
}

impl Principal {
    /// Reads the bearer token of a request and verifies it with `verifier`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when the token is missing, malformed, forged or expired.
    pub fn from_request<T>(
        verifier: &Verifier,
        request: &tonic::Request<T>,
    ) -> Result<Self, Status> {
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
            claims: verifier.verify(token.trim())?,
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
        if action.allowed_for(role) {
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
            iat_ms: 0,
            exp,
        }
    }

    #[test]
    fn tokens_verify_only_with_their_key_and_before_expiry() {
        let c = claims("acme", "viewer", now_s() + 60);
        let t = sign(b"k1", &c).unwrap();
        assert_eq!(Verifier::new(b"k1").verify(&t).unwrap(), c);
        assert_eq!(
            Verifier::new(b"k2").verify(&t).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        let old = sign(b"k1", &claims("acme", "viewer", now_s() - 600)).unwrap();
        assert!(
            Verifier::new(b"k1")
                .verify(&old)
                .unwrap_err()
                .message()
                .contains("expired")
        );
    }

    #[test]
    fn a_verifier_accepts_and_refuses_what_verify_does() {
        let c = claims("acme", "viewer", now_s() + 60);
        let t = sign(b"k1", &c).unwrap();
        let v = Verifier::new(b"k1");
        assert_eq!(v.verify(&t).unwrap(), c);
        assert_eq!(v.verify(&t).unwrap(), c, "remembered");
        let other = Verifier::new(b"k2");
        assert_eq!(
            other.verify(&t).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            other.verify(&t).unwrap_err().code(),
            tonic::Code::Unauthenticated,
            "a refused token is not remembered"
        );
        let old = sign(b"k1", &claims("acme", "viewer", now_s() - 600)).unwrap();
        assert!(v.verify(&old).unwrap_err().message().contains("expired"));
        let mut forged = t.clone();
        forged.pop();
        assert!(v.verify(&forged).is_err());
    }

    #[test]
    fn a_remembered_token_is_refused_once_expired() {
        let v = Verifier::new(b"k1");
        // As if `x.y.z` had been verified and had expired since: verified again, refused.
        let remember = |exp: i64| {
            v.verified
                .lock()
                .unwrap()
                .insert("x.y.z".into(), claims("acme", "viewer", exp));
        };
        remember(now_s() + 60);
        assert!(v.verify("x.y.z").is_ok());
        remember(now_s() - LEEWAY_S - 2);
        assert_eq!(
            v.verify("x.y.z").unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
    }

    #[test]
    fn a_verifier_remembers_a_bounded_number_of_tokens() {
        let v = Verifier::new(b"k1");
        for i in 0..=REMEMBERED + 1 {
            let t = sign(b"k1", &claims(&format!("t{i}"), "viewer", now_s() + 60)).unwrap();
            v.verify(&t).unwrap();
        }
        assert!(v.verified.lock().unwrap().len() <= REMEMBERED);
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
