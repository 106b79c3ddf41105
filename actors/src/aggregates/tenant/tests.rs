//! Given/when/then tests of the tenant aggregate.

use neo_protocol::pb::{self, Role, tenant_command::Command, tenant_event::Event};

use crate::aggregate::testing::{assert_refused, given, when};
use crate::aggregate::{Aggregate, Rejection, RejectionCode};
use crate::aggregates::fixtures::accept_all;

type State = pb::TenantState;

fn cmd(command: Command) -> pb::TenantCommand {
    pb::TenantCommand {
        command: Some(command),
    }
}

fn ev(event: Event) -> pb::TenantEvent {
    pb::TenantEvent { event: Some(event) }
}

fn run(
    events: impl IntoIterator<Item = pb::TenantEvent>,
    command: Command,
) -> Result<Vec<pb::TenantEvent>, Rejection> {
    when::<State>(events, cmd(command))
}

fn create(stages: &[&str], admin: &str) -> Command {
    Command::Create(pb::CreateTenant {
        display_name: "Acme".into(),
        stages: stages.iter().map(|s| s.to_string()).collect(),
        admin: admin.into(),
    })
}

fn created(stages: &[&str]) -> pb::TenantEvent {
    ev(Event::Created(pb::TenantCreated {
        display_name: "Acme".into(),
        stages: stages.iter().map(|s| s.to_string()).collect(),
    }))
}

fn member_set(user: &str, role: Role) -> pb::TenantEvent {
    ev(Event::MemberSet(pb::MemberSet {
        user: user.into(),
        role: role.into(),
    }))
}

fn suspended() -> pb::TenantEvent {
    ev(Event::Suspended(pb::TenantSuspended {
        reason: "unpaid".into(),
    }))
}

/// A tenant with the default stages and `alice` as its only admin.
fn acme() -> Vec<pb::TenantEvent> {
    vec![
        created(&["dev", "test", "prod"]),
        member_set("alice", Role::Admin),
    ]
}

fn add_stage(name: &str, after: &str) -> Command {
    Command::AddStage(pb::AddStage {
        name: name.into(),
        after: after.into(),
    })
}

fn remove_stage(name: &str) -> Command {
    Command::RemoveStage(pb::RemoveStage { name: name.into() })
}

fn set_member(user: &str, role: i32) -> Command {
    Command::SetMember(pb::SetMember {
        user: user.into(),
        role,
    })
}

fn remove_member(user: &str) -> Command {
    Command::RemoveMember(pb::RemoveMember { user: user.into() })
}

fn quota() -> pb::Quota {
    pb::Quota {
        max_apps: 10,
        max_replicas_per_app: 5,
    }
}

fn every_command_but_create() -> Vec<Command> {
    vec![
        add_stage("qa", ""),
        remove_stage("dev"),
        set_member("bob", Role::Viewer.into()),
        remove_member("alice"),
        Command::SetQuota(pb::SetQuota {
            quota: Some(quota()),
        }),
        Command::Suspend(pb::SuspendTenant { reason: "x".into() }),
        Command::Resume(pb::ResumeTenant {}),
    ]
}

fn stages(state: &State) -> Vec<&str> {
    state.stages.iter().map(String::as_str).collect()
}

// ---- create ----

#[test]
fn create_without_stages_defaults_to_dev_test_prod() {
    let events = run([], create(&[], "")).expect("accepted");
    assert_eq!(events, vec![created(&["dev", "test", "prod"])]);
}

#[test]
fn create_keeps_the_given_stage_order() {
    let events = run([], create(&["build", "live"], "")).expect("accepted");
    assert_eq!(events, vec![created(&["build", "live"])]);
}

#[test]
fn create_with_an_admin_also_sets_the_admin_in_the_same_commit() {
    let events = run([], create(&[], "alice")).expect("accepted");
    assert_eq!(events, acme());
}

#[test]
fn create_twice_is_refused() {
    let refused = run(acme(), create(&[], ""));
    assert_eq!(
        refused.clone().map_err(|r| r.code),
        Err(RejectionCode::AlreadyExists)
    );
    assert_refused(refused, "tenant.exists");
}

