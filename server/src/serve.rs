//! `neo serve`: one platform process: the entity hosts, the NATS command intake, the
//! reactors and the gRPC gateway, on a JetStream event store. Several can serve the same NATS at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_actors::intake::{self, IntakeConfig};
use neo_actors::projections::Projections;
use neo_actors::reactor;
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};
use neo_builder::meta::MetaStore;
use neo_client::PlatformClient;
use neo_gateway::{Backends, Gateway, GatewayConfig, TlsFiles};
use neo_model::impact::Consumers;
use neo_secrets::SecretStore;

use crate::build_service::{self, ImageArgs, S3Args, WorkerArgs};
use crate::nats_connect::NatsArgs;

/// The NATS connections of `neo serve`: one per component when each has its own credential,
/// else one shared.
struct Connections {
    platform: async_nats::Client,
    gateway: async_nats::Client,
    build_workers: async_nats::Client,
}

impl Connections {
    async fn open(args: &ServeArgs) -> anyhow::Result<Self> {
        let Some(dir) = &args.nats_creds_dir else {
            let client = args.nats.connect("neo-platform").await?;
            return Ok(Self {
                platform: client.clone(),
                gateway: client.clone(),
                build_workers: client,
            });
        };
        let connect = |user: &'static str| {
            let path = crate::nats_config::creds_path(dir, user);
            let nats = args.nats.with_creds(Some(path));
            async move { nats.connect(&format!("neo-{user}")).await }
        };
        Ok(Self {
            platform: connect("platform").await?,
            gateway: connect("gateway").await?,
            build_workers: connect("build-worker").await?,
        })
    }
}

/// Options of `neo serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The NATS server, its CA and (with --nats-creds) one credential for every component.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// The key-encryption key of the secrets store.
    #[command(flatten)]
    pub kek: crate::keys::KekArgs,
    /// One NATS credential per component, from `neo nats-config`: `platform.nk`,
    /// `gateway.nk`, `build-worker.nk` (each component then has its own connection).
    #[arg(long, env = "NEO_NATS_CREDS_DIR", conflicts_with = "nats_creds")]
    pub nats_creds_dir: Option<PathBuf>,
    /// Seconds an idle entity actor stays live.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout_s: u64,
    /// Most entity actors kept live per kind.
    #[arg(long, default_value_t = 200_000)]
    pub max_live: usize,
    /// Events between snapshots of an entity.
    #[arg(long, default_value_t = 256)]
    pub snapshot_every: u64,
    /// Largest command accepted, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_command_bytes: usize,
    /// Where the gRPC gateway listens (`off` to run without it).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_listen: String,
    /// File holding the token signing key (created with a random key if absent).
    #[arg(long, env = "NEO_TOKEN_KEY_FILE")]
    pub token_key_file: Option<PathBuf>,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 12 * 3600)]
    pub token_ttl_s: u64,
    /// PEM certificate for the gateway's TLS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the gateway's TLS.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Largest revision upload, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    pub max_upload_bytes: usize,
    /// Create platform admin `admin` with the password in this file, unless it exists.
    #[arg(long, env = "NEO_ADMIN_PASSWORD_FILE")]
    pub bootstrap_admin_password_file: Option<PathBuf>,
    /// Postgres for the read models (projections) and impact analysis; absent: neither.
    #[arg(long, env = "NEO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the Prometheus endpoint (`/metrics`) listens (`off` to run without it).
    #[arg(long, env = "NEO_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: String,
    /// Build workers in this process (0: builds wait for `neo build-worker` elsewhere).
    #[arg(long, default_value_t = 1)]
    pub build_workers: usize,
    /// OTLP/gRPC collector to export traces to (e.g. `http://127.0.0.1:4317`); absent: no
    /// export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    #[command(flatten)]
    pub portal: crate::portal::PortalArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// Reads the token key from `path`, creating it with 32 random bytes (hex) when absent.
fn token_key(path: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let Some(path) = path else {
        tracing::warn!("no --token-key-file: tokens die with this process");
        return Ok(uuid::Uuid::new_v4().as_bytes().repeat(2));
    };
    if !path.exists() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        std::fs::write(path, key)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let key = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        key.len() >= 32,
        "{} must hold at least 32 bytes",
        path.display()
    );
    Ok(key)
}

async fn start_gateway(
    client: async_nats::Client,
    platform: Arc<Platform>,
    args: &ServeArgs,
    backends: Backends,
) -> anyhow::Result<Option<Gateway>> {
    if args.grpc_listen == "off" {
        return Ok(None);
    }
    if let Some(file) = &args.bootstrap_admin_password_file {
        let password =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        if neo_gateway::identity::bootstrap_admin(&client, "admin", password.trim()).await? {
            tracing::info!("created platform admin `admin`");
        }
    }
    let config = GatewayConfig {
        listen: args.grpc_listen.parse().context("--grpc-listen")?,
        token_key: token_key(args.token_key_file.as_deref())?,
        token_ttl: Duration::from_secs(args.token_ttl_s),
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        max_upload_bytes: args.max_upload_bytes,
        ..GatewayConfig::loopback(Vec::new())
    };
    let gateway =
        Gateway::start_with(client, config, PlatformClient::new(platform), backends).await?;
    println!("gRPC gateway: {}", gateway.endpoint());
    Ok(Some(gateway))
}

