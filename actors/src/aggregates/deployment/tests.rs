//! Given/when/then tests of the deployment aggregate.

use neo_protocol::pb::{
    self, ReleaseOrigin, RolloutStatus, deployment_command::Command, deployment_event::Event,
};

use crate::aggregate::testing::{assert_refused, given, when};
use crate::aggregate::{Aggregate, Rejection, RejectionCode};
use crate::aggregates::fixtures::{accept_all, digest};

type State = pb::DeploymentState;

/// A change that makes a well-formed command malformed.
type Spoil<T> = fn(&mut T);

fn cmd(command: Command) -> pb::DeploymentCommand {
    pb::DeploymentCommand {
        command: Some(command),
    }
}

pub(super) fn ev(event: Event) -> pb::DeploymentEvent {
    pb::DeploymentEvent { event: Some(event) }
}

pub(super) fn run(
    events: impl IntoIterator<Item = pb::DeploymentEvent>,
    command: Command,
) -> Result<Vec<pb::DeploymentEvent>, Rejection> {
    when::<State>(events, cmd(command))
}

/// Deploys revision `rev` of `shop` to `test`, whose image digest is `digest(c)`.
fn deploy(rev: u32, c: char) -> Command {
    Command::Deploy(pb::Deploy {
        app: "shop".into(),
        stage: "test".into(),
        build_id: format!("shop_r{rev}"),
        revision: rev,
        image_digest: digest(c),
        ..Default::default()
    })
}

fn release(number: u32, rev: u32, c: char, origin: ReleaseOrigin) -> pb::Release {
    pb::Release {
        number,
        image_digest: digest(c),
        revision: rev,
        build_id: format!("shop_r{rev}"),
        origin: origin.into(),
        promoted_from: None,
        rolled_back_to: 0,
        rollout: RolloutStatus::Pending.into(),
        rollout_reason: String::new(),
        config: Some(pb::StageConfig::default()),
        ..Default::default()
    }
}

fn created(release: pb::Release) -> pb::DeploymentEvent {
    ev(Event::ReleaseCreated(pb::ReleaseCreated {
        app: "shop".into(),
        stage: "test".into(),
        release: Some(release),
    }))
}

fn deployed(number: u32, rev: u32, c: char) -> pb::DeploymentEvent {
    created(release(number, rev, c, ReleaseOrigin::Deploy))
}

fn rollout(number: u32, status: RolloutStatus) -> pb::DeploymentEvent {
    ev(Event::RolloutRecorded(pb::RolloutRecorded {
        release: number,
        status: status.into(),
        reason: "observed".into(),
    }))
}

fn record(number: u32, status: i32) -> Command {
    Command::RecordRollout(pb::RecordRollout {
        release: number,
        status,
        reason: "observed".into(),
    })
}

/// The current release of `dev`: revision 3, image `digest('c')`.
pub(super) fn source() -> pb::ReleaseRef {
    pb::ReleaseRef {
        stage: "dev".into(),
        number: 4,
        image_digest: digest('c'),
        revision: 3,
        build_id: "shop_r3".into(),
    }
}

pub(super) fn promote(source: Option<pb::ReleaseRef>) -> Command {
    Command::Promote(pb::Promote {
        app: "shop".into(),
        stage: "test".into(),
        from_stage: "dev".into(),
        source,
        ..Default::default()
    })
}

pub(super) fn promoted(number: u32) -> pb::DeploymentEvent {
    created(pb::Release {
        promoted_from: Some(source()),
        ..release(number, 3, 'c', ReleaseOrigin::Promotion)
    })
}

pub(super) fn rollback(to_release: u32) -> Command {
    Command::Rollback(pb::Rollback {
        to_release,
        ..Default::default()
    })
}

/// Two releases: v1 (revision 1, image a) and v2 (revision 2, image b).
pub(super) fn two_releases() -> Vec<pb::DeploymentEvent> {
    vec![deployed(1, 1, 'a'), deployed(2, 2, 'b')]
}

// ---- deploy ----

#[test]
fn the_first_deploy_is_release_v1() {
    assert_eq!(
        run([], deploy(1, 'a')).expect("accepted"),
        vec![deployed(1, 1, 'a')]
    );
}

