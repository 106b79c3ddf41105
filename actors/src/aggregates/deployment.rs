//! The deployment aggregate: one app's releases on one stage, numbered v1, v2…
//!
//! The entity id is `{app}_{stage}`. Every deploy, promotion and rollback creates a new release
//! that becomes the current one; the stage's agent records how its rollout went.
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `command.missing` | invalid | the command names no operation |
//! | `deployment.app`, `deployment.stage` | invalid | app or stage is not a valid name |
//! | `deployment.build_id` | invalid | deploy without a build id |
//! | `deployment.revision` | invalid | deploy revision 0 |
//! | `deployment.image_digest` | invalid | deploy a malformed image digest |
//! | `deployment.target_mismatch` | invalid | the command names another app or stage than the deployment's |
//! | `deploy.impact_blockers` | precondition | a deploy someone waits on (`refuse_if_blocked`) carries blockers and is not forced |
//! | `promotion.from_stage` | invalid | the source stage is not a valid name |
//! | `promotion.same_stage` | invalid | promote a stage into itself |
//! | `promotion.no_source` | precondition | the source stage has no current release |
//! | `promotion.source_canary` | precondition | the source stage's current release is a running canary (the platform refuses it while gathering the source) |
//! | `promotion.source_stage` | invalid | the source release is of another stage than `from_stage` |
//! | `promotion.source` | invalid | the source release is malformed (number, revision, build, digest) |
//! | `promotion.unchanged` | precondition | the current release already runs the source's image |
//! | `promotion.data_loss` | precondition | the promoted build's migration loses data stored on the stage, and the promotion is not forced |
//! | `deployment.no_release` | precondition | roll back before any release |
//! | `rollback.to_release` | invalid | roll back to release 0 |
//! | `rollback.not_earlier` | precondition | roll back to the current or a later release |
//! | `rollback.secret_versions` | precondition | a secret the target release recorded changed or went since (only the newest value is kept) |
//! | `rollback.data_loss` | precondition | the restored build's migration loses data stored since, and the rollback is not forced |
//! | `release.not_found` | not found | roll back to, or record the rollout of, a release that does not exist |
//! | `rollout.status` | invalid | record a rollout that is neither succeeded nor failed |
//! | `rollout.recorded` | precondition | record the rollout of a release whose rollout is recorded |
//!
//! The stage's settings and secrets have their own rules, in [`config`]; canary releases
//! theirs, in [`canary`]. Every release runs
//! with the stage's configuration at the time it is made: promotion never copies it.
//!
//! A deploy that carries impact-analysis blockers and is not forced is not refused unless
//! someone waits on it: it is recorded as `DeployBlocked` (no release), so the blocked attempt
//! is part of the history and a publish following it can report it. The blockers, the build and
//! the stage order come from the platform ([`crate::platform`] gathers every cross-entity
//! fact), never from the caller.

use std::ops::Deref;

use neo_protocol::EntityKind;
use neo_protocol::pb::{
    self, ReleaseOrigin, RolloutStatus, deployment_command::Command, deployment_event::Event,
};

use super::{check_digest, check_name, check_present, missing_command};
use crate::aggregate::{Aggregate, Rejection};

impl Aggregate for pb::DeploymentState {
    const KIND: EntityKind = EntityKind::Deployment;
    type Command = pb::DeploymentCommand;
    type Event = pb::DeploymentEvent;

    fn handle(
        &self,
        command: pb::DeploymentCommand,
    ) -> Result<Vec<pb::DeploymentEvent>, Rejection> {
        let Some(command) = command.command else {
            return Err(missing_command("deployment"));
        };
        let rules = Rules(self);
        if matches!(
            command,
            Command::Deploy(_)
                | Command::Promote(_)
                | Command::Rollback(_)
                | Command::ChangeSettings(_)
                | Command::RecordSecret(_)
                | Command::RemoveSecret(_)
        ) {
            rules.no_running_canary()?;
        }
        let events = match command {
            Command::Deploy(deploy) => vec![rules.deploy(deploy)?],
            Command::Promote(promote) => vec![rules.promote(promote)?],
            Command::Rollback(rollback) => vec![rules.rollback(rollback)?],
            Command::RecordRollout(record) => vec![rules.record_rollout(record)?],
            Command::ChangeSettings(change) => rules.change_settings(change)?,
            Command::RecordSecret(record) => rules.record_secret(record)?,
            Command::RemoveSecret(remove) => rules.remove_secret(remove)?,
            Command::SetCanaryPolicy(set) => vec![rules.set_canary_policy(set)?],
            Command::RecordCanaryStep(record) => vec![rules.record_canary_step(record)?],
            Command::AbortCanary(abort) => vec![rules.abort_canary(abort)?],
            Command::CompleteCanary(complete) => vec![rules.complete_canary(complete)?],
        };
        Ok(events
            .into_iter()
            .map(|event| pb::DeploymentEvent { event: Some(event) })
            .collect())
    }