/// Runs the platform until Ctrl-C or SIGTERM.
///
/// # Errors
/// When NATS cannot be reached or the stream cannot be set up.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let connections = Connections::open(&args).await?;
    let client = connections.platform.clone();
    // Every stream and bucket gets the installation's replicas (`NEO_JS_REPLICAS`, else 3 on
    // a NATS cluster and 1 on a lone server): neo_client::streams.
    let store = Arc::new(
        JetStreamStore::open(client.clone(), StoreConfig::default())
            .await
            .context("opening the event store")?,
    );
    let host_config = HostConfig {
        idle_timeout: Duration::from_secs(args.idle_timeout_s),
        max_live: args.max_live,
        snapshot_every: args.snapshot_every,
        ..HostConfig::default()
    };
    let platform = Platform::start(store.clone(), host_config).await?;
    let intake_config = IntakeConfig {
        max_command_bytes: args.max_command_bytes,
        ..IntakeConfig::default()
    };
    let intake = intake::serve(client.clone(), platform.clone(), intake_config).await?;
    let js = store.context().clone();
    let (revisions, _embedded_s3) = build_service::revision_store(&args.s3).await?;
    let projections = match &args.database_url {
        Some(url) => Some(Arc::new(
            Projections::connect(url)
                .await
                .context("connecting to the read models' Postgres")?,
        )),
        None => {
            tracing::warn!("no --database-url: no read models, no impact analysis");
            None
        }
    };
    let consumers = projections.clone().map(|p| p as Arc<dyn Consumers>);
    neo_runtime_agent::streams::ensure(&js, neo_runtime_agent::streams::Retention::default())
        .await?;
    if let Some(consumers) = &consumers {
        platform.attach_consumers(consumers.clone());
    }
    let mut tasks = reactor::run_platform(&js, &platform);
    tasks.push(neo_builder::queue::run_enqueuer(js.clone()));
    if let Some(p) = &projections {
        tasks.push(p.run(js.clone()));
    }
    let gateway_secrets = match args.kek.keyring()? {
        Some(keyring) => {
            let store = Arc::new(
                SecretStore::open(js.clone(), keyring.clone())
                    .await
                    .context("opening the secrets store")?,
            );
            tasks.push(neo_secrets::serve_stage_requests(client.clone(), store).await?);
            // Only the gateway's NATS user may write the secrets buckets: it seals, and the
            // reactor that destroys a deleted tenant's data key purges through its store.
            let gateway_js = async_nats::jetstream::new(connections.gateway.clone());
            let gateway_store = Arc::new(SecretStore::open(gateway_js, keyring).await?);
            tasks.push(reactor::run(
                js.clone(),
                platform.clone(),
                Arc::new(crate::keys::ShredOnTenantDeleted(gateway_store.clone())),
            ));
            Some(gateway_store)
        }
        None => {
            tracing::warn!("no key-encryption key (--kek-file or NEO_KEK): secrets cannot be set");
            None
        }
    };
    match build_service::registry_settings(&args.image) {
        Some(registry) => {
            MetaStore::open(&js).await?.set_registry(&registry).await?;
            if args.build_workers > 0 {
                tasks.extend(
                    build_service::start_workers(
                        &connections.build_workers,
                        revisions.clone(),
                        registry,
                        &args.image,
                        &args.worker,
                        args.build_workers,
                    )
                    .await?,
                );
            }
        }
        None => tracing::warn!("no --registry: builds wait until one is configured"),
    }
    tasks.extend(
        crate::metrics_http::serve_unless_off(&args.metrics_listen, Some(platform.clone())).await?,
    );
    let backends = Backends {
        revisions,
        consumers,
        secrets: gateway_secrets,
    };
    let gateway = start_gateway(
        connections.gateway.clone(),
        platform.clone(),
        &args,
        backends,
    )
    .await?;
    let portal = match &gateway {
        Some(gateway) => {
            let tls = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
            crate::portal::start(&args.portal, tls, gateway).await?
        }
        None => None,
    };
    println!("neo platform ready: NATS {}", args.nats.nats);
    tracing::info!(nats = %args.nats.nats, "neo platform ready");
    shutdown_signal().await;
    // Drain: stop taking work and finish what is held. The gateway refuses new calls and
    // completes those in flight while the intake leaves its queue group (the other platform
    // processes take every new command) and answers what it had received; then the rest stops
    // (a reactor's unacknowledged event and a build job go to another process).
    tracing::info!("draining");
    if let Some(portal) = portal {
        portal.shutdown().await;
    }
    tokio::join!(intake.drain(DRAIN_WITHIN), async {
        // Long calls (a watch, a followed log) end with the deadline.
        if let Some(g) = gateway
            && tokio::time::timeout(DRAIN_WITHIN, g.shutdown())
                .await
                .is_err()
        {
            tracing::warn!("gRPC calls still open after the drain's deadline");
        }
    });
    tracing::info!("shutting down");
    for task in tasks {
        task.abort();
    }
    platform.passivate_all();
    for client in [
        &connections.platform,
        &connections.gateway,
        &connections.build_workers,
    ] {
        client.flush().await.ok();
    }
    Ok(())
}

/// How long a drain may take before the process stops anyway.
const DRAIN_WITHIN: Duration = Duration::from_secs(20);

/// Waits for Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
