//! Test harness: a throwaway Postgres cluster, the apphost in-process, and a small HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use neo_apphost::{Config, ServeError};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The fixture bundle.
pub fn fixture_bundle() -> PathBuf {
    fixture("bundle")
}

/// The fixture bundle `name` (under `tests/fixtures`).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("tests/fixtures")
    .join(name)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres is installed under /usr/lib/postgresql")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name()?.to_str()?.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// Runs a Postgres tool as the `postgres` user when we are root (Postgres refuses root).
fn pg_command(bin: &Path, tool: &str, root: bool) -> Command {
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

/// A throwaway Postgres cluster on a free loopback port; stopped and deleted on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    root: bool,
    /// The port it listens on.
    pub port: u16,
}

impl Postgres {
    /// Creates and starts a cluster with trust authentication.
    pub fn start() -> Self {
        let bin = pg_bin();
        let root = is_root();
        let dir = tempfile::Builder::new()
            .prefix("neo-apphost-pg")
            .tempdir()
            .unwrap();
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(ok.success(), "chown the cluster dir to postgres");
        }
        let data = dir.path().join("data");
        let out = pg_command(&bin, "initdb", root)
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Self {
            dir,
            bin,
            root,
            port: 0,
        };
        for _ in 0..5 {
            pg.port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if pg.pg_ctl_start() {
                return pg;
            }
        }
        let log = std::fs::read_to_string(pg.dir.path().join("postgres.log")).unwrap_or_default();
        panic!("Postgres did not start:\n{log}");
    }

    /// `pg_ctl start` on the cluster's port; whether it started.
    fn pg_ctl_start(&self) -> bool {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        pg_command(&self.bin, "pg_ctl", self.root)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-l")
            .arg(self.dir.path().join("postgres.log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// Stops the cluster at once, like a crash (`pg_ctl stop -m immediate`); the data stays.
    pub fn stop(&self) {
        let status = pg_command(&self.bin, "pg_ctl", self.root)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl stop");
    }

    /// Starts the stopped cluster again on its port.
    pub fn start_again(&self) {
        assert!(self.pg_ctl_start(), "pg_ctl start on port {}", self.port);
    }

    /// The URL of the `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A pool on the `postgres` database (no search path).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.url())
            .await
            .unwrap()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = pg_command(&self.bin, "pg_ctl", self.root)
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A configuration for the fixture bundle on `pg` (when given).
pub fn config(pg: Option<&Postgres>) -> Config {
    let mut config = Config::new(fixture_bundle());
    config.database_url = pg.map(Postgres::url);
    config
}

/// A configuration with the fixture's secret given.
pub fn config_with_secret(pg: Option<&Postgres>) -> Config {
    let mut config = config(pg);
    config
        .secrets
        .insert("PAYMENT_API_KEY".into(), "sk-test-123".into());
    config
}

/// An apphost running in-process.
pub struct Host {
    /// Where it listens.
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl Host {
    /// Binds and starts serving `config`.
    pub async fn start(config: Config) -> Self {
        let server = neo_apphost::bind(config).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts and waits until `/readyz` says 200.
    pub async fn start_ready(config: Config) -> Self {
        let host = Self::start(config).await;
        host.wait_ready().await;
        host
    }

    /// Waits (up to 30 s) for `/readyz` to return 200.
    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.get("/readyz").await;
            if r.status == 200 {
                return;
            }
            assert!(Instant::now() < deadline, "not ready: {}", r.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Triggers the graceful shutdown without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Shuts down and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), ServeError> {
        self.begin_shutdown();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops within 10s")
            .unwrap()
    }

    /// `run`'s task, to await after [`Host::begin_shutdown`].
    pub fn take_task(&mut self) -> JoinHandle<Result<(), ServeError>> {
        self.task.take().unwrap()
    }

    pub async fn get(&self, path: &str) -> Reply {
        request(self.addr, "GET", path, None).await
    }

    pub async fn send(&self, method: &str, path: &str, body: &str) -> Reply {
        request(self.addr, method, path, Some(body)).await
    }

    /// A form post, as a browser sends it.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        let mut body = form_urlencoded::Serializer::new(String::new());
        body.extend_pairs(form);
        exchange(
            self.addr,
            "POST",
            path,
            Some((&body.finish(), "application/x-www-form-urlencoded")),
        )
        .await
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// An HTTP response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// One request on a fresh connection; the path is sent exactly as given.
pub async fn request(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Reply {
    exchange(addr, method, path, body.map(|b| (b, "application/json"))).await
}

/// One request with a body of a content type, on a fresh connection.
pub async fn exchange(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<(&str, &str)>,
) -> Reply {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    if let Some((_, content_type)) = body {
        builder = builder.header("content-type", content_type);
    }
    let request = builder
        .body(Full::new(Bytes::from(
            body.map_or("", |(b, _)| b).to_owned(),
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}