#[test]
fn create_refuses_an_invalid_stage_name_naming_the_field() {
    let r = run([], create(&["dev", "Te st"], "")).expect_err("refused");
    assert_eq!(r.rule, "stage.name");
    assert_eq!(r.code, RejectionCode::InvalidArgument);
    assert_eq!(r.field.as_deref(), Some("create.stages[1]"));
}

#[test]
fn create_refuses_a_stage_listed_twice() {
    let r = run([], create(&["dev", "prod", "dev"], "")).expect_err("refused");
    assert_eq!(r.rule, "stage.unique");
    assert_eq!(r.field.as_deref(), Some("create.stages[2]"));
}

#[test]
fn create_refuses_a_display_name_over_200_characters() {
    let named = |n: usize| {
        Command::Create(pb::CreateTenant {
            display_name: "é".repeat(n),
            ..Default::default()
        })
    };
    assert!(run([], named(200)).is_ok());
    assert_refused(run([], named(201)), "tenant.display_name");
}

#[test]
fn create_refuses_a_malformed_admin() {
    assert_refused(run([], create(&[], "al ice")), "member.user");
    assert_refused(run([], create(&[], "al\u{7}ice")), "member.user");
    assert_refused(run([], create(&[], &"a".repeat(129))), "member.user");
    assert!(run([], create(&[], &"a".repeat(128))).is_ok());
}

// ---- existence and suspension ----

#[test]
fn every_other_command_needs_the_tenant() {
    for command in every_command_but_create() {
        let r = run([], command).expect_err("refused");
        assert_eq!(r.rule, "tenant.not_found");
        assert_eq!(r.code, RejectionCode::NotFound);
    }
}

#[test]
fn a_suspended_tenant_refuses_everything_but_resume() {
    let mut given_events = acme();
    given_events.push(suspended());
    for command in every_command_but_create() {
        let resume = matches!(command, Command::Resume(_));
        let result = run(given_events.clone(), command);
        if resume {
            assert_eq!(
                result.expect("resume accepted"),
                vec![ev(Event::Resumed(pb::TenantResumed {}))]
            );
        } else {
            assert_refused(result, "tenant.suspended");
        }
    }
}

#[test]
fn suspend_then_resume() {
    let events = run(
        acme(),
        Command::Suspend(pb::SuspendTenant {
            reason: "unpaid".into(),
        }),
    )
    .expect("accepted");
    assert_eq!(events, vec![suspended()]);
    let mut state: State = given(acme());
    state.apply(&events[0]);
    assert!(state.suspended);
    assert_eq!(state.suspension_reason, "unpaid");
    state.apply(&ev(Event::Resumed(pb::TenantResumed {})));
    assert!(!state.suspended);
    assert_eq!(state.suspension_reason, "");
}

#[test]
fn resume_refuses_a_tenant_that_is_not_suspended() {
    let r = run(acme(), Command::Resume(pb::ResumeTenant {})).expect_err("refused");
    assert_eq!(r.rule, "tenant.not_suspended");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

#[test]
fn a_command_without_an_operation_is_refused() {
    let r = when::<State>(acme(), pb::TenantCommand { command: None }).expect_err("refused");
    assert_eq!(r.rule, "command.missing");
    assert_eq!(r.field.as_deref(), Some("command"));
}

// ---- stages ----

#[test]
fn add_stage_with_empty_after_goes_first() {
    let events = run(acme(), add_stage("sandbox", "")).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::StageAdded(pb::StageAdded {
            name: "sandbox".into(),
            position: 0,
        }))]
    );
    let mut state: State = given(acme());
    state.apply(&events[0]);
    assert_eq!(stages(&state), ["sandbox", "dev", "test", "prod"]);
}

#[test]
fn add_stage_goes_right_after_the_named_stage() {
    let events = run(acme(), add_stage("qa", "test")).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::StageAdded(pb::StageAdded {
            name: "qa".into(),
            position: 2,
        }))]
    );
    let mut state: State = given(acme());
    state.apply(&events[0]);
    assert_eq!(stages(&state), ["dev", "test", "qa", "prod"]);
}

