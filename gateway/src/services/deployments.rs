//! `neo.gateway.v1.Deployments`: deploy, promote (as a canary too), roll back, a stage's canary
//! policy and the end of its canary by hand, get, releases.

use std::sync::Arc;

use neo_protocol::pb::{self, deployment_command::Command};
use neo_protocol::{AppName, EntityRef, StageName, TenantName};
use tonic::{Request, Response, Status};

use super::{Ctx, app, impact, stage, state_after, tenant};
use crate::api::{self, deployments_server::Deployments};
use crate::auth::Action;
use crate::error::{invalid, refused};
use crate::listing::{page_request, paginate};

/// The deployments service.
pub struct DeploymentsService(pub Arc<Ctx>);

pub(crate) type Target = (TenantName, AppName, StageName);

fn target(tenant_v: &str, app_v: &str, stage_v: &str) -> Result<Target, Status> {
    Ok((
        tenant("tenant", tenant_v)?,
        app("app", app_v)?,
        stage("stage", stage_v)?,
    ))
}

impl DeploymentsService {
    async fn get(&self, (t, a, s): &Target) -> Result<api::Deployment, Status> {
        let (state, sequence) = self
            .0
            .bus
            .state::<pb::DeploymentState>(&EntityRef::deployment(t, a, s))
            .await?;
        if state.releases.is_empty() {
            return Err(Status::not_found(format!(
                "app `{a}` has never been deployed to `{s}`"
            )));
        }
        Ok(api::Deployment {
            tenant: t.to_string(),
            app: a.to_string(),
            stage: s.to_string(),
            state: Some(state),
            sequence,
        })
    }

    async fn run(
        &self,
        target: &Target,
        principal: &str,
        command: Command,
    ) -> Result<api::Deployment, Status> {
        let (t, a, s) = target;
        let command = pb::DeploymentCommand {
            command: Some(command),
        };
        let accepted = self
            .0
            .bus
            .command(&EntityRef::deployment(t, a, s), principal, &command)
            .await?;
        Ok(api::Deployment {
            tenant: t.to_string(),
            app: a.to_string(),
            stage: s.to_string(),
            state: Some(state_after(&accepted)?),
            sequence: accepted.last_sequence,
        })
    }

    /// Authenticates, then authorises a release on the target's stage (first or later).
    /// The succeeded build of `revision`, or `FAILED_PRECONDITION`.
    async fn succeeded_build(
        &self,
        target: &Target,
        revision: u32,
    ) -> Result<pb::BuildState, Status> {
        let (t, a, _) = target;
        let build = EntityRef::build(t, a, revision);
        let (state, _) = self.0.bus.state::<pb::BuildState>(&build).await?;
        if state.status() != pb::BuildStatus::Succeeded {
            return Err(refused(
                "deploy.build_not_succeeded",
                format!(
                    "revision {revision} of `{a}` has no succeeded build (build `{}`)",
                    build.id
                ),
            ));
        }
        Ok(state)
    }

    async fn allow_release<T>(
        &self,
        request: &Request<T>,
        target: &Target,
        promotion: bool,
    ) -> Result<String, Status> {
        let principal = self
            .0
            .allow_release(request, &target.0, &target.2, promotion)
            .await?;
        Ok(principal.user().to_owned())
    }
}

