//! `ops/up`, `ops/down`, `ops/up` again, then `ops/up` while up: the same platform comes back
//! with its data, a second `ops/up` leaves a running platform alone, and `ops/down` leaves
//! nothing running. `ops/up --cluster`: a platform process killed under a load of CLI calls
//! and app requests, then `ops/upgrade` restarting every process: not one call fails.
//!
//! One test, minutes long on two cores: it runs the real scripts with the debug `neo` and
//! `neo-apphost` (`NEO_BIN`, `NEO_APPHOST_BIN`: no release build), in a temporary `NEO_DATA`
//! on free loopback ports below the ephemeral range, so it runs beside every other test.

use std::fs::File;
use std::hash::{BuildHasher as _, Hasher as _};
use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

#[path = "up_down/walkthrough.rs"]
mod walkthrough;

/// How long one run of `ops/up` or `ops/down` may take before the test gives up on it.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(20 * 60);
/// `NEO_READY_TIMEOUT` of the runs: debug binaries on a loaded machine start slowly.
const READY_TIMEOUT_S: &str = "300";
/// Ports `ops/up --cluster` needs (a single server uses fewer of them): NATS (3 nodes:
/// `NEO_NATS_PORT` + 0, 1, 2), their routes (3), Postgres, registry, S3 (2), gRPC (2),
/// metrics (2), then dev, test and prod's load balancers (`NEO_LB_PORT` + 0, 1, 2), the portals
/// (2).
const PORTS: usize = 19;

/// The `neo-apphost` binary next to the `neo` under test, built when missing.
fn apphost_binary(neo: &Path) -> anyhow::Result<PathBuf> {
    let dir = neo.parent().context("neo has no directory")?;
    let path = dir.join("neo-apphost");
    if !path.exists() {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "neo-apphost", "--bin", "neo-apphost"])
            .current_dir(repo_root())
            .status()
            .context("running cargo build -p neo-apphost")?;
        ensure!(status.success(), "cargo build -p neo-apphost: {status}");
    }
    ensure!(path.exists(), "no {} after building it", path.display());
    Ok(path)
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

fn answers(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// `PORTS` consecutive free ports at a random base in 20000..32000: below the ephemeral range
/// the other tests' port-0 binds draw from, and away from `ops/up`'s defaults.
fn free_ports() -> anyhow::Result<Vec<u16>> {
    let random = std::collections::hash_map::RandomState::new();
    for attempt in 0..200u64 {
        let mut hasher = random.build_hasher();
        hasher.write_u64(attempt);
        let base = 20_000 + u16::try_from(hasher.finish() % 12_000)?;
        let ports: Vec<u16> = (base..base + PORTS as u16).collect();
        // A bind fails where anything listens, on 127.0.0.1 or on every address.
        let bound = ports
            .iter()
            .map_while(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, *p)).ok())
            .count();
        if bound == PORTS {
            return Ok(ports);
        }
    }
    bail!("no {PORTS} consecutive free ports in 20000..32000")
}

/// A process is running (a zombie is not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after = stat.rsplit_once(") ")?.1;
            after.chars().next()
        })
        .is_some_and(|state| state != 'Z')
}

/// The processes an installation runs: each pid file's, the postmaster's, each replica's.
fn processes(data: &Path) -> anyhow::Result<Vec<(String, u32)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(data)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pid") {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            found.push((
                name.into_owned(),
                std::fs::read_to_string(&path)?.trim().parse()?,
            ));
        }
    }
    if let Ok(postmaster) = std::fs::read_to_string(data.join("postgres/postmaster.pid")) {
        let pid = postmaster.lines().next().unwrap_or_default().trim();
        found.push(("postmaster.pid".into(), pid.parse()?));
    }
    for stage in ["dev", "test", "prod"] {
        let state = data.join(format!("agent-{stage}/replicas.json"));
        let Ok(bytes) = std::fs::read(&state) else {
            continue;
        };
        let replicas: Vec<serde_json::Value> = serde_json::from_slice(&bytes)?;
        for replica in replicas {
            let pid = replica["pid"].as_u64().context("a replica without pid")?;
            found.push((format!("{stage} replica"), u32::try_from(pid)?));
        }
    }
    Ok(found)
}

/// The end of a file, for failure messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let from = all.len().saturating_sub(lines);
    format!("---- {} ----\n{}\n", path.display(), all[from..].join("\n"))
}

/// One `ops/up` installation: its data, ports and environment; `ops/down` when dropped.
struct Installation {
    root: PathBuf,
    neo: PathBuf,
    apphost: PathBuf,
    ports: Vec<u16>,
    scratch: tempfile::TempDir,
    runs: usize,
}

