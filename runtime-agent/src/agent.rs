//! The agent of one stage: desired podgroups in, driver calls out, observations back.
//!
//! - [`desired`]: the stage's desired podgroups, from a durable consumer on
//!   `neo.desired.{stage}.>` and a full resync at start and every `resync_every`.
//! - converge (here): every desired podgroup is applied through the driver; what the driver
//!   runs that is no longer desired is removed. Level-triggered: events only make it fast.
//! - [`report`]: rollouts (`succeeded` only once the driver saw the new replicas ready),
//!   health reports, metrics and the autoscaler's observations.
//! - [`ship`]: log lines to `NEO_LOGS`, replacements to the podgroup.
//! - [`idle`] and [`wake`]: scale to zero, from the requests the stage's load balancer sees.
//! - [`canary`]: canary steps timed and their figures reported to the deployment.
//! - [`lease`]: all of that only while the agent holds its stage's lease; a second agent of
//!   the stage stands by and takes over when the lease lapses.

pub mod canary;
pub mod desired;
pub mod idle;
pub mod lease;
pub mod report;
pub mod secrets;
pub mod ship;
pub mod wake;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use neo_client::PlatformClient;
use neo_image::Registry;
use neo_protocol::{StageName, pb};
use tokio::sync::{Mutex, Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::driver::{CanaryDesired, Desired, Driver, DriverEvent, PodgroupKey};

/// How an agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The stage it serves.
    pub stage: StageName,
    /// Its name in reports and as the principal of its commands.
    pub name: String,
    /// Serve only these tenants (none: every tenant).
    pub tenants: Option<BTreeSet<String>>,
    /// How often the whole desired state is read again.
    pub resync_every: Duration,
    /// How often the driver is observed (rollouts, health changes).
    pub observe_every: Duration,
    /// How often a health report is sent when no replica changed (the health heartbeat).
    pub report_every: Duration,
    /// How often usage (averaged over the observations since the last time) is weighed for the
    /// autoscaler: it is sent when it moved, the ready count or the desired state changed, or
    /// the podgroup runs more than one replica (see [`report`]).
    pub metrics_every: Duration,
    /// How often usage is sent when none of that happened (the metrics heartbeat).
    pub heartbeat_every: Duration,
    /// How long a command to the platform may take.
    pub command_timeout: Duration,
    /// The stage's load balancer (`http://host:port`), for the apps' URLs in reports.
    pub lb_url: Option<String>,
    /// The lease this agent and its standbys share ("": the stage's own). Agents serving
    /// different tenants of one stage each need their own group.
    pub lease_group: String,
}

impl AgentConfig {
    /// Defaults for `stage`: resync 60 s, observe every second (and on every replica change),
    /// health heartbeat 60 s, usage weighed every 5 s and sent at least every 60 s.
    pub fn new(stage: StageName) -> Self {
        Self {
            name: format!("agent-{stage}"),
            stage,
            tenants: None,
            resync_every: Duration::from_secs(60),
            observe_every: Duration::from_secs(1),
            report_every: Duration::from_secs(60),
            metrics_every: Duration::from_secs(5),
            heartbeat_every: Duration::from_secs(60),
            command_timeout: Duration::from_secs(10),
            lb_url: None,
            lease_group: String::new(),
        }
    }

    /// Whether it serves `tenant`.
    pub fn serves(&self, tenant: &str) -> bool {
        self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }
}

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// JetStream refused.
    #[error("JetStream: {0}")]
    JetStream(String),
    /// The lease group is not a valid name.
    #[error("lease group `{0}`: use lowercase letters, digits and `-`")]
    LeaseGroup(String),
}

/// What the agent's tasks share (its context).
pub(crate) struct Ctx {
    pub config: AgentConfig,
    /// The agent's connection (secret requests).
    pub client: async_nats::Client,
    /// Secret values fetched for the podgroups' current releases (memory only).
    pub secrets: secrets::SecretCache,
    pub js: async_nats::jetstream::Context,
    pub platform: PlatformClient,
    /// The lease the agent's commands carry (term 0 while it stands by).
    pub fence: neo_client::lease::Fence,
    pub driver: Arc<dyn Driver>,
    pub registry: Arc<Registry>,
    /// The desired podgroups by key; `None` until the first resync.
    pub desired: Mutex<Option<BTreeMap<PodgroupKey, pb::DesiredPodgroup>>>,
    /// Wakes the converge loop.
    pub converge: Notify,
    /// Wakes the report loop (a replica changed).
    pub changed: Notify,
    /// Podgroups of deleted tenants purged in this run (so each is purged once).
    pub purged: Mutex<BTreeSet<PodgroupKey>>,
}

