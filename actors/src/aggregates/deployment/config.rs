//! The deployment's stage configuration: the app's settings (values in clear) and secrets (name
//! and version only; the values live sealed in the secrets store) on one stage.
//!
//! # Rules
//!
//! | rule | refusal | when |
//! | --- | --- | --- |
//! | `settings.empty` | invalid | a settings change that sets and unsets nothing |
//! | `settings.name` | invalid | a setting or secret name is not `[a-z][a-z0-9_]{0,62}` |
//! | `settings.value` | invalid | a setting value longer than [`MAX_SETTING_VALUE_BYTES`] |
//! | `settings.both` | invalid | one change sets and unsets the same name |
//! | `settings.edge` | invalid | an `edge_` setting the stage edge does not know, or a value out of its range ([`EDGE_SETTINGS`]) |
//! | `settings.not_set` | not found | unset a setting the stage does not have |
//! | `settings.unchanged` | precondition | every setting already has the value given |
//! | `settings.name_taken` | precondition | a setting named like a secret of the stage, or the other way round |
//! | `secret.version` | invalid / precondition | version 0, or not after the version recorded |
//! | `secret.not_set` | not found | remove a secret the stage does not have |
//! | `promotion.missing_config` | precondition | the promoted build needs a setting or secret the stage lacks |
//!
//! A change while a release is current also creates a new release of the same image with the
//! new configuration (origin `CONFIG`), so the stage's agent rolls its replicas.

use neo_protocol::names::validate_setting_name;
use neo_protocol::pb::{self, ReleaseOrigin, deployment_event::Event};

use super::Rules;
use crate::aggregate::Rejection;

/// The largest setting value accepted, in bytes.
pub const MAX_SETTING_VALUE_BYTES: usize = 4096;

/// The settings the stage edge reads (the prefix `edge_` is theirs) and their ranges: an app's
/// body limit in KiB (up to 1 GiB) and its requests per second.
pub const EDGE_SETTINGS: [(&str, u64, u64); 2] = [
    ("edge_max_body_kib", 1, 1 << 20),
    ("edge_rate_per_s", 1, 1_000_000),
];

/// Checks an `edge_` setting: a known name and a whole number in its range.
fn check_edge_setting(field: &str, name: &str, value: &str) -> Result<(), Rejection> {
    let Some((_, min, max)) = EDGE_SETTINGS.iter().find(|(known, _, _)| *known == name) else {
        let known: Vec<&str> = EDGE_SETTINGS.iter().map(|(n, _, _)| *n).collect();
        return Err(Rejection::invalid(
            "settings.edge",
            field,
            format_args!(
                "{name}: settings named edge_… are the stage edge's; it knows {}",
                known.join(", ")
            ),
        ));
    };
    match value.trim().parse::<u64>() {
        Ok(n) if (*min..=*max).contains(&n) => Ok(()),
        _ => Err(Rejection::invalid(
            "settings.edge",
            field,
            format_args!("{name} must be a whole number from {min} to {max}, not {value:?}"),
        )),
    }
}