impl Installation {
    fn new() -> anyhow::Result<Self> {
        let neo = PathBuf::from(env!("CARGO_BIN_EXE_neo"));
        let apphost = apphost_binary(&neo)?;
        let scratch = tempfile::Builder::new().prefix("neo-up-down").tempdir()?;
        // NEO_DATA where `ops/up` puts it by default, under a HOME of the test's own (the
        // README's walkthrough runs with it).
        std::fs::create_dir_all(scratch.path().join("home/.local/share/neo"))?;
        Ok(Self {
            root: repo_root(),
            neo,
            apphost,
            ports: free_ports()?,
            scratch,
            runs: 0,
        })
    }

    fn data(&self) -> PathBuf {
        self.home().join(".local/share/neo")
    }

    fn home(&self) -> PathBuf {
        self.scratch.path().join("home")
    }

    /// The README's walkthrough against this installation (see [`walkthrough`]).
    fn walkthrough(&self) -> anyhow::Result<()> {
        let bin = self.scratch.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        let link = bin.join("neo");
        if !link.exists() {
            std::os::unix::fs::symlink(&self.neo, &link)?;
        }
        let sandbox = walkthrough::Sandbox {
            root: self.root.clone(),
            home: self.home(),
            bin,
            ports: vec![(50051, self.ports[10]), (8081, self.lb())],
        };
        walkthrough::run(&sandbox, &self.root.join("README.md"))
    }

    fn lb(&self) -> u16 {
        self.ports[14]
    }

    /// Runs `ops/{script}` against this installation; its output goes to a file (the servers it
    /// starts must not hold the test's pipes).
    fn run(&mut self, script: &str) -> anyhow::Result<(bool, String)> {
        self.run_with(script, &[])
    }

