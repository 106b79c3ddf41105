//! Given/when/then tests of the app aggregate.

use neo_protocol::pb::{self, app_command::Command, app_event::Event};

use crate::aggregate::testing::{assert_refused, given, when};
use crate::aggregate::{Aggregate, Rejection, RejectionCode};
use crate::aggregates::fixtures::{accept_all, digest};

type State = pb::AppState;

fn cmd(command: Command) -> pb::AppCommand {
    pb::AppCommand {
        command: Some(command),
    }
}

fn ev(event: Event) -> pb::AppEvent {
    pb::AppEvent { event: Some(event) }
}

fn run(
    events: impl IntoIterator<Item = pb::AppEvent>,
    command: Command,
) -> Result<Vec<pb::AppEvent>, Rejection> {
    when::<State>(events, cmd(command))
}

fn create() -> Command {
    Command::Create(pb::CreateApp {
        description: "the shop".into(),
    })
}

fn created() -> pb::AppEvent {
    ev(Event::Created(pb::AppCreated {
        description: "the shop".into(),
    }))
}

fn archived() -> pb::AppEvent {
    ev(Event::Archived(pb::AppArchived {
        reason: "retired".into(),
    }))
}

fn dependency(producer_app: &str, entity: &str, producer_revision: u32) -> pb::Dependency {
    pb::Dependency {
        producer_app: producer_app.into(),
        entity: entity.into(),
        producer_revision,
        ..Default::default()
    }
}

fn create_revision(digest: &str) -> pb::CreateRevision {
    pb::CreateRevision {
        digest: digest.into(),
        size: 1234,
        author: "alice".into(),
        message: "first".into(),
        dependencies: vec![dependency("crm", "customer", 3)],
        ..Default::default()
    }
}

fn revision(number: u32, digest: &str) -> pb::Revision {
    let c = create_revision(digest);
    pb::Revision {
        number,
        digest: c.digest,
        size: c.size,
        author: c.author,
        message: c.message,
        dependencies: c.dependencies,
        ..Default::default()
    }
}

fn revision_created(number: u32, digest: &str) -> pb::AppEvent {
    ev(Event::RevisionCreated(pb::RevisionCreated {
        revision: Some(revision(number, digest)),
    }))
}

fn revise(c: pb::CreateRevision) -> Command {
    Command::CreateRevision(c)
}

// ---- create and archive ----

#[test]
fn create_an_app() {
    assert_eq!(run([], create()).expect("accepted"), vec![created()]);
}

#[test]
fn create_twice_is_refused() {
    let r = run([created()], create()).expect_err("refused");
    assert_eq!(r.rule, "app.exists");
    assert_eq!(r.code, RejectionCode::AlreadyExists);
}

#[test]
fn create_refuses_a_description_over_1000_characters() {
    let described = |n: usize| {
        Command::Create(pb::CreateApp {
            description: "d".repeat(n),
        })
    };
    assert!(run([], described(1000)).is_ok());
    let r = run([], described(1001)).expect_err("refused");
    assert_eq!(r.rule, "app.description");
    assert_eq!(r.field.as_deref(), Some("create.description"));
}

#[test]
fn archive_an_app() {
    let events = run(
        [created()],
        Command::Archive(pb::ArchiveApp {
            reason: "retired".into(),
        }),
    )
    .expect("accepted");
    assert_eq!(events, vec![archived()]);
}

