//! The JSON documents and tables of the `Settings` service: an app's settings and secrets on a
//! stage (secrets by name, version and change, never a value) and how two stages differ.

use std::collections::BTreeMap;

use neo_gateway::api;
use neo_protocol::pb;
use serde_json::{Value, json};

use crate::output::{fields, or_dash, table, unix_millis, yes_no};

/// The settings sorted by name.
fn sorted(settings: &api::StageSettings) -> BTreeMap<&str, &str> {
    settings
        .settings
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// What is missing as `setting a, secret b`, settings first (empty when nothing is).
pub fn missing_words(missing: Option<&pb::ConfigNeeds>) -> Vec<String> {
    let Some(missing) = missing else {
        return Vec::new();
    };
    let settings = missing.settings.iter().map(|n| format!("setting {n}"));
    let secrets = missing.secrets.iter().map(|n| format!("secret {n}"));
    settings.chain(secrets).collect()
}

/// What `stage` lacks for `app`'s build after a publish, as JSON.
pub fn lacking_json(app: &str, stage: &str, missing: &pb::ConfigNeeds) -> Value {
    json!({ "app": app, "stage": stage, "lacks": needs_json(Some(missing)) })
}

/// What `stage` lacks for `app`'s build after a publish, each with the command that sets it.
pub fn lacking_text(app: &str, stage: &str, missing: &pb::ConfigNeeds) -> String {
    let mut text = format!(
        "{app} on {stage} will not start until the stage has what its build needs; set each with:"
    );
    for name in &missing.settings {
        text.push_str(&format!(
            "\n  neo settings set {app} --stage {stage} {name}=VALUE"
        ));
    }
    for name in &missing.secrets {
        text.push_str(&format!("\n  neo secrets set {app} --stage {stage} {name}"));
    }
    text
}

fn needs_json(needs: Option<&pb::ConfigNeeds>) -> Value {
    let needs = needs.cloned().unwrap_or_default();
    json!({ "settings": needs.settings, "secrets": needs.secrets })
}

fn secret_json(secret: &api::SecretInfo) -> Value {
    json!({
        "name": secret.name,
        "version": secret.version,
        "changed": unix_millis(secret.changed_ms),
        "changed_ms": secret.changed_ms,
        "changed_by": secret.changed_by,
    })
}

/// A stage's settings and secrets as JSON (secrets without values: the API has none).
pub fn stage_settings_json(settings: &api::StageSettings) -> Value {
    json!({
        "tenant": settings.tenant,
        "app": settings.app,
        "stage": settings.stage,
        "settings": sorted(settings),
        "secrets": settings.secrets.iter().map(secret_json).collect::<Vec<_>>(),
        "missing": needs_json(settings.missing.as_ref()),
        "release": settings.release,
        "sequence": settings.sequence,
    })
}

/// The settings as a NAME/VALUE table (or a note when there are none).
pub fn settings_table(settings: &api::StageSettings) -> String {
    if settings.settings.is_empty() {
        return format!("(no settings on {})", settings.stage);
    }
    let mut t = table(["SETTING", "VALUE"]);
    for (name, value) in sorted(settings) {
        t.add_row([name, value]);
    }
    t.to_string()
}

/// The secrets as a NAME/VERSION/CHANGED/BY table (or a note when there are none).
pub fn secrets_table(settings: &api::StageSettings) -> String {
    if settings.secrets.is_empty() {
        return format!("(no secrets on {})", settings.stage);
    }
    let mut t = table(["SECRET", "VERSION", "CHANGED", "BY"]);
    for s in &settings.secrets {
        let changed = if s.changed_ms == 0 {
            "-".to_owned()
        } else {
            unix_millis(s.changed_ms)
        };
        t.add_row([
            s.name.clone(),
            s.version.to_string(),
            changed,
            or_dash(&s.changed_by),
        ]);
    }
    t.to_string()
}

/// What the current release's build needs that the stage lacks, as one line.
pub fn missing_line(settings: &api::StageSettings) -> String {
    let missing = missing_words(settings.missing.as_ref());
    if missing.is_empty() {
        "missing: nothing".to_owned()
    } else {
        format!("missing: {}", missing.join(", "))
    }
}

/// A stage's settings, then its secrets, then what it lacks.
pub fn stage_settings_table(settings: &api::StageSettings) -> String {
    format!(
        "{}\n\n{}\n\n{}",
        settings_table(settings),
        secrets_table(settings),
        missing_line(settings)
    )
}

/// One secret after it was set: its name and new version.
pub fn secret_set_json(secret: &api::SecretInfo) -> Value {
    json!({ "name": secret.name, "version": secret.version })
}

/// One secret after it was set, as its fields.
pub fn secret_set_table(secret: &api::SecretInfo) -> String {
    fields([
        ("name", secret.name.clone()),
        ("version", secret.version.to_string()),
    ])
    .to_string()
}

/// How two stages differ as JSON (secrets without values).
pub fn diff_json(from: &str, to: &str, diff: &api::SettingsDiff) -> Value {
    let entries: Vec<Value> = diff
        .entries
        .iter()
        .map(|e| {
            let mut entry = json!({
                "name": e.name,
                "kind": if e.secret { "secret" } else { "setting" },
                "in_from": e.in_from,
                "in_to": e.in_to,
                "blocks_promotion": e.blocks_promotion,
            });
            if !e.secret {
                entry["from_value"] = json!(e.in_from.then_some(&e.from_value));
                entry["to_value"] = json!(e.in_to.then_some(&e.to_value));
            }
            entry
        })
        .collect();
    json!({
        "from": from,
        "to": to,
        "entries": entries,
        "missing": needs_json(diff.missing.as_ref()),
    })
}

/// One side of a diff entry: a setting's value or a secret's `set`, `-` when absent.
fn side(entry: &api::SettingsDiffEntry, present: bool, value: &str) -> String {
    match (present, entry.secret) {
        (false, _) => "-".to_owned(),
        (true, true) => "set".to_owned(),
        (true, false) => value.to_owned(),
    }
}

/// How two stages differ: a row per entry, then what refuses promoting `from` into `to`.
pub fn diff_table(from: &str, to: &str, diff: &api::SettingsDiff) -> String {
    let missing = missing_words(diff.missing.as_ref());
    let summary = if missing.is_empty() {
        format!("nothing missing: promoting {from} → {to} needs no other setting or secret")
    } else {
        format!(
            "promoting {from} → {to} is refused until {to} has: {}",
            missing.join(", ")
        )
    };
    if diff.entries.is_empty() {
        return format!("(the settings and secrets of {from} and {to} are the same)\n\n{summary}");
    }
    let (on_from, on_to) = (format!("ON {from}"), format!("ON {to}"));
    let mut t = table(["NAME", "KIND", &on_from, &on_to, "BLOCKS PROMOTION"]);
    for e in &diff.entries {
        t.add_row([
            e.name.clone(),
            if e.secret { "secret" } else { "setting" }.to_owned(),
            side(e, e.in_from, &e.from_value),
            side(e, e.in_to, &e.to_value),
            if e.blocks_promotion {
                yes_no(true)
            } else {
                String::new()
            },
        ]);
    }
    format!("{t}\n\n{summary}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, secret: bool, in_to: bool, blocks: bool) -> api::SettingsDiffEntry {
        api::SettingsDiffEntry {
            name: name.into(),
            secret,
            in_from: true,
            in_to,
            from_value: if secret { String::new() } else { "CHF".into() },
            to_value: String::new(),
            blocks_promotion: blocks,
        }
    }

    #[test]
    fn a_diff_shows_values_of_settings_only_and_what_blocks() {
        let diff = api::SettingsDiff {
            entries: vec![
                entry("currency", false, false, true),
                entry("api_key", true, false, false),
            ],
            missing: Some(pb::ConfigNeeds {
                settings: vec!["currency".into()],
                secrets: vec![],
            }),
        };
        let text = diff_table("dev", "test", &diff);
        assert!(text.contains("ON dev"), "{text}");
        assert!(text.contains("CHF"), "{text}");
        assert!(text.contains("set"), "{text}");
        assert!(
            text.ends_with("promoting dev → test is refused until test has: setting currency"),
            "{text}"
        );
        let doc = diff_json("dev", "test", &diff);
        assert_eq!(doc["entries"][0]["from_value"], "CHF");
        assert_eq!(doc["entries"][0]["to_value"], Value::Null);
        assert!(doc["entries"][1].get("from_value").is_none());
        assert_eq!(doc["missing"]["settings"], json!(["currency"]));
    }

    #[test]
    fn a_stage_lists_settings_then_secrets_then_what_it_lacks() {
        let settings = api::StageSettings {
            stage: "dev".into(),
            settings: [("b".to_owned(), "2".to_owned()), ("a".into(), "1".into())]
                .into_iter()
                .collect(),
            secrets: vec![api::SecretInfo {
                name: "api_key".into(),
                version: 2,
                changed_ms: 1_500,
                changed_by: "alice".into(),
            }],
            missing: Some(pb::ConfigNeeds {
                settings: vec![],
                secrets: vec!["token".into()],
            }),
            ..Default::default()
        };
        let text = stage_settings_table(&settings);
        assert!(
            text.find("a ").unwrap() < text.find("b ").unwrap(),
            "{text}"
        );
        assert!(text.contains("1970-01-01T00:00:01.5Z"), "{text}");
        assert!(text.ends_with("missing: secret token"), "{text}");
        let doc = stage_settings_json(&settings);
        assert_eq!(doc["settings"], json!({"a": "1", "b": "2"}));
        assert_eq!(doc["secrets"][0]["version"], 2);
    }
}
