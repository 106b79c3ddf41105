//! `neo bench build`: 1-Click Publish of an example app through the gRPC gateway to a real
//! registry, on its own servers (nats-server, docker-registry, the embedded S3 endpoint) and
//! one in-process build worker on the real apphost base layer.
//!
//! Each round publishes the example with a new description (so it is a new revision):
//! `publish_to_image_ms` runs from the publish call to the build-succeeded message (the image
//! is in the registry); `build_ms` is the worker's own time (fetch, validate, resolve, compile,
//! assemble and push), from the build metadata. A first publish (not counted) puts the base
//! layers in the registry.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use neo_actors::intake::{self, IntakeConfig};
use neo_actors::reactor::{self, publish::BuildOnPublish, publish::DeployOnBuild};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};
use neo_builder::meta::MetaStore;
use neo_builder::meta::RegistrySettings;
use neo_builder::project::Project;
use neo_gateway::api::{
    self, PublishStep, apps_client::AppsClient, identity_client::IdentityClient,
};
use neo_gateway::{Backends, Gateway, GatewayConfig};
use neo_model::impact::Consumers;
use serde::Serialize;
use tonic::Request;

use super::stats::percentile_ms;
use neo_harness::{NatsServer, RegistryServer};
use neo_server::build_service::{self, ImageArgs, WorkerArgs};

/// Options of `neo bench build`.
#[derive(Debug, Clone, clap::Args)]
pub struct BuildBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Publishes measured (after one warm-up publish).
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
    /// The example app's folder.
    #[arg(long, default_value = "examples/catalog")]
    pub example: PathBuf,
    /// The apphost binary (default: `neo-apphost` next to this program).
    #[arg(long, env = "NEO_APPHOST")]
    pub apphost: Option<PathBuf>,
}

/// The figures printed.
#[derive(Debug, Serialize)]
pub struct BuildFigures {
    /// Median worker time per build: fetch, validate, resolve, compile, assemble, push.
    pub build_ms_p50: f64,
    /// 90th percentile of the same.
    pub build_ms_p90: f64,
    /// Median time from the publish call to the image being in the registry.
    pub publish_to_image_ms_p50: f64,
    /// 90th percentile of the same.
    pub publish_to_image_ms_p90: f64,
    /// Median time from the publish call to the release on the first stage.
    pub publish_to_deployed_ms_p50: f64,
    /// The apphost binary's size (the base layer, before compression).
    pub apphost_bytes: u64,
    /// Publishes measured.
    pub rounds: usize,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server cannot start, the example does not load, or a publish fails.
pub async fn run(args: BuildBenchArgs) -> anyhow::Result<()> {
    let project = Project::from_dir(&args.example)
        .with_context(|| format!("reading {}", args.example.display()))?;
    let model = neo_model::load(&project)
        .map_err(|d| anyhow::anyhow!("{} does not load: {d:?}", args.example.display()))?;
    let manifest = String::from_utf8(project.file("neo.toml").unwrap_or_default().to_vec())?;

    let bench = BenchPlatform::start(args.apphost.clone()).await?;
    let apphost_bytes = std::fs::metadata(&bench.apphost)?.len();
    let bearer = bench.bearer.clone();
    let meta = MetaStore::open(&bench.js).await?;
    let apps = AppsClient::connect(bench.endpoint.clone()).await?;
    let mut to_image = Vec::with_capacity(args.rounds);
    let mut to_deployed = Vec::with_capacity(args.rounds);
    let mut build = Vec::with_capacity(args.rounds);
    for round in 0..=args.rounds {
        // A new description each round: a new revision, built for real.
        let edited = manifest.replacen(
            &format!("description = \"{}\"", model.description),
            &format!(
                "description = \"{} (bench round {round})\"",
                model.description
            ),
            1,
        );
        let content = pack_with_manifest(&project, &edited)?;
        let (image_at, deployed_at, build_id) =
            publish(apps.clone(), &bearer, &model.name, content).await?;
        if round == 0 {
            continue; // warm-up: the base layers go into the registry
        }
        to_image.push(image_at);
        to_deployed.push(deployed_at);
        let recorded = meta
            .get("bench", &build_id)
            .await?
            .context("no build metadata")?;
        build.push(Duration::from_secs_f64(
            recorded.steps_ms.values().sum::<f64>() / 1e3,
        ));
    }
    let figures = BuildFigures {
        build_ms_p50: percentile_ms(&mut build, 50.0),
        build_ms_p90: percentile_ms(&mut build, 90.0),
        publish_to_image_ms_p50: percentile_ms(&mut to_image, 50.0),
        publish_to_image_ms_p90: percentile_ms(&mut to_image, 90.0),
        publish_to_deployed_ms_p50: percentile_ms(&mut to_deployed, 50.0),
        apphost_bytes,
        rounds: args.rounds,
    };
    bench.shutdown().await;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("{:<28} {:>10}  target", "figure", "value");
        println!("{:<28} {:>10.1}", "build_ms_p50", figures.build_ms_p50);
        println!("{:<28} {:>10.1}", "build_ms_p90", figures.build_ms_p90);
        println!(
            "{:<28} {:>10.1}  < 1000",
            "publish_to_image_ms_p50", figures.publish_to_image_ms_p50
        );
        println!(
            "{:<28} {:>10.1}",
            "publish_to_image_ms_p90", figures.publish_to_image_ms_p90
        );
        println!(
            "{:<28} {:>10.1}",
            "publish_to_deployed_ms_p50", figures.publish_to_deployed_ms_p50
        );
        println!("{:<28} {:>10}", "apphost_bytes", figures.apphost_bytes);
    }
    Ok(())
}

