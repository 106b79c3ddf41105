//! The tenant aggregate: stages in promotion order, members and roles, quota, suspension.
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `command.missing` | invalid | the command names no operation |
//! | `tenant.exists` | already exists | create, but the tenant exists |
//! | `tenant.display_name` | invalid | display name longer than 200 characters |
//! | `stage.name` | invalid | a stage name is not a valid name |
//! | `stage.unique` | invalid | a stage name occurs twice |
//! | `member.user` | invalid | a user name is empty, too long or holds whitespace |
//! | `tenant.not_found` | not found | any other command before create |
//! | `tenant.suspended` | precondition | any command but resume on a suspended tenant |
//! | `tenant.not_suspended` | precondition | resume a tenant that is not suspended |
//! | `stage.not_found` | not found | add after, or remove, a stage that does not exist |
//! | `stage.last` | precondition | remove the only stage |
//! | `member.role` | invalid | the role is unspecified or unknown |
//! | `member.unchanged` | precondition | set a member to the role they have |
//! | `member.not_found` | not found | remove a user who is not a member |
//! | `member.last_admin` | precondition | remove, or demote, the last admin |
//! | `quota.missing` | invalid | set quota without a quota |
//! | `tenant.deleted` | precondition | create a tenant under the name of a deleted one |
//!
//! Delete works on a suspended tenant too; afterwards the tenant no longer exists (every other
//! command is `tenant.not_found`) and its name is never reused.

use std::ops::Deref;

use neo_protocol::EntityKind;
use neo_protocol::pb::{self, Role, tenant_command::Command, tenant_event::Event};

use super::{check_max_chars, check_name, missing_command, shown};
use crate::aggregate::{Aggregate, Rejection};

/// The stages of a tenant created without any, in promotion order.
pub const DEFAULT_STAGES: [&str; 3] = ["dev", "test", "prod"];
/// The longest display name accepted.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// The longest user name accepted.
pub const MAX_USER_CHARS: usize = 128;

impl Aggregate for pb::TenantState {
    const KIND: EntityKind = EntityKind::Tenant;
    type Command = pb::TenantCommand;
    type Event = pb::TenantEvent;

    fn handle(&self, command: pb::TenantCommand) -> Result<Vec<pb::TenantEvent>, Rejection> {
        let Some(command) = command.command else {
            return Err(missing_command("tenant"));
        };
        let rules = Rules(self);
        let event = match command {
            Command::Create(create) => return rules.create(create),
            Command::AddStage(add) => rules.active()?.add_stage(add)?,
            Command::RemoveStage(remove) => rules.active()?.remove_stage(remove)?,
            Command::SetMember(set) => rules.active()?.set_member(set)?,
            Command::RemoveMember(remove) => rules.active()?.remove_member(remove)?,
            Command::SetQuota(set) => {
                rules.active()?;
                let Some(quota) = set.quota else {
                    return Err(Rejection::invalid(
                        "quota.missing",
                        "set_quota.quota",
                        "set_quota needs a quota",
                    ));
                };
                Event::QuotaSet(pb::QuotaSet { quota: Some(quota) })
            }
            Command::Suspend(suspend) => {
                rules.active()?;
                Event::Suspended(pb::TenantSuspended {
                    reason: suspend.reason,
                })
            }
            Command::Resume(_) => {
                rules.existing()?;
                if !self.suspended {
                    return Err(Rejection::precondition(
                        "tenant.not_suspended",
                        "the tenant is not suspended",
                    ));
                }
                Event::Resumed(pb::TenantResumed {})
            }
            Command::Delete(delete) => {
                rules.existing()?;
                Event::Deleted(pb::TenantDeleted {
                    reason: delete.reason,
                })
            }
        };
        Ok(vec![wrap(event)])
    }

    fn apply(&mut self, event: &pb::TenantEvent) {
        let Some(event) = &event.event else { return };
        match event {
            Event::Created(e) => {
                self.exists = true;
                self.display_name.clone_from(&e.display_name);
                self.stages.clone_from(&e.stages);
            }
            Event::StageAdded(e) => {
                let at = usize::try_from(e.position)
                    .unwrap_or(usize::MAX)
                    .min(self.stages.len());
                self.stages.insert(at, e.name.clone());
            }
            Event::StageRemoved(e) => self.stages.retain(|s| s != &e.name),
            Event::MemberSet(e) => {
                self.members.insert(e.user.clone(), e.role);
            }
            Event::MemberRemoved(e) => {
                self.members.remove(&e.user);
            }
            Event::QuotaSet(e) => self.quota = e.quota,
            Event::Suspended(e) => {
                self.suspended = true;
                self.suspension_reason.clone_from(&e.reason);
            }
            Event::Resumed(_) => {
                self.suspended = false;
                self.suspension_reason.clear();
            }
            Event::Deleted(_) => {
                *self = pb::TenantState {
                    deleted: true,
                    ..Default::default()
                };
            }
        }
    }