#[test]
fn add_stage_after_an_unknown_stage_is_refused() {
    let r = run(acme(), add_stage("qa", "staging")).expect_err("refused");
    assert_eq!(r.rule, "stage.not_found");
    assert_eq!(r.code, RejectionCode::NotFound);
}

#[test]
fn add_stage_refuses_an_existing_or_invalid_name() {
    assert_refused(run(acme(), add_stage("test", "dev")), "stage.unique");
    let r = run(acme(), add_stage("q.a", "dev")).expect_err("refused");
    assert_eq!(r.rule, "stage.name");
    assert_eq!(r.field.as_deref(), Some("add_stage.name"));
}

#[test]
fn a_stage_added_past_the_end_is_clamped_to_the_end() {
    let mut state: State = given(acme());
    state.apply(&ev(Event::StageAdded(pb::StageAdded {
        name: "edge".into(),
        position: 99,
    })));
    assert_eq!(stages(&state), ["dev", "test", "prod", "edge"]);
}

#[test]
fn remove_a_stage() {
    let events = run(acme(), remove_stage("test")).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::StageRemoved(pb::StageRemoved {
            name: "test".into()
        }))]
    );
    let mut state: State = given(acme());
    state.apply(&events[0]);
    assert_eq!(stages(&state), ["dev", "prod"]);
}

#[test]
fn remove_stage_refuses_an_unknown_stage() {
    assert_refused(run(acme(), remove_stage("qa")), "stage.not_found");
}

#[test]
fn remove_stage_refuses_the_last_stage() {
    let r = run([created(&["prod"])], remove_stage("prod")).expect_err("refused");
    assert_eq!(r.rule, "stage.last");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

// ---- members ----

#[test]
fn set_member_adds_and_changes_roles() {
    let events = run(acme(), set_member("bob", Role::Developer.into())).expect("accepted");
    assert_eq!(events, vec![member_set("bob", Role::Developer)]);
    let mut given_events = acme();
    given_events.extend(events);
    let events = run(given_events, set_member("bob", Role::Devops.into())).expect("accepted");
    assert_eq!(events, vec![member_set("bob", Role::Devops)]);
}

#[test]
fn set_member_refuses_an_unspecified_or_unknown_role() {
    for role in [Role::Unspecified.into(), 99, -1] {
        let r = run(acme(), set_member("bob", role)).expect_err("refused");
        assert_eq!(r.rule, "member.role");
        assert_eq!(r.field.as_deref(), Some("set_member.role"));
    }
}

#[test]
fn set_member_refuses_a_malformed_user() {
    assert_refused(
        run(acme(), set_member("", Role::Viewer.into())),
        "member.user",
    );
    assert_refused(
        run(acme(), set_member("b ob", Role::Viewer.into())),
        "member.user",
    );
}

#[test]
fn set_member_refuses_the_role_the_member_already_has() {
    let r = run(acme(), set_member("alice", Role::Admin.into())).expect_err("refused");
    assert_eq!(r.rule, "member.unchanged");
    assert!(r.message.contains("admin"), "{r}");
}

#[test]
fn set_member_refuses_demoting_the_last_admin() {
    assert_refused(
        run(acme(), set_member("alice", Role::Viewer.into())),
        "member.last_admin",
    );
    let mut two_admins = acme();
    two_admins.push(member_set("bob", Role::Admin));
    assert!(run(two_admins, set_member("alice", Role::Viewer.into())).is_ok());
}

#[test]
fn remove_a_member() {
    let mut given_events = acme();
    given_events.push(member_set("bob", Role::Viewer));
    let events = run(given_events.clone(), remove_member("bob")).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::MemberRemoved(pb::MemberRemoved {
            user: "bob".into()
        }))]
    );
    let mut state: State = given(given_events);
    state.apply(&events[0]);
    assert!(!state.members.contains_key("bob"));
}

#[test]
fn remove_member_refuses_a_non_member() {
    let r = run(acme(), remove_member("carol")).expect_err("refused");
    assert_eq!(r.rule, "member.not_found");
    assert_eq!(r.code, RejectionCode::NotFound);
}