#[tonic::async_trait]
impl Deployments for DeploymentsService {
    async fn deploy(
        &self,
        request: Request<api::DeployRequest>,
    ) -> Result<Response<api::Deployment>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        if r.revision == 0 {
            return Err(invalid("revision", "revisions are numbered from 1"));
        }
        let user = self.allow_release(&request, &target, false).await?;
        let (_, a, s) = &target;
        // The platform fills the build, its image and the impact blockers, and refuses a
        // blocked deploy unless forced.
        let command = Command::Deploy(pb::Deploy {
            app: a.to_string(),
            stage: s.to_string(),
            revision: request.get_ref().revision,
            forced: request.get_ref().force,
            refuse_if_blocked: true,
            ..Default::default()
        });
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn promote(
        &self,
        request: Request<api::PromoteRequest>,
    ) -> Result<Response<api::Deployment>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        let user = self.allow_release(&request, &target, true).await?;
        // The platform fills the source, its needs and what its migration does to the data.
        let command = Command::Promote(pb::Promote {
            app: target.1.to_string(),
            stage: target.2.to_string(),
            forced: r.force,
            canary: r.canary,
            ..Default::default()
        });
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn set_canary_policy(
        &self,
        request: Request<api::SetCanaryPolicyRequest>,
    ) -> Result<Response<api::Deployment>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        let Some(policy) = r.policy.clone() else {
            return Err(invalid("policy", "a canary policy is needed"));
        };
        let user = self.allow_release(&request, &target, false).await?;
        let command = Command::SetCanaryPolicy(pb::SetCanaryPolicy {
            policy: Some(policy),
        });
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn end_canary(
        &self,
        request: Request<api::EndCanaryRequest>,
    ) -> Result<Response<api::Deployment>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        let user = self.allow_release(&request, &target, false).await?;
        let release = if r.release != 0 {
            r.release
        } else {
            // Whichever runs; none: the deployment refuses release 0 as not a running canary.
            let (t, a, s) = &target;
            let (state, _) = self
                .0
                .bus
                .state::<pb::DeploymentState>(&EntityRef::deployment(t, a, s))
                .await?;
            neo_actors::canary::running(&state).map_or(0, |(r, _)| r.number)
        };
        let command = if r.promote {
            Command::CompleteCanary(pb::CompleteCanary { release })
        } else {
            Command::AbortCanary(pb::AbortCanary {
                release,
                reason: r.reason.clone(),
            })
        };
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn rollback(
        &self,
        request: Request<api::RollbackRequest>,
    ) -> Result<Response<api::Deployment>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        if r.to_release == 0 {
            return Err(invalid("to_release", "releases are numbered from 1"));
        }
        let user = self.allow_release(&request, &target, false).await?;
        let command = Command::Rollback(pb::Rollback {
            to_release: r.to_release,
            forced: r.force,
            ..Default::default()
        });
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn get_deployment(
        &self,
        request: Request<api::GetDeploymentRequest>,
    ) -> Result<Response<api::Deployment>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        self.0.allow(&request, Some(&target.0), Action::Read)?;
        Ok(Response::new(self.get(&target).await?))
    }

    async fn impact(
        &self,
        request: Request<api::ImpactRequest>,
    ) -> Result<Response<api::ImpactReport>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        if r.revision == 0 {
            return Err(invalid("revision", "revisions are numbered from 1"));
        }
        let revision = r.revision;
        self.0.allow(&request, Some(&target.0), Action::Read)?;
        impact::available(&self.0)?;
        self.0.release_action(&target.0, &target.2).await?;
        let build = self.succeeded_build(&target, revision).await?;
        let report = impact::assess(&self.0, &target, &build).await?;
        let mut report = impact::to_api(&report);
        let (t, a, s) = &target;
        let (deployment, _) = self
            .0
            .bus
            .state::<pb::DeploymentState>(&EntityRef::deployment(t, a, s))
            .await?;
        let (data_changes, losses) =
            impact::data_changes(&self.0, &target, &deployment, &build).await?;
        report.blockers.extend(losses);
        report.blockers.extend(super::settings::config_findings(
            &target,
            &deployment,
            &build,
        ));
        report.data_changes = data_changes;
        Ok(Response::new(report))
    }

    async fn list_releases(
        &self,
        request: Request<api::ListReleasesRequest>,
    ) -> Result<Response<api::ListReleasesResponse>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        self.0.allow(&request, Some(&target.0), Action::Read)?;
        let page = page_request(r.page.as_ref())?;
        let deployment = self.get(&target).await?;
        let mut releases = deployment.state.map(|s| s.releases).unwrap_or_default();
        releases.reverse();
        // Newest first: the key sorts descending numbers ascending.
        let (releases, next_page_token) =
            paginate(&releases, |r| format!("{:010}", u32::MAX - r.number), &page);
        Ok(Response::new(api::ListReleasesResponse {
            releases,
            next_page_token,
        }))
    }
}
