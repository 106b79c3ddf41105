//! Given/when/then tests of the build aggregate.

use neo_protocol::pb::{self, BuildStatus, build_command::Command, build_event::Event};

use crate::aggregate::testing::{assert_refused, given, when};
use crate::aggregate::{Aggregate, Rejection, RejectionCode};
use crate::aggregates::fixtures::{accept_all, digest};

type State = pb::BuildState;

fn cmd(command: Command) -> pb::BuildCommand {
    pb::BuildCommand {
        command: Some(command),
    }
}

fn ev(event: Event) -> pb::BuildEvent {
    pb::BuildEvent { event: Some(event) }
}

fn run(
    events: impl IntoIterator<Item = pb::BuildEvent>,
    command: Command,
) -> Result<Vec<pb::BuildEvent>, Rejection> {
    when::<State>(events, cmd(command))
}

fn request() -> Command {
    Command::Request(pb::RequestBuild {
        app: "shop".into(),
        revision: 2,
        revision_digest: digest('a'),
        ..Default::default()
    })
}

fn start(attempt: u32) -> Command {
    Command::Start(pb::StartBuild {
        attempt,
        worker: "builder-1".into(),
        ..Default::default()
    })
}

fn succeed(attempt: u32) -> Command {
    Command::Succeed(pb::SucceedBuild {
        attempt,
        image_digest: digest('f'),
        image_ref: "registry.local/acme/shop".into(),
        ..Default::default()
    })
}

fn diagnostic() -> pb::Diagnostic {
    pb::Diagnostic {
        file: "model/order.yaml".into(),
        line: 3,
        column: 7,
        message: "unknown type `Moneyy`".into(),
    }
}

fn fail(attempt: u32) -> Command {
    Command::Fail(pb::FailBuild {
        attempt,
        reason: "model invalid".into(),
        diagnostics: vec![diagnostic()],
    })
}

fn cancel() -> Command {
    Command::Cancel(pb::CancelBuild {
        reason: "superseded".into(),
    })
}

fn requested(attempt: u32) -> pb::BuildEvent {
    ev(Event::Requested(pb::BuildRequested {
        app: "shop".into(),
        revision: 2,
        revision_digest: digest('a'),
        attempt,
        ..Default::default()
    }))
}

fn started(attempt: u32) -> pb::BuildEvent {
    ev(Event::Started(pb::BuildStarted {
        attempt,
        worker: "builder-1".into(),
        ..Default::default()
    }))
}

fn succeeded(attempt: u32) -> pb::BuildEvent {
    ev(Event::Succeeded(pb::BuildSucceeded {
        attempt,
        image_digest: digest('f'),
        image_ref: "registry.local/acme/shop".into(),
        app: "shop".into(),
        revision: 2,
        ..Default::default()
    }))
}

fn failed(attempt: u32) -> pb::BuildEvent {
    ev(Event::Failed(pb::BuildFailed {
        attempt,
        reason: "model invalid".into(),
        diagnostics: vec![diagnostic()],
    }))
}

fn cancelled(attempt: u32) -> pb::BuildEvent {
    ev(Event::Cancelled(pb::BuildCancelled {
        attempt,
        reason: "superseded".into(),
    }))
}

// ---- request ----

#[test]
fn the_first_request_is_attempt_1() {
    assert_eq!(run([], request()).expect("accepted"), vec![requested(1)]);
}

#[test]
fn a_failed_or_cancelled_build_is_requested_again_as_the_next_attempt() {
    let after_failure = [requested(1), started(1), failed(1)];
    assert_eq!(
        run(after_failure, request()).expect("accepted"),
        vec![requested(2)]
    );
    let after_cancel = [requested(1), cancelled(1), requested(2), cancelled(2)];
    assert_eq!(
        run(after_cancel, request()).expect("accepted"),
        vec![requested(3)]
    );
}

#[test]
fn a_succeeded_build_is_never_rebuilt() {
    let r = run([requested(1), started(1), succeeded(1)], request()).expect_err("refused");
    assert_eq!(r.rule, "build.once");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
    assert!(r.message.contains(&digest('f')), "{r}");
    assert!(r.message.contains("revision 2 of app shop"), "{r}");
}

#[test]
fn a_request_while_an_attempt_runs_is_refused() {
    assert_refused(run([requested(1)], request()), "build.in_progress");
    assert_refused(
        run([requested(1), started(1)], request()),
        "build.in_progress",
    );
}

#[test]
fn a_request_refuses_malformed_fields() {
    let with = |app: &str, revision: u32, revision_digest: String| {
        Command::Request(pb::RequestBuild {
            app: app.into(),
            revision,
            revision_digest,
            ..Default::default()
        })
    };
    let r = run([], with("Shop", 2, digest('a'))).expect_err("refused");
    assert_eq!(
        (r.rule, r.field.as_deref()),
        ("build.app", Some("request.app"))
    );
    let r = run([], with("shop", 0, digest('a'))).expect_err("refused");
    assert_eq!(
        (r.rule, r.field.as_deref()),
        ("build.revision", Some("request.revision"))
    );
    let r = run([], with("shop", 2, "sha256:1".into())).expect_err("refused");
    assert_eq!(
        (r.rule, r.field.as_deref()),
        ("build.revision_digest", Some("request.revision_digest"))
    );
}