impl Rules<'_> {
    pub(super) fn change_settings(&self, c: pb::ChangeSettings) -> Result<Vec<Event>, Rejection> {
        self.check_target("change_settings", &c.app, &c.stage)?;
        if c.set.is_empty() && c.unset.is_empty() {
            return Err(Rejection::invalid(
                "settings.empty",
                "change_settings",
                "the change sets and unsets nothing",
            ));
        }
        let config = self.config.clone().unwrap_or_default();
        for (name, value) in &c.set {
            check_setting_name(&format!("change_settings.set.{name}"), name)?;
            if name.starts_with("edge_") {
                check_edge_setting(&format!("change_settings.set.{name}"), name, value)?;
            }
            if value.len() > MAX_SETTING_VALUE_BYTES {
                return Err(Rejection::invalid(
                    "settings.value",
                    format!("change_settings.set.{name}"),
                    format_args!(
                        "the value of {name} is {} bytes; the limit is {MAX_SETTING_VALUE_BYTES}",
                        value.len()
                    ),
                ));
            }
            if config.secrets.contains_key(name) {
                return Err(Rejection::precondition(
                    "settings.name_taken",
                    format_args!("{name} is a secret of stage {}, not a setting", self.stage),
                ));
            }
        }
        for name in &c.unset {
            check_setting_name("change_settings.unset", name)?;
            if c.set.contains_key(name) {
                return Err(Rejection::invalid(
                    "settings.both",
                    "change_settings.unset",
                    format_args!("{name} is both set and unset in one change"),
                ));
            }
            if !config.settings.contains_key(name) {
                return Err(Rejection::not_found(
                    "settings.not_set",
                    format_args!(
                        "setting {name} is not set for app {} on stage {}",
                        c.app, c.stage
                    ),
                ));
            }
        }
        if c.unset.is_empty()
            && c.set
                .iter()
                .all(|(name, value)| config.settings.get(name) == Some(value))
        {
            return Err(Rejection::precondition(
                "settings.unchanged",
                "every setting already has the value given",
            ));
        }
        let mut next = config;
        for name in &c.unset {
            next.settings.remove(name);
        }
        next.settings
            .extend(c.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let changed = Event::SettingsChanged(pb::SettingsChanged {
            app: c.app.clone(),
            stage: c.stage.clone(),
            set: c.set,
            unset: c.unset,
        });
        Ok(self.with_config_release(changed, c.app, c.stage, next))
    }

    pub(super) fn record_secret(&self, c: pb::RecordSecret) -> Result<Vec<Event>, Rejection> {
        self.check_target("record_secret", &c.app, &c.stage)?;
        check_setting_name("record_secret.name", &c.name)?;
        let config = self.config.clone().unwrap_or_default();
        if config.settings.contains_key(&c.name) {
            return Err(Rejection::precondition(
                "settings.name_taken",
                format_args!(
                    "{} is a setting of stage {}, not a secret",
                    c.name, self.stage
                ),
            ));
        }
        if c.version == 0 {
            return Err(Rejection::invalid(
                "secret.version",
                "record_secret.version",
                "secret versions are numbered from 1",
            ));
        }
        if let Some(&recorded) = config.secrets.get(&c.name)
            && c.version <= recorded
        {
            return Err(Rejection::precondition(
                "secret.version",
                format_args!(
                    "secret {} is at version {recorded}; version {} is not newer",
                    c.name, c.version
                ),
            ));
        }
        let mut next = config;
        next.secrets.insert(c.name.clone(), c.version);
        let changed = Event::SecretChanged(pb::SecretChanged {
            app: c.app.clone(),
            stage: c.stage.clone(),
            name: c.name,
            version: c.version,
        });
        Ok(self.with_config_release(changed, c.app, c.stage, next))
    }

    pub(super) fn remove_secret(&self, c: pb::RemoveSecret) -> Result<Vec<Event>, Rejection> {
        self.check_target("remove_secret", &c.app, &c.stage)?;
        check_setting_name("remove_secret.name", &c.name)?;
        let mut next = self.config.clone().unwrap_or_default();
        if next.secrets.remove(&c.name).is_none() {
            return Err(Rejection::not_found(
                "secret.not_set",
                format_args!(
                    "secret {} is not set for app {} on stage {}",
                    c.name, c.app, c.stage
                ),
            ));
        }
        let removed = Event::SecretRemoved(pb::SecretRemoved {
            app: c.app.clone(),
            stage: c.stage.clone(),
            name: c.name,
        });
        Ok(self.with_config_release(removed, c.app, c.stage, next))
    }

    /// Refuses a promotion into a stage that lacks what the promoted build needs.
    pub(super) fn check_needs(
        &self,
        stage: &str,
        needs: Option<&pb::ConfigNeeds>,
    ) -> Result<(), Rejection> {
        let Some(needs) = needs else { return Ok(()) };
        let missing = missing(needs, self.config.as_ref());
        if missing.settings.is_empty() && missing.secrets.is_empty() {
            return Ok(());
        }
        let mut named: Vec<String> = missing
            .settings
            .iter()
            .map(|s| format!("setting {s}"))
            .collect();
        named.extend(missing.secrets.iter().map(|s| format!("secret {s}")));
        Err(Rejection::precondition(
            "promotion.missing_config",
            format_args!(
                "stage {stage} lacks what the promoted build needs: {} (set them on {stage} first; \
                 a promotion never copies settings or secrets)",
                named.join(", ")
            ),
        ))
    }

    /// `event`, followed by a new release of the current image with `config` when one runs.
    fn with_config_release(
        &self,
        event: Event,
        app: String,
        stage: String,
        config: pb::StageConfig,
    ) -> Vec<Event> {
        let mut events = vec![event];
        if let Some(current) = self.current_release() {
            let release = pb::Release {
                image_digest: current.image_digest.clone(),
                revision: current.revision,
                build_id: current.build_id.clone(),
                origin: ReleaseOrigin::Config.into(),
                config: Some(config),
                ..Default::default()
            };
            events.push(self.release_created(app, stage, release));
        }
        events
    }
}

/// What `needs` asks for that `config` lacks.
pub fn missing(needs: &pb::ConfigNeeds, config: Option<&pb::StageConfig>) -> pb::ConfigNeeds {
    let empty = pb::StageConfig::default();
    let config = config.unwrap_or(&empty);
    pb::ConfigNeeds {
        settings: needs
            .settings
            .iter()
            .filter(|s| !config.settings.contains_key(*s))
            .cloned()
            .collect(),
        secrets: needs
            .secrets
            .iter()
            .filter(|s| !config.secrets.contains_key(*s))
            .cloned()
            .collect(),
    }
}

/// Applies a configuration event to the state's configuration.
pub(super) fn apply(state: &mut pb::DeploymentState, event: &Event) {
    let (app, stage) = match event {
        Event::SettingsChanged(e) => (&e.app, &e.stage),
        Event::SecretChanged(e) => (&e.app, &e.stage),
        Event::SecretRemoved(e) => (&e.app, &e.stage),
        _ => return,
    };
    if state.app.is_empty() {
        state.app.clone_from(app);
        state.stage.clone_from(stage);
    }
    let config = state.config.get_or_insert_with(Default::default);
    match event {
        Event::SettingsChanged(e) => {
            for name in &e.unset {
                config.settings.remove(name);
            }
            config
                .settings
                .extend(e.set.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        Event::SecretChanged(e) => {
            config.secrets.insert(e.name.clone(), e.version);
        }
        Event::SecretRemoved(e) => {
            config.secrets.remove(&e.name);
        }
        _ => {}
    }
}

fn check_setting_name(field: &str, name: &str) -> Result<(), Rejection> {
    validate_setting_name("setting", name)
        .map_err(|e| Rejection::invalid("settings.name", field, e))
}

#[cfg(test)]
mod tests;
