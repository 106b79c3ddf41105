//! Cross-entity facts a command needs before its aggregate decides, gathered here and only
//! here, for every caller (the gateway, the publish reactors, the CLI through either): the
//! stage order of the tenant; for a deploy, the succeeded build of the revision (its image),
//! what impact analysis finds on the stage and what its migration does to the stage's data;
//! for a promotion, the current release of the previous stage, what its build needs and what
//! its migration does to the stage's data; for a rollback, what the restored build's migration
//! does to it. Reads are of the typed in-process state. Also checks that a
//! command names the same app, stage or revision as the entity it is addressed to.

use neo_model::impact::{self, Builds};
use neo_model::migration;
use neo_protocol::pb::{self, ErrorCode};
use neo_protocol::{AppName, EntityRef, StageName};

use super::{Platform, error, host_error, invalid, rejection};
use crate::aggregates::tenant;

fn app_stage(entity: &EntityRef) -> Result<(AppName, StageName), pb::CommandError> {
    entity.id.app_and_stage().ok_or_else(|| {
        invalid(
            "entity",
            format!("{entity} is not an `{{app}}_{{stage}}` id"),
        )
    })
}

fn same(field: &str, given: &str, expected: &str) -> Result<(), pb::CommandError> {
    if given.is_empty() || given == expected {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{field} is `{given}` but the command is addressed to `{expected}`"),
        ))
    }
}

fn fail(code: ErrorCode, rule: &str, message: String) -> pb::CommandError {
    pb::CommandError {
        rule: rule.to_owned(),
        ..error(code, message)
    }
}

/// A build command must name the app and revision of its entity id.
pub(super) fn check_build(
    entity: &EntityRef,
    c: &pb::BuildCommand,
) -> Result<(), pb::CommandError> {
    if let Some(pb::build_command::Command::Request(r)) = &c.command {
        let (app, revision) = entity
            .id
            .app_and_revision()
            .ok_or_else(|| invalid("entity", format!("{entity} is not a build id")))?;
        same("request.app", &r.app, app.as_str())?;
        if r.revision != revision {
            return Err(invalid(
                "request.revision",
                format!(
                    "revision {} but the build is of revision {revision}",
                    r.revision
                ),
            ));
        }
    }
    Ok(())
}

/// A podgroup command must name the app and stage of its entity id.
pub(super) fn check_podgroup(
    entity: &EntityRef,
    c: &pb::PodgroupCommand,
) -> Result<(), pb::CommandError> {
    if let Some(pb::podgroup_command::Command::Create(cr)) = &c.command {
        let (app, stage) = app_stage(entity)?;
        same("create.app", &cr.app, app.as_str())?;
        same("create.stage", &cr.stage, stage.as_str())?;
    }
    Ok(())
}

impl Platform {
    /// The tenant's state; refuses an unknown tenant.
    async fn tenant(&self, entity: &EntityRef) -> Result<pb::TenantState, pb::CommandError> {
        let (tenant, _) = self
            .tenants
            .state(&EntityRef::tenant(&entity.tenant))
            .await
            .map_err(host_error)?;
        if !tenant.exists {
            return Err(fail(
                ErrorCode::NotFound,
                "tenant.not_found",
                format!("tenant {} does not exist", entity.tenant),
            ));
        }
        Ok(tenant)
    }

