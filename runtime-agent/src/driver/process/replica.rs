//! One replica: a local process running an image's entrypoint, and what is known about it.
//!
//! The replica's stdout and stderr go to files in its directory (tailed by [`super::logs`]), so
//! a replica outlives an agent restart without losing a line; [`Saved`] is what the agent
//! writes down to adopt it again.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neo_protocol::pb;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::driver::logline::now_ms;
use crate::driver::{DriverError, PodgroupKey, SecretEnv};

/// Where an image's program and bundle are, relative to its root (the builder's layout).
const ENTRYPOINT: &str = "app/apphost";
const BUNDLE: &str = "app/bundle";

/// What every replica of one release runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    /// The release.
    pub release: u32,
    /// The image digest.
    pub image_digest: String,
    /// The unpacked image.
    pub rootfs: PathBuf,
    /// Environment besides the driver's own variables.
    pub env: BTreeMap<String, String>,
    /// Secret environment: never written to the state file (an adopted replica keeps its
    /// environment; new replicas get it from the desired state the agent applies).
    #[serde(skip)]
    pub secrets: SecretEnv,
    /// Allocation, passed to the app and used for usage percentages.
    pub cpu_millis: u32,
    /// Allocation in MiB.
    pub memory_mib: u32,
}

/// A replica as written to the agent's state file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    /// Its podgroup.
    pub tenant: String,
    /// Its podgroup.
    pub app: String,
    /// Its podgroup.
    pub stage: String,
    /// Its id.
    pub id: String,
    /// What it runs.
    pub spec: Arc<Spec>,
    /// Its process.
    pub pid: u32,
    /// The process's start time (clock ticks since boot), so a recycled pid is not adopted.
    pub start_ticks: u64,
    /// Its port on loopback.
    pub port: u16,
    /// Unix ms when it started.
    pub started_ms: u64,
    /// Bytes of stdout and stderr already shipped.
    pub offsets: [u64; 2],
    /// It had been ready: adopted, it is probed as a running replica (liveness and readiness),
    /// not as a starting one (absent in older state files: starting).
    #[serde(default)]
    pub served: bool,
    /// The canary its podgroup's load balancer splits for, if one (a standby routes by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<SavedCanary>,
}

/// A podgroup's canary as the state file has it: the replicas of `release` take `weight`
/// percent of the requests, those of every other release the rest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedCanary {
    /// Its release.
    pub release: u32,
    /// The release it is compared with.
    pub baseline: u32,
    /// Its share of the requests, in percent.
    pub weight: u32,
    /// Keep each client on one release.
    pub sticky: bool,
}

impl SavedCanary {
    /// Its part of a load balancer route, to its ready replicas at `addrs`.
    pub fn route(&self, addrs: Vec<SocketAddr>) -> super::lb::CanaryRoute {
        super::lb::CanaryRoute {
            release: self.release,
            baseline: self.baseline,
            addrs,
            weight: self.weight,
            sticky: self.sticky,
        }
    }
}

/// One running (or dying) replica.
pub struct Replica {
    /// Its id, `{app}-r{release}-{suffix}`.
    pub id: String,
    /// What it runs.
    pub spec: Arc<Spec>,
    /// Its process id.
    pub pid: u32,
    /// The process's start time in clock ticks since boot.
    pub start_ticks: u64,
    /// Its port on loopback.
    pub port: u16,
    /// Unix ms when it started.
    pub started_ms: u64,
    /// When this agent started (or adopted) it.
    pub since: Instant,
    /// The child, when this agent started it (adopted replicas have none).
    pub child: Option<tokio::process::Child>,
    /// Its phase.
    pub phase: pb::ReplicaPhase,
    /// Probes failed in a row.
    pub failures: u32,
    /// Why it is in its phase.
    pub reason: String,
    /// When it was asked to stop (it is killed after the grace period).
    pub stopping: Option<Instant>,
    /// When it was last probed (and its usage sampled).
    pub probed_at: Option<Instant>,
    /// The last CPU sample: (cumulative ticks, when).
    pub cpu_sample: Option<(u64, Instant)>,
    /// CPU used over the last sample interval, in millicores.
    pub cpu_millis: f64,
    /// Resident memory, in bytes.
    pub memory_bytes: u64,
    /// The directory holding its output files.
    pub dir: PathBuf,
}