/// What a [`BenchPlatform`] is started with besides its servers.
#[derive(Default)]
pub(crate) struct BenchOptions {
    /// The apphost binary images are built on (default: `neo-apphost` next to this program).
    pub(crate) apphost: Option<PathBuf>,
    /// The read models the publish chain's deploy checks impact against (none: no check).
    pub(crate) consumers: Option<Arc<dyn Consumers>>,
    /// A pause after each step of the build worker (drills use it to catch a build running).
    pub(crate) build_step_delay: Duration,
    /// Start no build worker (the bench records its builds itself).
    pub(crate) without_worker: bool,
}

/// A platform on servers of its own for a benchmark: nats-server, docker-registry, the
/// embedded S3 endpoint, the entity host with its NATS intake, the publish reactors and build
/// enqueuer, one in-process build worker on the real apphost base, and the gateway with
/// tenant `bench` created by the platform admin, whose bearer token it holds. Every server
/// stops when it is dropped.
pub(crate) struct BenchPlatform {
    /// A client of the NATS server.
    pub(crate) client: async_nats::Client,
    /// The entity host.
    pub(crate) platform: Arc<Platform>,
    /// JetStream on `client`.
    pub(crate) js: async_nats::jetstream::Context,
    /// The registry's `host:port` (plain HTTP on loopback).
    pub(crate) registry_host: String,
    /// The apphost binary the images are built on.
    pub(crate) apphost: PathBuf,
    /// The gateway's URL.
    pub(crate) endpoint: String,
    /// `Bearer {token}` of the platform admin.
    pub(crate) bearer: String,
    /// Reactors, enqueuer and worker; callers add their own, all aborted by [`Self::shutdown`].
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    gateway: Gateway,
    _intake: intake::Intake,
    _s3: neo_revisions::EmbeddedS3,
    _s3_dir: tempfile::TempDir,
    /// The registry (fault drills stop and restart it).
    pub(crate) registry: RegistryServer,
    /// The NATS server (fault drills kill and restart it); dropped last.
    pub(crate) nats: NatsServer,
}

impl BenchPlatform {
    /// Starts everything, building on `apphost` (default: `neo-apphost` next to this program).
    ///
    /// # Errors
    /// When a server cannot start or the apphost binary is missing.
    pub(crate) async fn start(apphost: Option<PathBuf>) -> anyhow::Result<Self> {
        Self::start_with(BenchOptions {
            apphost,
            ..BenchOptions::default()
        })
        .await
    }