    /// Checks a deploy or promotion against the tenant's stages; fills a deploy's build, image
    /// and impact blockers, a promotion's source (the current release of the previous stage)
    /// and needs, and the data changes (and losses) of each and of a rollback.
    pub(super) async fn enrich_deployment(
        &self,
        entity: &EntityRef,
        c: &mut pb::DeploymentCommand,
    ) -> Result<(), pb::CommandError> {
        use pb::deployment_command::Command;
        let (app, stage) = app_stage(entity)?;
        match &mut c.command {
            Some(Command::Deploy(d)) => {
                same("deploy.app", &d.app, app.as_str())?;
                same("deploy.stage", &d.stage, stage.as_str())?;
                d.app = app.to_string();
                d.stage = stage.to_string();
                self.stage_index(entity, &stage).await?;
                self.deploy_facts(entity, &app, d).await?;
            }
            Some(Command::Promote(p)) => {
                same("promote.app", &p.app, app.as_str())?;
                same("promote.stage", &p.stage, stage.as_str())?;
                let stages = self.tenant(entity).await?.stages;
                let index = position(&stages, &stage, entity)?;
                let Some(previous) = index.checked_sub(1).map(|i| stages[i].clone()) else {
                    return Err(fail(
                        ErrorCode::FailedPrecondition,
                        "promotion.first_stage",
                        format!(
                            "{stage} is the first stage of {}: deploy to it instead",
                            entity.tenant
                        ),
                    ));
                };
                if !p.from_stage.is_empty() && p.from_stage != previous {
                    return Err(fail(
                        ErrorCode::FailedPrecondition,
                        "promotion.order",
                        format!(
                            "{stage} is promoted from {previous}, not from {}",
                            p.from_stage
                        ),
                    ));
                }
                let previous_stage = StageName::new(previous.clone())
                    .map_err(|e| error(ErrorCode::Internal, e.to_string()))?;
                let source = EntityRef::deployment(&entity.tenant, &app, &previous_stage);
                let (dep, _) = self.deployments.state(&source).await.map_err(host_error)?;
                // While a canary runs it is the stage's current release.
                if let Some((running, _)) = crate::canary::running(&dep) {
                    return Err(fail(
                        ErrorCode::FailedPrecondition,
                        "promotion.source_canary",
                        format!(
                            "release v{} of {previous} is still rolling out as a canary: \
                             complete it (or wait for its steps) before promoting it further",
                            running.number
                        ),
                    ));
                }
                p.app = app.to_string();
                p.stage = stage.to_string();
                p.from_stage = previous.clone();
                p.source = dep
                    .releases
                    .iter()
                    .find(|r| r.number == dep.current)
                    .map(|r| pb::ReleaseRef {
                        stage: previous,
                        number: r.number,
                        image_digest: r.image_digest.clone(),
                        revision: r.revision,
                        build_id: r.build_id.clone(),
                    });
                p.needs = match &p.source {
                    Some(source) => self.build_needs(entity, &source.build_id).await?,
                    None => None,
                };
                (p.data_changes, p.blockers) = match &p.source {
                    Some(source) => {
                        let (here, _) = self.deployments.state(entity).await.map_err(host_error)?;
                        self.build_data_changes(entity, &here, &source.build_id)
                            .await?
                    }
                    None => Default::default(),
                };
            }
            Some(Command::Rollback(r)) => {
                let (deployment, _) = self.deployments.state(entity).await.map_err(host_error)?;
                // A release that does not exist is the aggregate's to refuse.
                let target = deployment
                    .releases
                    .iter()
                    .find(|x| x.number == r.to_release);
                (r.data_changes, r.blockers) = match target {
                    Some(target) => {
                        self.build_data_changes(entity, &deployment, &target.build_id)
                            .await?
                    }
                    None => Default::default(),
                };
            }
            Some(Command::ChangeSettings(c)) => {
                self.config_target(
                    entity,
                    &app,
                    &stage,
                    "change_settings",
                    &mut c.app,
                    &mut c.stage,
                )
                .await?;
            }
            Some(Command::RecordSecret(c)) => {
                self.config_target(
                    entity,
                    &app,
                    &stage,
                    "record_secret",
                    &mut c.app,
                    &mut c.stage,
                )
                .await?;
            }
            Some(Command::RemoveSecret(c)) => {
                self.config_target(
                    entity,
                    &app,
                    &stage,
                    "remove_secret",
                    &mut c.app,
                    &mut c.stage,
                )
                .await?;
            }
            _ => {}
        }
        Ok(())
    }

    /// A configuration command names the entity's app and a stage of the tenant; fills both.
    async fn config_target(
        &self,
        entity: &EntityRef,
        app: &AppName,
        stage: &StageName,
        verb: &str,
        given_app: &mut String,
        given_stage: &mut String,
    ) -> Result<(), pb::CommandError> {
        same(&format!("{verb}.app"), given_app, app.as_str())?;
        same(&format!("{verb}.stage"), given_stage, stage.as_str())?;
        *given_app = app.to_string();
        *given_stage = stage.to_string();
        self.stage_index(entity, stage).await.map(drop)
    }

    /// What the build `build_id` of the entity's tenant needs from a stage (None for a build
    /// from before builds recorded it).
    async fn build_needs(
        &self,
        entity: &EntityRef,
        build_id: &str,
    ) -> Result<Option<pb::ConfigNeeds>, pb::CommandError> {
        let Ok(build) = EntityRef::parse(entity.tenant.as_str(), "build", build_id) else {
            return Ok(None);
        };
        let (state, _) = self.builds.state(&build).await.map_err(host_error)?;
        Ok(state.needs)
    }

    async fn stage_index(
        &self,
        entity: &EntityRef,
        stage: &StageName,
    ) -> Result<usize, pb::CommandError> {
        let stages = self.tenant(entity).await?.stages;
        position(&stages, stage, entity)
    }

