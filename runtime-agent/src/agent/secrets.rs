//! The secret values of a desired podgroup: fetched from the platform
//! (`neo.secrets.{stage}.{tenant}.{app}`, request/reply) when a release that names secrets is
//! applied, and kept in memory per podgroup and release (a changed secret is a new release;
//! a canary's release is held beside its baseline's).

use std::collections::HashMap;

use neo_protocol::pb;
use tokio::sync::Mutex;

use super::Ctx;
use crate::driver::{PodgroupKey, SecretEnv};

/// Why the secrets of a desired state could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SecretFetchError {
    /// The podgroup's names are not valid names.
    #[error("podgroup {0} has an invalid name")]
    Names(PodgroupKey),
    /// The platform did not answer or refused.
    #[error("fetching the secrets of {key}: {source}")]
    Fetch {
        /// Which podgroup.
        key: PodgroupKey,
        /// Why.
        source: neo_secrets::SecretsError,
    },
    /// The store lacks a secret the release runs with, or holds an older version.
    #[error(
        "secret {name} of {key} is at version {have} in the secrets store; release {release} needs version {want}"
    )]
    Stale {
        /// Which podgroup.
        key: PodgroupKey,
        /// The release.
        release: u32,
        /// The secret.
        name: String,
        /// The version the release names.
        want: u32,
        /// The version the store holds (0: none).
        have: u64,
    },
}

/// Fetched secrets by podgroup, with the releases they were fetched for (the newest two: a
/// canary and its baseline).
#[derive(Default)]
pub(crate) struct SecretCache(Mutex<HashMap<PodgroupKey, Vec<(u32, SecretEnv)>>>);

impl SecretCache {
    /// Drops what is held for `key` (its podgroup is gone).
    pub async fn forget(&self, key: &PodgroupKey) {
        self.0.lock().await.remove(key);
    }
}

/// The environment variable of secret `name`: `NEO_SECRET_<NAME>` (names are `[a-z][a-z0-9_]*`).
pub fn env_name(name: &str) -> String {
    format!("NEO_SECRET_{}", name.to_ascii_uppercase())
}

/// The secret environment of `state`'s release: see [`for_release`].
pub(crate) async fn for_state(
    ctx: &Ctx,
    key: &PodgroupKey,
    state: &pb::DesiredPodgroup,
) -> Result<SecretEnv, SecretFetchError> {
    for_release(ctx, key, state.release, &state.secrets).await
}

/// The secret environment of `release`, which names `secrets` (name → version): from the
/// cache, else fetched from the platform. Every secret the release names must be there at
/// that version or a later one.
pub(crate) async fn for_release(
    ctx: &Ctx,
    key: &PodgroupKey,
    release: u32,
    secrets: &std::collections::BTreeMap<String, u32>,
) -> Result<SecretEnv, SecretFetchError> {
    if secrets.is_empty() {
        return Ok(SecretEnv::default());
    }
    if let Some((_, env)) = ctx
        .secrets
        .0
        .lock()
        .await
        .get(key)
        .and_then(|held| held.iter().find(|(r, _)| *r == release))
    {
        return Ok(env.clone());
    }
    let (tenant, app, stage) = key
        .names()
        .ok_or_else(|| SecretFetchError::Names(key.clone()))?;
    let revealed = neo_secrets::fetch_stage_secrets(
        &ctx.client,
        &stage,
        &tenant,
        &app,
        ctx.config.command_timeout,
    )
    .await
    .map_err(|source| SecretFetchError::Fetch {
        key: key.clone(),
        source,
    })?;
    let mut env = SecretEnv::default();
    for (name, &want) in secrets {
        let found = revealed.get(name);
        let have = found.map_or(0, |s| s.version);
        let Some(secret) = found.filter(|_| have >= u64::from(want)) else {
            return Err(SecretFetchError::Stale {
                key: key.clone(),
                release,
                name: name.clone(),
                want,
                have,
            });
        };
        env.0.insert(env_name(name), secret.value.to_string());
    }
    tracing::debug!(podgroup = %key, release, secrets = ?env, "secrets fetched");
    let mut cache = ctx.secrets.0.lock().await;
    let held = cache.entry(key.clone()).or_default();
    held.retain(|(r, _)| *r != release);
    held.push((release, env.clone()));
    held.sort_by_key(|(r, _)| std::cmp::Reverse(*r));
    held.truncate(2);
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_become_upper_case_variables() {
        assert_eq!(env_name("payment_api_key"), "NEO_SECRET_PAYMENT_API_KEY");
    }
}
