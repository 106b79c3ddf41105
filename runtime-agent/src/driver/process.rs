//! The process driver, the embedded default: each replica is a local process.
//!
//! It pulls an image by digest and unpacks it ([`image`]), runs its entrypoint once per replica
//! with the stage's settings and its own role on the stage database ([`super::database`])
//! ([`replica`]), probes `/readyz` and `/healthz`
//! ([`health`]: a replica that is alive but not ready leaves the load balancer and stays; one
//! that dies or keeps failing `/healthz` is replaced, with its exit status and last error line
//! as the reason, [`exit`]), samples `/proc` for CPU and memory, ships output lines ([`logs`])
//! and routes the stage's traffic ([`lb`]).
//!
//! A rollout starts the new release's replicas next to the old ones and stops the old ones only
//! when every new one is ready. A canary's replicas run beside the release's (its share of
//! the desired count, at least one) and the load balancer splits the app's requests between
//! the two by the canary's weight ([`lb::Route`]); a canary whose replicas keep dying before
//! they are ready is given up (`Observed::canary_failed`), the release serving everything. A release whose replicas keep dying before they are ready fails
//! its rollout, and the previous release keeps serving. Replicas survive an agent restart: the
//! state file (`{data_dir}/replicas.json`) lets the next agent adopt them.
//!
//! The driver acts only while its agent holds the stage's lease: it starts standing by
//! ([`follow`]: routes from the active agent's state file, nothing supervised), and
//! [`Driver::activate`] adopts what runs and probes it once before supervising, so the load
//! balancer knows the replicas from its first request.

pub mod edge;
pub mod exit;
pub mod follow;
pub mod health;
pub mod image;
pub mod lb;
pub mod logs;
pub mod replica;
mod supervise;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use neo_image::Registry;
use neo_protocol::pb;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use self::image::ImageCache;
use self::lb::Routes;
use self::logs::Offsets;
use self::replica::{Replica, Saved, SavedCanary, Spec};
use super::database;
use super::{Desired, Driver, DriverError, DriverEvent, Observed, PodgroupKey, Rollout};

/// How the process driver runs.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Replica output and the state file go here.
    pub data_dir: PathBuf,
    /// Unpacked images, one directory per digest; agents on one machine may share it (default
    /// `{data_dir}/images`).
    pub images_dir: PathBuf,
    /// The stage's database as its admin (replicas never get this URL: each app gets its own
    /// role owning its own schema, as `NEO_DATABASE_URL`; see [`super::database`]).
    pub database_url: Option<String>,
    /// How often replicas are checked (a process that exited is seen within this) and
    /// starting replicas probed.
    pub probe_every: Duration,
    /// How often a replica that has been ready is probed and its usage sampled (Kubernetes'
    /// default `periodSeconds` is 10 s; a hung replica is replaced after
    /// `failure_threshold` × this).
    pub serving_probe_every: Duration,
    /// Probes failed in a row before a ready replica is replaced.
    pub failure_threshold: u32,
    /// How long a replica may take to become ready.
    pub start_timeout: Duration,
    /// Replicas of a release that die before they are ready before its rollout fails.
    pub max_start_failures: u32,
    /// How long a stopping replica gets between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// The stage's edge in front of the load balancer (TLS, limits, rates).
    pub edge: edge::EdgeConfig,
    /// Where replicas reach the stage's load balancer in plain HTTP (`http://127.0.0.1:8443`):
    /// each gets `NEO_PRODUCERS={this}/{tenant}/{app}`, to read the apps it consumes (set by
    /// [`crate::local::LocalRuntime`]; none: replicas are told no producer address).
    pub producers: Option<String>,
}

impl ProcessConfig {
    /// Defaults: check every 250 ms, probe a serving replica every 5 s, 3 failures, 60 s to
    /// start, 3 start failures, 10 s grace.
    pub fn new(data_dir: PathBuf, database_url: Option<String>) -> Self {
        Self {
            images_dir: data_dir.join("images"),
            data_dir,
            database_url,
            probe_every: Duration::from_millis(250),
            serving_probe_every: Duration::from_secs(5),
            failure_threshold: 3,
            start_timeout: Duration::from_secs(60),
            max_start_failures: 3,
            grace: Duration::from_secs(10),
            edge: edge::EdgeConfig::new(""),
            producers: None,
        }
    }
}

