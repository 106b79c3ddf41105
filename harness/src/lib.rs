//! Real servers started on free loopback ports, for tests and `neo bench`: no mock stands in
//! for NATS, Postgres or the registry.
//!
//! Each server runs as a child process with its data in a temporary directory; dropping the
//! handle kills the process and then removes the directory, so a failing test never leaks one.
//! The binaries come from `ops/install-deps`. Beside them, [`files`] copies fixtures on disk and
//! [`rootfs`] runs a program inside an image's files as a container would; [`browser`] drives
//! a real headless Chromium through chromedriver (WebDriver) for page tests; [`programs`] are
//! app programs that misbehave on purpose.

pub mod browser;
pub mod files;
pub mod kubernetes;
pub mod nats;
pub mod nats_cluster;
pub mod postgres;
pub mod programs;
pub mod registry;
pub mod rootfs;

pub use browser::{Browser, BrowserError};
pub use files::copy_dir;
pub use nats::NatsServer;
pub use nats_cluster::NatsCluster;
pub use postgres::PostgresServer;
pub use registry::RegistryServer;

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Ports tried before giving up when other processes keep taking the probed one.
const START_ATTEMPTS: usize = 5;

/// A server process that starts on a port it is given.
pub(crate) trait OnPort {
    /// The binary's name, for logs.
    const BINARY: &'static str;

    /// Sets the port the next start binds.
    fn set_port(&mut self, port: u16);

    /// Starts the process and waits until it answers; [`ServerError::Exited`] when it died,
    /// e.g. because the port was taken.
    async fn spawn_and_wait(&mut self) -> Result<(), ServerError>;
}

/// Starts `server` on a free loopback port: probes one, starts the server on it, and tries
/// another when some other process took the port between the probe and the server's bind.
pub(crate) async fn start_on_free_port<S: OnPort>(server: &mut S) -> Result<(), ServerError> {
    let mut attempt = 1;
    loop {
        let port = free_port()?;
        server.set_port(port);
        match server.spawn_and_wait().await {
            Ok(()) => return Ok(()),
            Err(e @ ServerError::Exited { .. })
                if attempt < START_ATTEMPTS && e.to_string().contains("already in use") =>
            {
                tracing::warn!(binary = S::BINARY, port, attempt, "port taken; retrying");
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A free port on 127.0.0.1 (free when probed; [`start_on_free_port`] retries if it is taken
/// by then).
fn free_port() -> Result<u16, ServerError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(ServerError::io("binding 127.0.0.1:0 to find a free port"))?;
    let port = listener
        .local_addr()
        .map_err(ServerError::io("reading the free port"))?
        .port();
    Ok(port)
}

/// Finds `binary`: the path in `$env` if set, else in each of `dirs`, else on `PATH`.
pub(crate) fn find_binary(
    binary: &'static str,
    env: &'static str,
    dirs: &[PathBuf],
) -> Result<PathBuf, ServerError> {
    let mut looked_in = Vec::new();
    if let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        looked_in.push(format!("{env}={}", path.display()));
    }
    for dir in dirs {
        let path = dir.join(binary);
        if path.is_file() {
            return Ok(path);
        }
        looked_in.push(path.display().to_string());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(path) = std::env::split_paths(&paths)
            .map(|dir| dir.join(binary))
            .find(|p| p.is_file())
        {
            return Ok(path);
        }
        looked_in.push("PATH".to_owned());
    }
    Err(ServerError::BinaryNotFound {
        binary,
        env,
        looked_in: looked_in.join(", "),
    })
}

/// Starts `command`, a server that stays in the foreground, with its stdout and stderr
/// appended to `log_path`; returns the child and the log's length before it started.
pub(crate) fn spawn_logged(
    command: &mut Command,
    binary: &'static str,
    log_path: &Path,
) -> Result<(Child, u64), ServerError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(ServerError::io(format!("opening {}", log_path.display())))?;
    let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
    let log_err = log
        .try_clone()
        .map_err(ServerError::io("cloning the log handle"))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .map_err(ServerError::io(format!("spawning {binary}")))?;
    Ok((child, log_start))
}

/// Whether the process in `child` is running.
pub(crate) fn is_running(child: &mut Option<Child>) -> bool {
    matches!(child.as_mut().map(Child::try_wait), Some(Ok(None)))
}

/// Kills the process in `child` (SIGKILL, like a crash) and waits for it; nothing if there is
/// none.
pub(crate) fn kill(child: &mut Option<Child>, binary: &'static str, port: u16) {
    if let Some(mut process) = child.take() {
        if let Err(e) = process.kill() {
            tracing::debug!(error = %e, binary, "killing");
        }
        if let Err(e) = process.wait() {
            tracing::warn!(error = %e, binary, "waiting for the killed process");
        }
        tracing::info!(binary, port, "stopped");
    }
}

/// Polls `ready` every 25 ms until it holds: [`ServerError::Exited`] when the process in
/// `child` ends first (it is taken out), [`ServerError::NotReady`] after `timeout` (the caller
/// stops the process).
pub(crate) async fn wait_ready(
    child: &mut Option<Child>,
    binary: &'static str,
    log_path: &Path,
    log_start: u64,
    timeout: Duration,
    mut ready: impl AsyncFnMut() -> bool,
) -> Result<(), ServerError> {
    let started = Instant::now();
    loop {
        if let Some(process) = child.as_mut()
            && let Ok(Some(status)) = process.try_wait()
        {
            *child = None;
            return Err(ServerError::Exited {
                binary,
                status,
                log_tail: log_tail(log_path, log_start),
                log: log_path.to_owned(),
            });
        }
        if ready().await {
            return Ok(());
        }
        if started.elapsed() > timeout {
            return Err(ServerError::NotReady {
                binary,
                waited: timeout,
                log_tail: log_tail(log_path, log_start),
                log: log_path.to_owned(),
            });
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The log written since byte `start` (empty if unreadable).
pub(crate) fn log_since(path: &Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let mut bytes = Vec::new();
        if file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    text
}

/// The last 30 lines a log got since byte `start` (empty if unreadable).
pub(crate) fn log_tail(path: &Path, start: u64) -> String {
    let text = log_since(path, start);
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(30)..].join("\n");
    tail.push('\n');
    tail
}

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server binary is nowhere to be found.
    #[error("{binary} not found (looked in: {looked_in}); run ops/install-deps or set {env}")]
    BinaryNotFound {
        /// The binary's name, e.g. `nats-server`.
        binary: &'static str,
        /// The environment variable that names the binary directly.
        env: &'static str,
        /// Where it was looked for.
        looked_in: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited before it was ready.
    #[error("{binary} exited before it was ready ({status}); log {log}:\n{log_tail}")]
    Exited {
        /// The binary's name.
        binary: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// The server did not become ready in time (it has been killed).
    #[error("{binary} not ready after {waited:?}; log {log}:\n{log_tail}")]
    NotReady {
        /// The binary's name.
        binary: &'static str,
        /// How long it was waited for.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
}

impl ServerError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let what = what.into();
        move |source| ServerError::Io { what, source }
    }
}