    fn event_type(event: &pb::TenantEvent) -> &'static str {
        match &event.event {
            Some(Event::Created(_)) => "TenantCreated",
            Some(Event::StageAdded(_)) => "StageAdded",
            Some(Event::StageRemoved(_)) => "StageRemoved",
            Some(Event::MemberSet(_)) => "MemberSet",
            Some(Event::MemberRemoved(_)) => "MemberRemoved",
            Some(Event::QuotaSet(_)) => "QuotaSet",
            Some(Event::Suspended(_)) => "TenantSuspended",
            Some(Event::Resumed(_)) => "TenantResumed",
            Some(Event::Deleted(_)) => "TenantDeleted",
            None => crate::aggregate::UNKNOWN_EVENT,
        }
    }
}

/// The state as the rules below see it: a view, since a foreign type takes no inherent impl.
struct Rules<'a>(&'a pb::TenantState);

impl Deref for Rules<'_> {
    type Target = pb::TenantState;

    fn deref(&self) -> &pb::TenantState {
        self.0
    }
}

impl Rules<'_> {
    /// The tenant, if it exists.
    fn existing(&self) -> Result<&Self, Rejection> {
        if self.exists {
            Ok(self)
        } else {
            Err(Rejection::not_found(
                "tenant.not_found",
                "the tenant does not exist",
            ))
        }
    }

    /// The tenant, if it exists and is not suspended.
    fn active(&self) -> Result<&Self, Rejection> {
        if self.existing()?.suspended {
            return Err(Rejection::precondition(
                "tenant.suspended",
                if self.suspension_reason.is_empty() {
                    "the tenant is suspended".to_owned()
                } else {
                    format!("the tenant is suspended: {}", self.suspension_reason)
                },
            ));
        }
        Ok(self)
    }

    fn create(&self, create: pb::CreateTenant) -> Result<Vec<pb::TenantEvent>, Rejection> {
        if self.exists {
            return Err(Rejection::already_exists(
                "tenant.exists",
                "the tenant already exists",
            ));
        }
        if self.deleted {
            return Err(Rejection::precondition(
                "tenant.deleted",
                "a tenant of this name was deleted; names of deleted tenants are not reused",
            ));
        }
        check_max_chars(
            "tenant.display_name",
            "create.display_name",
            &create.display_name,
            MAX_DISPLAY_NAME_CHARS,
        )?;
        let stages = if create.stages.is_empty() {
            DEFAULT_STAGES.map(str::to_owned).to_vec()
        } else {
            create.stages
        };
        for (i, stage) in stages.iter().enumerate() {
            let field = format!("create.stages[{i}]");
            check_name("stage.name", &field, "stage", stage)?;
            if stages[..i].contains(stage) {
                return Err(Rejection::invalid(
                    "stage.unique",
                    field,
                    format_args!("stage `{stage}` is listed twice"),
                ));
            }
        }
        let mut events = vec![wrap(Event::Created(pb::TenantCreated {
            display_name: create.display_name,
            stages,
        }))];
        if !create.admin.is_empty() {
            check_user("create.admin", &create.admin)?;
            events.push(wrap(Event::MemberSet(pb::MemberSet {
                user: create.admin,
                role: Role::Admin.into(),
            })));
        }
        Ok(events)
    }

    fn add_stage(&self, add: pb::AddStage) -> Result<Event, Rejection> {
        check_name("stage.name", "add_stage.name", "stage", &add.name)?;
        if self.stages.contains(&add.name) {
            return Err(Rejection::invalid(
                "stage.unique",
                "add_stage.name",
                format_args!("the tenant already has stage `{}`", add.name),
            ));
        }
        let position = if add.after.is_empty() {
            0
        } else {
            self.stage_index(&add.after)? + 1
        };
        Ok(Event::StageAdded(pb::StageAdded {
            name: add.name,
            position: u32::try_from(position).unwrap_or(u32::MAX),
        }))
    }

    fn remove_stage(&self, remove: pb::RemoveStage) -> Result<Event, Rejection> {
        self.stage_index(&remove.name)?;
        if self.stages.len() <= 1 {
            return Err(Rejection::precondition(
                "stage.last",
                format_args!(
                    "stage `{}` is the tenant's only stage and cannot be removed",
                    remove.name
                ),
            ));
        }
        Ok(Event::StageRemoved(pb::StageRemoved { name: remove.name }))
    }

    fn set_member(&self, set: pb::SetMember) -> Result<Event, Rejection> {
        check_user("set_member.user", &set.user)?;
        let role = match Role::try_from(set.role) {
            Ok(role) if role != Role::Unspecified => role,
            _ => {
                return Err(Rejection::invalid(
                    "member.role",
                    "set_member.role",
                    format_args!("role {} is not a known role", set.role),
                ));
            }
        };
        let current = self.members.get(&set.user).copied();
        if current == Some(set.role) {
            return Err(Rejection::precondition(
                "member.unchanged",
                format_args!("`{}` already has role {}", set.user, role_name(set.role)),
            ));
        }
        if current == Some(Role::Admin.into()) && role != Role::Admin {
            self.refuse_last_admin(&set.user, "demoted")?;
        }
        Ok(Event::MemberSet(pb::MemberSet {
            user: set.user,
            role: role.into(),
        }))
    }

    fn remove_member(&self, remove: pb::RemoveMember) -> Result<Event, Rejection> {
        let Some(&role) = self.members.get(&remove.user) else {
            return Err(Rejection::not_found(
                "member.not_found",
                format_args!("`{}` is not a member of the tenant", shown(&remove.user)),
            ));
        };
        if role == i32::from(Role::Admin) {
            self.refuse_last_admin(&remove.user, "removed")?;
        }
        Ok(Event::MemberRemoved(pb::MemberRemoved {
            user: remove.user,
        }))
    }

    fn refuse_last_admin(&self, user: &str, what: &str) -> Result<(), Rejection> {
        let admins = self
            .members
            .values()
            .filter(|&&r| r == i32::from(Role::Admin))
            .count();
        if admins <= 1 {
            return Err(Rejection::precondition(
                "member.last_admin",
                format_args!("`{user}` is the tenant's last admin and cannot be {what}"),
            ));
        }
        Ok(())
    }

    fn stage_index(&self, name: &str) -> Result<usize, Rejection> {
        self.stages.iter().position(|s| s == name).ok_or_else(|| {
            Rejection::not_found(
                "stage.not_found",
                format_args!("the tenant has no stage `{}`", shown(name)),
            )
        })
    }
}