#[test]
fn a_request_for_another_revision_is_refused() {
    let given_events = [requested(1), failed(1)];
    let cases = [
        ("other", 2, digest('a'), "request.app"),
        ("shop", 3, digest('a'), "request.revision"),
        ("shop", 2, digest('b'), "request.revision_digest"),
    ];
    for (app, revision, revision_digest, field) in cases {
        let command = Command::Request(pb::RequestBuild {
            app: app.into(),
            revision,
            revision_digest,
            ..Default::default()
        });
        let r = run(given_events.clone(), command).expect_err("refused");
        assert_eq!(r.rule, "build.revision_mismatch");
        assert_eq!(r.code, RejectionCode::InvalidArgument);
        assert_eq!(r.field.as_deref(), Some(field));
    }
}

// ---- start, succeed, fail, cancel ----

#[test]
fn start_a_requested_build() {
    assert_eq!(
        run([requested(1)], start(1)).expect("accepted"),
        vec![started(1)]
    );
}

#[test]
fn start_needs_a_requested_build() {
    let r = run([requested(1), started(1)], start(1)).expect_err("refused");
    assert_eq!(r.rule, "build.transition");
    assert_eq!(r.message, "build is started, cannot start");
    assert_refused(run([requested(1), failed(1)], start(1)), "build.transition");
}

