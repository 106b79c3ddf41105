//! A canary on Kubernetes: a second Deployment, `{app}-canary`, beside the podgroup's, whose pods the app's Service also selects (weighted by replicas), built as plain values.
//!
//! Kubernetes splits no requests without a mesh or a Gateway: the Service spreads connections
//! over every ready pod of the app, so the canary's share of the traffic follows its share of
//! the replicas ([`split`]), and a sticky canary is not sticky here. Its pods carry
//! [`LABEL_TRACK`]`=`[`TRACK_CANARY`], which its Deployment's selector names, so that the two
//! Deployments keep apart; its secret environment is the podgroup's Secret when the values are
//! the same, else a Secret of its own ([`secret_name`]).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;

use super::objects::{
    self, LABEL_APP, LABEL_TRACK, MANAGED_SELECTOR, ObjectError, TRACK_CANARY, Workload,
};
use crate::driver::{CanaryDesired, Desired, PodgroupKey};

/// The canary's Deployment: `{app}-canary`.
pub fn name(key: &PodgroupKey) -> String {
    format!("{}-canary", key.app)
}

/// The canary's own Secret, when its secret values differ from the podgroup's:
/// `{app}-secrets-canary`. Not `{app}-canary-secrets`, which is the Secret of an app called
/// `{app}-canary`; no app's Secret (`{app}-secrets`) ends in `-canary`.
pub fn secret_name(key: &PodgroupKey) -> String {
    format!("{}-secrets-canary", key.app)
}

/// The label selector of the canary Deployment of `key`'s app (in its namespace). Deleting by
/// it, not by name, leaves alone an app that happens to be called `{app}-canary`.
pub fn selector(key: &PodgroupKey) -> String {
    format!(
        "{MANAGED_SELECTOR},{LABEL_APP}={},{LABEL_TRACK}={TRACK_CANARY}",
        key.app
    )
}

/// Whether an object's labels mark it as a canary's.
pub fn is_canary(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels
        .and_then(|labels| labels.get(LABEL_TRACK))
        .is_some_and(|track| track == TRACK_CANARY)
}

/// How many replicas each Deployment of a podgroup runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// The podgroup's own Deployment (its release).
    pub stable: u32,
    /// The canary's Deployment.
    pub canary: u32,
}

/// Splits `replicas` between the release and a canary at `weight` percent (`None`: no
/// canary). The canary runs its share, rounded up, of the count, at least one and at most all
/// (as on the process driver); the release runs the rest, at least one while any is desired,
/// so the total is the desired count (one more when the canary takes all, or there is one).
pub fn split(replicas: u32, weight: Option<u32>) -> Split {
    let Some(weight) = weight else {
        return Split {
            stable: replicas,
            canary: 0,
        };
    };
    if replicas == 0 {
        return Split {
            stable: 0,
            canary: 0,
        };
    }
    let share = (u64::from(replicas) * u64::from(weight)).div_ceil(100);
    let canary = u32::try_from(share.clamp(1, u64::from(replicas))).unwrap_or(replicas);
    Split {
        stable: (replicas - canary).max(1),
        canary,
    }
}

/// Whether the canary needs a Secret of its own: it has secrets, and they are not the
/// podgroup's.
fn has_own_secret(desired: &Desired, canary: &CanaryDesired) -> bool {
    !canary.secrets.is_empty() && canary.secrets != desired.secrets
}

/// The canary's Deployment, when `desired` has a canary: the podgroup's pod template with the
/// canary's release, image, settings and secrets, labelled and selected by its track, running
/// the canary's [`split`] of the desired count.
///
/// # Errors
///
/// [`ObjectError::TooManyReplicas`] when the count does not fit an `i32`;
/// [`ObjectError::SecretName`] when a secret's name cannot be a Secret key.
pub fn deployment(desired: &Desired) -> Result<Option<Deployment>, ObjectError> {
    let Some(canary) = &desired.canary else {
        return Ok(None);
    };
    let key = &desired.key;
    let secret_name = if has_own_secret(desired, canary) {
        secret_name(key)
    } else {
        objects::secret_name(key)
    };
    objects::workload_deployment(&Workload {
        key,
        name: &name(key),
        canary: true,
        release: canary.release,
        image_reference: &canary.image_reference,
        replicas: split(desired.replicas, Some(canary.weight)).canary,
        resources: &desired.resources,
        env: &canary.env,
        secrets: &canary.secrets,
        secret_versions: &canary.secret_versions,
        secret_name: &secret_name,
    })
    .map(Some)
}

/// The canary's own Opaque Secret ([`secret_name`]), when it has secrets whose values differ
/// from the podgroup's (with the same values, its pods read the podgroup's Secret); labelled
/// as the podgroup's Secret is, and with its track.
///
/// # Errors
///
/// [`ObjectError::SecretName`] when a secret's name cannot be a Secret key.
pub fn secret(desired: &Desired) -> Result<Option<Secret>, ObjectError> {
    let Some(canary) = desired
        .canary
        .as_ref()
        .filter(|canary| has_own_secret(desired, canary))
    else {
        return Ok(None);
    };
    let key = &desired.key;
    let mut labels = objects::podgroup_labels(key);
    labels.insert(LABEL_TRACK.to_owned(), TRACK_CANARY.to_owned());
    objects::opaque_secret(key, secret_name(key), labels, &canary.secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canary_runs_its_share_rounded_up_and_the_release_the_rest() {
        let cases = [
            // (replicas, weight, stable, canary)
            (5, None, 5, 0),
            (5, Some(20), 4, 1),
            (5, Some(50), 2, 3),
            (5, Some(100), 1, 5),
            (5, Some(0), 4, 1),
            (10, Some(25), 7, 3),
            (1, Some(10), 1, 1),
            (0, Some(50), 0, 0),
            (0, None, 0, 0),
            (3, Some(250), 1, 3),
        ];
        for (replicas, weight, stable, canary) in cases {
            assert_eq!(
                split(replicas, weight),
                Split { stable, canary },
                "{replicas} replicas at {weight:?} %"
            );
        }
    }

    #[test]
    fn a_canary_is_known_by_its_track_label() {
        let labels = BTreeMap::from([(LABEL_TRACK.to_owned(), TRACK_CANARY.to_owned())]);
        assert!(is_canary(Some(&labels)));
        assert!(!is_canary(Some(&BTreeMap::new())));
        assert!(!is_canary(None));
    }
}
