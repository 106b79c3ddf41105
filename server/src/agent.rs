//! `neo agent`: the runtime agent of one stage, with the process driver (the default: local
//! processes behind the stage's load balancer) or the kube driver (a cluster from a kubeconfig).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_image::{Registry, RegistryConfig};
use neo_protocol::StageName;
use neo_runtime_agent::agent::{Agent, AgentConfig};
use neo_runtime_agent::driver::database::StageDatabase;
use neo_runtime_agent::driver::kube::KubeDriver;
use neo_runtime_agent::driver::kube::activator::ActivatorConfig;
use neo_runtime_agent::driver::process::ProcessConfig;
use neo_runtime_agent::driver::process::edge::rate::Rate;
use neo_runtime_agent::local::LocalRuntime;
use tokio::sync::mpsc;

/// Which driver runs the replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// Local processes, one per replica, behind a load balancer on loopback.
    Process,
    /// Kubernetes: Deployments, Services and PodDisruptionBudgets by server-side apply.
    Kube,
}

/// Options of `neo agent`.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentArgs {
    /// The stage this agent serves.
    #[arg(long, env = "NEO_STAGE")]
    pub stage: String,
    /// The NATS server, its CA and the agent's credential (user `agent-{stage}`).
    #[command(flatten)]
    pub nats: crate::nats_connect::NatsArgs,
    /// The agent's name (reports, command principal, durable consumer).
    #[arg(long)]
    pub name: Option<String>,
    /// Serve only these tenants (comma-separated; default: all).
    #[arg(long, value_delimiter = ',')]
    pub tenants: Vec<String>,
    /// The lease this agent shares with its standbys (default: the stage's own). Two agents
    /// of one stage serving different `--tenants` need different groups.
    #[arg(long, default_value = "")]
    pub lease_group: String,
    /// The driver.
    #[arg(long, value_enum, default_value = "process")]
    pub driver: DriverKind,
    /// The OCI registry images are pulled from (`host:port`).
    #[arg(long, env = "NEO_REGISTRY", default_value = "127.0.0.1:5000")]
    pub registry: String,
    /// Talk to the registry over HTTPS even on loopback.
    #[arg(long)]
    pub registry_tls: bool,
    /// Repositories are `{prefix}/{tenant}/{app}`.
    #[arg(long, env = "NEO_REGISTRY_PREFIX", default_value = "neo")]
    pub registry_prefix: String,
    /// The stage's database, as its admin: each app gets its own role owning only its own
    /// schema (`NEO_DATABASE_URL` in the replicas' environment, or the kube driver's Secret).
    #[arg(long, env = "NEO_STAGE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Kube driver: the database's `host[:port]` as pods reach it (default: the admin URL's).
    #[arg(long, requires = "database_url")]
    pub database_replica_host: Option<String>,
    /// Process driver: where the stage's load balancer listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub lb_listen: SocketAddr,
    /// Process driver: serve the load balancer over TLS with this certificate chain (PEM; with
    /// `--lb-tls-key`).
    #[arg(long, requires = "lb_tls_key")]
    pub lb_tls_cert: Option<PathBuf>,
    /// Process driver: the load balancer's TLS key (PEM).
    #[arg(long, requires = "lb_tls_cert")]
    pub lb_tls_key: Option<PathBuf>,
    /// Process driver: requests per second each client address may send to the stage (bursts
    /// of twice that; 429 with `Retry-After` beyond).
    #[arg(long, default_value_t = 100)]
    pub edge_client_rate: u32,
    /// Process driver: requests per second each app may be sent (an app's stage setting
    /// `edge_rate_per_s` overrides it).
    #[arg(long, default_value_t = 1000)]
    pub edge_app_rate: u32,
    /// Process driver: the largest request body in KiB (an app's stage setting
    /// `edge_max_body_kib` overrides it).
    #[arg(long, default_value_t = 8192)]
    pub edge_max_body_kib: u32,
    /// Where the agent serves `GET /metrics` (Prometheus text: the edge's refusals by reason,
    /// among others); `off` for none.
    #[arg(long, default_value = "off")]
    pub metrics_listen: String,
    /// Process driver: images, replica output and the state file (default:
    /// `$HOME/.local/share/neo/agent-{stage}`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Process driver: unpacked images, shareable by the agents of one machine (default:
    /// `{data-dir}/images`).
    #[arg(long)]
    pub image_cache: Option<PathBuf>,
    /// Kube driver: the address the cluster reaches this agent at (its pod IP), which turns
    /// the activator on: apps whose policy allows it go to zero replicas, and their Service's
    /// requests come to this agent meanwhile. Without it they keep a replica.
    #[arg(long, env = "NEO_ACTIVATOR_IP")]
    pub activator_ip: Option<std::net::IpAddr>,
    /// Kube driver: the ports the activator may open, one per app at zero (`FIRST-LAST`).
    #[arg(long, default_value = "40000-40999", value_parser = parse_ports)]
    pub activator_ports: std::ops::RangeInclusive<u16>,
    /// Kube driver: the kubeconfig (default: `$KUBECONFIG`, `~/.kube/config` or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds between full reads of the desired state (changes arrive at once in between).
    #[arg(long, default_value_t = 60)]
    pub resync_s: u64,
    /// Seconds between weighings of usage for the autoscaler (it is sent when it moved, the
    /// ready count or the desired state changed, else once a minute).
    #[arg(long, default_value_t = 5)]
    pub metrics_s: u64,
    /// Process driver: seconds between probes of a serving replica (starting replicas are
    /// probed every 250 ms; a hung replica is replaced after 3 failed probes).
    #[arg(long, default_value_t = 5)]
    pub probe_s: u64,
    /// Stop the replicas when the agent stops on SIGTERM (by default they keep running, the
    /// lease is given up, and the standby or the next agent adopts them; SIGUSR1 always hands
    /// over so).
    #[arg(long)]
    pub stop_replicas: bool,
}

