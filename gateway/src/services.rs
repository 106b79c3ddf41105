//! The gRPC services, one module each, over a shared [`Ctx`].

pub mod apps;
pub mod buildlog;
pub mod builds;
pub mod deployments;
pub mod events;
pub mod history;
pub mod identity;
pub mod impact;
pub mod publish;
pub mod resume;
pub mod runtime;
pub mod settings;
pub mod tenants;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use neo_actors::aggregates::tenant::stage_position;
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb};
use tonic::{Request, Status};

use crate::auth::{Action, Principal};
use crate::bus::Bus;
use crate::error::bad_name;
use crate::identity::Users;

/// What every service needs.
pub struct Ctx {
    /// Commands and queries to the platform.
    pub bus: Bus,
    /// JetStream, for listing and watching.
    pub js: jetstream::Context,
    /// Users and passwords.
    pub users: Users,
    /// Revision content in S3.
    pub revisions: neo_revisions::RevisionStore,
    /// The read models' view of which consumers run where, for impact analysis (none: no
    /// read models configured, no analysis).
    pub consumers: Option<Arc<dyn neo_model::impact::Consumers>>,
    /// The encrypted secrets store (none: secrets cannot be set or listed with their times).
    pub secrets: Option<Arc<neo_secrets::SecretStore>>,
    /// The token signing key.
    pub key: Vec<u8>,
    /// Verifies (and remembers) the tokens calls carry, signed with `key`.
    pub verifier: crate::auth::Verifier,
    /// When sessions, memberships and tenants ended: tokens issued before are refused.
    pub revocations: Arc<crate::revocation::Revocations>,
    /// Token lifetime.
    pub token_ttl: Duration,
    /// Largest revision upload.
    pub max_upload_bytes: usize,
    /// Tenants seen to exist recently, to spare a query per command.
    pub known_tenants: std::sync::Mutex<std::collections::HashMap<TenantName, std::time::Instant>>,
    /// The deployment and podgroup states `Runtime.Status` read last, with their event counts.
    pub status_cache: runtime::status::cache::StatusCache,
}

/// How long a tenant seen to exist is trusted to exist without asking again.
const TENANT_CACHE: Duration = Duration::from_secs(10);

/// The entity state a command left behind, from its reply.
///
/// # Errors
/// `INTERNAL` if the platform's reply holds an undecodable state.
pub fn state_after<S: prost::Message + Default>(
    accepted: &pb::CommandAccepted,
) -> Result<S, Status> {
    S::decode(accepted.state.clone())
        .map_err(|e| Status::internal(format!("undecodable state in reply: {e}")))
}

/// Validates a tenant name from a request field.
pub fn tenant(field: &str, value: &str) -> Result<TenantName, Status> {
    TenantName::new(value).map_err(|e| bad_name(field, e))
}

/// Validates an app name from a request field.
pub fn app(field: &str, value: &str) -> Result<AppName, Status> {
    AppName::new(value).map_err(|e| bad_name(field, e))
}

/// Validates a stage name from a request field.
pub fn stage(field: &str, value: &str) -> Result<StageName, Status> {
    StageName::new(value).map_err(|e| bad_name(field, e))
}

impl Ctx {
    /// Authenticates the request and checks that it may do `action` on `tenant`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` or `PERMISSION_DENIED`.
    pub fn allow<T>(
        &self,
        request: &Request<T>,
        tenant: Option<&TenantName>,
        action: Action,
    ) -> Result<Principal, Status> {
        let principal = self.authenticate(request)?;
        principal.authorize(tenant, action)?;
        Ok(principal)
    }

    /// Authenticates the request without an authorisation check: a valid token whose
    /// session, membership and tenant have not ended since it was issued.
    ///
    /// # Errors
    /// `UNAUTHENTICATED`.
    pub fn authenticate<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        let principal = Principal::from_request(&self.verifier, request)?;
        self.revocations.check(&principal.claims)?;
        Ok(principal)
    }

    /// The tenant's state, `NOT_FOUND` if it does not exist.
    ///
    /// # Errors
    /// `NOT_FOUND`, `UNAVAILABLE`.
    pub async fn tenant_state(
        &self,
        tenant: &TenantName,
    ) -> Result<(pb::TenantState, u64), Status> {
        let (state, seq) = self
            .bus
            .state::<pb::TenantState>(&EntityRef::tenant(tenant))
            .await?;
        if !state.exists {
            return Err(Status::not_found(format!(
                "tenant `{tenant}` does not exist"
            )));
        }
        Ok((state, seq))
    }

    /// Checks that the tenant exists (cached briefly: tenants are not deleted in passing).
    ///
    /// # Errors
    /// `NOT_FOUND`, `UNAVAILABLE`.
    pub async fn tenant_exists(&self, tenant: &TenantName) -> Result<(), Status> {
        let fresh = |known: &std::collections::HashMap<TenantName, std::time::Instant>| {
            known
                .get(tenant)
                .is_some_and(|t| t.elapsed() < TENANT_CACHE)
        };
        if self.known_tenants.lock().is_ok_and(|k| fresh(&k)) {
            return Ok(());
        }
        self.tenant_state(tenant).await?;
        if let Ok(mut known) = self.known_tenants.lock() {
            known.insert(tenant.clone(), std::time::Instant::now());
        }
        Ok(())
    }

    /// Authenticates, then authorises a release on `stage` (first or later stage; a promotion
    /// always counts as later) — also what changing a stage's settings and secrets needs. The
    /// tenant scope is checked before anything about the tenant is revealed.
    ///
    /// # Errors
    /// `UNAUTHENTICATED`, `PERMISSION_DENIED`, `NOT_FOUND`, `FAILED_PRECONDITION`.
    pub async fn allow_release<T>(
        &self,
        request: &Request<T>,
        tenant: &TenantName,
        stage: &StageName,
        promotion: bool,
    ) -> Result<Principal, Status> {
        let principal = self.authenticate(request)?;
        principal.authorize(Some(tenant), Action::Read)?;
        let action = self.release_action(tenant, stage).await?;
        let action = if promotion {
            Action::ReleaseLaterStage
        } else {
            action
        };
        principal.authorize(Some(tenant), action)?;
        Ok(principal)
    }

    /// The action a release on `stage` needs: first stage or later.
    ///
    /// # Errors
    /// `NOT_FOUND` for an unknown tenant; `FAILED_PRECONDITION` for a stage it lacks.
    pub async fn release_action(
        &self,
        tenant: &TenantName,
        stage: &StageName,
    ) -> Result<Action, Status> {
        let (state, _) = self.tenant_state(tenant).await?;
        match stage_position(&state.stages, tenant.as_str(), stage.as_str()) {
            Ok(0) => Ok(Action::ReleaseFirstStage),
            Ok(_) => Ok(Action::ReleaseLaterStage),
            Err(refusal) => Err(crate::error::from_command_error(
                neo_actors::platform::rejection(refusal),
            )),
        }
    }
}
