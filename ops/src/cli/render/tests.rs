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
        forced: false,
        forced_blockers: Vec::new(),
        rollout: pb::RolloutStatus::Succeeded as i32,
        rollout_reason: String::new(),
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