impl Ctx {
    /// The principal of the agent's commands.
    pub fn principal(&self) -> String {
        format!("agent:{}:{}", self.config.stage, self.config.name)
    }

    /// The driver's view of a desired podgroup (without its secrets: [`secrets::for_state`]).
    pub fn to_desired(&self, desired: &pb::DesiredPodgroup) -> Desired {
        let reference = |digest: &str| {
            format!(
                "{}/{}@{digest}",
                self.registry.host(),
                self.registry.repository(&desired.tenant, &desired.app),
            )
        };
        Desired {
            key: key_of(desired),
            release: desired.release,
            image_digest: desired.image_digest.clone(),
            image_reference: reference(&desired.image_digest),
            replicas: desired.replicas,
            resources: resources(desired),
            env: settings_env(&desired.settings),
            secrets: crate::driver::SecretEnv::default(),
            secret_versions: desired.secrets.clone(),
            quota: desired.tenant_quota,
            idle_to_zero_s: desired.idle_to_zero_s,
            canary: desired.canary.as_ref().map(|c| CanaryDesired {
                release: c.release,
                image_digest: c.image_digest.clone(),
                image_reference: reference(&c.image_digest),
                env: settings_env(&c.settings),
                secrets: crate::driver::SecretEnv::default(),
                secret_versions: c.secrets.clone(),
                step: c.step,
                weight: c.weight,
                sticky: c.sticky,
                step_seconds: c.step_seconds,
            }),
        }
    }
}

/// A release's settings as its replicas' environment (`NEO_SETTING_<NAME>`).
fn settings_env(settings: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    settings
        .iter()
        .map(|(k, v)| (format!("NEO_SETTING_{}", k.to_ascii_uppercase()), v.clone()))
        .collect()
}

/// The per-replica allocation of a desired state (a podgroup always has one; the default
/// mirrors the podgroup's, 250 millicores and 256 MiB, for a state without it).
pub fn resources(desired: &pb::DesiredPodgroup) -> pb::Resources {
    desired.resources.unwrap_or(pb::Resources {
        cpu_millis: 250,
        memory_mib: 256,
    })
}

/// The podgroup a desired state names.
pub fn key_of(desired: &pb::DesiredPodgroup) -> PodgroupKey {
    PodgroupKey {
        tenant: desired.tenant.clone(),
        app: desired.app.clone(),
        stage: desired.stage.clone(),
    }
}

/// A running agent (active, or standing by until its lease is free); dropping it stops every
/// task without releasing the lease (as a killed agent would; the driver's replicas keep
/// running).
pub struct Agent {
    supervisor: JoinHandle<()>,
    status: watch::Receiver<lease::Status>,
    leases: async_nats::jetstream::kv::Store,
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.supervisor.abort();
    }
}

impl Agent {
    /// Starts the agent of `config.stage` on `client`, running podgroups through `driver`
    /// whose events arrive on `events`. Images are pulled from `registry`. It acts once it
    /// holds the stage's lease (see [`lease`]); until then it stands by.
    ///
    /// # Errors
    /// When the Runtime streams or the leases bucket cannot be opened.
    pub async fn start(
        client: async_nats::Client,
        driver: Arc<dyn Driver>,
        events: mpsc::Receiver<DriverEvent>,
        registry: Arc<Registry>,
        config: AgentConfig,
    ) -> Result<Self, AgentError> {
        let group = &config.lease_group;
        if !group
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(AgentError::LeaseGroup(group.clone()));
        }
        let js = async_nats::jetstream::new(client.clone());
        crate::streams::ensure(&js, crate::streams::Retention::default())
            .await
            .map_err(|e| AgentError::JetStream(e.to_string()))?;
        let leases = neo_client::lease::open(&js)
            .await
            .map_err(|e| AgentError::JetStream(e.to_string()))?;
        let fence = neo_client::lease::Fence::new(group);
        let ctx = Arc::new(Ctx {
            secrets: secrets::SecretCache::default(),
            client: client.clone(),
            platform: PlatformClient::for_agent(
                client,
                config.command_timeout,
                config.stage.clone(),
                fence.clone(),
            ),
            fence,
            config,
            js,
            driver,
            registry,
            desired: Mutex::new(None),
            converge: Notify::new(),
            changed: Notify::new(),
            purged: Mutex::new(BTreeSet::new()),
        });
        tracing::info!(stage = %ctx.config.stage, agent = %ctx.config.name,
            driver = ctx.driver.name(), "agent starting");
        let events = Arc::new(Mutex::new(events));
        let (status, watching) = watch::channel(lease::Status::default());
        let supervisor = tokio::spawn(lease::run(ctx, leases.clone(), status, move |ctx| {
            let events = events.clone();
            async move {
                vec![
                    tokio::spawn(desired::resync_loop(ctx.clone())),
                    tokio::spawn(desired::consume_loop(ctx.clone())),
                    tokio::spawn(converge_loop(ctx.clone())),
                    tokio::spawn(report::report_loop(ctx.clone())),
                    tokio::spawn(idle::idle_loop(ctx.clone())),
                    tokio::spawn(wake::wake_loop(ctx.clone())),
                    tokio::spawn(canary::canary_loop(ctx.clone())),
                    tokio::spawn(ship::ship_loop(ctx, events)),
                ]
            }
        }));
        Ok(Self {
            supervisor,
            status: watching,
            leases,
        })
    }

    /// Waits until this agent holds its lease and acts.
    pub async fn active(&self) {
        lease::active(&mut self.status.clone()).await;
    }

    /// The term of the lease it holds now (`None`: standing by).
    pub fn term(&self) -> Option<u64> {
        self.status.borrow().held.as_ref().map(|h| h.term)
    }

    /// Stops acting and gives the lease up at once (a graceful stop: a standby takes over
    /// without waiting for the lease to lapse).
    pub async fn release(self) {
        self.supervisor.abort();
        lease::release(&self.leases, &self.status).await;
    }
}