#[test]
fn start_of_another_attempt_is_refused() {
    let r = run([requested(1), failed(1), requested(2)], start(1)).expect_err("refused");
    assert_eq!(r.rule, "build.attempt");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

#[test]
fn start_needs_a_worker() {
    let command = Command::Start(pb::StartBuild {
        attempt: 1,
        worker: String::new(),
        ..Default::default()
    });
    assert_refused(run([requested(1)], command), "build.worker");
}

#[test]
fn succeed_a_started_build() {
    assert_eq!(
        run([requested(1), started(1)], succeed(1)).expect("accepted"),
        vec![succeeded(1)]
    );
}

#[test]
fn succeed_needs_a_started_build_of_the_same_attempt() {
    assert_refused(run([requested(1)], succeed(1)), "build.transition");
    assert_refused(
        run([requested(1), started(1), succeeded(1)], succeed(1)),
        "build.transition",
    );
    assert_refused(run([requested(1), started(1)], succeed(2)), "build.attempt");
}

#[test]
fn succeed_needs_a_valid_image_digest() {
    let command = Command::Succeed(pb::SucceedBuild {
        attempt: 1,
        image_digest: "latest".into(),
        image_ref: String::new(),
        ..Default::default()
    });
    let r = run([requested(1), started(1)], command).expect_err("refused");
    assert_eq!(r.rule, "build.image_digest");
    assert_eq!(r.field.as_deref(), Some("succeed.image_digest"));
}

#[test]
fn fail_a_requested_or_started_build() {
    assert_eq!(
        run([requested(1)], fail(1)).expect("accepted"),
        vec![failed(1)]
    );
    assert_eq!(
        run([requested(1), started(1)], fail(1)).expect("accepted"),
        vec![failed(1)]
    );
}

#[test]
fn fail_needs_a_running_attempt_and_a_reason() {
    assert_refused(run([requested(1), failed(1)], fail(1)), "build.transition");
    assert_refused(
        run([requested(1), started(1), succeeded(1)], fail(1)),
        "build.transition",
    );
    assert_refused(run([requested(1), started(1)], fail(7)), "build.attempt");
    let no_reason = Command::Fail(pb::FailBuild {
        attempt: 1,
        ..Default::default()
    });
    assert_refused(run([requested(1), started(1)], no_reason), "build.reason");
}

#[test]
fn cancel_a_requested_or_started_build() {
    assert_eq!(
        run([requested(1)], cancel()).expect("accepted"),
        vec![cancelled(1)]
    );
    assert_eq!(
        run(
            [requested(1), failed(1), requested(2), started(2)],
            cancel()
        )
        .expect("accepted"),
        vec![cancelled(2)]
    );
}

#[test]
fn cancel_refuses_a_finished_build() {
    for given_events in [
        vec![requested(1), cancelled(1)],
        vec![requested(1), failed(1)],
        vec![requested(1), started(1), succeeded(1)],
    ] {
        assert_refused(run(given_events, cancel()), "build.transition");
    }
}

#[test]
fn commands_on_a_build_never_requested_are_refused() {
    for command in [start(1), succeed(1), fail(1), cancel()] {
        let r = run([], command).expect_err("refused");
        assert_eq!(r.rule, "build.not_found");
        assert_eq!(r.code, RejectionCode::NotFound);
    }
}

#[test]
fn a_command_without_an_operation_is_refused() {
    assert_refused(
        when::<State>([], pb::BuildCommand { command: None }),
        "command.missing",
    );
}

// ---- folding ----

#[test]
fn a_new_attempt_clears_the_previous_attempts_outcome() {
    let state: State = given([requested(1), started(1), failed(1), requested(2)]);
    assert_eq!(state.status(), BuildStatus::Requested);
    assert_eq!(state.attempt, 2);
    assert_eq!(state.worker, "");
    assert_eq!(state.reason, "");
    assert!(state.diagnostics.is_empty());
}

#[test]
fn folding_accepted_commands_gives_the_expected_state() {
    let (state, events) = accept_all::<State>(
        [
            request(),
            start(1),
            fail(1),
            request(),
            start(2),
            succeed(2),
        ]
        .map(cmd),
    );
    assert_eq!(
        events,
        vec![
            requested(1),
            started(1),
            failed(1),
            requested(2),
            started(2),
            succeeded(2)
        ]
    );
    let expected = State {
        app: "shop".into(),
        revision: 2,
        revision_digest: digest('a'),
        status: BuildStatus::Succeeded.into(),
        attempt: 2,
        worker: "builder-1".into(),
        image_digest: digest('f'),
        image_ref: "registry.local/acme/shop".into(),
        reason: String::new(),
        diagnostics: vec![],
        ..Default::default()
    };
    assert_eq!(state, expected);
    assert_eq!(given::<State>(events), expected);
}

#[test]
fn an_unknown_event_leaves_the_state_unchanged() {
    let before: State = given([requested(1), started(1)]);
    let mut after = before.clone();
    let unknown = pb::BuildEvent { event: None };
    after.apply(&unknown);
    assert_eq!(after, before);
    assert_eq!(State::event_type(&unknown), "Unknown");
}

#[test]
fn event_types_are_the_event_message_names() {
    let names: Vec<_> = [
        requested(1),
        started(1),
        succeeded(1),
        failed(1),
        cancelled(1),
    ]
    .iter()
    .map(State::event_type)
    .collect();
    assert_eq!(
        names,
        [
            "BuildRequested",
            "BuildStarted",
            "BuildSucceeded",
            "BuildFailed",
            "BuildCancelled"
        ]
    );
}

fn takeover(attempt: u32, worker: &str) -> Command {
    Command::Start(pb::StartBuild {
        attempt,
        worker: worker.into(),
        takeover: true,
    })
}

#[test]
fn a_worker_takes_over_a_started_attempt_whose_worker_lost_its_lease() {
    assert_eq!(
        run([requested(1), started(1)], takeover(1, "builder-2")).expect("accepted"),
        vec![ev(Event::Started(pb::BuildStarted {
            attempt: 1,
            worker: "builder-2".into(),
            takeover: true,
        }))]
    );
}

#[test]
fn a_plain_start_of_a_started_build_is_refused() {
    assert_refused(
        run([requested(1), started(1)], start(1)),
        "build.transition",
    );
}

#[test]
fn takeover_is_refused_once_the_build_ended() {
    assert_refused(
        run(
            [requested(1), started(1), succeeded(1)],
            takeover(1, "builder-2"),
        ),
        "build.transition",
    );
}

#[test]
fn success_carries_the_resolved_dependencies_and_the_publish_target() {
    let entity = pb::ExposedEntity {
        name: "Order".into(),
        fields: vec![pb::FieldSpec {
            name: "total".into(),
            r#type: "decimal".into(),
            required: true,
        }],
    };
    let dependency = pb::Dependency {
        producer_app: "catalog".into(),
        entity: "Product".into(),
        producer_revision: 3,
        fields: vec!["title".into()],
    };
    let mut requested = requested(1);
    if let Some(Event::Requested(r)) = &mut requested.event {
        r.deploy_to = "dev".into();
    }
    let events = run(
        [requested, started(1)],
        Command::Succeed(pb::SucceedBuild {
            attempt: 1,
            image_digest: digest('f'),
            image_ref: "registry.local/acme/shop".into(),
            dependencies: vec![dependency.clone()],
            exposes: vec![],
            needs: None,
            entities: vec![entity.clone()],
        }),
    )
    .expect("accepted");
    let Some(Event::Succeeded(succeeded)) = &events[0].event else {
        panic!("a success: {events:?}")
    };
    assert_eq!(succeeded.deploy_to, "dev");
    assert_eq!(succeeded.dependencies, vec![dependency]);
    assert_eq!((succeeded.app.as_str(), succeeded.revision), ("shop", 2));
    // The entities stay in the state, for what a deploy's migration does to a stage's data.
    let mut state = pb::BuildState::default();
    for event in &events {
        state.apply(event);
    }
    assert_eq!(state.entities, vec![entity]);
}
