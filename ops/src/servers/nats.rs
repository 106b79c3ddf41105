//! A real `nats-server` with JetStream on a free loopback port.
//!
//! The binary is `$NEO_NATS_SERVER`, else `$NEO_TOOLS/venv/bin/nats-server` (`NEO_TOOLS` defaults
//! to `$HOME/.cache/neo-tools`, where `ops/install-deps` puts it), else `nats-server` on `PATH`.
//! The JetStream store and the log live in a temporary directory that outlives
//! [`NatsServer::stop`], so [`NatsServer::restart`] brings the server back on the same port with
//! its data.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::ServerError;

const BINARY: &str = "nats-server";
const ENV: &str = "NEO_NATS_SERVER";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running nats-server child process; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    /// More configuration after `listen` and `jetstream` (TLS, authorization).
    settings: String,
    // Declared last: removed after `Drop::drop` has killed the child.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a nats-server with JetStream on a free 127.0.0.1 port and waits until it is ready.
    pub async fn start() -> Result<NatsServer, ServerError> {
        Self::start_with(String::new()).await
    }

    /// Like [`start`](Self::start), with `settings` appended to the configuration: e.g. the
    /// `tls` and `authorization` blocks of `neo_ops::nats_config::secure`.
    pub async fn start_with(settings: String) -> Result<NatsServer, ServerError> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("neo-nats-")
            .tempdir()
            .map_err(ServerError::io("creating the nats-server temp dir"))?;
        let mut server = NatsServer {
            child: None,
            binary,
            port: 0,
            settings,
            dir,
        };
        super::start_on_free_port(&mut server).await?;
        Ok(server)
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`stop`](Self::stop) and
    /// [`restart`](Self::restart)).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The server's log file (stdout and stderr of every run).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it; the store is kept.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                tracing::debug!(error = %e, "killing nats-server");
            }
            if let Err(e) = child.wait() {
                tracing::warn!(error = %e, "waiting for nats-server");
            }
            tracing::info!(port = self.port, "nats-server stopped");
        }
    }

    /// Same as [`stop`](Self::stop).
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Starts the server again on the same port with the same store, and waits until it is
    /// ready. Stops it first if it is running.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop();
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        let config = self.dir.path().join("nats-server.conf");
        let text = config_text(self.port, &self.store_dir()) + &self.settings;
        std::fs::write(&config, text)
            .map_err(ServerError::io(format!("writing {}", config.display())))?;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(ServerError::io(format!("opening {}", log_path.display())))?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let log_err = log
            .try_clone()
            .map_err(ServerError::io("cloning the log handle"))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(ServerError::io(format!(
                "spawning {}",
                self.binary.display()
            )))?;
        tracing::debug!(port = self.port, pid = child.id(), "nats-server spawned");
        self.child = Some(child);

        let started = Instant::now();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(ServerError::Exited {
                    binary: BINARY,
                    status,
                    log_tail: log_tail(&log_path, log_start),
                    log: log_path,
                });
            }
            let log_ready = log_since(&log_path, log_start).contains("Server is ready");
            if log_ready
                && tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            {
                let store = self.store_dir();
                tracing::info!(url = %self.url(), store = %store.display(), "nats-server ready");
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                self.stop();
                return Err(ServerError::NotReady {
                    binary: BINARY,
                    waited: READY_TIMEOUT,
                    log_tail: log_tail(&log_path, log_start),
                    log: log_path,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_text(port: u16, store_dir: &Path) -> String {
    let store = store_dir.display().to_string();
    format!(
        "listen: \"127.0.0.1:{port}\"\n\
         max_payload: 8MB\n\
         jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  \
         max_file_store: 4GB\n}}\n"
    )
}

fn find_binary() -> Result<PathBuf, ServerError> {
    let mut looked_in = Vec::new();
    if let Some(path) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        looked_in.push(format!("{ENV}={}", path.display()));
    }
    let tools = std::env::var_os("NEO_TOOLS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/neo-tools")));
    if let Some(tools) = tools {
        let path = tools.join("venv/bin").join(BINARY);
        if path.is_file() {
            return Ok(path);
        }
        looked_in.push(path.display().to_string());
    }
    if let Some(paths) = std::env::var_os("PATH") {
        if let Some(path) = std::env::split_paths(&paths)
            .map(|dir| dir.join(BINARY))
            .find(|p| p.is_file())
        {
            return Ok(path);
        }
        looked_in.push("PATH".to_owned());
    }
    Err(ServerError::BinaryNotFound {
        binary: BINARY,
        env: ENV,
        looked_in: looked_in.join(", "),
    })
}

/// The log written since byte `start` (empty if unreadable).
fn log_since(path: &Path, start: u64) -> String {
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

/// The last 30 lines of the log written since byte `start`.
fn log_tail(path: &Path, start: u64) -> String {
    let text = log_since(path, start);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

impl super::OnPort for NatsServer {
    const BINARY: &'static str = BINARY;

    fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        NatsServer::spawn_and_wait(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn jetstream_answers(url: &str) -> anyhow::Result<()> {
        let client = async_nats::connect(url).await?;
        let js = async_nats::jetstream::new(client);
        js.query_account().await?;
        Ok(())
    }

    #[tokio::test]
    async fn starts_stops_and_restarts_on_the_same_port() -> anyhow::Result<()> {
        let mut server = NatsServer::start().await?;
        let port = server.port();
        assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
        jetstream_answers(&server.url()).await?;

        server.stop();
        assert!(!server.is_running());
        server.stop(); // idempotent
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );

        server.restart().await?;
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        jetstream_answers(&server.url()).await?;
        Ok(())
    }

    #[tokio::test]
    async fn restart_on_a_taken_port_fails_with_the_log() -> anyhow::Result<()> {
        let mut server = NatsServer::start().await?;
        server.stop();
        let _squatter = std::net::TcpListener::bind(("127.0.0.1", server.port()))?;
        let err = match server.restart().await {
            Ok(()) => anyhow::bail!("restart on a taken port succeeded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("address already in use"), "{err}");
        assert!(!server.is_running());
        Ok(())
    }

    #[tokio::test]
    async fn jetstream_data_survives_a_restart() -> anyhow::Result<()> {
        let mut server = NatsServer::start().await?;
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await?);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "KEEP".into(),
            subjects: vec!["keep.>".into()],
            ..Default::default()
        })
        .await?;
        js.publish("keep.one", "hello".into()).await?.await?;

        server.restart().await?;
        let js = async_nats::jetstream::new(async_nats::connect(server.url()).await?);
        let mut stream = js.get_stream("KEEP").await?;
        assert_eq!(stream.info().await?.state.messages, 1);
        Ok(())
    }
}