    fn apply(&mut self, event: &pb::DeploymentEvent) {
        let Some(event) = &event.event else { return };
        match event {
            Event::ReleaseCreated(e) => {
                self.app.clone_from(&e.app);
                self.stage.clone_from(&e.stage);
                if let Some(release) = &e.release {
                    self.current = release.number;
                    self.releases.push(release.clone());
                }
            }
            Event::DeployBlocked(e) => {
                if self.app.is_empty() {
                    self.app.clone_from(&e.app);
                    self.stage.clone_from(&e.stage);
                }
            }
            Event::RolloutRecorded(e) => {
                if let Some(release) = self.releases.iter_mut().find(|r| r.number == e.release) {
                    release.rollout = e.status;
                    release.rollout_reason.clone_from(&e.reason);
                }
            }
            Event::SettingsChanged(_) | Event::SecretChanged(_) | Event::SecretRemoved(_) => {
                config::apply(self, event);
            }
            Event::CanaryPolicySet(_)
            | Event::CanaryAdvanced(_)
            | Event::CanaryCompleted(_)
            | Event::CanaryRolledBack(_) => canary::apply(self, event),
        }
    }

    fn event_type(event: &pb::DeploymentEvent) -> &'static str {
        match &event.event {
            Some(Event::ReleaseCreated(_)) => "ReleaseCreated",
            Some(Event::RolloutRecorded(_)) => "RolloutRecorded",
            Some(Event::DeployBlocked(_)) => "DeployBlocked",
            Some(Event::SettingsChanged(_)) => "SettingsChanged",
            Some(Event::SecretChanged(_)) => "SecretChanged",
            Some(Event::SecretRemoved(_)) => "SecretRemoved",
            Some(Event::CanaryPolicySet(_)) => "CanaryPolicySet",
            Some(Event::CanaryAdvanced(_)) => "CanaryAdvanced",
            Some(Event::CanaryCompleted(_)) => "CanaryCompleted",
            Some(Event::CanaryRolledBack(_)) => "CanaryRolledBack",
            None => crate::aggregate::UNKNOWN_EVENT,
        }
    }
}

/// The state as the rules below see it: a view, since a foreign type takes no inherent impl.
struct Rules<'a>(&'a pb::DeploymentState);

impl Deref for Rules<'_> {
    type Target = pb::DeploymentState;

    fn deref(&self) -> &pb::DeploymentState {
        self.0
    }
}

/// How a release records a force: whether it went ahead over blockers, and over which. A force
/// over nothing is not recorded as one.
fn force(forced: bool, blockers: Vec<String>) -> (bool, Vec<String>) {
    if forced && !blockers.is_empty() {
        (true, blockers)
    } else {
        (false, Vec::new())
    }
}

/// Refuses a promotion or rollback whose migration loses data (`blockers`, filled by the
/// platform) unless it is forced.
fn gate(
    rule: &'static str,
    what: &str,
    blockers: &[String],
    forced: bool,
) -> Result<(), Rejection> {
    if blockers.is_empty() || forced {
        return Ok(());
    }
    Err(Rejection::precondition(
        rule,
        format_args!(
            "{what} would lose data: {}; go ahead with force to do it anyway (the force is \
             recorded)",
            blockers.join("; ")
        ),
    ))
}