#[test]
fn each_deploy_is_the_next_release() {
    assert_eq!(
        run(two_releases(), deploy(3, 'c')).expect("accepted"),
        vec![deployed(3, 3, 'c')]
    );
}

fn with_blockers(command: Command, forced: bool) -> Command {
    let Command::Deploy(deploy) = command else {
        unreachable!("a deploy")
    };
    Command::Deploy(pb::Deploy {
        forced,
        blockers: vec!["reviews r2 uses Product.title, which is gone".into()],
        ..deploy
    })
}

#[test]
fn a_deploy_with_blockers_is_recorded_as_blocked_and_creates_no_release() {
    let events = run(two_releases(), with_blockers(deploy(3, 'c'), false)).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::DeployBlocked(pb::DeployBlocked {
            app: "shop".into(),
            stage: "test".into(),
            build_id: "shop_r3".into(),
            revision: 3,
            blockers: vec!["reviews r2 uses Product.title, which is gone".into()],
        }))]
    );
    let mut state = State::default();
    for e in two_releases().iter().chain(&events) {
        state.apply(e);
    }
    assert_eq!(state.current, 2, "the current release is unchanged");
}

#[test]
fn a_forced_deploy_over_blockers_records_the_force_and_the_blockers() {
    let events = run(two_releases(), with_blockers(deploy(3, 'c'), true)).expect("accepted");
    let mut expected = release(3, 3, 'c', ReleaseOrigin::Deploy);
    expected.forced = true;
    expected.forced_blockers = vec!["reviews r2 uses Product.title, which is gone".into()];
    assert_eq!(events, vec![created(expected)]);
}

#[test]
fn a_deploy_someone_waits_on_is_refused_over_blockers_unless_forced() {
    let waited = |forced| {
        let Command::Deploy(d) = with_blockers(deploy(3, 'c'), forced) else {
            unreachable!("a deploy")
        };
        Command::Deploy(pb::Deploy {
            refuse_if_blocked: true,
            ..d
        })
    };
    let refused = run(two_releases(), waited(false)).expect_err("refused");
    assert_eq!(refused.rule, "deploy.impact_blockers");
    assert_eq!(refused.code, RejectionCode::FailedPrecondition);
    assert!(
        refused.message.contains("reviews r2 uses Product.title")
            && refused.message.contains("force"),
        "{}",
        refused.message
    );
    let events = run(two_releases(), waited(true)).expect("a forced deploy goes ahead");
    assert!(matches!(
        events.as_slice(),
        [pb::DeploymentEvent {
            event: Some(Event::ReleaseCreated(_))
        }]
    ));
}

#[test]
fn deploy_refuses_malformed_fields() {
    let cases: [(Spoil<pb::Deploy>, &str, &str); 5] = [
        (|d| d.app = "Shop".into(), "deployment.app", "deploy.app"),
        (|d| d.stage = "".into(), "deployment.stage", "deploy.stage"),
        (
            |d| d.build_id = "".into(),
            "deployment.build_id",
            "deploy.build_id",
        ),
        (|d| d.revision = 0, "deployment.revision", "deploy.revision"),
        (
            |d| d.image_digest = "sha256:x".into(),
            "deployment.image_digest",
            "deploy.image_digest",
        ),
    ];
    for (spoil, rule, field) in cases {
        let Command::Deploy(mut d) = deploy(1, 'a') else {
            unreachable!()
        };
        spoil(&mut d);
        let r = run([], Command::Deploy(d)).expect_err("refused");
        assert_eq!((r.rule, r.field.as_deref()), (rule, Some(field)));
        assert_eq!(r.code, RejectionCode::InvalidArgument);
    }
}

#[test]
fn deploy_refuses_another_app_or_stage() {
    for (app, stage, field) in [
        ("crm", "test", "deploy.app"),
        ("shop", "prod", "deploy.stage"),
    ] {
        let command = Command::Deploy(pb::Deploy {
            app: app.into(),
            stage: stage.into(),
            build_id: "x_r1".into(),
            revision: 1,
            image_digest: digest('d'),
            ..Default::default()
        });
        let r = run(two_releases(), command).expect_err("refused");
        assert_eq!(r.rule, "deployment.target_mismatch");
        assert_eq!(r.field.as_deref(), Some(field));
    }
}

// ---- promote ----

