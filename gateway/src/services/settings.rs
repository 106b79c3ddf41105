//! `neo.gateway.v1.Settings`: an app's settings and secrets on one stage, and how two stages
//! differ. Setting values live in the deployment entity's events; secret values are sealed in
//! the secrets store, and only their names and versions reach the deployment entity.

use std::sync::Arc;

use neo_protocol::pb::{self, deployment_command::Command};
use neo_protocol::{EntityRef, TenantName};
use neo_secrets::{SecretName, SecretStore, SecretsError};
use tonic::{Request, Response, Status};

use super::deployments::Target;
use super::{Ctx, app, stage, state_after, tenant};
use crate::api::{self, settings_server::Settings};
use crate::auth::Action;
use crate::error::{invalid, refused, unavailable};

/// The settings service.
pub struct SettingsService(pub Arc<Ctx>);

fn target(tenant_v: &str, app_v: &str, stage_v: &str) -> Result<Target, Status> {
    Ok((
        tenant("tenant", tenant_v)?,
        app("app", app_v)?,
        stage("stage", stage_v)?,
    ))
}

fn secret_name(value: &str) -> Result<SecretName, Status> {
    SecretName::new(value).map_err(|e| invalid("name", e))
}

/// A secrets-store error as a gRPC status. The store's messages name tenants, keys and key
/// ids, never a value.
pub fn secrets_status(e: SecretsError) -> Status {
    match e {
        SecretsError::Name(e) => invalid("name", e),
        e @ SecretsError::ValueTooLarge { .. } => invalid("value", e),
        e @ (SecretsError::DataKeyDestroyed { .. } | SecretsError::NoDataKey { .. }) => {
            refused("secrets.data_key", e)
        }
        e @ SecretsError::Conflict { .. } => Status::aborted(e.to_string()),
        e @ (SecretsError::JetStream { .. } | SecretsError::Request { .. }) => unavailable(e),
        e => Status::internal(format!("secrets store: {e}")),
    }
}

impl SettingsService {
    fn store(&self) -> Result<&Arc<SecretStore>, Status> {
        self.0.secrets.as_ref().ok_or_else(|| {
            refused(
                "secrets.unavailable",
                "the platform runs without a secrets store: start it with a key-encryption key \
                 (--kek-file or NEO_KEK)",
            )
        })
    }

    /// Authenticates, then authorises a change on the target's stage (who may deploy there).
    async fn allow_change<T>(
        &self,
        request: &Request<T>,
        target: &Target,
    ) -> Result<String, Status> {
        let principal = self
            .0
            .allow_release(request, &target.0, &target.2, false)
            .await?;
        Ok(principal.user().to_owned())
    }

    async fn deployment(&self, (t, a, s): &Target) -> Result<(pb::DeploymentState, u64), Status> {
        self.0
            .bus
            .state::<pb::DeploymentState>(&EntityRef::deployment(t, a, s))
            .await
    }

    async fn run(
        &self,
        target: &Target,
        user: &str,
        command: Command,
    ) -> Result<api::StageSettings, Status> {
        let (t, a, s) = target;
        let accepted = self
            .0
            .bus
            .command_naming(
                &EntityRef::deployment(t, a, s),
                user,
                &pb::DeploymentCommand {
                    command: Some(command),
                },
                // `change_settings.set.{name}` is the request's `set.{name}`, and so on.
                &[
                    ("change_settings.", ""),
                    ("record_secret.name", "name"),
                    ("remove_secret.name", "name"),
                ],
            )
            .await?;
        let state: pb::DeploymentState = state_after(&accepted)?;
        self.view(target, state, accepted.last_sequence).await
    }