    /// [`Installation::run`] with arguments.
    fn run_with(&mut self, script: &str, args: &[&str]) -> anyhow::Result<(bool, String)> {
        self.runs += 1;
        let out_path = self
            .scratch
            .path()
            .join(format!("{}-{script}.out", self.runs));
        let out = File::create(&out_path)?;
        let p = &self.ports;
        let mut command = Command::new(self.root.join("ops").join(script));
        command.args(args);
        for (key, _) in std::env::vars_os() {
            let keep = ["NEO_TOOLS", "NEO_NATS_SERVER", "NEO_POSTGRES_BIN"];
            if key.to_string_lossy().starts_with("NEO_") && !keep.iter().any(|k| key == *k) {
                command.env_remove(key);
            }
        }
        command
            .env("NEO_DATA", self.data())
            .env("NEO_NATS_PORT", p[0].to_string())
            .env("NEO_NATS_ROUTE_PORT", p[3].to_string())
            .env("NEO_PG_PORT", p[6].to_string())
            .env("NEO_REGISTRY_PORT", p[7].to_string())
            .env("NEO_S3_PORT", p[8].to_string())
            .env("NEO_GRPC_LISTEN", format!("127.0.0.1:{}", p[10]))
            .env("NEO_GRPC_LISTEN_2", format!("127.0.0.1:{}", p[11]))
            .env("NEO_METRICS_LISTEN", format!("127.0.0.1:{}", p[12]))
            .env("NEO_LB_PORT", p[14].to_string())
            .env("NEO_PORTAL_LISTEN", format!("127.0.0.1:{}", p[17]))
            .env("NEO_BIN", &self.neo)
            .env("NEO_APPHOST_BIN", &self.apphost)
            .env("NEO_READY_TIMEOUT", READY_TIMEOUT_S)
            .current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let mut child = command
            .spawn()
            .with_context(|| format!("running ops/{script}"))?;
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > SCRIPT_DEADLINE {
                child.kill().ok();
                child.wait().ok();
                bail!(
                    "ops/{script} still running after {SCRIPT_DEADLINE:?}\n{}",
                    self.diagnosis(&out_path)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        Ok((status.success(), self.diagnosis(&out_path)))
    }

    /// Runs `ops/{script}`, which must succeed.
    fn must(&mut self, script: &str, why: &str) -> anyhow::Result<()> {
        self.must_with(script, &[], why)
    }

    /// [`Installation::must`] with arguments.
    fn must_with(&mut self, script: &str, args: &[&str], why: &str) -> anyhow::Result<()> {
        let (ok, diagnosis) = self.run_with(script, args)?;
        ensure!(
            ok,
            "ops/{script} {} ({why}) failed\n{diagnosis}",
            args.join(" ")
        );
        Ok(())
    }

    /// A run's output and the end of the installation's logs.
    fn diagnosis(&self, out: &Path) -> String {
        let mut text = tail(out, 80);
        for log in [
            "platform.log",
            "agent-dev.log",
            "nats.log",
            "nats-1.log",
            "upgrade.log",
            "postgres.log",
        ] {
            text.push_str(&tail(&self.data().join(log), 20));
        }
        text
    }

    /// `METHOD path` on dev's load balancer, over TLS trusting the installation's CA: the
    /// status and the response.
    fn http(&self, method: &str, path: &str, json: Option<&str>) -> anyhow::Result<(u16, String)> {
        https(self.lb(), &self.tls()?, method, path, json)
    }

    /// A TLS client trusting the installation's CA (`ops/up` makes it in `NEO_DATA/certs`).
    fn tls(&self) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
        use rustls::pki_types::{CertificateDer, pem::PemObject as _};
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(self.data().join("certs/ca.pem"))? {
            roots.add(cert?)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(std::sync::Arc::new(config))
    }

    /// `GET path` until it answers 200 (a replica just started may still be warming up).
    fn get_ok(&self, path: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = self.http("GET", path, None);
            if let Ok((200, body)) = &last {
                return Ok(body.clone());
            }
            if Instant::now() > deadline {
                bail!("GET {path} on dev's load balancer: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Installation {
    /// `ops/down`, also when the test failed, so nothing it started outlives it.
    fn drop(&mut self) {
        if let Err(e) = self.run("down") {
            eprintln!("ops/down on drop: {e:#}");
        }
    }
}

#[test]
fn up_twice_down_and_up_again_keep_the_platform_and_its_data() -> anyhow::Result<()> {
    let mut neo = Installation::new()?;

    // Up: the demo app answers on dev's load balancer and stores a product.
    neo.must("up", "first run, fresh NEO_DATA")?;
    neo.get_ok("/demo/catalog/readyz")?;
    let title = format!("Teapot {}", uuid::Uuid::new_v4().simple());
    let product = serde_json::json!({ "title": title, "price": "12.50" }).to_string();
    let (status, created) = neo.http("POST", "/demo/catalog/api/product", Some(&product))?;
    ensure!(status == 201, "POST a product: {created}");
    let listed = neo.get_ok("/demo/catalog/api/product")?;
    ensure!(
        listed.contains(&title),
        "the product is not listed: {listed}"
    );
    // The portal serves its sign-in page over TLS from the installation's CA.
    let (status, page) = https(neo.ports[17], &neo.tls()?, "GET", "/login", None)?;
    ensure!(
        status == 200 && page.contains("Sign in"),
        "the portal's sign-in page: {status} {page}"
    );

    // The README's walkthrough works as written.
    neo.walkthrough()?;

    // Down: nothing of it is left running, and nothing listens on its ports.
    let before = processes(&neo.data())?;
    ensure!(
        before.iter().any(|(name, _)| name.contains("replica")),
        "no replica recorded before ops/down: {before:?}"
    );
    neo.must("down", "stopping a running installation")?;
    let left: Vec<_> = before.iter().filter(|(_, pid)| running(*pid)).collect();
    ensure!(left.is_empty(), "still running after ops/down: {left:?}");
    let bound: Vec<u16> = neo.ports.iter().copied().filter(|p| answers(*p)).collect();
    ensure!(
        bound.is_empty(),
        "ports still answering after ops/down: {bound:?}"
    );
    let pid_files: Vec<_> = processes(&neo.data())?
        .into_iter()
        .filter(|(name, _)| name.ends_with(".pid"))
        .collect();
    ensure!(
        pid_files.is_empty(),
        "pid files left by ops/down: {pid_files:?}"
    );

    // Up again (a restart): the same platform, with the product written before.
    neo.must("up", "after ops/down")?;
    let listed = neo.get_ok("/demo/catalog/api/product")?;
    ensure!(
        listed.contains(&title),
        "the product is gone after ops/down and ops/up: {listed}"
    );

    // Up while up: everything is found running and left alone.
    let running_before = processes(&neo.data())?;
    neo.must("up", "while already up")?;
    let restarted: Vec<_> = running_before
        .iter()
        .filter(|(_, pid)| !running(*pid))
        .collect();
    ensure!(
        restarted.is_empty(),
        "a second ops/up replaced {restarted:?}"
    );
    let listed = neo.get_ok("/demo/catalog/api/product")?;
    ensure!(
        listed.contains(&title),
        "the product is gone after a second ops/up: {listed}"
    );
    Ok(())
}

/// CLI calls (with every gateway, as `ops/up` saved them for tenant demo) and requests to
/// the demo app, one after the other until stopped; every failure is kept.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<(usize, Vec<String>)>,
}

impl Load {
    fn start(neo: &Installation) -> anyhow::Result<Self> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (binary, config) = (neo.neo.clone(), neo.data().join("demo-cli.toml"));
        let (lb, tls) = (neo.lb(), neo.tls()?);
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut done, mut failed) = (0, Vec::new());
            let started = std::time::Instant::now();
            let mut i = 0u32;
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let max = (3 + i % 2).to_string();
                let args: Vec<&str> = if i.is_multiple_of(2) {
                    vec!["scale", "catalog", "--stage", "dev", "--max", &max]
                } else {
                    vec!["status", "catalog", "--stage", "dev"]
                };
                match Command::new(&binary)
                    .args(&args)
                    .env("NEO_CONFIG", &config)
                    .stdin(Stdio::null())
                    .output()
                {
                    Ok(out) if out.status.success() => done += 1,
                    Ok(out) => failed.push(format!(
                        "neo {}: {}",
                        args.join(" "),
                        String::from_utf8_lossy(&out.stderr)
                    )),
                    Err(e) => failed.push(format!("neo {}: {e}", args.join(" "))),
                }
                match https(lb, &tls, "GET", "/demo/catalog/api/product", None) {
                    Ok((200, _)) => done += 1,
                    Ok((_, response)) => failed.push(format!(
                        "GET the demo app at {:?}: {response}",
                        started.elapsed()
                    )),
                    Err(e) => failed.push(format!("GET the demo app: {e:#}")),
                }
            }
            (done, failed)
        });
        Ok(Self { stop, thread })
    }

    /// Stops; the calls that succeeded and the failures.
    fn finish(self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .join()
            .unwrap_or_else(|_| (0, vec!["the load thread panicked".into()]))
    }
}

