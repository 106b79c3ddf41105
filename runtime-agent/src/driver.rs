//! Drivers run podgroups: the [`Driver`] trait and the types the agent and drivers share.
//!
//! A driver is level-triggered: [`Driver::apply`] makes what runs match one desired podgroup
//! (idempotent, returns without waiting for replicas), [`Driver::observe`] says what runs now,
//! [`Driver::remove`] stops everything of one podgroup. What happens in between (replicas
//! becoming ready or dying, log lines) arrives as [`DriverEvent`]s on the channel given at
//! construction.

pub mod database;
pub mod kube;
pub mod logline;
pub mod process;

use std::collections::BTreeMap;

use neo_protocol::{AppName, StageName, TenantName, pb};

/// One app on one stage of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodgroupKey {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// The stage.
    pub stage: String,
}

impl PodgroupKey {
    /// Its parts as validated names, or `None` when one is not a valid name.
    pub fn names(&self) -> Option<(TenantName, AppName, StageName)> {
        Some((
            TenantName::new(&self.tenant).ok()?,
            AppName::new(&self.app).ok()?,
            StageName::new(&self.stage).ok()?,
        ))
    }

    /// The podgroup a log line belongs to.
    pub fn of_line(line: &pb::LogLine) -> Self {
        Self {
            tenant: line.tenant.clone(),
            app: line.app.clone(),
            stage: line.stage.clone(),
        }
    }

    /// `acme/shop/dev`, for unit tests.
    #[cfg(test)]
    pub(crate) fn acme_shop_dev() -> Self {
        Self {
            tenant: "acme".into(),
            app: "shop".into(),
            stage: "dev".into(),
        }
    }

    /// Whether `line` belongs to this podgroup.
    pub fn owns(&self, line: &pb::LogLine) -> bool {
        self.tenant == line.tenant && self.app == line.app && self.stage == line.stage
    }
}

impl std::fmt::Display for PodgroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.app, self.stage)
    }
}

/// What should run for one podgroup.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Which podgroup.
    pub key: PodgroupKey,
    /// The release being run.
    pub release: u32,
    /// The image's manifest digest (`sha256:…`).
    pub image_digest: String,
    /// The full pull reference, `host/repository@digest`.
    pub image_reference: String,
    /// How many replicas.
    pub replicas: u32,
    /// Per-replica allocation.
    pub resources: pb::Resources,
    /// Environment of every replica besides what the driver sets itself (settings).
    pub env: BTreeMap<String, String>,
    /// Secret environment of every replica (`NEO_SECRET_<NAME>`): held in memory, given to
    /// the replicas (process driver) or put in a Kubernetes Secret (kube driver), never
    /// written to the agent's own files or logs.
    pub secrets: SecretEnv,
    /// The version of each secret (by name) the release runs: a new version rolls the replicas.
    pub secret_versions: BTreeMap<String, u32>,
    /// The tenant's quota, if the platform sent it (the kube driver's ResourceQuota).
    pub quota: Option<pb::Quota>,
    /// Its policy's scale to zero window (0: never): a request finding no replica is held and
    /// wakes it (see [`crate::activity`]).
    pub idle_to_zero_s: u32,
    /// A release rolling out beside `release` as a canary.
    pub canary: Option<CanaryDesired>,
}

/// A canary of a desired podgroup: its release runs beside the podgroup's (the baseline),
/// with the same resources, and takes `weight` percent of the app's requests.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryDesired {
    /// Its release.
    pub release: u32,
    /// Its image's manifest digest.
    pub image_digest: String,
    /// Its full pull reference.
    pub image_reference: String,
    /// Its environment (its release's settings).
    pub env: BTreeMap<String, String>,
    /// Its secret environment.
    pub secrets: SecretEnv,
    /// The version of each secret it runs.
    pub secret_versions: BTreeMap<String, u32>,
    /// The step it is at (from 0).
    pub step: u32,
    /// Its share of the requests, in percent.
    pub weight: u32,
    /// Keep each client on one release.
    pub sticky: bool,
    /// How long each step runs before the agent reports it.
    pub step_seconds: u32,
}