    /// The stage's settings as the API shows them: secrets by name, version and change.
    async fn view(
        &self,
        target: &Target,
        state: pb::DeploymentState,
        sequence: u64,
    ) -> Result<api::StageSettings, Status> {
        let (t, a, s) = target;
        let config = state.config.clone().unwrap_or_default();
        let stored = match &self.0.secrets {
            Some(store) => store.list(t, a, s).await.map_err(secrets_status)?,
            None => Vec::new(),
        };
        let secrets = config
            .secrets
            .iter()
            .map(|(name, &version)| {
                let info = stored.iter().find(|i| i.name.as_str() == name);
                api::SecretInfo {
                    name: name.clone(),
                    version,
                    changed_ms: info.map_or(0, |i| i.changed_at_ms),
                    changed_by: info.map(|i| i.changed_by.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let needs = self.current_needs(t, &state).await?;
        Ok(api::StageSettings {
            tenant: t.to_string(),
            app: a.to_string(),
            stage: s.to_string(),
            settings: config.settings.clone().into_iter().collect(),
            secrets,
            missing: Some(neo_actors::aggregates::deployment::config::missing(
                &needs,
                Some(&config),
            )),
            release: state.current,
            sequence,
        })
    }

    /// What the build of the deployment's current release needs (nothing when none runs).
    async fn current_needs(
        &self,
        t: &TenantName,
        state: &pb::DeploymentState,
    ) -> Result<pb::ConfigNeeds, Status> {
        let Some(release) = state.releases.iter().find(|r| r.number == state.current) else {
            return Ok(pb::ConfigNeeds::default());
        };
        let Ok(build) = EntityRef::parse(t.as_str(), "build", &release.build_id) else {
            return Ok(pb::ConfigNeeds::default());
        };
        let (build, _) = self.0.bus.state::<pb::BuildState>(&build).await?;
        Ok(build.needs.unwrap_or_default())
    }
}

#[tonic::async_trait]
impl Settings for SettingsService {
    async fn get_settings(
        &self,
        request: Request<api::GetSettingsRequest>,
    ) -> Result<Response<api::StageSettings>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        self.0.allow(&request, Some(&target.0), Action::Read)?;
        self.0.release_action(&target.0, &target.2).await?;
        let (state, sequence) = self.deployment(&target).await?;
        Ok(Response::new(self.view(&target, state, sequence).await?))
    }

    async fn change_settings(
        &self,
        request: Request<api::ChangeSettingsRequest>,
    ) -> Result<Response<api::StageSettings>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        let user = self.allow_change(&request, &target).await?;
        let r = request.into_inner();
        let command = Command::ChangeSettings(pb::ChangeSettings {
            app: target.1.to_string(),
            stage: target.2.to_string(),
            set: r.set.into_iter().collect(),
            unset: r.unset,
        });
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn set_secret(
        &self,
        request: Request<api::SetSecretRequest>,
    ) -> Result<Response<api::StageSettings>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        let name = secret_name(&r.name)?;
        if r.value.is_empty() {
            return Err(invalid("value", "a secret's value must not be empty"));
        }
        let user = self.allow_change(&request, &target).await?;
        let store = self.store()?;
        let (t, a, s) = &target;
        // The deployment refuses this too (`settings.name_taken`), but only after the value
        // would have been sealed into the store: checked first so nothing is stored for a
        // refused name.
        let (state, _) = self.deployment(&target).await?;
        if state
            .config
            .as_ref()
            .is_some_and(|c| c.settings.contains_key(name.as_str()))
        {
            return Err(refused(
                "settings.name_taken",
                format!("{name} is a setting of stage {s}, not a secret"),
            ));
        }
        // Sealed first, so the release the event rolls out finds its value in the store.
        let info = store
            .set(t, a, s, &name, &request.get_ref().value, &user)
            .await
            .map_err(secrets_status)?;
        tracing::info!(tenant = %t, app = %a, stage = %s, secret = %name, version = info.version, user = %user, "secret set");
        let version = u32::try_from(info.version)
            .map_err(|_| Status::internal(format!("secret {name} is past version {}", u32::MAX)))?;
        let command = Command::RecordSecret(pb::RecordSecret {
            app: a.to_string(),
            stage: s.to_string(),
            name: name.to_string(),
            version,
        });
        Ok(Response::new(self.run(&target, &user, command).await?))
    }

    async fn unset_secret(
        &self,
        request: Request<api::UnsetSecretRequest>,
    ) -> Result<Response<api::StageSettings>, Status> {
        let r = request.get_ref();
        let target = target(&r.tenant, &r.app, &r.stage)?;
        let name = secret_name(&r.name)?;
        let user = self.allow_change(&request, &target).await?;
        let store = self.store()?;
        let (t, a, s) = &target;
        // The release without it first, so no rollout still needs the value when it goes.
        let command = Command::RemoveSecret(pb::RemoveSecret {
            app: a.to_string(),
            stage: s.to_string(),
            name: name.to_string(),
        });
        let view = self.run(&target, &user, command).await?;
        store.unset(t, a, s, &name).await.map_err(secrets_status)?;
        tracing::info!(tenant = %t, app = %a, stage = %s, secret = %name, user = %user, "secret unset");
        Ok(Response::new(view))
    }

    async fn diff_settings(
        &self,
        request: Request<api::DiffSettingsRequest>,
    ) -> Result<Response<api::SettingsDiff>, Status> {
        let r = request.get_ref();
        let t = tenant("tenant", &r.tenant)?;
        let a = app("app", &r.app)?;
        let from = stage("from_stage", &r.from_stage)?;
        let to = stage("to_stage", &r.to_stage)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        self.0.release_action(&t, &from).await?;
        self.0.release_action(&t, &to).await?;
        let (from_state, _) = self.deployment(&(t.clone(), a.clone(), from)).await?;
        let (to_state, _) = self.deployment(&(t.clone(), a, to)).await?;
        let needs = self.current_needs(&t, &from_state).await?;
        Ok(Response::new(diff(
            from_state.config.unwrap_or_default(),
            to_state.config.unwrap_or_default(),
            &needs,
        )))
    }
}

/// How `from` and `to` differ, and what `to` lacks of `needs`.
pub fn diff(
    from: pb::StageConfig,
    to: pb::StageConfig,
    needs: &pb::ConfigNeeds,
) -> api::SettingsDiff {
    let missing = neo_actors::aggregates::deployment::config::missing(needs, Some(&to));
    let mut entries = Vec::new();
    let names = from
        .settings
        .keys()
        .chain(to.settings.keys())
        .collect::<std::collections::BTreeSet<_>>();
    for name in names {
        let (f, t) = (from.settings.get(name), to.settings.get(name));
        if f == t {
            continue;
        }
        entries.push(api::SettingsDiffEntry {
            name: name.clone(),
            secret: false,
            in_from: f.is_some(),
            in_to: t.is_some(),
            from_value: f.cloned().unwrap_or_default(),
            to_value: t.cloned().unwrap_or_default(),
            blocks_promotion: missing.settings.contains(name),
        });
    }
    // A needed setting set on neither stage still blocks the promotion.
    for name in &missing.settings {
        if !entries.iter().any(|e| &e.name == name) {
            entries.push(api::SettingsDiffEntry {
                name: name.clone(),
                blocks_promotion: true,
                ..Default::default()
            });
        }
    }
    let names = from
        .secrets
        .keys()
        .chain(to.secrets.keys())
        .chain(missing.secrets.iter())
        .collect::<std::collections::BTreeSet<_>>();
    for name in names {
        let (f, t) = (
            from.secrets.contains_key(name),
            to.secrets.contains_key(name),
        );
        let blocks = missing.secrets.contains(name);
        if f == t && !blocks {
            continue;
        }
        entries.push(api::SettingsDiffEntry {
            name: name.clone(),
            secret: true,
            in_from: f,
            in_to: t,
            blocks_promotion: blocks,
            ..Default::default()
        });
    }
    api::SettingsDiff {
        entries,
        missing: Some(missing),
    }
}

/// The impact findings of config gaps: what `build` needs that the stage, whose deployment is
/// `state`, lacks (a promotion into the stage is refused until they are set).
pub fn config_findings(
    (_, a, s): &Target,
    state: &pb::DeploymentState,
    build: &pb::BuildState,
) -> Vec<api::ImpactFinding> {
    let Some(needs) = &build.needs else {
        return Vec::new();
    };
    let missing = neo_actors::aggregates::deployment::config::missing(needs, state.config.as_ref());
    let finding = |kind: &str, name: &String| api::ImpactFinding {
        consumer_app: a.to_string(),
        consumer_revision: build.revision,
        entity: String::new(),
        field: String::new(),
        message: format!(
            "{kind} {name} has no value on stage {s}: a promotion into {s} is refused until it is set \
             (neo {kind}s set --stage {s})"
        ),
    };
    missing
        .settings
        .iter()
        .map(|n| finding("setting", n))
        .chain(missing.secrets.iter().map(|n| finding("secret", n)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(settings: &[(&str, &str)], secrets: &[(&str, u32)]) -> pb::StageConfig {
        pb::StageConfig {
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            secrets: secrets.iter().map(|(k, v)| ((*k).into(), *v)).collect(),
        }
    }

    #[test]
    fn the_diff_lists_differences_and_what_blocks_a_promotion() {
        let from = config(&[("currency", "CHF"), ("limit", "10")], &[("api_key", 3)]);
        let to = config(&[("limit", "10"), ("theme", "dark")], &[("other", 1)]);
        let needs = pb::ConfigNeeds {
            settings: vec!["currency".into(), "region".into()],
            secrets: vec!["api_key".into()],
        };
        let d = diff(from, to, &needs);
        let shown: Vec<(&str, bool, bool, bool, bool)> = d
            .entries
            .iter()
            .map(|e| {
                (
                    e.name.as_str(),
                    e.secret,
                    e.in_from,
                    e.in_to,
                    e.blocks_promotion,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("currency", false, true, false, true),
                ("theme", false, false, true, false),
                ("region", false, false, false, true),
                ("api_key", true, true, false, true),
                ("other", true, false, true, false),
            ]
        );
        assert_eq!(d.entries[0].from_value, "CHF");
        let missing = d.missing.expect("missing");
        assert_eq!(missing.settings, vec!["currency", "region"]);
        assert_eq!(missing.secrets, vec!["api_key"]);
    }
}