    /// What running the build `build_id` of the entity's tenant on the deployment `entity`
    /// (whose state is `deployment`) does to the data of the release running there: every
    /// change, and those that lose data (one line each). Nothing for a build id that is not one.
    async fn build_data_changes(
        &self,
        entity: &EntityRef,
        deployment: &pb::DeploymentState,
        build_id: &str,
    ) -> Result<(Vec<String>, Vec<String>), pb::CommandError> {
        let Ok(build) = EntityRef::parse(entity.tenant.as_str(), "build", build_id) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let (build, _) = self.builds.state(&build).await.map_err(host_error)?;
        self.data_changes(entity, deployment, &build.entities).await
    }

    /// What running a build with `entities` on the deployment `entity` (whose state is
    /// `deployment`) does to the data of the release running there: every change, and those
    /// that lose data (one line each).
    async fn data_changes(
        &self,
        entity: &EntityRef,
        deployment: &pb::DeploymentState,
        entities: &[pb::ExposedEntity],
    ) -> Result<(Vec<String>, Vec<String>), pb::CommandError> {
        let changes = migration::assess(self, &entity.tenant, deployment, entities)
            .await
            .map_err(|e| error(ErrorCode::Unavailable, e.to_string()))?;
        Ok(lines(&changes))
    }

    /// Fills a deploy from the succeeded build of its revision (build id, image), with the
    /// blockers impact analysis finds on the stage (none without read models) and what its
    /// migration does to the stage's data (a loss is a blocker too). A deploy that
    /// names its image itself comes from inside the platform (the publish chain names the image
    /// of the build's own `BuildSucceeded`; only platform components may send commands) and is
    /// taken as given; it is assessed when its build succeeded.
    async fn deploy_facts(
        &self,
        entity: &EntityRef,
        app: &AppName,
        d: &mut pb::Deploy,
    ) -> Result<(), pb::CommandError> {
        if d.revision == 0 {
            return Err(invalid("deploy.revision", "revisions are numbered from 1"));
        }
        let build_ref = EntityRef::build(&entity.tenant, app, d.revision);
        same("deploy.build_id", &d.build_id, build_ref.id.as_str())?;
        let (build, _) = self.builds.state(&build_ref).await.map_err(host_error)?;
        let succeeded = build.status() == pb::BuildStatus::Succeeded;
        if d.image_digest.is_empty() && !succeeded {
            return Err(fail(
                ErrorCode::FailedPrecondition,
                "deploy.build_not_succeeded",
                format!(
                    "revision {} of `{app}` has no succeeded build (build `{}`)",
                    d.revision, build_ref.id
                ),
            ));
        }
        d.build_id = build_ref.id.to_string();
        if d.image_digest.is_empty() {
            d.image_digest = build.image_digest;
        }
        d.blockers = match self.consumers.get() {
            Some(consumers) if succeeded => impact::assess(
                consumers.as_ref(),
                self,
                (entity.tenant.as_str(), &d.stage, app.as_str()),
                &build.exposes,
            )
            .await
            .map_err(|e| error(ErrorCode::Unavailable, e.to_string()))?
            .blocker_lines(),
            _ => Vec::new(),
        };
        if succeeded {
            let (deployment, _) = self.deployments.state(entity).await.map_err(host_error)?;
            let (changes, losses) = self
                .data_changes(entity, &deployment, &build.entities)
                .await?;
            d.blockers.extend(losses);
            d.data_changes = changes;
        }
        // A force over nothing is not recorded as one (the aggregate decides).
        if d.forced && !d.blockers.is_empty() {
            tracing::warn!(%entity, revision = d.revision, blockers = ?d.blockers,
                "deploy forced over impact blockers");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Builds for Platform {
    async fn build(&self, build: &EntityRef) -> Result<pb::BuildState, String> {
        let (state, _) = self
            .builds
            .state(build)
            .await
            .map_err(|e| format!("cannot read build {}: {e}", build.id))?;
        Ok(state)
    }
}

/// Data changes as the lines a command and its release carry: every change, and those that
/// lose data.
fn lines(changes: &[migration::DataChange]) -> (Vec<String>, Vec<String>) {
    let all = changes.iter().map(migration::DataChange::line).collect();
    let losses = changes
        .iter()
        .filter(|c| c.loses_data)
        .map(migration::DataChange::line)
        .collect();
    (all, losses)
}

fn position(
    stages: &[String],
    stage: &StageName,
    entity: &EntityRef,
) -> Result<usize, pb::CommandError> {
    tenant::stage_position(stages, entity.tenant.as_str(), stage.as_str()).map_err(rejection)
}