/// Applies every desired podgroup and removes what is no longer desired, on every change
/// and at least every `resync_every`.
async fn converge_loop(ctx: Arc<Ctx>) {
    loop {
        let _ = tokio::time::timeout(ctx.config.resync_every, ctx.converge.notified()).await;
        converge(&ctx).await;
    }
}

async fn converge(ctx: &Ctx) {
    let Some(desired) = ctx.desired.lock().await.clone() else {
        // Not synced yet: removing anything now could stop what is still desired.
        return;
    };
    for state in desired.values().filter(|d| !d.removed) {
        if state.image_digest.is_empty() {
            continue;
        }
        let mut wanted = ctx.to_desired(state);
        match secrets::for_state(ctx, &wanted.key, state).await {
            Ok(env) => wanted.secrets = env,
            Err(e) => {
                tracing::warn!(podgroup = %wanted.key, error = %e, "cannot apply the desired state");
                continue;
            }
        }
        if let (Some(canary), Some(of_state)) = (wanted.canary.as_mut(), &state.canary) {
            match secrets::for_release(ctx, &wanted.key, canary.release, &of_state.secrets).await {
                Ok(env) => canary.secrets = env,
                Err(e) => {
                    tracing::warn!(podgroup = %wanted.key, error = %e,
                        "cannot apply the desired canary");
                    continue;
                }
            }
        }
        let span = tracing::info_span!("agent.apply", podgroup = %wanted.key,
            release = wanted.release, replicas = wanted.replicas);
        neo_telemetry::trace::set_parent(&span, &state.traceparent);
        if let Err(e) = ctx.driver.apply(&wanted).instrument(span).await {
            tracing::warn!(podgroup = %wanted.key, error = %e, "cannot apply the desired state");
        }
    }
    ctx.driver.synced().await;
    let running = match ctx.driver.observe().await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot observe the driver");
            return;
        }
    };
    purge(ctx, &desired).await;
    for observed in running {
        let gone = desired.get(&observed.key).is_none_or(|d| d.removed);
        if gone && ctx.config.serves(&observed.key.tenant) {
            tracing::info!(podgroup = %observed.key, "no longer desired: removing");
            if let Err(e) = ctx.driver.remove(&observed.key).await {
                tracing::warn!(podgroup = %observed.key, error = %e, "cannot remove");
            }
        }
    }
}

/// Purges (once per agent run) every podgroup whose tenant was deleted: its replicas, its
/// objects and its data go. A purge that fails is tried again at the next converge.
async fn purge(ctx: &Ctx, desired: &BTreeMap<PodgroupKey, pb::DesiredPodgroup>) {
    for (key, state) in desired.iter().filter(|(_, d)| d.removed && d.purge) {
        if ctx.purged.lock().await.contains(key) {
            continue;
        }
        tracing::info!(podgroup = %key, "tenant deleted: purging the podgroup and its data");
        match ctx.driver.purge(key).await {
            Ok(()) => {
                ctx.purged.lock().await.insert(key.clone());
                ctx.secrets.forget(key).await;
            }
            Err(e) => {
                tracing::warn!(podgroup = %key, sequence = state.sequence, error = %e, "cannot purge; retrying at the next converge");
            }
        }
    }
}

/// Waits `period`, or less when `notify` fires.
pub(crate) async fn wait(period: Duration, notify: &Notify) {
    let _ = tokio::time::timeout(period, notify.notified()).await;
}