#[test]
fn promote_copies_the_source_release() {
    assert_eq!(
        run(two_releases(), promote(Some(source()))).expect("accepted"),
        vec![promoted(3)]
    );
    assert_eq!(
        run([], promote(Some(source()))).expect("accepted"),
        vec![promoted(1)]
    );
}

#[test]
fn promote_without_a_source_is_refused() {
    let r = run(two_releases(), promote(None)).expect_err("refused");
    assert_eq!(r.rule, "promotion.no_source");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
    assert_eq!(
        r.message,
        "stage dev has no current release of app shop to promote"
    );
}

#[test]
fn promote_into_the_same_stage_is_refused() {
    let command = Command::Promote(pb::Promote {
        app: "shop".into(),
        stage: "test".into(),
        from_stage: "test".into(),
        source: Some(pb::ReleaseRef {
            stage: "test".into(),
            ..source()
        }),
        ..Default::default()
    });
    let r = run([], command).expect_err("refused");
    assert_eq!(r.rule, "promotion.same_stage");
    assert_eq!(r.field.as_deref(), Some("promote.from_stage"));
}

#[test]
fn promote_refuses_an_invalid_from_stage() {
    let Command::Promote(mut p) = promote(Some(source())) else {
        unreachable!()
    };
    p.from_stage = "d.v".into();
    assert_refused(run([], Command::Promote(p)), "promotion.from_stage");
}

#[test]
fn promote_refuses_a_source_of_another_stage() {
    let other = pb::ReleaseRef {
        stage: "qa".into(),
        ..source()
    };
    let r = run([], promote(Some(other))).expect_err("refused");
    assert_eq!(r.rule, "promotion.source_stage");
    assert_eq!(r.field.as_deref(), Some("promote.source.stage"));
}

#[test]
fn promote_refuses_a_malformed_source() {
    let cases: [(Spoil<pb::ReleaseRef>, &str); 4] = [
        (|s| s.number = 0, "promote.source.number"),
        (|s| s.revision = 0, "promote.source.revision"),
        (|s| s.build_id.clear(), "promote.source.build_id"),
        (
            |s| s.image_digest = "latest".into(),
            "promote.source.image_digest",
        ),
    ];
    for (spoil, field) in cases {
        let mut s = source();
        spoil(&mut s);
        let r = run([], promote(Some(s))).expect_err("refused");
        assert_eq!(
            (r.rule, r.field.as_deref()),
            ("promotion.source", Some(field))
        );
    }
}