/// A replica's environment besides the driver's own variables: the desired state's, and
/// where the apps of its tenant answer on this stage (`NEO_PRODUCERS`, `{app}` left for the
/// apphost to fill in).
fn replica_env(
    env: &BTreeMap<String, String>,
    key: &PodgroupKey,
    producers: Option<&str>,
) -> BTreeMap<String, String> {
    let mut env = env.clone();
    if let Some(base) = producers {
        env.insert(
            "NEO_PRODUCERS".to_owned(),
            format!("{base}/{}/{{app}}", key.tenant),
        );
    }
    env
}

/// The replicas of one podgroup.
struct Group {
    /// What should run (none: adopted replicas whose podgroup the agent has not named yet).
    desired: Option<Desired>,
    /// The spec of the desired release, once its image is on disk.
    spec: Option<Arc<Spec>>,
    replicas: Vec<Tracked>,
    /// Start failures of the desired release, and the last reason.
    start_failures: u32,
    last_failure: String,
    /// The desired release's rollout failed: its replicas are not started again.
    failed: Option<String>,
    /// Replicas that died while serving, waiting for a replacement: (id, reason, what it ran).
    replacing: Vec<(String, String, Arc<Spec>)>,
    /// The spec of the desired canary, once its image is on disk.
    canary_spec: Option<Arc<Spec>>,
    /// Start failures of the desired canary, and the last reason.
    canary_failures: u32,
    canary_last_failure: String,
    /// The desired canary could not start: its replicas are not started again.
    canary_failed: Option<String>,
}

/// A replica and its log tailer.
struct Tracked {
    replica: Replica,
    offsets: Offsets,
    tailer: JoinHandle<()>,
}

struct Inner {
    config: ProcessConfig,
    /// The stage database, when there is one.
    database: Option<database::StageDatabase>,
    images: ImageCache,
    groups: Mutex<BTreeMap<PodgroupKey, Group>>,
    routes: Arc<Routes>,
    events: mpsc::Sender<DriverEvent>,
    http: reqwest::Client,
    /// When the state file was last written, and the log bytes shipped then.
    last_save: std::sync::Mutex<(std::time::Instant, u64)>,
    /// Wakes the supervisor before its next period (a new desired state).
    wake: tokio::sync::Notify,
    /// The agent holds its lease: supervise (else follow the state file).
    active: std::sync::atomic::AtomicBool,
    /// The state file as this driver last wrote it (to tell, when activated again, whether
    /// another agent wrote it since).
    last_written: std::sync::Mutex<Vec<u8>>,
}

/// Runs podgroups as local processes.
#[derive(Clone)]
pub struct ProcessDriver {
    inner: Arc<Inner>,
}