/// Runs the agent until Ctrl-C or SIGTERM.
///
/// # Errors
/// When NATS, the registry settings or the driver cannot be set up.
pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let stage = StageName::new(&args.stage).context("--stage")?;
    let client = args.nats.connect(&format!("neo-agent-{stage}")).await?;
    let registry = Arc::new(Registry::new(RegistryConfig {
        host: args.registry.clone(),
        insecure: RegistryConfig::plain_by_default(&args.registry, args.registry_tls),
        prefix: args.registry_prefix.clone(),
        credentials: None,
    }));
    // Served until the process ends.
    let _metrics = crate::metrics_http::serve_unless_off(&args.metrics_listen, None).await?;
    let mut config = AgentConfig::new(stage.clone());
    if let Some(name) = &args.name {
        config.name.clone_from(name);
    }
    if !args.tenants.is_empty() {
        config.tenants = Some(args.tenants.iter().cloned().collect::<BTreeSet<_>>());
    }
    config.lease_group.clone_from(&args.lease_group);
    config.resync_every = Duration::from_secs(args.resync_s.max(1));
    config.metrics_every = Duration::from_secs(args.metrics_s.max(1));
    match args.driver {
        DriverKind::Process => {
            let data_dir = match &args.data_dir {
                Some(d) => d.clone(),
                None => default_data_dir(&stage)?,
            };
            let mut process = ProcessConfig::new(data_dir.clone(), args.database_url.clone());
            process.serving_probe_every = Duration::from_secs(args.probe_s.max(1));
            process.edge.per_client = Rate::per_second(args.edge_client_rate);
            process.edge.per_app = Rate::per_second(args.edge_app_rate);
            process.edge.max_body_bytes = args.edge_max_body_kib as usize * 1024;
            if let (Some(cert), Some(key)) = (&args.lb_tls_cert, &args.lb_tls_key) {
                process.edge = process.edge.with_tls(cert, key)?;
            }
            if let Some(images) = &args.image_cache {
                process.images_dir.clone_from(images);
            }
            println!(
                "agent {} for stage {stage}: taking the stage's lease (standing by while another \
                 agent holds it)",
                config.name
            );
            let starting = LocalRuntime::start(client, registry, process, config, args.lb_listen);
            let runtime = tokio::select! {
                started = starting => started.context("starting the process driver")?,
                _ = shutdown_signal() => return Ok(()),
            };
            println!(
                "agent for stage {stage}: active, process driver, load balancer on {} (data in {})",
                runtime.lb_url,
                data_dir.display()
            );
            if shutdown_signal().await == Stop::Terminate && args.stop_replicas {
                runtime.shutdown().await;
            } else {
                runtime.hand_over().await;
            }
        }
        DriverKind::Kube => {
            let (sender, events) = mpsc::channel(4096);
            let mut driver = KubeDriver::from_kubeconfig(args.kubeconfig.as_deref(), sender)
                .await
                .context("connecting to Kubernetes")?;
            if let Some(url) = &args.database_url {
                let mut database = StageDatabase::new(url).context("--database-url")?;
                if let Some(host) = &args.database_replica_host {
                    database = database
                        .replicas_reach_at(host)
                        .context("--database-replica-host")?;
                }
                driver = driver.with_database(database);
            }
            if let Some(advertise) = args.activator_ip {
                let listen = if advertise.is_ipv4() {
                    std::net::IpAddr::from([0, 0, 0, 0])
                } else {
                    std::net::IpAddr::from([0u16; 8])
                };
                let mut activator = ActivatorConfig::new(listen, advertise);
                activator.ports = args.activator_ports.clone();
                driver = driver.with_activator(activator);
            }
            let _watching = driver.start_watching();
            let agent = Agent::start(client, Arc::new(driver), events, registry, config)
                .await
                .context("starting the agent")?;
            println!(
                "agent for stage {stage}: kube driver (acting while it holds the stage's lease)"
            );
            let _ = shutdown_signal().await;
            agent.release().await;
        }
    }
    Ok(())
}

/// `FIRST-LAST`, a range of ports.
fn parse_ports(text: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let (first, last) = text
        .split_once('-')
        .ok_or_else(|| format!("`{text}` is not FIRST-LAST"))?;
    let port = |p: &str| {
        p.trim()
            .parse::<u16>()
            .map_err(|e| format!("`{p}` is not a port: {e}"))
    };
    let (first, last) = (port(first)?, port(last)?);
    if first == 0 || first > last {
        return Err(format!(
            "{first}-{last} is not a range of ports (1-65535, FIRST ≤ LAST)"
        ));
    }
    Ok(first..=last)
}

fn default_data_dir(stage: &StageName) -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("no --data-dir and no $HOME")?;
    Ok(PathBuf::from(home)
        .join(".local/share/neo")
        .join(format!("agent-{stage}")))
}

/// How the agent was asked to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// Ctrl-C or SIGTERM: stop (the replicas too with `--stop-replicas`).
    Terminate,
    /// SIGUSR1: hand over (give the lease up, leave the replicas to the next agent), whatever
    /// `--stop-replicas` says: what a rolling upgrade sends.
    HandOver,
}

async fn shutdown_signal() -> Stop {
    use tokio::signal::unix::{SignalKind, signal};
    let on = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Stop::Terminate,
        () = on(SignalKind::terminate()) => Stop::Terminate,
        () = on(SignalKind::user_defined1()) => Stop::HandOver,
    }
}