/// Where `stage` stands in the promotion order `stages` of `tenant`: 0 is the first stage. The
/// one refusal (`stage.not_found`, a failed precondition) for a release, a promotion or a
/// stage's configuration naming a stage the tenant lacks; reads answer not-found with its
/// message.
///
/// # Errors
/// When `stage` is not among `stages`.
pub fn stage_position(stages: &[String], tenant: &str, stage: &str) -> Result<usize, Rejection> {
    stages.iter().position(|s| s == stage).ok_or_else(|| {
        Rejection::precondition(
            "stage.not_found",
            format_args!(
                "`{}` is not a stage of tenant `{tenant}` (stages: {})",
                shown(stage),
                stages.join(", ")
            ),
        )
    })
}

/// Checks a user name: 1 to 128 characters, no whitespace or control characters.
fn check_user(field: &str, user: &str) -> Result<(), Rejection> {
    let len = user.chars().count();
    let reason = if len == 0 {
        "must not be empty"
    } else if len > MAX_USER_CHARS {
        "is longer than 128 characters"
    } else if user.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "must not hold whitespace or control characters"
    } else {
        return Ok(());
    };
    Err(Rejection::invalid(
        "member.user",
        field,
        format_args!("user `{}` {reason}", shown(user)),
    ))
}

/// A role's lowercase name, for messages.
fn role_name(role: i32) -> &'static str {
    match Role::try_from(role) {
        Ok(Role::Viewer) => "viewer",
        Ok(Role::Developer) => "developer",
        Ok(Role::Devops) => "devops",
        Ok(Role::Admin) => "admin",
        Ok(Role::Unspecified) | Err(_) => "unspecified",
    }
}

fn wrap(event: Event) -> pb::TenantEvent {
    pb::TenantEvent { event: Some(event) }
}

#[cfg(test)]
mod tests;