impl Rules<'_> {
    fn deploy(&self, deploy: pb::Deploy) -> Result<Event, Rejection> {
        self.check_target("deploy", &deploy.app, &deploy.stage)?;
        check_present("deployment.build_id", "deploy.build_id", &deploy.build_id)?;
        if deploy.revision == 0 {
            return Err(Rejection::invalid(
                "deployment.revision",
                "deploy.revision",
                "revisions are numbered from 1",
            ));
        }
        check_digest(
            "deployment.image_digest",
            "deploy.image_digest",
            &deploy.image_digest,
        )?;
        if !deploy.blockers.is_empty() && !deploy.forced && deploy.refuse_if_blocked {
            return Err(Rejection::precondition(
                "deploy.impact_blockers",
                format_args!(
                    "deploying revision {} of `{}` to {} would break: {}; deploy with force to \
                     go ahead anyway (the force is recorded)",
                    deploy.revision,
                    deploy.app,
                    deploy.stage,
                    deploy.blockers.join("; ")
                ),
            ));
        }
        if !deploy.blockers.is_empty() && !deploy.forced {
            return Ok(Event::DeployBlocked(pb::DeployBlocked {
                app: deploy.app,
                stage: deploy.stage,
                build_id: deploy.build_id,
                revision: deploy.revision,
                blockers: deploy.blockers,
            }));
        }
        let (forced, forced_blockers) = force(deploy.forced, deploy.blockers);
        Ok(self.release_created(
            deploy.app,
            deploy.stage,
            pb::Release {
                image_digest: deploy.image_digest,
                revision: deploy.revision,
                build_id: deploy.build_id,
                origin: ReleaseOrigin::Deploy.into(),
                forced,
                forced_blockers,
                data_changes: deploy.data_changes,
                ..Default::default()
            },
        ))
    }

    fn promote(&self, promote: pb::Promote) -> Result<Event, Rejection> {
        self.check_target("promote", &promote.app, &promote.stage)?;
        check_name(
            "promotion.from_stage",
            "promote.from_stage",
            "stage",
            &promote.from_stage,
        )?;
        if promote.from_stage == promote.stage {
            return Err(Rejection::invalid(
                "promotion.same_stage",
                "promote.from_stage",
                format_args!("stage {} cannot be promoted into itself", promote.stage),
            ));
        }
        let Some(source) = promote.source else {
            return Err(Rejection::precondition(
                "promotion.no_source",
                format_args!(
                    "stage {} has no current release of app {} to promote",
                    promote.from_stage, promote.app
                ),
            ));
        };
        if source.stage != promote.from_stage {
            return Err(Rejection::invalid(
                "promotion.source_stage",
                "promote.source.stage",
                format_args!(
                    "the source release is of stage `{}`, not of {}",
                    super::shown(&source.stage),
                    promote.from_stage
                ),
            ));
        }
        check_source(&source)?;
        self.check_needs(&promote.stage, promote.needs.as_ref())?;
        if let Some(current) = self.current_release()
            && current.image_digest == source.image_digest
        {
            return Err(Rejection::precondition(
                "promotion.unchanged",
                format_args!(
                    "release v{} of stage {} already runs image {}",
                    current.number, promote.stage, source.image_digest
                ),
            ));
        }
        let what = format!(
            "promoting release v{} of {} into {}",
            source.number, promote.from_stage, promote.stage
        );
        gate(
            "promotion.data_loss",
            &what,
            &promote.blockers,
            promote.forced,
        )?;
        let canary = promote.canary.then(|| self.start_canary()).transpose()?;
        let (forced, forced_blockers) = force(promote.forced, promote.blockers);
        Ok(self.release_created(
            promote.app,
            promote.stage,
            pb::Release {
                image_digest: source.image_digest.clone(),
                revision: source.revision,
                build_id: source.build_id.clone(),
                origin: ReleaseOrigin::Promotion.into(),
                promoted_from: Some(source),
                forced,
                forced_blockers,
                data_changes: promote.data_changes,
                canary,
                ..Default::default()
            },
        ))
    }

    fn rollback(&self, rollback: pb::Rollback) -> Result<Event, Rejection> {
        if self.current == 0 {
            return Err(Rejection::precondition(
                "deployment.no_release",
                "there is no release to roll back from",
            ));
        }
        let to = rollback.to_release;
        if to == 0 {
            return Err(Rejection::invalid(
                "rollback.to_release",
                "rollback.to_release",
                "releases are numbered from 1",
            ));
        }
        if to >= self.current {
            return Err(Rejection::precondition(
                "rollback.not_earlier",
                format_args!(
                    "release v{to} is not earlier than the current release v{}",
                    self.current
                ),
            ));
        }
        let target = self.release(to)?;
        let config = self.rollback_config(target)?;
        let what = format!("rolling {} back to release v{to}", self.stage);
        gate(
            "rollback.data_loss",
            &what,
            &rollback.blockers,
            rollback.forced,
        )?;
        let (forced, forced_blockers) = force(rollback.forced, rollback.blockers);
        Ok(self.release_created(
            self.app.clone(),
            self.stage.clone(),
            pb::Release {
                image_digest: target.image_digest.clone(),
                revision: target.revision,
                build_id: target.build_id.clone(),
                origin: ReleaseOrigin::Rollback.into(),
                rolled_back_to: to,
                config: Some(config),
                forced,
                forced_blockers,
                data_changes: rollback.data_changes,
                ..Default::default()
            },
        ))
    }

    /// The configuration a rollback to `target` runs with: the stage's settings now, and the
    /// secrets `target` recorded at the versions it recorded. Only the newest version of a
    /// secret is kept, so a secret changed or removed since then refuses the rollback
    /// (`rollback.secret_versions`) rather than run the old release with values it never had.
    fn rollback_config(&self, target: &pb::Release) -> Result<pb::StageConfig, Rejection> {
        let now = self.config.clone().unwrap_or_default();
        let recorded = target
            .config
            .as_ref()
            .map(|c| c.secrets.clone())
            .unwrap_or_default();
        let mut changed: Vec<String> = recorded
            .iter()
            .filter_map(|(name, &version)| match now.secrets.get(name) {
                Some(&current) if current == version => None,
                Some(&current) => Some(format!("{name} (v{version} then, v{current} now)")),
                None => Some(format!("{name} (v{version} then, removed since)")),
            })
            .collect();
        changed.sort();
        if !changed.is_empty() {
            return Err(Rejection::precondition(
                "rollback.secret_versions",
                format_args!(
                    "release v{} ran with secrets that changed since: {}; only the newest \
                     value of a secret is kept, so it cannot run as it did (set the secrets \
                     back, or deploy a new release)",
                    target.number,
                    changed.join(", ")
                ),
            ));
        }
        Ok(pb::StageConfig {
            settings: now.settings,
            secrets: recorded,
        })
    }

    fn record_rollout(&self, record: pb::RecordRollout) -> Result<Event, Rejection> {
        let status = RolloutStatus::try_from(record.status);
        if !matches!(status, Ok(RolloutStatus::Succeeded | RolloutStatus::Failed)) {
            return Err(Rejection::invalid(
                "rollout.status",
                "record_rollout.status",
                format_args!(
                    "a rollout is recorded as succeeded or failed, not as status {}",
                    record.status
                ),
            ));
        }
        let release = self.release(record.release)?;
        let recorded = matches!(
            RolloutStatus::try_from(release.rollout),
            Ok(RolloutStatus::Succeeded | RolloutStatus::Failed)
        );
        if recorded {
            return Err(Rejection::precondition(
                "rollout.recorded",
                format_args!(
                    "the rollout of release v{} is already recorded as {}",
                    release.number,
                    rollout_name(release.rollout)
                ),
            ));
        }
        Ok(Event::RolloutRecorded(pb::RolloutRecorded {
            release: record.release,
            status: record.status,
            reason: record.reason,
        }))
    }

    /// Checks the command's app and stage, and that they are this deployment's.
    fn check_target(&self, verb: &str, app: &str, stage: &str) -> Result<(), Rejection> {
        check_name("deployment.app", &format!("{verb}.app"), "app", app)?;
        check_name("deployment.stage", &format!("{verb}.stage"), "stage", stage)?;
        if self.app.is_empty() {
            return Ok(());
        }
        let field = if app != self.app {
            "app"
        } else if stage != self.stage {
            "stage"
        } else {
            return Ok(());
        };
        Err(Rejection::invalid(
            "deployment.target_mismatch",
            format!("{verb}.{field}"),
            format_args!(
                "this is the deployment of app {} to stage {}, not of app {app} to stage {stage}",
                self.app, self.stage
            ),
        ))
    }

    fn current_release(&self) -> Option<&pb::Release> {
        self.releases.iter().find(|r| r.number == self.current)
    }

    fn release(&self, number: u32) -> Result<&pb::Release, Rejection> {
        self.releases
            .iter()
            .find(|r| r.number == number)
            .ok_or_else(|| {
                Rejection::not_found(
                    "release.not_found",
                    format_args!("there is no release v{number}"),
                )
            })
    }

    /// A new pending release, numbered after the last one, running `release.config` if given,
    /// else the stage's configuration now.
    fn release_created(&self, app: String, stage: String, mut release: pb::Release) -> Event {
        let number = u32::try_from(self.releases.len() + 1).unwrap_or(u32::MAX);
        let config = release
            .config
            .take()
            .unwrap_or_else(|| self.config.clone().unwrap_or_default());
        Event::ReleaseCreated(pb::ReleaseCreated {
            app,
            stage,
            release: Some(pb::Release {
                number,
                rollout: RolloutStatus::Pending.into(),
                config: Some(config),
                ..release
            }),
        })
    }
}

/// Checks the fields of a promotion's source release.
fn check_source(source: &pb::ReleaseRef) -> Result<(), Rejection> {
    let positive = |field: &str, value: u32| {
        if value == 0 {
            Err(Rejection::invalid(
                "promotion.source",
                format!("promote.source.{field}"),
                format_args!("the source release's {field} must be from 1"),
            ))
        } else {
            Ok(())
        }
    };
    positive("number", source.number)?;
    positive("revision", source.revision)?;
    check_present(
        "promotion.source",
        "promote.source.build_id",
        &source.build_id,
    )?;
    check_digest(
        "promotion.source",
        "promote.source.image_digest",
        &source.image_digest,
    )
}

/// A rollout status's lowercase name, for messages.
fn rollout_name(status: i32) -> &'static str {
    match RolloutStatus::try_from(status) {
        Ok(RolloutStatus::Pending) => "pending",
        Ok(RolloutStatus::Succeeded) => "succeeded",
        Ok(RolloutStatus::Failed) => "failed",
        Ok(RolloutStatus::Unspecified) | Err(_) => "unspecified",
    }
}

pub mod canary;
pub mod config;

#[cfg(test)]
mod tests;