/// `METHOD path` (with a JSON body) on the load balancer at port `lb`, on a new TLS connection
/// trusting `tls`'s roots: the status and the whole response.
fn https(
    lb: u16,
    tls: &std::sync::Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, lb));
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    tcp.set_read_timeout(Some(Duration::from_secs(30)))?;
    let server = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let mut stream =
        rustls::StreamOwned::new(rustls::ClientConnection::new(tls.clone(), server)?, tcp);
    let body = json.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{lb}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        // A server closing without a TLS close_notify ends the response all the same.
        ensure!(
            e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty(),
            "reading the response: {e}"
        );
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP response: {response:?}"))?;
    Ok((status, response))
}

#[test]
fn a_cluster_loses_a_platform_process_and_upgrades_every_process_without_a_failed_call()
-> anyhow::Result<()> {
    let mut neo = Installation::new()?;
    neo.must_with("up", &["--cluster"], "a cluster, fresh NEO_DATA")?;
    neo.get_ok("/demo/catalog/readyz")?;
    let nodes: Vec<_> = processes(&neo.data())?
        .into_iter()
        .filter(|(name, _)| name.starts_with("nats-") || name.starts_with("platform"))
        .collect();
    ensure!(
        nodes.len() == 5,
        "three nats-servers and two platform processes: {nodes:?}"
    );

    // kill -9 one platform process under load: the CLI moves to the other gateway.
    let load = Load::start(&neo)?;
    std::thread::sleep(Duration::from_secs(3));
    let platform: u32 = std::fs::read_to_string(neo.data().join("platform.pid"))?
        .trim()
        .parse()?;
    Command::new("kill")
        .args(["-9", &platform.to_string()])
        .status()?;
    std::thread::sleep(Duration::from_secs(5));
    neo.must("up", "bringing the killed platform process back")?;

    // Every process restarted in turn, still under load.
    let before = processes(&neo.data())?;
    neo.must("upgrade", "a rolling upgrade of a cluster")?;
    let (done, failed) = load.finish();
    ensure!(
        failed.is_empty(),
        "{} of {} calls failed: {failed:#?}",
        failed.len(),
        done + failed.len()
    );
    ensure!(done > 20, "only {done} calls in all");
    let kept: Vec<_> = before
        .iter()
        .filter(|(name, pid)| !name.contains("replica") && running(*pid))
        .filter(|(name, _)| !["postmaster.pid", "registry.pid"].contains(&name.as_str()))
        .collect();
    ensure!(kept.is_empty(), "not restarted by ops/upgrade: {kept:?}");
    neo.get_ok("/demo/catalog/readyz")?;

    neo.must("down", "stopping the cluster")?;
    let left: Vec<_> = before.iter().filter(|(_, pid)| running(*pid)).collect();
    ensure!(left.is_empty(), "still running after ops/down: {left:?}");
    Ok(())
}
