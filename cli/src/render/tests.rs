//! Tests of the JSON documents and tables of the API messages.

use std::collections::BTreeMap;

use neo_gateway::api;
use neo_protocol::pb;
use serde_json::json;

use super::*;

fn digest(hex: &str) -> String {
    format!("sha256:{}", hex.repeat(64 / hex.len()))
}

fn promoted_release() -> pb::Release {
    pb::Release {
        number: 3,
        image_digest: digest("ab"),
        revision: 2,
        build_id: "shop_r2".into(),
        origin: pb::ReleaseOrigin::Promotion as i32,
        promoted_from: Some(pb::ReleaseRef {
            stage: "dev".into(),
            number: 5,
            image_digest: digest("ab"),
            revision: 2,
            build_id: "shop_r2".into(),
        }),
        rolled_back_to: 0,
        config: None,
        forced: false,
        forced_blockers: Vec::new(),
        data_changes: Vec::new(),
        rollout: pb::RolloutStatus::Succeeded as i32,
        rollout_reason: String::new(),
        canary: None,
    }
}

#[test]
fn a_release_renders_its_enums_as_words() {
    let value = release_json(&promoted_release());
    assert_eq!(value["origin"], "promotion");
    assert_eq!(value["rollout"], "succeeded");
    assert_eq!(value["rolled_back_to"], json!(null));
    assert_eq!(value["promoted_from"]["stage"], "dev");
    assert_eq!(value["promoted_from"]["number"], 5);
    let rollback = pb::Release {
        origin: pb::ReleaseOrigin::Rollback as i32,
        promoted_from: None,
        rolled_back_to: 1,
        rollout: pb::RolloutStatus::Failed as i32,
        rollout_reason: "crash loop".into(),
        ..promoted_release()
    };
    let value = release_json(&rollback);
    assert_eq!(value["origin"], "rollback");
    assert_eq!(value["rolled_back_to"], 1);
    assert_eq!(value["rollout"], "failed");
}

#[test]
fn the_releases_table_shows_words_short_digests_and_the_current_mark() {
    let text = releases_table(&[promoted_release()], Some(3));
    assert!(text.contains("v3 *"), "{text}");
    assert!(text.contains("promotion"), "{text}");
    assert!(text.contains("sha256:abababababab "), "{text}");
    assert!(text.contains("dev v5"), "{text}");
    assert!(text.contains("succeeded"), "{text}");
}

#[test]
fn a_deployment_without_releases_has_no_current() {
    let deployment = api::Deployment {
        tenant: "acme".into(),
        app: "shop".into(),
        stage: "test".into(),
        state: None,
        sequence: 0,
    };
    assert_eq!(deployment_json(&deployment)["current"], json!(null));
    assert!(current_release_table(&deployment).contains("none"));
}

#[test]
fn a_tenant_lists_stages_in_order_and_roles_as_words() {
    let tenant = api::Tenant {
        name: "acme".into(),
        state: Some(pb::TenantState {
            exists: true,
            display_name: "Acme".into(),
            stages: vec!["dev".into(), "qa".into(), "prod".into()],
            members: BTreeMap::from([
                ("bob".into(), pb::Role::Developer as i32),
                ("alice".into(), pb::Role::Admin as i32),
            ]),
            quota: None,
            suspended: false,
            suspension_reason: String::new(),
            deleted: false,
        }),
        sequence: 7,
    };
    let value = tenant_json(&tenant);
    assert_eq!(value["stages"], json!(["dev", "qa", "prod"]));
    assert_eq!(
        value["members"],
        json!({"alice": "admin", "bob": "developer"})
    );
    assert_eq!(value["quota"], json!(null));
    let text = tenant_table(&tenant);
    assert!(text.contains("dev → qa → prod"), "{text}");
    assert!(text.contains("developer"), "{text}");
}

#[test]
fn a_build_shows_its_status_as_a_word() {
    let build = api::Build {
        tenant: "acme".into(),
        id: "shop_r2".into(),
        state: Some(pb::BuildState {
            app: "shop".into(),
            revision: 2,
            status: pb::BuildStatus::Failed as i32,
            attempt: 2,
            reason: "compile error".into(),
            diagnostics: vec![pb::Diagnostic {
                file: "model.json".into(),
                line: 3,
                column: 9,
                message: "unknown entity".into(),
            }],
            ..pb::BuildState::default()
        }),
        sequence: 4,
    };
    let value = build_json(&build);
    assert_eq!(value["status"], "failed");
    assert_eq!(value["diagnostics"][0]["line"], 3);
    assert!(build_table(&build).contains("model.json:3:9"));
    assert!(builds_table(&[build]).contains("failed"));
}

#[test]
fn an_event_is_one_line_with_its_sequence_kind_and_type() {
    let event = api::Event {
        sequence: 42,
        tenant: "acme".into(),
        kind: "app".into(),
        entity_id: "shop".into(),
        event_type: "revision_created".into(),
        time_ms: 0,
        who: "alice".into(),
        ..api::Event::default()
    };
    assert_eq!(
        event_line(&event),
        "      42  1970-01-01T00:00:00Z  app/shop  revision_created  alice"
    );
    let value = event_json(&event);
    assert_eq!(value["sequence"], 42);
    assert!(!serde_json::to_string(&value).unwrap().contains('\n'));
}

