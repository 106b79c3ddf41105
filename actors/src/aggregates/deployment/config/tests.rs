//! Given/when/then tests of a deployment's stage configuration: settings, secrets, and the
//! promotion check.

use std::collections::BTreeMap;

use neo_protocol::pb::{self, ReleaseOrigin, deployment_command::Command, deployment_event::Event};

use crate::aggregate::Rejection;
use crate::aggregate::testing::{assert_refused, given, when};
use crate::aggregates::fixtures::digest;

type State = pb::DeploymentState;

fn run(
    events: impl IntoIterator<Item = pb::DeploymentEvent>,
    command: Command,
) -> Result<Vec<pb::DeploymentEvent>, Rejection> {
    when::<State>(
        events,
        pb::DeploymentCommand {
            command: Some(command),
        },
    )
}

fn ev(event: Event) -> pb::DeploymentEvent {
    pb::DeploymentEvent { event: Some(event) }
}

fn change(set: &[(&str, &str)], unset: &[&str]) -> Command {
    Command::ChangeSettings(pb::ChangeSettings {
        app: "shop".into(),
        stage: "test".into(),
        set: set
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        unset: unset.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn secret(name: &str, version: u32) -> Command {
    Command::RecordSecret(pb::RecordSecret {
        app: "shop".into(),
        stage: "test".into(),
        name: name.into(),
        version,
    })
}

fn deploy() -> Command {
    Command::Deploy(pb::Deploy {
        app: "shop".into(),
        stage: "test".into(),
        build_id: "shop_r1".into(),
        revision: 1,
        image_digest: digest('a'),
        ..Default::default()
    })
}

fn promote(needs: pb::ConfigNeeds) -> Command {
    Command::Promote(pb::Promote {
        app: "shop".into(),
        stage: "test".into(),
        from_stage: "dev".into(),
        source: Some(pb::ReleaseRef {
            stage: "dev".into(),
            number: 2,
            image_digest: digest('b'),
            revision: 2,
            build_id: "shop_r2".into(),
        }),
        needs: Some(needs),
        ..Default::default()
    })
}

/// Applies `command` to the state of `events` and returns every event so far.
fn then(mut events: Vec<pb::DeploymentEvent>, command: Command) -> Vec<pb::DeploymentEvent> {
    let new = run(events.clone(), command).expect("accepted");
    events.extend(new);
    events
}

fn config(state: &State) -> pb::StageConfig {
    state.config.clone().unwrap_or_default()
}

fn current(state: &State) -> &pb::Release {
    state
        .releases
        .iter()
        .find(|r| r.number == state.current)
        .expect("a current release")
}

#[test]
fn settings_before_any_release_change_only_the_configuration() {
    let events = run([], change(&[("currency", "CHF")], &[])).expect("accepted");
    assert_eq!(
        events.len(),
        1,
        "no release without a current one: {events:?}"
    );
    let state = given::<State>(events);
    assert_eq!(config(&state).settings["currency"], "CHF");
    assert_eq!((state.app.as_str(), state.stage.as_str()), ("shop", "test"));
}

#[test]
fn a_release_runs_with_the_stages_configuration_at_the_time() {
    let events = then(
        then(Vec::new(), change(&[("currency", "CHF")], &[])),
        secret("api_key", 1),
    );
    let events = then(events, deploy());
    let state = given::<State>(events);
    let release = current(&state);
    assert_eq!(
        release.config.as_ref().expect("config").settings["currency"],
        "CHF"
    );
    assert_eq!(
        release.config.as_ref().expect("config").secrets["api_key"],
        1
    );
}

#[test]
fn a_change_while_a_release_runs_rolls_a_new_release_of_the_same_image() {
    let events = then(Vec::new(), deploy());
    let new = run(events.clone(), change(&[("currency", "CHF")], &[])).expect("accepted");
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(matches!(new[0].event, Some(Event::SettingsChanged(_))));
    let Some(Event::ReleaseCreated(created)) = &new[1].event else {
        panic!("a new release: {new:?}");
    };
    let release = created.release.as_ref().expect("release");
    assert_eq!(release.number, 2);
    assert_eq!(release.origin(), ReleaseOrigin::Config);
    assert_eq!(release.image_digest, digest('a'));
    assert_eq!(
        release.config.as_ref().expect("config").settings["currency"],
        "CHF"
    );

    let events = then(
        then(events, change(&[("currency", "CHF")], &[])),
        secret("api_key", 1),
    );
    let state = given::<State>(events.clone());
    assert_eq!(state.current, 3);
    assert_eq!(
        current(&state).config.as_ref().expect("config").secrets,
        BTreeMap::from([("api_key".to_owned(), 1)])
    );
    let events = then(
        events,
        Command::RemoveSecret(pb::RemoveSecret {
            app: "shop".into(),
            stage: "test".into(),
            name: "api_key".into(),
        }),
    );
    let state = given::<State>(events);
    assert_eq!(state.current, 4);
    assert!(config(&state).secrets.is_empty());
}

#[test]
fn unset_removes_and_set_overwrites() {
    let events = then(
        Vec::new(),
        change(&[("currency", "CHF"), ("limit", "10")], &[]),
    );
    let events = then(events, change(&[("limit", "20")], &["currency"]));
    let settings = config(&given::<State>(events)).settings;
    assert_eq!(
        settings,
        BTreeMap::from([("limit".to_owned(), "20".to_owned())])
    );
}

#[test]
fn malformed_and_pointless_changes_are_refused() {
    assert_refused(run([], change(&[], &[])), "settings.empty");
    assert_refused(run([], change(&[("Currency", "x")], &[])), "settings.name");
    assert_refused(run([], change(&[("a-b", "x")], &[])), "settings.name");
    assert_refused(
        run([], change(&[("big", &"x".repeat(4097))], &[])),
        "settings.value",
    );
    let events = then(Vec::new(), change(&[("currency", "CHF")], &[]));
    assert_refused(
        run(events.clone(), change(&[("currency", "CHF")], &[])),
        "settings.unchanged",
    );
    assert_refused(
        run(events.clone(), change(&[], &["limit"])),
        "settings.not_set",
    );
    assert_refused(
        run(events, change(&[("currency", "EUR")], &["currency"])),
        "settings.both",
    );
}

#[test]
fn a_name_is_either_a_setting_or_a_secret() {
    let events = then(Vec::new(), secret("api_key", 1));
    assert_refused(
        run(events, change(&[("api_key", "x")], &[])),
        "settings.name_taken",
    );
    let events = then(Vec::new(), change(&[("currency", "CHF")], &[]));
    assert_refused(run(events, secret("currency", 1)), "settings.name_taken");
}

#[test]
fn secret_versions_only_move_forward() {
    assert_refused(run([], secret("api_key", 0)), "secret.version");
    let events = then(Vec::new(), secret("api_key", 2));
    assert_refused(run(events.clone(), secret("api_key", 2)), "secret.version");
    assert_refused(run(events.clone(), secret("api_key", 1)), "secret.version");
    assert!(run(events, secret("api_key", 3)).is_ok());
    assert_refused(
        run(
            [],
            Command::RemoveSecret(pb::RemoveSecret {
                app: "shop".into(),
                stage: "test".into(),
                name: "api_key".into(),
            }),
        ),
        "secret.not_set",
    );
}

#[test]
fn events_name_the_secret_and_version_never_a_value() {
    let events = run([], secret("api_key", 1)).expect("accepted");
    assert_eq!(
        events,
        vec![ev(Event::SecretChanged(pb::SecretChanged {
            app: "shop".into(),
            stage: "test".into(),
            name: "api_key".into(),
            version: 1,
        }))]
    );
}

#[test]
fn a_promotion_is_refused_while_the_stage_lacks_what_the_build_needs() {
    let needs = pb::ConfigNeeds {
        settings: vec!["currency".into()],
        secrets: vec!["api_key".into()],
    };
    let refused = run([], promote(needs.clone())).expect_err("refused");
    assert_eq!(refused.rule, "promotion.missing_config");
    assert!(
        refused.message.contains("setting currency") && refused.message.contains("secret api_key"),
        "{refused}"
    );
    let events = then(Vec::new(), change(&[("currency", "CHF")], &[]));
    let refused = run(events.clone(), promote(needs.clone())).expect_err("refused");
    assert!(!refused.message.contains("currency"), "{refused}");
    let events = then(events, secret("api_key", 1));
    let state = given::<State>(then(events, promote(needs)));
    let release = current(&state);
    assert_eq!(release.origin(), ReleaseOrigin::Promotion);
    assert_eq!(
        release.config.as_ref().expect("config").settings["currency"],
        "CHF",
        "the target stage's own values, not the source's"
    );
}

#[test]
fn a_promotion_of_a_build_that_needs_nothing_is_not_checked() {
    assert!(run([], promote(pb::ConfigNeeds::default())).is_ok());
}

#[test]
fn edge_settings_are_known_names_with_whole_numbers_in_range() {
    for (name, value) in [
        ("edge_max_body_kib", "0"),
        ("edge_max_body_kib", "1048577"),
        ("edge_max_body_kib", "64k"),
        ("edge_rate_per_s", "-1"),
        ("edge_timeout_s", "5"),
    ] {
        let refused = run([], change(&[(name, value)], &[])).expect_err(name);
        assert_eq!(refused.rule, "settings.edge", "{name}={value}");
        assert_eq!(
            refused.field.as_deref(),
            Some(format!("change_settings.set.{name}").as_str())
        );
    }
    assert!(
        run(
            [],
            change(
                &[("edge_max_body_kib", "64"), ("edge_rate_per_s", "20")],
                &[]
            )
        )
        .is_ok()
    );
}