#[test]
fn promote_refuses_the_image_the_stage_already_runs() {
    let r = run([deployed(1, 3, 'c')], promote(Some(source()))).expect_err("refused");
    assert_eq!(r.rule, "promotion.unchanged");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

#[test]
fn promote_refuses_another_app_or_stage() {
    let Command::Promote(mut p) = promote(Some(source())) else {
        unreachable!()
    };
    p.app = "crm".into();
    assert_refused(
        run(two_releases(), Command::Promote(p)),
        "deployment.target_mismatch",
    );
}

// ---- rollback ----

#[test]
fn rollback_is_a_new_release_with_the_earlier_image() {
    let events = run(two_releases(), rollback(1)).expect("accepted");
    let expected = created(pb::Release {
        rolled_back_to: 1,
        ..release(3, 1, 'a', ReleaseOrigin::Rollback)
    });
    assert_eq!(events, vec![expected]);
}

#[test]
fn a_promotion_or_rollback_that_loses_data_is_refused_unless_forced_and_recorded() {
    let loss =
        "data: Product.price: text → decimal: values that do not read as decimal are emptied";
    let changes = vec![
        loss.to_owned(),
        "data: Coupon: added: a new, empty table".to_owned(),
    ];
    let promote_with = |forced| {
        Command::Promote(pb::Promote {
            app: "shop".into(),
            stage: "test".into(),
            from_stage: "dev".into(),
            source: Some(source()),
            forced,
            data_changes: changes.clone(),
            blockers: vec![loss.to_owned()],
            ..Default::default()
        })
    };
    let refused = run(two_releases(), promote_with(false)).expect_err("refused");
    assert_eq!(refused.rule, "promotion.data_loss");
    assert_eq!(refused.code, RejectionCode::FailedPrecondition);
    assert!(
        refused.message.starts_with(
            "promoting release v4 of dev into test would lose data: data: Product.price"
        ),
        "{}",
        refused.message
    );
    let forced = run(two_releases(), promote_with(true)).expect("accepted");
    assert_eq!(
        forced,
        vec![created(pb::Release {
            promoted_from: Some(source()),
            forced: true,
            forced_blockers: vec![loss.to_owned()],
            data_changes: changes.clone(),
            ..release(3, 3, 'c', ReleaseOrigin::Promotion)
        })]
    );

    let rollback_with = |forced| {
        Command::Rollback(pb::Rollback {
            to_release: 1,
            forced,
            data_changes: changes.clone(),
            blockers: vec![loss.to_owned()],
        })
    };
    let refused = run(two_releases(), rollback_with(false)).expect_err("refused");
    assert_eq!(refused.rule, "rollback.data_loss");
    assert!(
        refused
            .message
            .starts_with("rolling test back to release v1 would lose data"),
        "{}",
        refused.message
    );
    let forced = run(two_releases(), rollback_with(true)).expect("accepted");
    assert_eq!(
        forced,
        vec![created(pb::Release {
            rolled_back_to: 1,
            forced: true,
            forced_blockers: vec![loss.to_owned()],
            data_changes: changes.clone(),
            ..release(3, 1, 'a', ReleaseOrigin::Rollback)
        })]
    );

    // Changes that keep every value are recorded, with nothing forced.
    let kept = Command::Rollback(pb::Rollback {
        to_release: 1,
        forced: true,
        data_changes: vec![changes[1].clone()],
        blockers: Vec::new(),
    });
    let events = run(two_releases(), kept).expect("accepted");
    assert_eq!(
        events,
        vec![created(pb::Release {
            rolled_back_to: 1,
            data_changes: vec![changes[1].clone()],
            ..release(3, 1, 'a', ReleaseOrigin::Rollback)
        })]
    );
}

#[test]
fn rollback_needs_a_release() {
    let r = run([], rollback(1)).expect_err("refused");
    assert_eq!(r.rule, "deployment.no_release");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

#[test]
fn rollback_needs_an_earlier_release() {
    assert_refused(run(two_releases(), rollback(2)), "rollback.not_earlier");
    assert_refused(run(two_releases(), rollback(5)), "rollback.not_earlier");
    let r = run(two_releases(), rollback(0)).expect_err("refused");
    assert_eq!(r.rule, "rollback.to_release");
    assert_eq!(r.code, RejectionCode::InvalidArgument);
}

#[test]
fn rollback_to_a_release_that_does_not_exist_is_refused() {
    // A state whose history lacks v1 (as if written by other code): nothing to restore.
    assert_refused(run([deployed(2, 2, 'b')], rollback(1)), "release.not_found");
}

// ---- rollouts ----

#[test]
fn record_a_rollout() {
    let events = run(two_releases(), record(2, RolloutStatus::Succeeded.into())).expect("accepted");
    assert_eq!(events, vec![rollout(2, RolloutStatus::Succeeded)]);
    let mut state: State = given(two_releases());
    state.apply(&events[0]);
    assert_eq!(state.releases[1].rollout(), RolloutStatus::Succeeded);
    assert_eq!(state.releases[1].rollout_reason, "observed");
    assert!(run(two_releases(), record(1, RolloutStatus::Failed.into())).is_ok());
}

#[test]
fn record_a_rollout_of_a_missing_release_is_refused() {
    let r = run(two_releases(), record(3, RolloutStatus::Succeeded.into())).expect_err("refused");
    assert_eq!(r.rule, "release.not_found");
    assert_eq!(r.code, RejectionCode::NotFound);
}

#[test]
fn record_a_rollout_needs_a_final_status() {
    for status in [
        RolloutStatus::Unspecified.into(),
        RolloutStatus::Pending.into(),
        42,
    ] {
        let r = run(two_releases(), record(2, status)).expect_err("refused");
        assert_eq!(r.rule, "rollout.status");
        assert_eq!(r.field.as_deref(), Some("record_rollout.status"));
    }
}

#[test]
fn a_recorded_rollout_is_not_recorded_again() {
    let mut given_events = two_releases();
    given_events.push(rollout(2, RolloutStatus::Failed));
    let r = run(given_events, record(2, RolloutStatus::Succeeded.into())).expect_err("refused");
    assert_eq!(r.rule, "rollout.recorded");
    assert_eq!(r.code, RejectionCode::FailedPrecondition);
}

#[test]
fn a_command_without_an_operation_is_refused() {
    assert_refused(
        when::<State>([], pb::DeploymentCommand { command: None }),
        "command.missing",
    );
}

// ---- folding ----

#[test]
fn folding_accepted_commands_gives_the_expected_state() {
    let (state, events) = accept_all::<State>(
        [
            deploy(1, 'a'),
            record(1, RolloutStatus::Succeeded.into()),
            promote(Some(source())),
            record(2, RolloutStatus::Failed.into()),
            rollback(1),
        ]
        .map(cmd),
    );
    let expected = State {
        app: "shop".into(),
        stage: "test".into(),
        releases: vec![
            pb::Release {
                rollout: RolloutStatus::Succeeded.into(),
                rollout_reason: "observed".into(),
                ..release(1, 1, 'a', ReleaseOrigin::Deploy)
            },
            pb::Release {
                promoted_from: Some(source()),
                rollout: RolloutStatus::Failed.into(),
                rollout_reason: "observed".into(),
                ..release(2, 3, 'c', ReleaseOrigin::Promotion)
            },
            pb::Release {
                rolled_back_to: 1,
                ..release(3, 1, 'a', ReleaseOrigin::Rollback)
            },
        ],
        current: 3,
        config: None,
        canary_policy: None,
    };
    assert_eq!(state, expected);
    assert_eq!(given::<State>(events), expected);
}

#[test]
fn an_unknown_event_leaves_the_state_unchanged() {
    let before: State = given(two_releases());
    let mut after = before.clone();
    let unknown = pb::DeploymentEvent { event: None };
    after.apply(&unknown);
    assert_eq!(after, before);
    assert_eq!(State::event_type(&unknown), "Unknown");
}

#[test]
fn event_types_are_the_event_message_names() {
    let names: Vec<_> = [deployed(1, 1, 'a'), rollout(1, RolloutStatus::Failed)]
        .iter()
        .map(State::event_type)
        .collect();
    assert_eq!(names, ["ReleaseCreated", "RolloutRecorded"]);
}

// ---- rollback and secrets ----

/// v1 ran secret `db_password` at `version`; v2 is another image with the same secrets.
fn releases_with_secret(version: u32) -> Vec<pb::DeploymentEvent> {
    let with_secret = |number: u32, rev: u32, c: char| {
        created(pb::Release {
            config: Some(pb::StageConfig {
                settings: Default::default(),
                secrets: [("db_password".to_owned(), version)].into(),
            }),
            ..release(number, rev, c, ReleaseOrigin::Deploy)
        })
    };
    vec![
        ev(Event::SecretChanged(pb::SecretChanged {
            app: "shop".into(),
            stage: "test".into(),
            name: "db_password".into(),
            version,
        })),
        with_secret(1, 1, 'a'),
        with_secret(2, 2, 'b'),
    ]
}

#[test]
fn a_rollback_runs_with_the_secret_versions_its_release_recorded() {
    let events = run(releases_with_secret(1), rollback(1)).expect("accepted");
    let [event] = events.as_slice() else {
        panic!("one event: {events:?}");
    };
    let Some(Event::ReleaseCreated(created)) = &event.event else {
        panic!("a release: {event:?}");
    };
    let config = created.release.as_ref().and_then(|r| r.config.clone());
    assert_eq!(
        config.map(|c| c.secrets),
        Some([("db_password".to_owned(), 1)].into())
    );
}

#[test]
fn a_rollback_to_a_release_whose_secret_changed_since_is_refused_with_the_reason() {
    let mut history = releases_with_secret(1);
    history.push(ev(Event::SecretChanged(pb::SecretChanged {
        app: "shop".into(),
        stage: "test".into(),
        name: "db_password".into(),
        version: 2,
    })));
    let refused = run(history, rollback(1)).expect_err("refused");
    assert_eq!(refused.rule, "rollback.secret_versions");
    assert_eq!(refused.code, RejectionCode::FailedPrecondition);
    assert!(
        refused.message.contains("db_password (v1 then, v2 now)"),
        "{}",
        refused.message
    );
}
