//! A real `nats-server` with JetStream on a free loopback port.
//!
//! The binary is `$NEO_NATS_SERVER`, else `$NEO_TOOLS/venv/bin/nats-server` (`NEO_TOOLS` defaults
//! to `$HOME/.cache/neo-tools`, where `ops/install-deps` puts it), else `nats-server` on `PATH`.
//! The JetStream store and the log live in a temporary directory that outlives
//! [`NatsServer::stop`], so [`NatsServer::restart`] brings the server back on the same port with
//! its data.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

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
    /// More configuration after `listen` and `jetstream` (TLS, authorization, clustering).
    settings: String,
    /// More lines inside the `jetstream` block (e.g. `sync_interval`).
    jetstream: String,
    // Declared last: removed after `Drop::drop` has killed the child.
    dir: TempDir,
}

impl NatsServer {
    /// Starts a nats-server with JetStream on a free 127.0.0.1 port and waits until it is ready.
    pub async fn start() -> Result<NatsServer, ServerError> {
        Self::start_with(String::new()).await
    }

    /// Like [`start`](Self::start), with `settings` appended to the configuration: e.g. the
    /// `tls` and `authorization` blocks of `neo_server::nats_config::secure`.
    pub async fn start_with(settings: String) -> Result<NatsServer, ServerError> {
        Self::start_node(settings, String::new()).await
    }

    /// Like [`start_with`](Self::start_with), with `jetstream` lines added to the `jetstream`
    /// block: a node of a [`crate::NatsCluster`].
    pub(crate) async fn start_node(
        settings: String,
        jetstream: String,
    ) -> Result<NatsServer, ServerError> {
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
            jetstream,
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
        super::is_running(&mut self.child)
    }

    /// Kills the server (SIGKILL, like a crash) and waits for it; the store is kept.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        super::kill(&mut self.child, BINARY, self.port);
    }

    /// Same as [`stop`](Self::stop).
    pub fn kill(&mut self) {
        self.stop();
    }

    /// Stops the server the way a rolling upgrade does: SIGUSR2 puts it in lame duck mode (it
    /// takes no new clients, hands its JetStream leaderships over and closes its clients over
    /// its `lame_duck_duration`), then it exits by itself. Waits at most `within`, then kills
    /// it. Does nothing if it is not running.
    pub async fn lame_duck(&mut self, within: Duration) {
        let Some(pid) = self.child.as_ref().map(Child::id) else {
            return;
        };
        match Command::new("kill")
            .args(["-USR2", &pid.to_string()])
            .status()
        {
            Ok(status) if status.success() => {}
            other => tracing::warn!(?other, pid, "cannot signal nats-server (SIGUSR2)"),
        }
        let deadline = std::time::Instant::now() + within;
        while self.is_running() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if self.is_running() {
            tracing::warn!(
                pid,
                ?within,
                "nats-server still running after lame duck mode"
            );
        }
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
        let text = config_text(self.port, &self.store_dir(), &self.jetstream) + &self.settings;
        std::fs::write(&config, text)
            .map_err(ServerError::io(format!("writing {}", config.display())))?;
        let log_path = self.log_path();
        let (child, log_start) = super::spawn_logged(
            Command::new(&self.binary).arg("-c").arg(&config),
            BINARY,
            &log_path,
        )?;
        tracing::debug!(port = self.port, pid = child.id(), "nats-server spawned");
        self.child = Some(child);
        let port = self.port;
        let ready = async || {
            super::log_since(&log_path, log_start).contains("Server is ready")
                && tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
        };
        match super::wait_ready(
            &mut self.child,
            BINARY,
            &log_path,
            log_start,
            READY_TIMEOUT,
            ready,
        )
        .await
        {
            Ok(()) => {
                let store = self.store_dir();
                tracing::info!(url = %self.url(), store = %store.display(), "nats-server ready");
                Ok(())
            }
            Err(e) => {
                self.stop();
                Err(e)
            }
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_text(port: u16, store_dir: &Path, jetstream: &str) -> String {
    let store = store_dir.display().to_string();
    format!(
        "listen: \"127.0.0.1:{port}\"\n\
         max_payload: 8MB\n\
         jetstream {{\n  store_dir: {store:?}\n  max_memory_store: 256MB\n  \
         max_file_store: 4GB\n{jetstream}}}\n"
    )
}

fn find_binary() -> Result<PathBuf, ServerError> {
    let tools = std::env::var_os("NEO_TOOLS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/neo-tools")));
    let dirs: Vec<PathBuf> = tools.map(|t| t.join("venv/bin")).into_iter().collect();
    super::find_binary(BINARY, ENV, &dirs)
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
