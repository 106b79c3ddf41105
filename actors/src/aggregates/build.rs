//! The build aggregate: one app revision's build, retried in attempts, never rebuilt once it succeeded.
//!
//! The entity id is `{app}_r{revision}`. A build moves requested → started → succeeded, failed
//! or cancelled; a failed or cancelled build may be requested again as a new attempt.
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `command.missing` | invalid | the command names no operation |
//! | `build.app` | invalid | the request's app is not a valid name |
//! | `build.revision` | invalid | the request's revision is 0 |
//! | `build.revision_digest` | invalid | the request's model digest is malformed |
//! | `build.revision_mismatch` | invalid | the request names another app, revision or digest than the build's |
//! | `build.once` | precondition | a request for a build that succeeded |
//! | `build.in_progress` | precondition | a request while an attempt is requested or started |
//! | `build.not_found` | not found | any other command before a request |
//! | `build.worker` | invalid | start without a worker |
//! | `build.image_digest` | invalid | succeed with a malformed image digest |
//! | `build.reason` | invalid | fail without a reason |
//! | `build.transition` | precondition | the build's status does not allow the command (a start with `takeover` is allowed on a started build: its worker lost the lease) |
//! | `build.attempt` | precondition | the command names another attempt than the current one |

use std::fmt;

use std::ops::Deref;

use neo_protocol::EntityKind;
use neo_protocol::pb::{self, BuildStatus, build_command::Command, build_event::Event};

use super::{check_digest, check_name, check_present, missing_command};
use crate::aggregate::{Aggregate, Rejection};

impl Aggregate for pb::BuildState {
    const KIND: EntityKind = EntityKind::Build;
    type Command = pb::BuildCommand;
    type Event = pb::BuildEvent;

    fn handle(&self, command: pb::BuildCommand) -> Result<Vec<pb::BuildEvent>, Rejection> {
        let Some(command) = command.command else {
            return Err(missing_command("build"));
        };
        let rules = Rules(self);
        let event = match command {
            Command::Request(request) => rules.request(request)?,
            Command::Start(start) => {
                rules.existing()?;
                check_present("build.worker", "start.worker", &start.worker)?;
                if start.takeover {
                    rules
                        .transition("take over", &[BuildStatus::Requested, BuildStatus::Started])?;
                } else {
                    rules.transition("start", &[BuildStatus::Requested])?;
                }
                rules.same_attempt(start.attempt)?;
                Event::Started(pb::BuildStarted {
                    attempt: start.attempt,
                    worker: start.worker,
                    takeover: start.takeover,
                })
            }
            Command::Succeed(succeed) => {
                rules.existing()?;
                check_digest(
                    "build.image_digest",
                    "succeed.image_digest",
                    &succeed.image_digest,
                )?;
                rules.transition("succeed", &[BuildStatus::Started])?;
                rules.same_attempt(succeed.attempt)?;
                Event::Succeeded(pb::BuildSucceeded {
                    attempt: succeed.attempt,
                    image_digest: succeed.image_digest,
                    image_ref: succeed.image_ref,
                    dependencies: succeed.dependencies,
                    exposes: succeed.exposes,
                    needs: succeed.needs,
                    entities: succeed.entities,
                    deploy_to: self.deploy_to.clone(),
                    app: self.app.clone(),
                    revision: self.revision,
                })
            }
            Command::Fail(fail) => {
                rules.existing()?;
                check_present("build.reason", "fail.reason", &fail.reason)?;
                rules.transition("fail", &[BuildStatus::Requested, BuildStatus::Started])?;
                rules.same_attempt(fail.attempt)?;
                Event::Failed(pb::BuildFailed {
                    attempt: fail.attempt,
                    reason: fail.reason,
                    diagnostics: fail.diagnostics,
                })
            }
            Command::Cancel(cancel) => {
                rules.existing()?;
                rules.transition("cancel", &[BuildStatus::Requested, BuildStatus::Started])?;
                Event::Cancelled(pb::BuildCancelled {
                    attempt: self.attempt,
                    reason: cancel.reason,
                })
            }
        };
        Ok(vec![pb::BuildEvent { event: Some(event) }])
    }

    fn apply(&mut self, event: &pb::BuildEvent) {
        let Some(event) = &event.event else { return };
        match event {
            Event::Requested(e) => {
                self.app.clone_from(&e.app);
                self.revision = e.revision;
                self.revision_digest.clone_from(&e.revision_digest);
                self.set_status(BuildStatus::Requested);
                self.attempt = e.attempt;
                self.deploy_to.clone_from(&e.deploy_to);
                self.worker.clear();
                self.dependencies.clear();
                self.exposes.clear();
                self.entities.clear();
                self.image_digest.clear();
                self.image_ref.clear();
                self.reason.clear();
                self.diagnostics.clear();
            }
            Event::Started(e) => {
                self.set_status(BuildStatus::Started);
                self.attempt = e.attempt;
                self.worker.clone_from(&e.worker);
            }
            Event::Succeeded(e) => {
                self.set_status(BuildStatus::Succeeded);
                self.attempt = e.attempt;
                self.image_digest.clone_from(&e.image_digest);
                self.image_ref.clone_from(&e.image_ref);
                self.dependencies.clone_from(&e.dependencies);
                self.exposes.clone_from(&e.exposes);
                self.needs.clone_from(&e.needs);
                self.entities.clone_from(&e.entities);
            }
            Event::Failed(e) => {
                self.set_status(BuildStatus::Failed);
                self.attempt = e.attempt;
                self.reason.clone_from(&e.reason);
                self.diagnostics.clone_from(&e.diagnostics);
            }
            Event::Cancelled(e) => {
                self.set_status(BuildStatus::Cancelled);
                self.attempt = e.attempt;
                self.reason.clone_from(&e.reason);
            }
        }
    }

