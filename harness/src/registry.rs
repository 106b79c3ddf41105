//! A real OCI distribution registry (Debian's `docker-registry`) on a free loopback port.
//!
//! The binary is `$NEO_DOCKER_REGISTRY`, else `docker-registry` on `PATH` (`ops/install-deps`
//! installs the Debian package). Its config, storage and log live in a temporary directory;
//! there is no auth and no TLS (loopback only), and deleting manifests is enabled. Dropping the
//! handle kills the process and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ServerError;

const BINARY: &str = "docker-registry";
const ENV: &str = "NEO_DOCKER_REGISTRY";
const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// A running docker-registry child process; killed when dropped.
#[derive(Debug)]
pub struct RegistryServer {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    // Declared last: removed after `Drop::drop` has killed the child.
    dir: TempDir,
}

impl RegistryServer {
    /// Starts a registry on a free 127.0.0.1 port and waits until `GET /v2/` answers 200.
    ///
    /// # Errors
    /// [`ServerError::BinaryNotFound`] without `docker-registry` (run `ops/install-deps`);
    /// [`ServerError::Exited`] / [`ServerError::NotReady`] with the end of its log.
    pub async fn start() -> Result<RegistryServer, ServerError> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("neo-registry-")
            .tempdir()
            .map_err(ServerError::io("creating the registry temp dir"))?;
        let mut server = RegistryServer {
            child: None,
            binary,
            port: 0,
            dir,
        };
        super::start_on_free_port(&mut server).await?;
        Ok(server)
    }

    /// The registry's host, `127.0.0.1:PORT` (an image is `HOST/REPOSITORY:TAG`).
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry stores blobs and manifests.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The registry's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Whether the registry process is running.
    pub fn is_running(&mut self) -> bool {
        super::is_running(&mut self.child)
    }

    /// Kills the registry and waits for it; its storage is kept until the handle is dropped.
    /// Does nothing if it is not running.
    pub fn stop(&mut self) {
        super::kill(&mut self.child, BINARY, self.port);
    }

    /// Starts the registry again on the same port with the same storage, and waits until it
    /// answers. Stops it first if it is running.
    ///
    /// # Errors
    /// As for [`start`](Self::start) (a port taken meanwhile is not retried).
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop();
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        let config = self.dir.path().join("config.yml");
        std::fs::write(&config, config_text(self.port, &self.storage_dir()))
            .map_err(ServerError::io(format!("writing {}", config.display())))?;
        let log_path = self.log_path();
        let (child, log_start) = super::spawn_logged(
            Command::new(&self.binary)
                .arg("serve")
                .arg(&config)
                .current_dir(self.dir.path()),
            BINARY,
            &log_path,
        )?;
        tracing::debug!(
            port = self.port,
            pid = child.id(),
            "docker-registry spawned"
        );
        self.child = Some(child);
        let port = self.port;
        let ready = async || v2_answers_ok(port).await;
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
                tracing::info!(host = %self.host(), "docker-registry ready");
                Ok(())
            }
            Err(e) => {
                self.stop();
                Err(e)
            }
        }
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config_text(port: u16, storage: &Path) -> String {
    format!(
        "# written by neo-harness (RegistryServer)\n\
         version: 0.1\n\
         log:\n  level: warn\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {storage:?}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n",
        storage = storage.display().to_string(),
    )
}

/// Whether `GET /v2/` on 127.0.0.1:`port` answers `200` (one HTTP/1.1 request, 1 s at most).
async fn v2_answers_ok(port: u16) -> bool {
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let request =
            format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0u8; 32];
        let mut read = 0;
        while read < 12 {
            let n = stream.read(&mut head[read..]).await?;
            if n == 0 {
                break;
            }
            read += n;
        }
        Ok::<bool, std::io::Error>(
            head[..read].starts_with(b"HTTP/1.1 200") || head[..read].starts_with(b"HTTP/1.0 200"),
        )
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Ok(true))
    )
}

fn find_binary() -> Result<PathBuf, ServerError> {
    super::find_binary(BINARY, ENV, &[])
}

impl super::OnPort for RegistryServer {
    const BINARY: &'static str = BINARY;

    fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        RegistryServer::spawn_and_wait(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_answers_v2_and_stops() -> anyhow::Result<()> {
        let mut server = RegistryServer::start().await?;
        let port = server.port();
        assert_eq!(server.host(), format!("127.0.0.1:{port}"));
        assert!(server.is_running());
        assert!(v2_answers_ok(port).await);
        let dir = server.dir.path().to_owned();

        server.stop();
        assert!(!server.is_running());
        server.stop(); // idempotent
        assert!(!v2_answers_ok(port).await);
        drop(server);
        assert!(!dir.exists(), "the registry's directory is removed");
        Ok(())
    }
}
