//! A real Postgres cluster on a free loopback port, for tests and local tooling.
//!
//! The binaries are Debian's: `$NEO_POSTGRES_BIN` (a directory holding `initdb` and `pg_ctl`),
//! else the newest `/usr/lib/postgresql/*/bin` (`ops/install-deps` installs the `postgresql`
//! package). Postgres refuses to run as root, so when this process is root the cluster belongs
//! to the `postgres` system user and its tools run through `runuser -u postgres --`.
//!
//! The cluster lives in a temporary directory (data, unix socket, log), trusts every local
//! connection, listens on 127.0.0.1 only and runs with `fsync` off: it is for tests, not data
//! anyone keeps. Dropping the handle stops it (`pg_ctl stop -m immediate`) and removes the
//! directory.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{ServerError, log_tail};

const BINARY: &str = "initdb";
const ENV: &str = "NEO_POSTGRES_BIN";
const SYSTEM_USER: &str = "postgres";
/// The superuser `initdb` creates.
pub const SUPERUSER: &str = "postgres";
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running Postgres cluster; stopped and removed when dropped.
#[derive(Debug)]
pub struct PostgresServer {
    bin: PathBuf,
    /// Run the tools as the `postgres` user: `(uid, gid)` when this process is root.
    run_as: Option<(u32, u32)>,
    port: u16,
    running: bool,
    /// The superuser's password (connections over TCP need one: `scram-sha-256`).
    password: String,
    // Declared last: removed after `Drop::drop` has stopped the cluster.
    dir: TempDir,
}

impl PostgresServer {
    /// Creates a cluster (`initdb -U postgres`, a random superuser password, `scram-sha-256`
    /// over TCP, trust only on its own socket) in a temporary directory, starts it on a free
    /// 127.0.0.1 port and waits until it accepts connections.
    ///
    /// # Errors
    /// [`ServerError::BinaryNotFound`] without Postgres (run `ops/install-deps`);
    /// [`ServerError::Exited`] when `initdb` or `pg_ctl start` fails (with its log);
    /// [`ServerError::NotReady`] when the server does not answer in time.
    pub async fn start() -> Result<PostgresServer, ServerError> {
        let bin = find_bin_dir()?;
        let run_as = if process_is_root()? {
            Some(system_user(SYSTEM_USER)?)
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("neo-pg-")
            .tempdir()
            .map_err(ServerError::io("creating the postgres temp dir"))?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).map_err(ServerError::io(
                format!("handing {} to the {SYSTEM_USER} user", dir.path().display()),
            ))?;
        }
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| {
            ServerError::io("drawing the superuser's password")(std::io::Error::other(e))
        })?;
        let password = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut server = PostgresServer {
            bin,
            run_as,
            port: 0,
            running: false,
            password,
            dir,
        };
        server.initdb().await?;
        super::start_on_free_port(&mut server).await?;
        Ok(server)
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` for the superuser:
    /// `postgres://postgres:PASSWORD@127.0.0.1:PORT/DATABASE`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// The server's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Whether the cluster was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Creates database `name` (owned by the superuser).
    ///
    /// # Errors
    /// [`ServerError::Exited`] when `createdb` fails, e.g. the database exists.
    pub async fn create_database(&self, name: &str) -> Result<(), ServerError> {
        let createdb = self.bin.join("createdb");
        let output = tokio::process::Command::new(&createdb)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", SUPERUSER, "--", name])
            .env("PGPASSWORD", &self.password)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(ServerError::io(format!("running {}", createdb.display())))?;
        if output.status.success() {
            tracing::debug!(database = name, port = self.port, "database created");
            Ok(())
        } else {
            Err(ServerError::Exited {
                binary: "createdb",
                status: output.status,
                log: self.log_path(),
                log_tail: output_text(&output),
            })
        }
    }

    /// Stops the cluster at once (`pg_ctl stop -m immediate`, like a crash); its data is kept
    /// until the handle is dropped. Does nothing if it is not running.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let data = self.data_dir();
        let result = self
            .tool("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&data)
            .args(["-m", "immediate", "-w", "-t", "30", "-s"])
            .stdin(Stdio::null())
            .output();
        match result {
            Ok(out) if out.status.success() => {
                tracing::info!(port = self.port, "postgres stopped");
            }
            Ok(out) => tracing::warn!(port = self.port, output = %output_text(&out),
                "pg_ctl stop failed"),
            Err(e) => tracing::warn!(port = self.port, error = %e, "running pg_ctl stop"),
        }
    }

    /// Starts the cluster again on the same port with the same data, and waits until it is
    /// ready. Stops it first if it is running.
    pub async fn restart(&mut self) -> Result<(), ServerError> {
        self.stop();
        self.spawn_and_wait().await
    }

    /// A command running tool `name` of the cluster's binaries, as the cluster's owner, in the
    /// cluster's directory (the owner may not be allowed into ours).
    fn tool(&self, name: &str) -> Command {
        let path = self.bin.join(name);
        let mut command = if self.run_as.is_some() {
            let mut c = Command::new("runuser");
            c.args(["-u", SYSTEM_USER, "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.current_dir(self.dir.path()).env("LC_ALL", "C");
        command
    }

    async fn initdb(&self) -> Result<(), ServerError> {
        let pwfile = self.dir.path().join("superuser.password");
        std::fs::write(&pwfile, &self.password)
            .map_err(ServerError::io("writing the superuser's password file"))?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid))
                .map_err(ServerError::io("handing the password file to postgres"))?;
        }
        let mut command = self.tool(BINARY);
        command
            .arg("-D")
            .arg(self.data_dir())
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-U", SUPERUSER, "-E", "UTF8"])
            .args(["--no-locale", "--no-sync", "--no-instructions"]);
        let output = run(command, "initdb").await?;
        if !output.status.success() {
            return Err(ServerError::Exited {
                binary: BINARY,
                status: output.status,
                log: self.data_dir(),
                log_tail: output_text(&output),
            });
        }
        Ok(())
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        let log_path = self.log_path();
        let log_start = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c shared_buffers=32MB -c max_connections=100",
            self.port,
            self.dir.path().display()
        );
        let mut command = self.tool("pg_ctl");
        command
            .arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&log_path)
            .args(["-w", "-t", &READY_TIMEOUT.as_secs().to_string(), "-s"])
            .arg("-o")
            .arg(options);
        let started = Instant::now();
        let output = run(command, "pg_ctl start").await?;
        if !output.status.success() {
            // The postmaster may be up although pg_ctl gave up waiting: make sure it is not.
            self.running = true;
            self.stop();
            let mut log_tail = log_tail(&log_path, log_start);
            log_tail.push_str(&output_text(&output));
            return Err(ServerError::Exited {
                binary: "postgres",
                status: output.status,
                log: log_path,
                log_tail,
            });
        }
        self.running = true;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                tracing::info!(url = %self.url("postgres"), dir = %self.dir.path().display(),
                    "postgres ready");
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                self.stop();
                return Err(ServerError::NotReady {
                    binary: "postgres",
                    waited: READY_TIMEOUT,
                    log_tail: log_tail(&log_path, log_start),
                    log: log_path,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a blocking tool to its end off the async threads.
async fn run(mut command: Command, what: &'static str) -> Result<Output, ServerError> {
    command.stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output())
        .await
        .map_err(|e| ServerError::Io {
            what: format!("running {what}"),
            source: std::io::Error::other(e),
        })?
        .map_err(ServerError::io(format!("running {what}")))
}

fn output_text(output: &Output) -> String {
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    text
}

/// The directory of Postgres' server binaries: `$NEO_POSTGRES_BIN`, else the newest
/// `/usr/lib/postgresql/VERSION/bin` holding `initdb`.
fn find_bin_dir() -> Result<PathBuf, ServerError> {
    let mut looked_in = Vec::new();
    if let Some(dir) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.join(BINARY).is_file() {
            return Ok(dir);
        }
        looked_in.push(format!("{ENV}={}", dir.display()));
    }
    let root = Path::new("/usr/lib/postgresql");
    looked_in.push(format!("{}/*/bin", root.display()));
    let newest = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version: Vec<u32> = name
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<_>>()?;
            let bin = entry.path().join("bin");
            bin.join(BINARY).is_file().then_some((version, bin))
        })
        .max();
    newest
        .map(|(_, bin)| bin)
        .ok_or_else(|| ServerError::BinaryNotFound {
            binary: BINARY,
            env: ENV,
            looked_in: looked_in.join(", "),
        })
}