    /// Starts everything as `options` say.
    ///
    /// # Errors
    /// When a server cannot start or the apphost binary is missing.
    pub(crate) async fn start_with(options: BenchOptions) -> anyhow::Result<Self> {
        let BenchOptions {
            apphost,
            consumers,
            build_step_delay,
            without_worker,
        } = options;
        let nats = NatsServer::start().await.context("starting nats-server")?;
        let registry_server = RegistryServer::start()
            .await
            .context("starting docker-registry")?;
        let s3_dir = tempfile::tempdir()?;
        let s3 = neo_revisions::EmbeddedS3::start(s3_dir.path(), 0).await?;
        let revisions = neo_revisions::RevisionStore::connect(&s3.config("neo-revisions")).await?;

        let client = async_nats::connect(nats.url()).await?;
        let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);
        let platform = Platform::start(store.clone(), HostConfig::default()).await?;
        if let Some(consumers) = consumers {
            platform.attach_consumers(consumers);
        }
        let intake =
            intake::serve(client.clone(), platform.clone(), IntakeConfig::default()).await?;
        let js = store.context().clone();
        let mut tasks = vec![
            reactor::run(js.clone(), platform.clone(), Arc::new(BuildOnPublish)),
            reactor::run(js.clone(), platform.clone(), Arc::new(DeployOnBuild)),
            neo_builder::queue::run_enqueuer(js.clone()),
        ];
        let image = ImageArgs {
            registry: Some(registry_server.host()),
            registry_tls: false,
            registry_prefix: "neo".into(),
            apphost,
        };
        let apphost = build_service::apphost_path(&image)?;
        let settings = RegistrySettings {
            host: registry_server.host(),
            insecure: true,
            prefix: "neo".into(),
        };
        let worker = WorkerArgs {
            build_lease_s: 30,
            build_max_deliveries: 4,
            build_retry_for_s: 600,
            build_step_delay_ms: u64::try_from(build_step_delay.as_millis()).unwrap_or(u64::MAX),
        };
        let workers = if without_worker { 0 } else { 1 };
        tasks.extend(
            build_service::start_workers(
                &client,
                revisions.clone(),
                settings,
                &image,
                &worker,
                workers,
            )
            .await?,
        );
        let backends = Backends {
            revisions,
            consumers: None,
            secrets: None,
        };
        let key = uuid::Uuid::new_v4().as_bytes().repeat(2);
        let local = neo_client::PlatformClient::new(platform.clone());
        let gateway = Gateway::start_with(
            client.clone(),
            GatewayConfig::loopback(key),
            local,
            backends,
        )
        .await?;
        neo_gateway::identity::bootstrap_admin(&client, "admin", "bench-password").await?;
        let endpoint = gateway.endpoint();
        let token = IdentityClient::connect(endpoint.clone())
            .await?
            .login(api::LoginRequest {
                user: "admin".into(),
                password: "bench-password".into(),
                tenant: String::new(),
            })
            .await?
            .into_inner()
            .token;
        let bearer = format!("Bearer {token}");
        let mut create = Request::new(api::CreateTenantRequest {
            name: "bench".into(),
            admin: "admin".into(),
            ..Default::default()
        });
        create
            .metadata_mut()
            .insert("authorization", bearer.parse()?);
        api::tenants_client::TenantsClient::connect(endpoint.clone())
            .await?
            .create_tenant(create)
            .await?;
        Ok(Self {
            client,
            platform,
            js,
            registry_host: registry_server.host(),
            apphost,
            endpoint,
            bearer,
            tasks,
            gateway,
            _intake: intake,
            _s3: s3,
            _s3_dir: s3_dir,
            registry: registry_server,
            nats,
        })
    }

    /// Adds what the Runtime needs of the platform: its streams, and the reactors that create
    /// podgroups from releases and publish their desired states (the agents' input).
    ///
    /// # Errors
    /// When JetStream refuses the Runtime's streams.
    pub(crate) async fn run_runtime_reactors(&mut self) -> anyhow::Result<()> {
        neo_runtime_agent::streams::ensure(
            &self.js,
            neo_runtime_agent::streams::Retention::default(),
        )
        .await
        .context("creating the Runtime streams")?;
        let (js, platform) = (self.js.clone(), self.platform.clone());
        self.tasks.extend([
            reactor::run(
                js.clone(),
                platform.clone(),
                Arc::new(reactor::desired::DesiredOnPodgroupChange::new(
                    js.clone(),
                    platform.clone(),
                )),
            ),
            reactor::run(
                js.clone(),
                platform.clone(),
                Arc::new(reactor::podgroups::PodgroupOnFirstRelease),
            ),
            reactor::run(
                js,
                platform.clone(),
                Arc::new(reactor::canary::PodgroupFollowsCanary::new(platform)),
            ),
        ]);
        Ok(())
    }

    /// Stops the gateway and every task; the servers stop when `self` is dropped.
    pub(crate) async fn shutdown(self) {
        self.gateway.shutdown().await;
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// `project` packed for upload, with `manifest` as its `neo.toml`.
///
/// # Errors
/// When the files do not make a project.
pub(crate) fn pack_with_manifest(project: &Project, manifest: &str) -> anyhow::Result<Vec<u8>> {
    let files: Vec<(String, Vec<u8>)> = project
        .files()
        .iter()
        .map(|(p, c)| {
            let content = if p == "neo.toml" {
                manifest.as_bytes().to_vec()
            } else {
                c.clone()
            };
            (p.clone(), content)
        })
        .collect();
    Ok(Project::from_files(files)?.pack())
}

/// The `Apps.Publish` request of `content` as `app` to tenant `bench`'s first stage, as
/// `bearer`.
///
/// # Errors
/// When `bearer` is no valid header value.
pub(crate) fn publish_request(
    bearer: &str,
    app: &str,
    content: &[u8],
) -> anyhow::Result<Request<futures::stream::Iter<std::vec::IntoIter<api::PublishRequest>>>> {
    let mut messages = vec![api::PublishRequest {
        part: Some(api::publish_request::Part::Header(api::PublishHeader {
            tenant: "bench".into(),
            app: app.into(),
            message: "bench".into(),
            stage: String::new(),
        })),
    }];
    for chunk in content.chunks(64 * 1024) {
        messages.push(api::PublishRequest {
            part: Some(api::publish_request::Part::Chunk(chunk.to_vec().into())),
        });
    }
    let mut request = Request::new(futures::stream::iter(messages));
    request
        .metadata_mut()
        .insert("authorization", bearer.parse()?);
    Ok(request)
}

/// One publish to tenant `bench`: time to the image, time to the release, and the build id.
pub(crate) async fn publish(
    mut apps: AppsClient<tonic::transport::Channel>,
    bearer: &str,
    app: &str,
    content: Vec<u8>,
) -> anyhow::Result<(Duration, Duration, String)> {
    let request = publish_request(bearer, app, &content)?;
    let start = Instant::now();
    let mut stream = apps.publish(request).await?.into_inner();
    let mut image_at = None;
    let mut build_id = String::new();
    while let Some(progress) = stream.message().await? {
        match PublishStep::try_from(progress.step).unwrap_or(PublishStep::Unspecified) {
            PublishStep::BuildSucceeded => {
                image_at = Some(start.elapsed());
                build_id = progress.build_id;
            }
            PublishStep::Deployed => {
                let image_at = image_at.context("deployed before the image was built")?;
                return Ok((image_at, start.elapsed(), build_id));
            }
            PublishStep::BuildFailed | PublishStep::DeployRefused => {
                anyhow::bail!("publish failed: {}", progress.message)
            }
            _ => {}
        }
    }
    anyhow::bail!("the publish ended without a deploy")
}
