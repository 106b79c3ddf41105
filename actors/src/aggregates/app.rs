//! The app aggregate: the app and its immutable revisions, numbered 1, 2, 3…
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `command.missing` | invalid | the command names no operation |
//! | `app.exists` | already exists | create, but the app exists |
//! | `app.description` | invalid | description longer than 1000 characters |
//! | `app.not_found` | not found | a revision or archive before create |
//! | `app.archived` | precondition | a revision of, or archiving, an archived app |
//! | `revision.digest` | invalid | the model digest is not `sha256:` + 64 lowercase hex |
//! | `revision.author` | invalid | the author is empty |
//! | `revision.unchanged` | precondition | the digest equals the latest revision's |
//! | `dependency.producer_app` | invalid | a dependency's producer is not a valid app name |
//! | `dependency.entity` | invalid | a dependency names no entity |
//! | `dependency.producer_revision` | invalid | a dependency's producer revision is 0 |
//! | `dependency.unique` | invalid | two dependencies on the same producer entity |

use std::ops::Deref;

use neo_protocol::EntityKind;
use neo_protocol::pb::{self, app_command::Command, app_event::Event};

use super::{check_digest, check_max_chars, check_name, check_present, missing_command};
use crate::aggregate::{Aggregate, Rejection};

/// The longest description accepted.
pub const MAX_DESCRIPTION_CHARS: usize = 1000;

impl Aggregate for pb::AppState {
    const KIND: EntityKind = EntityKind::App;
    type Command = pb::AppCommand;
    type Event = pb::AppEvent;

    fn handle(&self, command: pb::AppCommand) -> Result<Vec<pb::AppEvent>, Rejection> {
        let Some(command) = command.command else {
            return Err(missing_command("app"));
        };
        let rules = Rules(self);
        let event = match command {
            Command::Create(create) => {
                if self.exists {
                    return Err(Rejection::already_exists(
                        "app.exists",
                        "the app already exists",
                    ));
                }
                check_max_chars(
                    "app.description",
                    "create.description",
                    &create.description,
                    MAX_DESCRIPTION_CHARS,
                )?;
                Event::Created(pb::AppCreated {
                    description: create.description,
                })
            }
            Command::CreateRevision(create) => rules.live()?.create_revision(create)?,
            Command::Archive(archive) => {
                rules.live()?;
                Event::Archived(pb::AppArchived {
                    reason: archive.reason,
                })
            }
        };
        Ok(vec![pb::AppEvent { event: Some(event) }])
    }

    fn apply(&mut self, event: &pb::AppEvent) {
        let Some(event) = &event.event else { return };
        match event {
            Event::Created(e) => {
                self.exists = true;
                self.description.clone_from(&e.description);
            }
            Event::RevisionCreated(e) => {
                if let Some(revision) = &e.revision {
                    self.revisions.push(revision.clone());
                }
            }
            Event::Archived(_) => self.archived = true,
        }
    }

    fn event_type(event: &pb::AppEvent) -> &'static str {
        match &event.event {
            Some(Event::Created(_)) => "AppCreated",
            Some(Event::RevisionCreated(_)) => "RevisionCreated",
            Some(Event::Archived(_)) => "AppArchived",
            None => crate::aggregate::UNKNOWN_EVENT,
        }
    }
}

/// The state as the rules below see it: a view, since a foreign type takes no inherent impl.
struct Rules<'a>(&'a pb::AppState);

impl Deref for Rules<'_> {
    type Target = pb::AppState;

    fn deref(&self) -> &pb::AppState {
        self.0
    }
}

impl Rules<'_> {
    /// The app, if it exists and is not archived.
    fn live(&self) -> Result<&Self, Rejection> {
        if !self.exists {
            return Err(Rejection::not_found(
                "app.not_found",
                "the app does not exist",
            ));
        }
        if self.archived {
            return Err(Rejection::precondition(
                "app.archived",
                "the app is archived",
            ));
        }
        Ok(self)
    }

    fn create_revision(&self, create: pb::CreateRevision) -> Result<Event, Rejection> {
        check_digest("revision.digest", "create_revision.digest", &create.digest)?;
        check_present("revision.author", "create_revision.author", &create.author)?;
        for (i, dep) in create.dependencies.iter().enumerate() {
            let field = |name: &str| format!("create_revision.dependencies[{i}].{name}");
            check_name(
                "dependency.producer_app",
                &field("producer_app"),
                "app",
                &dep.producer_app,
            )?;
            check_present("dependency.entity", &field("entity"), &dep.entity)?;
            if dep.producer_revision == 0 {
                return Err(Rejection::invalid(
                    "dependency.producer_revision",
                    field("producer_revision"),
                    "a dependency is resolved to a producer revision from 1",
                ));
            }
            let twice = create.dependencies[..i]
                .iter()
                .any(|d| d.producer_app == dep.producer_app && d.entity == dep.entity);
            if twice {
                return Err(Rejection::invalid(
                    "dependency.unique",
                    field("entity"),
                    format_args!(
                        "entity `{}` of app `{}` is listed twice",
                        dep.entity, dep.producer_app
                    ),
                ));
            }
        }
        if let Some(latest) = self.revisions.last()
            && latest.digest == create.digest
        {
            return Err(Rejection::precondition(
                "revision.unchanged",
                format_args!("revision {} already has this content", latest.number),
            ));
        }
        let number = u32::try_from(self.revisions.len() + 1).unwrap_or(u32::MAX);
        Ok(Event::RevisionCreated(pb::RevisionCreated {
            revision: Some(pb::Revision {
                number,
                digest: create.digest,
                size: create.size,
                author: create.author,
                message: create.message,
                dependencies: create.dependencies,
                deploy_to: create.deploy_to,
            }),
        }))
    }
}

#[cfg(test)]
mod tests;