#[test]
fn remove_member_refuses_the_last_admin() {
    assert_refused(run(acme(), remove_member("alice")), "member.last_admin");
    let mut two_admins = acme();
    two_admins.push(member_set("bob", Role::Admin));
    assert!(run(two_admins, remove_member("alice")).is_ok());
}

// ---- quota ----

#[test]
fn set_quota() {
    let events = run(
        acme(),
        Command::SetQuota(pb::SetQuota {
            quota: Some(quota()),
        }),
    )
    .expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::QuotaSet(pb::QuotaSet {
            quota: Some(quota())
        }))]
    );
}

#[test]
fn set_quota_refuses_a_missing_quota() {
    let r = run(acme(), Command::SetQuota(pb::SetQuota { quota: None })).expect_err("refused");
    assert_eq!(r.rule, "quota.missing");
    assert_eq!(r.field.as_deref(), Some("set_quota.quota"));
}

// ---- folding ----

#[test]
fn folding_accepted_commands_gives_the_expected_state() {
    let (state, events) = accept_all::<State>(
        [
            create(&[], "alice"),
            add_stage("qa", "test"),
            remove_stage("dev"),
            set_member("bob", Role::Admin.into()),
            set_member("carol", Role::Developer.into()),
            remove_member("alice"),
            Command::SetQuota(pb::SetQuota {
                quota: Some(quota()),
            }),
            Command::Suspend(pb::SuspendTenant {
                reason: "audit".into(),
            }),
            Command::Resume(pb::ResumeTenant {}),
        ]
        .map(cmd),
    );
    assert_eq!(events.len(), 10);
    let expected = State {
        exists: true,
        display_name: "Acme".into(),
        stages: vec!["test".into(), "qa".into(), "prod".into()],
        members: [
            ("bob".to_owned(), Role::Admin.into()),
            ("carol".to_owned(), Role::Developer.into()),
        ]
        .into(),
        quota: Some(quota()),
        suspended: false,
        suspension_reason: String::new(),
        deleted: false,
    };
    assert_eq!(state, expected);
    assert_eq!(given::<State>(events), expected);
}

#[test]
fn an_unknown_event_leaves_the_state_unchanged() {
    let before: State = given(acme());
    let mut after = before.clone();
    let unknown = pb::TenantEvent { event: None };
    after.apply(&unknown);
    assert_eq!(after, before);
    assert_eq!(State::event_type(&unknown), "Unknown");
}

#[test]
fn event_types_are_the_event_message_names() {
    let names: Vec<_> = [
        created(&["dev"]),
        ev(Event::StageAdded(Default::default())),
        ev(Event::StageRemoved(Default::default())),
        member_set("a", Role::Viewer),
        ev(Event::MemberRemoved(Default::default())),
        ev(Event::QuotaSet(Default::default())),
        suspended(),
        ev(Event::Resumed(Default::default())),
    ]
    .iter()
    .map(State::event_type)
    .collect();
    assert_eq!(
        names,
        [
            "TenantCreated",
            "StageAdded",
            "StageRemoved",
            "MemberSet",
            "MemberRemoved",
            "QuotaSet",
            "TenantSuspended",
            "TenantResumed"
        ]
    );
}

#[test]
fn a_deleted_tenant_is_gone_for_good() {
    let created = ev(Event::Created(pb::TenantCreated {
        display_name: "Acme".into(),
        stages: vec!["dev".into()],
    }));
    let delete = || pb::TenantCommand {
        command: Some(Command::Delete(pb::DeleteTenant {
            reason: "closed".into(),
        })),
    };
    let deleted = when::<State>([created.clone()], delete()).expect("accepted");
    let mut events = vec![created];
    events.extend(deleted);
    let state: State = given(events.clone());
    assert!(!state.exists && state.deleted);
    assert_refused(when::<State>(events.clone(), delete()), "tenant.not_found");
    let recreate = pb::TenantCommand {
        command: Some(Command::Create(pb::CreateTenant::default())),
    };
    assert_refused(when::<State>(events, recreate), "tenant.deleted");
}
