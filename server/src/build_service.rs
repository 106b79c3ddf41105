//! Wiring of the Build Service for `neo serve` and `neo build-worker`: where revisions live
//! (S3, or an embedded S3 endpoint), where images go (a registry), the apphost base, and the
//! workers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use neo_builder::meta::{MetaStore, RegistrySettings};
use neo_builder::queue::QueueConfig;
use neo_builder::worker::{self, WorkerConfig, WorkerContext};
use neo_image::{BaseImage, Registry, RegistryConfig};
use neo_revisions::{EmbeddedS3, RevisionStore, S3Config};

/// Where revisions are stored.
#[derive(Debug, Clone, clap::Args)]
pub struct S3Args {
    /// S3 endpoint URL (any S3-compatible store). Absent: an embedded S3 endpoint on loopback,
    /// serving --s3-dir.
    #[arg(long, env = "NEO_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The bucket of revision content.
    #[arg(long, env = "NEO_S3_BUCKET", default_value = "neo-revisions")]
    pub s3_bucket: String,
    /// The S3 region.
    #[arg(long, env = "NEO_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// The S3 access key id (embedded endpoint: `neo`).
    #[arg(long, env = "NEO_S3_ACCESS_KEY", default_value = "neo")]
    pub s3_access_key: String,
    /// File holding the S3 secret key (embedded endpoint: created with a random key if absent).
    #[arg(long, env = "NEO_S3_SECRET_FILE")]
    pub s3_secret_file: Option<PathBuf>,
    /// Directory the embedded S3 endpoint serves.
    #[arg(long, env = "NEO_S3_DIR", default_value = ".neo/s3")]
    pub s3_dir: PathBuf,
    /// Port of the embedded S3 endpoint (0: any free port).
    #[arg(long, env = "NEO_S3_PORT", default_value_t = 0)]
    pub s3_port: u16,
}

/// Where images go and what they are built from.
#[derive(Debug, Clone, clap::Args)]
pub struct ImageArgs {
    /// The OCI registry (`host:port`) images are pushed to.
    #[arg(long, env = "NEO_REGISTRY")]
    pub registry: Option<String>,
    /// Talk to the registry over HTTPS even on loopback.
    #[arg(long)]
    pub registry_tls: bool,
    /// Repositories are `{prefix}/{tenant}/{app}`.
    #[arg(long, env = "NEO_REGISTRY_PREFIX", default_value = "neo")]
    pub registry_prefix: String,
    /// The apphost binary, the base layer of every image (default: `neo-apphost` next to
    /// this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
}

/// How workers build.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Seconds a worker may go silent before its build is given to another worker.
    #[arg(long, default_value_t = 30)]
    pub build_lease_s: u64,
    /// Deliveries of a build job before the build is failed as abandoned.
    #[arg(long, default_value_t = 4)]
    pub build_max_deliveries: i64,
    /// Seconds a worker retries a build through an outage of S3, the registry or the platform
    /// (with backoff) before it fails the build naming the outage.
    #[arg(long, default_value_t = 600)]
    pub build_retry_for_s: u64,
    /// A pause after each build step, in ms (demos and failure drills).
    #[arg(long, default_value_t = 0, hide = true)]
    pub build_step_delay_ms: u64,
}

impl WorkerArgs {
    /// The queue settings.
    pub fn queue(&self) -> QueueConfig {
        QueueConfig {
            lease: Duration::from_secs(self.build_lease_s.max(1)),
            max_deliveries: self.build_max_deliveries.max(2),
            retry_for: Duration::from_secs(self.build_retry_for_s),
        }
    }
}

/// The revision store, and the embedded endpoint behind it when no S3 endpoint is configured
/// (keep it alive as long as the store is used).
pub async fn revision_store(args: &S3Args) -> anyhow::Result<(RevisionStore, Option<EmbeddedS3>)> {
    let secret = |create: bool| -> anyhow::Result<String> {
        match &args.s3_secret_file {
            Some(path) => read_or_create_secret(path, create),
            None if create => Ok(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )),
            None => anyhow::bail!("--s3-secret-file is required with --s3-endpoint"),
        }
    };
    let (config, embedded) = match &args.s3_endpoint {
        Some(endpoint) => (
            S3Config {
                endpoint: Some(endpoint.clone()),
                region: args.s3_region.clone(),
                bucket: args.s3_bucket.clone(),
                access_key_id: args.s3_access_key.clone(),
                secret_access_key: secret(false)?,
                force_path_style: true,
            },
            None,
        ),
        None => {
            let embedded =
                EmbeddedS3::start_with_secret(&args.s3_dir, args.s3_port, &secret(true)?)
                    .await
                    .context("starting the embedded S3 endpoint")?;
            println!("embedded S3 endpoint: {}", embedded.endpoint());
            (embedded.config(&args.s3_bucket), Some(embedded))
        }
    };
    let store = RevisionStore::connect(&config)
        .await
        .with_context(|| format!("connecting to S3 at {:?}", config.endpoint))?;
    Ok((store, embedded))
}