impl ProcessDriver {
    /// Starts the driver standing by (routes from the state file, see [`follow`]) until
    /// [`Driver::activate`]. Returns the driver and its supervising task.
    ///
    /// # Errors
    /// When the data directory cannot be created.
    pub async fn start(
        config: ProcessConfig,
        registry: Arc<Registry>,
        events: mpsc::Sender<DriverEvent>,
    ) -> Result<(Self, JoinHandle<()>), DriverError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| DriverError::Backend(format!("creating the data directory: {e}")))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .no_proxy()
            .build()
            .map_err(|e| DriverError::Backend(format!("probe client: {e}")))?;
        let database = config
            .database_url
            .as_deref()
            .map(database::StageDatabase::new)
            .transpose()
            .map_err(|e| DriverError::Backend(e.to_string()))?;
        let inner = Arc::new(Inner {
            database,
            images: ImageCache::new(config.images_dir.clone(), registry),
            config,
            groups: Mutex::new(BTreeMap::new()),
            routes: Arc::new(Routes::default()),
            events,
            http,
            last_save: std::sync::Mutex::new((std::time::Instant::now(), 0)),
            wake: tokio::sync::Notify::new(),
            active: std::sync::atomic::AtomicBool::new(false),
            last_written: std::sync::Mutex::new(Vec::new()),
        });
        // Routes from the state file before anyone serves them (no 503 for a running app).
        let mut followed = follow::Followed::default();
        inner.follow(&mut followed);
        let driver = Self {
            inner: inner.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                let period = if inner.is_active() {
                    inner.tick().await;
                    inner.config.probe_every
                } else {
                    inner.follow(&mut followed);
                    follow::FOLLOW_EVERY
                };
                let _ = tokio::time::timeout(period, inner.wake.notified()).await;
            }
        });
        Ok((driver, task))
    }

    /// The routes of the stage's load balancer (serve them with [`lb::serve`]).
    pub fn routes(&self) -> Arc<Routes> {
        self.inner.routes.clone()
    }

    /// The pull reference of an app's image.
    pub fn reference(&self, tenant: &str, app: &str, digest: &str) -> String {
        self.inner.images.reference(tenant, app, digest)
    }

    /// Stops supervising and tailing, leaving the replicas running for the next agent to adopt
    /// (what an agent killed outright leaves behind). A driver standing by writes nothing: the
    /// state file is the active agent's.
    pub async fn detach(&self) {
        let groups = self.inner.groups.lock().await;
        for tracked in groups.values().flat_map(|g| g.replicas.iter()) {
            tracked.tailer.abort();
        }
        if self.inner.is_active() {
            self.inner.save(&groups);
        }
    }

    /// Stops every replica (SIGTERM, SIGKILL after the grace period) and waits for them.
    pub async fn stop_all(&self) {
        {
            let mut groups = self.inner.groups.lock().await;
            for group in groups.values_mut() {
                group.desired = None;
                group.spec = None;
                for tracked in &mut group.replicas {
                    tracked.replica.terminate();
                }
            }
        }
        let deadline = std::time::Instant::now() + self.inner.config.grace + Duration::from_secs(2);
        while std::time::Instant::now() < deadline {
            self.inner.tick().await;
            if self.inner.groups.lock().await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills every replica at once, without waiting (for a `Drop`).
    pub fn kill_now(&self) {
        if let Ok(mut groups) = self.inner.groups.try_lock() {
            for tracked in groups.values_mut().flat_map(|g| g.replicas.iter_mut()) {
                tracked.replica.kill();
                tracked.tailer.abort();
            }
        }
    }

    /// The process ids of a podgroup's replicas (for tests and drills).
    pub async fn pids(&self, key: &PodgroupKey) -> Vec<u32> {
        let groups = self.inner.groups.lock().await;
        groups
            .get(key)
            .map(|g| g.replicas.iter().map(|t| t.replica.pid).collect())
            .unwrap_or_default()
    }
}

impl Inner {
    fn is_active(&self) -> bool {
        self.active.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn state_path(&self) -> PathBuf {
        self.config.data_dir.join("replicas.json")
    }

    fn replicas_dir(&self) -> PathBuf {
        self.config.data_dir.join("replicas")
    }

    /// Takes over what the state file lists and still runs.
    async fn adopt(&self) {
        let saved: Vec<Saved> = match std::fs::read(self.state_path()) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "ignoring an unreadable state file");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        let mut groups = self.groups.lock().await;
        for entry in saved {
            let key = PodgroupKey {
                tenant: entry.tenant.clone(),
                app: entry.app.clone(),
                stage: entry.stage.clone(),
            };
            let Some(replica) = Replica::adopt(&entry, &self.replicas_dir()) else {
                tracing::info!(replica = %entry.id, "replica from before the restart is gone");
                continue;
            };
            tracing::info!(podgroup = %key, replica = %replica.id, pid = replica.pid,
                "adopted a running replica");
            let offsets: Offsets = Arc::new([
                AtomicU64::new(entry.offsets[0]),
                AtomicU64::new(entry.offsets[1]),
            ]);
            let tracked = self.track(&key, replica, offsets);
            groups
                .entry(key)
                .or_insert_with(Group::empty)
                .replicas
                .push(tracked);
        }
    }

    fn track(&self, key: &PodgroupKey, replica: Replica, offsets: Offsets) -> Tracked {
        let tailer = logs::tail(
            key.clone(),
            replica.id.clone(),
            replica.dir.clone(),
            offsets.clone(),
            self.events.clone(),
        );
        Tracked {
            replica,
            offsets,
            tailer,
        }
    }

    /// Writes the state file (atomically).
    fn save(&self, groups: &BTreeMap<PodgroupKey, Group>) {
        let saved: Vec<Saved> = groups
            .iter()
            .flat_map(|(key, group)| {
                let canary = group.split();
                group.replicas.iter().map(move |t| {
                    let offsets =
                        [0, 1].map(|i| t.offsets[i].load(std::sync::atomic::Ordering::Relaxed));
                    Saved {
                        canary: canary.clone(),
                        ..t.replica.saved(key, offsets)
                    }
                })
            })
            .collect();
        let path = self.state_path();
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec_pretty(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                std::fs::write(&tmp, &bytes)?;
                std::fs::rename(&tmp, &path)?;
                Ok(bytes)
            });
        match written {
            Ok(bytes) => {
                *self
                    .last_written
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = bytes;
            }
            Err(e) => tracing::warn!(error = %e, "cannot write the state file"),
        }
    }

    fn emit(&self, event: DriverEvent) {
        if self.events.try_send(event).is_err() {
            tracing::debug!("driver event dropped (agent busy or gone)");
        }
    }
}