    fn event_type(event: &pb::BuildEvent) -> &'static str {
        match &event.event {
            Some(Event::Requested(_)) => "BuildRequested",
            Some(Event::Started(_)) => "BuildStarted",
            Some(Event::Succeeded(_)) => "BuildSucceeded",
            Some(Event::Failed(_)) => "BuildFailed",
            Some(Event::Cancelled(_)) => "BuildCancelled",
            None => crate::aggregate::UNKNOWN_EVENT,
        }
    }
}

/// The state as the rules below see it: a view, since a foreign type takes no inherent impl.
struct Rules<'a>(&'a pb::BuildState);

impl Deref for Rules<'_> {
    type Target = pb::BuildState;

    fn deref(&self) -> &pb::BuildState {
        self.0
    }
}

impl Rules<'_> {
    fn request(&self, request: pb::RequestBuild) -> Result<Event, Rejection> {
        check_name("build.app", "request.app", "app", &request.app)?;
        if request.revision == 0 {
            return Err(Rejection::invalid(
                "build.revision",
                "request.revision",
                "revisions are numbered from 1",
            ));
        }
        check_digest(
            "build.revision_digest",
            "request.revision_digest",
            &request.revision_digest,
        )?;
        if !self.app.is_empty() {
            let mismatch = |field: &str, ours: &dyn fmt::Display, theirs: &dyn fmt::Display| {
                Rejection::invalid(
                    "build.revision_mismatch",
                    field,
                    format_args!(
                        "this is the build of revision {} of app {}: {field} is `{ours}`, not `{theirs}`",
                        self.revision, self.app
                    ),
                )
            };
            if request.app != self.app {
                return Err(mismatch("request.app", &self.app, &request.app));
            }
            if request.revision != self.revision {
                return Err(mismatch(
                    "request.revision",
                    &self.revision,
                    &request.revision,
                ));
            }
            if request.revision_digest != self.revision_digest {
                return Err(mismatch(
                    "request.revision_digest",
                    &self.revision_digest,
                    &request.revision_digest,
                ));
            }
        }
        match self.status() {
            BuildStatus::Succeeded => Err(Rejection::precondition(
                "build.once",
                format_args!(
                    "revision {} of app {} is already built as image {}; a succeeded build is never rebuilt",
                    self.revision, self.app, self.image_digest
                ),
            )),
            BuildStatus::Requested | BuildStatus::Started => Err(Rejection::precondition(
                "build.in_progress",
                format_args!(
                    "attempt {} of this build is {}",
                    self.attempt,
                    status_name(self.status)
                ),
            )),
            BuildStatus::Unspecified | BuildStatus::Failed | BuildStatus::Cancelled => {
                Ok(Event::Requested(pb::BuildRequested {
                    app: request.app,
                    revision: request.revision,
                    revision_digest: request.revision_digest,
                    attempt: self.attempt.saturating_add(1),
                    deploy_to: request.deploy_to,
                }))
            }
        }
    }

    /// The build, if it was ever requested.
    fn existing(&self) -> Result<(), Rejection> {
        if self.status() == BuildStatus::Unspecified {
            return Err(Rejection::not_found(
                "build.not_found",
                "the build was never requested",
            ));
        }
        Ok(())
    }

    /// Refuses `verb` unless the status is one of `from`.
    fn transition(&self, verb: &str, from: &[BuildStatus]) -> Result<(), Rejection> {
        if from.contains(&self.status()) {
            return Ok(());
        }
        Err(Rejection::precondition(
            "build.transition",
            format_args!("build is {}, cannot {verb}", status_name(self.status)),
        ))
    }

    /// Refuses a command about another attempt than the current one.
    fn same_attempt(&self, attempt: u32) -> Result<(), Rejection> {
        if attempt == self.attempt {
            return Ok(());
        }
        Err(Rejection::precondition(
            "build.attempt",
            format_args!("the current attempt is {}, not {attempt}", self.attempt),
        ))
    }
}

/// A status's lowercase name, for messages.
pub fn status_name(status: i32) -> &'static str {
    match BuildStatus::try_from(status) {
        Ok(BuildStatus::Requested) => "requested",
        Ok(BuildStatus::Started) => "started",
        Ok(BuildStatus::Succeeded) => "succeeded",
        Ok(BuildStatus::Failed) => "failed",
        Ok(BuildStatus::Cancelled) => "cancelled",
        Ok(BuildStatus::Unspecified) => "not requested",
        Err(_) => "in an unknown status",
    }
}

#[cfg(test)]
mod tests;