fn read_or_create_secret(path: &Path, create: bool) -> anyhow::Result<String> {
    if !path.exists() && create {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, uuid::Uuid::new_v4().simple().to_string())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let secret = std::fs::read_to_string(path)
        .with_context(|| format!("reading the S3 secret from {}", path.display()))?;
    Ok(secret.trim().to_owned())
}

/// The registry settings `args` name, if any.
pub fn registry_settings(args: &ImageArgs) -> Option<RegistrySettings> {
    let host = args.registry.clone()?;
    Some(RegistrySettings {
        insecure: RegistryConfig::plain_by_default(&host, args.registry_tls),
        host,
        prefix: args.registry_prefix.clone(),
    })
}

/// The apphost binary to use.
pub fn apphost_path(args: &ImageArgs) -> anyhow::Result<PathBuf> {
    if let Some(path) = &args.apphost {
        return Ok(path.clone());
    }
    let exe = std::env::current_exe().context("locating this program")?;
    let dir = exe.parent().context("locating this program's directory")?;
    // Test binaries live one level down, in deps/.
    for candidate in [dir.join("neo-apphost"), dir.join("../neo-apphost")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    anyhow::bail!(
        "no apphost binary next to {} (build it with `cargo build -p neo-apphost`, or pass --apphost)",
        exe.display()
    )
}

/// Starts `count` workers in this process.
///
/// # Errors
/// When the base image cannot be read or the queue cannot be set up.
pub async fn start_workers(
    nats: &async_nats::Client,
    revisions: RevisionStore,
    registry: RegistrySettings,
    image: &ImageArgs,
    args: &WorkerArgs,
    count: usize,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let apphost = apphost_path(image)?;
    let base = tokio::task::spawn_blocking(move || BaseImage::from_apphost(&apphost))
        .await
        .context("assembling the base layer")??;
    let context = WorkerContext {
        nats: nats.clone(),
        revisions,
        registry: Arc::new(Registry::new(RegistryConfig {
            host: registry.host,
            insecure: registry.insecure,
            prefix: registry.prefix,
            credentials: None,
        })),
        base: Arc::new(base),
    };
    let mut workers = Vec::with_capacity(count);
    for _ in 0..count {
        let config = WorkerConfig {
            queue: args.queue(),
            step_delay: Duration::from_millis(args.build_step_delay_ms),
            ..WorkerConfig::default()
        };
        workers.push(worker::spawn(context.clone(), config).await?);
    }
    Ok(workers)
}

/// Options of `neo build-worker`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildWorkerArgs {
    /// The NATS server, its CA and the workers' credential (user `build-worker`).
    #[command(flatten)]
    pub nats: crate::nats_connect::NatsArgs,
    /// Workers in this process.
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub image: ImageArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

/// `neo build-worker`: build workers only, until Ctrl-C or SIGTERM. The registry comes from
/// `--registry` or from the build configuration the platform published.
///
/// # Errors
/// When NATS, S3 or the registry settings cannot be reached.
pub async fn run_worker(args: BuildWorkerArgs) -> anyhow::Result<()> {
    let nats = args.nats.connect("neo-build-worker").await?;
    let (revisions, _embedded) = revision_store(&args.s3).await?;
    let registry = match registry_settings(&args.image) {
        Some(r) => r,
        None => MetaStore::open(&async_nats::jetstream::new(nats.clone()))
            .await?
            .registry()
            .await?
            .context("no --registry and the platform published none")?,
    };
    let _workers = start_workers(
        &nats,
        revisions,
        registry,
        &args.image,
        &args.worker,
        args.workers,
    )
    .await?;
    println!("neo build worker ready: NATS {}", args.nats.nats);
    crate::serve::shutdown_signal().await;
    Ok(())
}