#[test]
fn a_forced_release_shows_its_blockers() {
    let forced = pb::Release {
        forced: true,
        forced_blockers: vec!["reviews r2 uses Product.price".into()],
        data_changes: vec!["data: Product.price: text → decimal: emptied".into()],
        ..promoted_release()
    };
    let value = release_json(&forced);
    assert_eq!(value["forced"], true);
    assert_eq!(
        value["forced_blockers"],
        json!(["reviews r2 uses Product.price"])
    );
    assert_eq!(release_json(&promoted_release())["forced"], false);
    let text = releases_table(std::slice::from_ref(&forced), Some(3));
    assert!(text.contains("yes (1 blocker)"), "{text}");
    assert!(
        text.contains("v3 forced over: reviews r2 uses Product.price"),
        "{text}"
    );
    assert!(
        text.contains("v3 migrated Product.price: text → decimal: emptied"),
        "{text}"
    );
    assert_eq!(
        value["data_changes"],
        json!(["data: Product.price: text → decimal: emptied"])
    );
    let deployment = api::Deployment {
        tenant: "acme".into(),
        app: "shop".into(),
        stage: "test".into(),
        state: Some(pb::DeploymentState {
            current: 3,
            releases: vec![forced],
            ..Default::default()
        }),
        sequence: 1,
    };
    let text = current_release_table(&deployment);
    assert!(text.contains("forced over: reviews r2"), "{text}");
    assert!(!releases_table(&[promoted_release()], None).contains("forced over"));
}

fn finding(app: &str, field: &str) -> api::ImpactFinding {
    api::ImpactFinding {
        consumer_app: app.into(),
        consumer_revision: 2,
        entity: "Product".into(),
        field: field.into(),
        message: "is gone".into(),
    }
}

#[test]
fn an_impact_report_lists_blockers_then_warnings() {
    let report = api::ImpactReport {
        blockers: vec![finding("reviews", "price")],
        warnings: vec![finding("orders", "")],
        data_changes: Vec::new(),
    };
    let value = impact_json(&report);
    assert_eq!(value["blockers"][0]["consumer_app"], "reviews");
    assert_eq!(value["blockers"][0]["field"], "price");
    assert_eq!(value["warnings"][0]["consumer_revision"], 2);
    let text = impact_table(&report);
    let blocker = text.find("blocker").unwrap();
    let warning = text.find("warning").unwrap();
    assert!(blocker < warning, "{text}");
    assert!(
        text.contains("reviews") && text.contains("Product"),
        "{text}"
    );
    assert_eq!(
        impact_table(&api::ImpactReport::default()),
        "nothing would break: no blockers, no warnings"
    );
}

#[test]
fn an_impact_report_shows_what_the_migration_does_to_the_data() {
    let report = api::ImpactReport {
        data_changes: vec![api::DataChange {
            entity: "Product".into(),
            field: "price".into(),
            loses_data: true,
            message: "text → decimal: values that do not read as decimal are emptied".into(),
        }],
        ..Default::default()
    };
    let text = impact_table(&report);
    assert!(text.starts_with("nothing would break"), "{text}");
    let row = text
        .lines()
        .find(|l| l.contains("price"))
        .unwrap_or_else(|| panic!("no data change row: {text}"));
    assert!(
        row.contains("loses data") && row.contains("text → decimal"),
        "{text}"
    );
    assert_eq!(impact_json(&report)["data_changes"][0]["loses_data"], true);
}

fn step(step: api::PublishStep, message: &str) -> api::PublishProgress {
    api::PublishProgress {
        step: step as i32,
        message: message.into(),
        ..Default::default()
    }
}

#[test]
fn publish_steps_are_lines_and_log_lines_are_marked() {
    use api::PublishStep as S;
    let line = publish_step_line(&step(S::BuildStarted, "build started by w1"));
    assert_eq!(line, Some(("✓ build started by w1".to_owned(), false)));
    let log = publish_step_line(&step(S::BuildLog, "compiling"));
    assert_eq!(log, Some(("  │ compiling".to_owned(), true)));
    let deployed = api::PublishProgress {
        stage: "dev".into(),
        release: 4,
        ..step(S::Deployed, "")
    };
    assert_eq!(
        publish_step_line(&deployed).unwrap().0,
        "✓ deployed to dev as v4"
    );
    assert_eq!(publish_step_line(&step(S::BuildFailed, "x")), None);
    assert_eq!(publish_step_line(&step(S::DeployRefused, "x")), None);

    let mut failed = step(S::BuildFailed, "build failed: bad model");
    failed.diagnostics.push(pb::Diagnostic {
        file: "neo.toml".into(),
        line: 2,
        column: 5,
        message: "unknown key".into(),
    });
    let value = publish_progress_json(&failed);
    assert_eq!(value["step"], "build_failed");
    assert_eq!(value["diagnostics"][0]["column"], 5);
    assert!(!value.to_string().contains('\n'), "one line");
}

#[test]
fn build_log_lines_read_time_level_text() {
    let line = pb::BuildLogLine {
        attempt: 1,
        time: "2024-05-01T10:00:00Z".into(),
        level: "info".into(),
        text: "bundle written".into(),
        end: false,
    };
    assert_eq!(
        build_log_line(&line),
        "2024-05-01T10:00:00Z info  bundle written"
    );
    let value = build_log_json(&line);
    assert_eq!(value["level"], "info");
    assert_eq!(value["end"], false);
}