impl Group {
    fn empty() -> Self {
        Self {
            desired: None,
            spec: None,
            replicas: Vec::new(),
            start_failures: 0,
            last_failure: String::new(),
            failed: None,
            replacing: Vec::new(),
            canary_spec: None,
            canary_failures: 0,
            canary_last_failure: String::new(),
            canary_failed: None,
        }
    }

    /// The release of the canary that should run now (none: none, or it could not start).
    fn canary_release(&self) -> Option<u32> {
        self.desired
            .as_ref()
            .and_then(|d| d.canary.as_ref())
            .filter(|_| self.canary_failed.is_none())
            .map(|c| c.release)
    }

    /// What the load balancer routes to: the ready replicas of every release but the
    /// canary's, and the canary's at its weight.
    fn route(&self) -> lb::Route {
        let split = self.split();
        let canary = split.as_ref().map(|c| c.release);
        let ready = |of_canary: bool| -> Vec<SocketAddr> {
            self.replicas
                .iter()
                .filter(|t| {
                    t.replica.phase == pb::ReplicaPhase::Ready
                        && t.replica.stopping.is_none()
                        && (Some(t.replica.spec.release) == canary) == of_canary
                })
                .map(|t| t.replica.addr())
                .collect()
        };
        lb::Route {
            addrs: ready(false),
            canary: split.map(|c| c.route(ready(true))),
        }
    }

    /// The canary the load balancer splits for: the desired one, unless it failed.
    fn split(&self) -> Option<SavedCanary> {
        let canary = self.canary_release();
        let desired = self.desired.as_ref()?;
        desired
            .canary
            .as_ref()
            .filter(|c| Some(c.release) == canary)
            .map(|c| SavedCanary {
                release: c.release,
                baseline: desired.release,
                weight: c.weight,
                sticky: c.sticky,
            })
    }

    fn rollout(&self) -> Rollout {
        let Some(desired) = &self.desired else {
            return Rollout::Progressing;
        };
        if let Some(reason) = &self.failed {
            return Rollout::Failed(reason.clone());
        }
        let current = |t: &&Tracked| t.replica.spec.release == desired.release;
        let canary = self.canary_release();
        let ready = self
            .replicas
            .iter()
            .filter(current)
            .filter(|t| t.replica.phase == pb::ReplicaPhase::Ready)
            .count();
        let others = self
            .replicas
            .iter()
            .filter(|t| !current(t) && Some(t.replica.spec.release) != canary)
            .count();
        if ready >= usize::try_from(desired.replicas).unwrap_or(usize::MAX) && others == 0 {
            Rollout::Succeeded
        } else {
            Rollout::Progressing
        }
    }
}