/// Whether this process runs as root (the owner of `/proc/self` is its effective user).
fn process_is_root() -> Result<bool, ServerError> {
    let meta = std::fs::metadata("/proc/self")
        .map_err(ServerError::io("reading /proc/self to learn our user"))?;
    Ok(meta.uid() == 0)
}

/// The uid and gid of system user `name`, from `/etc/passwd`.
fn system_user(name: &str) -> Result<(u32, u32), ServerError> {
    let passwd =
        std::fs::read_to_string("/etc/passwd").map_err(ServerError::io("reading /etc/passwd"))?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [user, _, uid, gid, ..] if *user == name => {
                    Some((uid.parse().ok()?, gid.parse().ok()?))
                }
                _ => None,
            }
        })
        .ok_or_else(|| ServerError::Io {
            what: format!(
                "Postgres refuses to run as root and there is no `{name}` user to run it as \
                 (run ops/install-deps)"
            ),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
}

impl super::OnPort for PostgresServer {
    const BINARY: &'static str = "postgres";

    fn set_port(&mut self, port: u16) {
        self.port = port;
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ServerError> {
        PostgresServer::spawn_and_wait(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_creates_a_database_restarts_and_stops() -> anyhow::Result<()> {
        let mut server = PostgresServer::start().await?;
        let port = server.port();
        assert_eq!(
            server.url("neo"),
            format!(
                "postgres://postgres:{}@127.0.0.1:{port}/neo",
                server.password
            )
        );
        server.create_database("neo").await?;
        let err = server.create_database("neo").await;
        assert!(
            matches!(&err, Err(e) if e.to_string().contains("already exists")),
            "{err:?}"
        );
        let dir = server.dir.path().to_owned();

        server.stop();
        assert!(!server.is_running());
        server.stop(); // idempotent
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );
        server.restart().await?;
        assert!(server.is_running());
        // The database survived the restart: creating it again still fails.
        assert!(server.create_database("neo").await.is_err());

        drop(server);
        assert!(!dir.exists(), "the cluster's directory is removed");
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn finds_the_postgres_user_and_binaries() {
        assert!(find_bin_dir().is_ok());
        assert!(system_user("root").is_ok_and(|(uid, _)| uid == 0));
        assert!(system_user("no-such-user-here").is_err());
    }
}