/// Secret environment variables (name → value). `Debug` shows the names only, and it is never
/// serialised.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretEnv(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl SecretEnv {
    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// How a rollout of a release is going, as the driver sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rollout {
    /// New replicas are starting.
    Progressing,
    /// Every desired replica of the release is ready (and older ones are gone).
    Succeeded,
    /// The release cannot run (say, it crashes at start); the previous release keeps serving.
    Failed(String),
}

/// One podgroup as the driver observes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Which podgroup.
    pub key: PodgroupKey,
    /// The release the driver is rolling to (or runs).
    pub release: u32,
    /// Its replicas, of every release still running.
    pub replicas: Vec<pb::ReplicaStatus>,
    /// The rollout of `release`.
    pub rollout: Rollout,
    /// The desired canary cannot start (its replicas keep failing): why.
    pub canary_failed: Option<String>,
}

/// Something that happened to a podgroup between observations.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverEvent {
    /// A replica changed phase (ready, unhealthy, stopped, failed).
    Health {
        /// Which podgroup.
        key: PodgroupKey,
        /// The replica as it is now.
        replica: pb::ReplicaStatus,
    },
    /// A replica died or failed its probe and another took its place.
    Replaced {
        /// Which podgroup.
        key: PodgroupKey,
        /// The replica that was replaced.
        replica: String,
        /// The one that replaces it.
        replacement: String,
        /// Why.
        reason: String,
    },
    /// Lines written by replicas.
    Logs(Vec<pb::LogLine>),
}

/// A driver could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The image could not be fetched or unpacked.
    #[error("image {reference}: {reason}")]
    Image {
        /// The reference.
        reference: String,
        /// Why.
        reason: String,
    },
    /// The backend (the OS, the Kubernetes API) refused or failed.
    #[error("{0}")]
    Backend(String),
}

/// Runs podgroups.
#[async_trait::async_trait]
pub trait Driver: Send + Sync + 'static {
    /// A short name for logs (`process`, `kube`).
    fn name(&self) -> &'static str;
    /// Makes what runs for `desired.key` match `desired`; returns once the change is under way.
    async fn apply(&self, desired: &Desired) -> Result<(), DriverError>;
    /// Stops and removes everything of `key`.
    async fn remove(&self, key: &PodgroupKey) -> Result<(), DriverError>;
    /// Removes everything of `key` and its data: its tenant was deleted. Default: [`Self::remove`].
    async fn purge(&self, key: &PodgroupKey) -> Result<(), DriverError> {
        self.remove(key).await
    }
    /// Every podgroup the driver runs now, including ones it found from before a restart.
    async fn observe(&self) -> Result<Vec<Observed>, DriverError>;
    /// The agent has applied every podgroup of a full read of the desired state (called after
    /// each converge; what was not applied is not desired). Default: nothing to do.
    async fn synced(&self) {}

    /// The agent took its stage's lease: the driver may act (the process driver adopts what
    /// its predecessor left running). Called before anything is applied.
    async fn activate(&self) {}

    /// The agent lost its lease: the driver must stop acting (starting, replacing, stopping
    /// replicas) until [`Driver::activate`], and may keep serving what runs.
    async fn stand_by(&self) {}

    /// The requests of the stage's apps, when this driver routes the stage's traffic: the
    /// agent scales idle apps to zero and wakes them from it. Default: none (no scale to zero).
    fn activity(&self) -> Option<std::sync::Arc<crate::activity::Activity>> {
        None
    }

    /// What the stage's load balancer measures of each app's canary and baseline, when this
    /// driver routes the stage's traffic: the agent reports each step from it. Default: none
    /// (a canary's steps are not judged; it runs until completed or aborted by hand).
    fn canaries(&self) -> Option<std::sync::Arc<crate::canary::Canaries>> {
        None
    }
}