/// How a replica process is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Liveness {
    /// Running.
    Alive,
    /// Gone, with a description of its exit.
    Exited(String),
}

/// The files a replica writes its output to.
pub fn output_files(dir: &Path) -> [PathBuf; 2] {
    [dir.join("stdout.log"), dir.join("stderr.log")]
}

impl Replica {
    /// Starts a replica of `spec` for `key` in `dir` (its database URL, if any, is among the
    /// spec's secrets).
    ///
    /// # Errors
    /// When no port is free or the program cannot be started.
    pub fn start(key: &PodgroupKey, spec: Arc<Spec>, base_dir: &Path) -> Result<Self, DriverError> {
        let id = format!(
            "{}-r{}-{}",
            key.app,
            spec.release,
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..6)
                .unwrap_or("000000")
        );
        let dir = base_dir.join(&key.tenant).join(&key.stage).join(&id);
        std::fs::create_dir_all(&dir).map_err(backend("creating the replica's directory"))?;
        let port = free_port()?;
        let [out, err] = output_files(&dir);
        let out = std::fs::File::create(out).map_err(backend("creating stdout.log"))?;
        let err = std::fs::File::create(err).map_err(backend("creating stderr.log"))?;
        let mut command = tokio::process::Command::new(spec.rootfs.join(ENTRYPOINT));
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("NEO_BUNDLE_DIR", spec.rootfs.join(BUNDLE))
            .env(
                "NEO_LISTEN",
                SocketAddr::from((Ipv4Addr::LOCALHOST, port)).to_string(),
            )
            .env("NEO_TENANT", &key.tenant)
            .env("NEO_APP", &key.app)
            .env("NEO_STAGE", &key.stage)
            .env("NEO_REPLICA", &id)
            .env("NEO_SCHEMA", super::database::schema(key))
            .env("NEO_CPU_MILLIS", spec.cpu_millis.to_string())
            .env("NEO_MEMORY_MIB", spec.memory_mib.to_string())
            .envs(&spec.env)
            .envs(&spec.secrets.0)
            .current_dir(spec.rootfs.join("app"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(false);
        let child = command.spawn().map_err(backend("starting the replica"))?;
        let pid = child.id().unwrap_or_default();
        let start_ticks = process_start_ticks(pid).unwrap_or_default();
        tracing::info!(podgroup = %key, replica = %id, pid, port, release = spec.release,
            "replica started");
        Ok(Self {
            id,
            spec,
            pid,
            start_ticks,
            port,
            started_ms: now_ms(),
            since: Instant::now(),
            child: Some(child),
            phase: pb::ReplicaPhase::Starting,
            failures: 0,
            reason: String::new(),
            stopping: None,
            probed_at: None,
            cpu_sample: None,
            cpu_millis: 0.0,
            memory_bytes: 0,
            dir,
        })
    }

    /// Takes over a replica a previous agent started, if its process still runs.
    pub fn adopt(saved: &Saved, base_dir: &Path) -> Option<Self> {
        if saved.pid == 0 || process_start_ticks(saved.pid) != Some(saved.start_ticks) {
            return None;
        }
        let dir = base_dir
            .join(&saved.tenant)
            .join(&saved.stage)
            .join(&saved.id);
        Some(Self {
            id: saved.id.clone(),
            spec: saved.spec.clone(),
            pid: saved.pid,
            start_ticks: saved.start_ticks,
            port: saved.port,
            started_ms: saved.started_ms,
            since: Instant::now(),
            child: None,
            phase: if saved.served {
                pb::ReplicaPhase::Unhealthy
            } else {
                pb::ReplicaPhase::Starting
            },
            failures: 0,
            reason: if saved.served {
                "adopted, not probed yet".into()
            } else {
                String::new()
            },
            stopping: None,
            probed_at: None,
            cpu_sample: None,
            cpu_millis: 0.0,
            memory_bytes: 0,
            dir,
        })
    }

    /// What to write down to adopt this replica later.
    pub fn saved(&self, key: &PodgroupKey, offsets: [u64; 2]) -> Saved {
        Saved {
            tenant: key.tenant.clone(),
            app: key.app.clone(),
            stage: key.stage.clone(),
            id: self.id.clone(),
            spec: self.spec.clone(),
            pid: self.pid,
            start_ticks: self.start_ticks,
            port: self.port,
            started_ms: self.started_ms,
            offsets,
            served: matches!(
                self.phase,
                pb::ReplicaPhase::Ready | pb::ReplicaPhase::Unhealthy
            ),
            canary: None,
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Whether its process still runs (reaping it when it is this agent's child).
    pub fn liveness(&mut self) -> Liveness {
        if let Some(child) = &mut self.child {
            return match child.try_wait() {
                Ok(None) => Liveness::Alive,
                Ok(Some(status)) => Liveness::Exited(describe_exit(status)),
                Err(e) => Liveness::Exited(format!("cannot be waited for: {e}")),
            };
        }
        if process_start_ticks(self.pid) == Some(self.start_ticks) {
            Liveness::Alive
        } else {
            Liveness::Exited("exited".into())
        }
    }

    /// Asks the process to stop (SIGTERM); [`Self::kill`] ends it.
    pub fn terminate(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            self.signal(Signal::SIGTERM);
        }
    }

    /// Ends the process (SIGKILL).
    pub fn kill(&mut self) {
        self.signal(Signal::SIGKILL);
    }

    fn signal(&self, signal: Signal) {
        let Ok(pid) = i32::try_from(self.pid) else {
            return;
        };
        if pid > 0
            && process_start_ticks(self.pid) == Some(self.start_ticks)
            && let Err(e) = kill(Pid::from_raw(pid), signal)
        {
            tracing::debug!(replica = %self.id, %signal, error = %e, "signal not delivered");
        }
    }

    /// Samples CPU and memory from `/proc`.
    pub fn sample(&mut self) {
        let Ok(process) = procfs::process::Process::new(self.pid_i32()) else {
            return;
        };
        let Ok(stat) = process.stat() else { return };
        let ticks = stat.utime + stat.stime;
        let now = Instant::now();
        if let Some((before, at)) = self.cpu_sample {
            let elapsed = now.duration_since(at).as_secs_f64();
            if elapsed > 0.0 {
                #[allow(clippy::cast_precision_loss)]
                let used = ticks.saturating_sub(before) as f64 / ticks_per_second();
                self.cpu_millis = used / elapsed * 1000.0;
            }
        }
        self.cpu_sample = Some((ticks, now));
        self.memory_bytes = procfs::WithCurrentSystemInfo::get(stat.rss_bytes());
    }

    fn pid_i32(&self) -> i32 {
        i32::try_from(self.pid).unwrap_or(i32::MAX)
    }

    /// Its status for reports.
    pub fn status(&self) -> pb::ReplicaStatus {
        pb::ReplicaStatus {
            id: self.id.clone(),
            release: self.spec.release,
            image_digest: self.spec.image_digest.clone(),
            phase: self.phase.into(),
            address: self.addr().to_string(),
            started_ms: self.started_ms,
            reason: self.reason.clone(),
            cpu_millis: self.cpu_millis,
            memory_bytes: self.memory_bytes,
        }
    }

    /// How long it has been starting (or since adoption).
    pub fn age(&self) -> Duration {
        self.since.elapsed()
    }
}

fn ticks_per_second() -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let ticks = procfs::ticks_per_second() as f64;
    if ticks > 0.0 { ticks } else { 100.0 }
}

/// The start time of process `pid` in clock ticks since boot, if it runs (and is no zombie).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    let process = procfs::process::Process::new(i32::try_from(pid).ok()?).ok()?;
    let stat = process.stat().ok()?;
    (stat.state != 'Z').then_some(stat.starttime)
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => "exited".into(),
    }
}

/// A free port on loopback (the OS picks it; the replica binds it right after).
fn free_port() -> Result<u16, DriverError> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(backend("finding a free port"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(backend("finding a free port"))
}

fn backend(what: &'static str) -> impl Fn(std::io::Error) -> DriverError {
    move |e| DriverError::Backend(format!("{what}: {e}"))
}