impl ProcessDriver {
    /// The spec of a desired podgroup's canary: its image on disk, its settings and secrets
    /// (with the app's role on the stage database, as for the release), the same resources.
    async fn canary_spec(
        &self,
        desired: &Desired,
        canary: &super::CanaryDesired,
    ) -> Result<Arc<Spec>, DriverError> {
        let inner = &self.inner;
        let secrets = match &inner.database {
            Some(database) => database
                .with_url(&desired.key, &canary.secrets)
                .await
                .map_err(|e| DriverError::Backend(e.to_string()))?,
            None => canary.secrets.clone(),
        };
        let rootfs = inner
            .images
            .rootfs(&canary.image_reference, &canary.image_digest)
            .await?;
        Ok(Arc::new(Spec {
            release: canary.release,
            image_digest: canary.image_digest.clone(),
            rootfs,
            env: replica_env(&canary.env, &desired.key, inner.config.producers.as_deref()),
            secrets,
            cpu_millis: desired.resources.cpu_millis,
            memory_mib: desired.resources.memory_mib,
        }))
    }
}

#[async_trait::async_trait]
impl Driver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    fn activity(&self) -> Option<Arc<crate::activity::Activity>> {
        Some(self.inner.routes.activity())
    }

    fn canaries(&self) -> Option<Arc<crate::canary::Canaries>> {
        Some(self.inner.routes.canaries())
    }

    async fn apply(&self, desired: &Desired) -> Result<(), DriverError> {
        let inner = &self.inner;
        {
            let groups = inner.groups.lock().await;
            if let Some(group) = groups.get(&desired.key)
                && group.desired.as_ref() == Some(desired)
                && (group.spec.is_some() || group.failed.is_some())
                && (desired.canary.is_none()
                    || group.canary_spec.is_some()
                    || group.canary_failed.is_some())
            {
                return Ok(());
            }
        }
        // The app's own role on the stage database, handed over like a secret.
        let secrets = match &inner.database {
            Some(database) => database
                .with_url(&desired.key, &desired.secrets)
                .await
                .map_err(|e| DriverError::Backend(e.to_string()))?,
            None => desired.secrets.clone(),
        };
        let rootfs = inner
            .images
            .rootfs(&desired.image_reference, &desired.image_digest)
            .await;
        // A canary whose image cannot be had yet does not hold up the release: it is tried
        // again at the next apply.
        let canary_spec = match &desired.canary {
            Some(canary) => Some(self.canary_spec(desired, canary).await),
            None => None,
        };
        let mut groups = inner.groups.lock().await;
        let group = groups
            .entry(desired.key.clone())
            .or_insert_with(Group::empty);
        let new_release = group.desired.as_ref().map(|d| d.release) != Some(desired.release);
        if new_release {
            group.start_failures = 0;
            group.last_failure.clear();
            group.failed = None;
        }
        let canary_of = |d: Option<&Desired>| d.and_then(|d| d.canary.as_ref()).map(|c| c.release);
        if canary_of(group.desired.as_ref()) != canary_of(Some(desired)) {
            group.canary_failures = 0;
            group.canary_last_failure.clear();
            group.canary_failed = None;
        }
        let (canary_spec, canary_error) = match canary_spec {
            Some(Ok(spec)) => (Some(spec), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        group.canary_spec = canary_spec;
        group.desired = Some(desired.clone());
        // Known to the load balancer from now on (503 until a replica is ready, not 404).
        inner.routes.set_limits(
            &desired.key.tenant,
            &desired.key.app,
            edge::AppLimits::from_env(&desired.env),
        );
        inner.routes.activity().set_idle_to_zero(
            &desired.key.tenant,
            &desired.key.app,
            desired.idle_to_zero_s,
        );
        inner
            .routes
            .set_route(&desired.key.tenant, &desired.key.app, group.route());
        match rootfs {
            Ok(rootfs) => {
                group.spec = Some(Arc::new(Spec {
                    release: desired.release,
                    image_digest: desired.image_digest.clone(),
                    rootfs,
                    env: replica_env(
                        &desired.env,
                        &desired.key,
                        inner.config.producers.as_deref(),
                    ),
                    secrets,
                    cpu_millis: desired.resources.cpu_millis,
                    memory_mib: desired.resources.memory_mib,
                }));
                // Start what it needs now, not at the next probe period.
                inner.wake.notify_one();
                canary_error.map_or(Ok(()), Err)
            }
            Err(e) => {
                group.spec = None;
                Err(e)
            }
        }
    }

    async fn remove(&self, key: &PodgroupKey) -> Result<(), DriverError> {
        let mut groups = self.inner.groups.lock().await;
        if let Some(group) = groups.get_mut(key) {
            group.desired = None;
            group.spec = None;
            for tracked in &mut group.replicas {
                tracked.replica.terminate();
            }
        }
        self.inner.routes.remove(&key.tenant, &key.app);
        Ok(())
    }

    /// Stops the replicas, then drops the app's schema and role on the stage database.
    async fn purge(&self, key: &PodgroupKey) -> Result<(), DriverError> {
        self.remove(key).await?;
        if let Some(database) = &self.inner.database {
            database
                .drop_app(key)
                .await
                .map_err(|e| DriverError::Backend(e.to_string()))?;
        }
        Ok(())
    }

    async fn synced(&self) {
        self.inner.routes.set_synced();
    }

    /// Takes over: when another agent wrote the state file since this driver last did, what
    /// this driver tracked is dropped and the file's replicas are adopted; else its own
    /// replicas get their log tailers back. Probes once, then supervises.
    async fn activate(&self) {
        let inner = &self.inner;
        if inner.is_active() {
            return;
        }
        let on_disk = std::fs::read(inner.state_path()).unwrap_or_default();
        let ours = *inner
            .last_written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            == on_disk;
        {
            let mut groups = inner.groups.lock().await;
            for (key, group) in groups.iter_mut() {
                for tracked in &mut group.replicas {
                    tracked.tailer.abort();
                    if ours {
                        tracked.tailer = logs::tail(
                            key.clone(),
                            tracked.replica.id.clone(),
                            tracked.replica.dir.clone(),
                            tracked.offsets.clone(),
                            inner.events.clone(),
                        );
                    }
                }
            }
            if !ours {
                groups.clear();
            }
        }
        if !ours {
            inner.adopt().await;
        }
        // Probe what was adopted before routing from the driver's own view.
        inner.tick().await;
        let known: std::collections::BTreeSet<(String, String)> = inner
            .groups
            .lock()
            .await
            .keys()
            .map(|k| (k.tenant.clone(), k.app.clone()))
            .collect();
        inner.routes.retain(&known);
        inner
            .active
            .store(true, std::sync::atomic::Ordering::SeqCst);
        inner.wake.notify_one();
        tracing::info!(adopted = !ours, "process driver active");
    }

    /// Stops supervising and shipping logs; routes follow the state file from now on.
    async fn stand_by(&self) {
        let inner = &self.inner;
        inner
            .active
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for tracked in inner.groups.lock().await.values().flat_map(|g| &g.replicas) {
            tracked.tailer.abort();
        }
        inner.wake.notify_one();
        tracing::info!("process driver standing by");
    }

    async fn observe(&self) -> Result<Vec<Observed>, DriverError> {
        let groups = self.inner.groups.lock().await;
        Ok(groups
            .iter()
            .map(|(key, group)| Observed {
                key: key.clone(),
                release: group.desired.as_ref().map_or_else(
                    || {
                        group
                            .replicas
                            .iter()
                            .map(|t| t.replica.spec.release)
                            .max()
                            .unwrap_or(0)
                    },
                    |d| d.release,
                ),
                replicas: group.replicas.iter().map(|t| t.replica.status()).collect(),
                rollout: group.rollout(),
                canary_failed: group.canary_failed.clone(),
            })
            .collect())
    }
}