#[test]
fn archive_needs_an_existing_app_not_yet_archived() {
    let archive = || Command::Archive(pb::ArchiveApp::default());
    assert_refused(run([], archive()), "app.not_found");
    let r = run([created(), archived()], archive()).expect_err("refused");
    assert_eq!(r.rule, "app.archived");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

#[test]
fn a_command_without_an_operation_is_refused() {
    assert_refused(
        when::<State>([created()], pb::AppCommand { command: None }),
        "command.missing",
    );
}

// ---- revisions ----

#[test]
fn the_first_revision_is_number_1() {
    let events = run([created()], revise(create_revision(&digest('a')))).expect("accepted");
    assert_eq!(events, vec![revision_created(1, &digest('a'))]);
}

#[test]
fn revisions_are_numbered_in_order() {
    let given_events = [
        created(),
        revision_created(1, &digest('a')),
        revision_created(2, &digest('b')),
    ];
    let events = run(given_events, revise(create_revision(&digest('c')))).expect("accepted");
    assert_eq!(events, vec![revision_created(3, &digest('c'))]);
}

#[test]
fn a_revision_needs_an_existing_live_app() {
    let r = run([], revise(create_revision(&digest('a')))).expect_err("refused");
    assert_eq!(r.rule, "app.not_found");
    assert_eq!(r.code, RejectionCode::NotFound);
    assert_refused(
        run(
            [created(), archived()],
            revise(create_revision(&digest('a'))),
        ),
        "app.archived",
    );
}

#[test]
fn a_revision_refuses_a_malformed_digest() {
    for bad in ["", "sha256:abc", &"f".repeat(71), &digest('A')] {
        let r = run([created()], revise(create_revision(bad))).expect_err("refused");
        assert_eq!(r.rule, "revision.digest");
        assert_eq!(r.field.as_deref(), Some("create_revision.digest"));
    }
}

#[test]
fn a_revision_needs_an_author() {
    let mut c = create_revision(&digest('a'));
    c.author = " ".into();
    let r = run([created()], revise(c)).expect_err("refused");
    assert_eq!(r.rule, "revision.author");
    assert_eq!(r.field.as_deref(), Some("create_revision.author"));
}

#[test]
fn a_revision_with_the_latest_content_is_refused() {
    let given_events = [
        created(),
        revision_created(1, &digest('a')),
        revision_created(2, &digest('b')),
    ];
    let r = run(given_events.clone(), revise(create_revision(&digest('b')))).expect_err("refused");
    assert_eq!(r.rule, "revision.unchanged");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
    assert_eq!(r.message, "revision 2 already has this content");
    // Going back to an older content is a new revision.
    let events = run(given_events, revise(create_revision(&digest('a')))).expect("accepted");
    assert_eq!(events, vec![revision_created(3, &digest('a'))]);
}

#[test]
fn a_revision_refuses_malformed_dependencies() {
    let cases = [
        (
            dependency("CRM", "customer", 1),
            "dependency.producer_app",
            "producer_app",
        ),
        (dependency("crm", "", 1), "dependency.entity", "entity"),
        (
            dependency("crm", "customer", 0),
            "dependency.producer_revision",
            "producer_revision",
        ),
    ];
    for (dep, rule, field) in cases {
        let mut c = create_revision(&digest('a'));
        c.dependencies.push(dep);
        let r = run([created()], revise(c)).expect_err("refused");
        assert_eq!(r.rule, rule);
        assert_eq!(
            r.field.as_deref(),
            Some(format!("create_revision.dependencies[1].{field}").as_str())
        );
    }
}

#[test]
fn a_revision_refuses_the_same_dependency_twice() {
    let mut c = create_revision(&digest('a'));
    c.dependencies.push(dependency("crm", "customer", 4));
    assert_refused(run([created()], revise(c)), "dependency.unique");
    let mut c = create_revision(&digest('a'));
    c.dependencies.push(dependency("crm", "order", 3));
    assert!(run([created()], revise(c)).is_ok());
}

// ---- folding ----

#[test]
fn folding_accepted_commands_gives_the_expected_state() {
    let (state, events) = accept_all::<State>(
        [
            create(),
            revise(create_revision(&digest('a'))),
            revise(create_revision(&digest('b'))),
            Command::Archive(pb::ArchiveApp {
                reason: "retired".into(),
            }),
        ]
        .map(cmd),
    );
    let expected = State {
        exists: true,
        description: "the shop".into(),
        revisions: vec![revision(1, &digest('a')), revision(2, &digest('b'))],
        archived: true,
    };
    assert_eq!(state, expected);
    assert_eq!(given::<State>(events), expected);
}

#[test]
fn an_unknown_event_leaves_the_state_unchanged() {
    let before: State = given([created(), revision_created(1, &digest('a'))]);
    let mut after = before.clone();
    let unknown = pb::AppEvent { event: None };
    after.apply(&unknown);
    assert_eq!(after, before);
    assert_eq!(State::event_type(&unknown), "Unknown");
}

#[test]
fn event_types_are_the_event_message_names() {
    let names: Vec<_> = [created(), revision_created(1, &digest('a')), archived()]
        .iter()
        .map(State::event_type)
        .collect();
    assert_eq!(names, ["AppCreated", "RevisionCreated", "AppArchived"]);
}
