//! The gateway server: binds, serves every service plus `grpc.health.v1` and server
//! reflection, optionally over TLS, and shuts down on request.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use neo_client::PlatformClient;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::server::NamedService;
use tonic::transport::{Identity as TlsIdentity, Server, ServerTlsConfig};

use crate::api;
use crate::bus::Bus;
use crate::error::GatewayError;
use crate::identity::Users;
use crate::services::{
    Ctx, apps::AppsService, builds::BuildsService, deployments::DeploymentsService,
    events::EventsService, identity::IdentityService, runtime::RuntimeService,
    settings::SettingsService, tenants::TenantsService,
};

/// PEM certificate and key files for TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// How the gateway runs.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The key that signs and verifies tokens (HS256).
    pub token_key: Vec<u8>,
    /// How long a token lives.
    pub token_ttl: Duration,
    /// TLS, when set.
    pub tls: Option<TlsFiles>,
    /// Largest revision upload, in bytes.
    pub max_upload_bytes: usize,
    /// Largest single request message, in bytes.
    pub max_message_bytes: usize,
    /// Longest wait for the platform per request (the gRPC deadline, if shorter, wins).
    pub request_timeout: Duration,
}

impl GatewayConfig {
    /// Loopback on a free port, 1 h tokens, no TLS, 8 MiB uploads, 4 MiB messages, 10 s.
    pub fn loopback(token_key: impl Into<Vec<u8>>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token_key: token_key.into(),
            token_ttl: Duration::from_secs(3600),
            tls: None,
            max_upload_bytes: 8 * 1024 * 1024,
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// What the gateway stores and reads besides NATS.
#[derive(Clone)]
pub struct Backends {
    /// Revision content (S3).
    pub revisions: neo_revisions::RevisionStore,
    /// Consumers per stage, from the read models, for impact analysis (none: no analysis).
    pub consumers: Option<Arc<dyn neo_model::impact::Consumers>>,
    /// The encrypted secrets store (none: secrets cannot be set).
    pub secrets: Option<Arc<neo_secrets::SecretStore>>,
}

/// A running gateway.
pub struct Gateway {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    health: JoinHandle<()>,
    revocations: Vec<JoinHandle<()>>,
}

fn nats_error(what: &'static str) -> impl Fn(String) -> GatewayError {
    move |reason| GatewayError::Nats { what, reason }
}

macro_rules! limited {
    ($server:ty, $svc:expr, $max:expr) => {
        <$server>::new($svc)
            .max_decoding_message_size($max)
            .max_encoding_message_size($max)
    };
}

impl Gateway {
    /// Binds and starts serving.
    ///
    /// # Errors
    /// The address cannot be bound, the TLS files cannot be read, or NATS refuses the
    /// buckets the gateway needs.
    pub async fn start(
        client: async_nats::Client,
        config: GatewayConfig,
        backends: Backends,
    ) -> Result<Self, GatewayError> {
        let platform = PlatformClient::nats(client.clone(), config.request_timeout);
        Self::start_with(client, config, platform, backends).await
    }

    /// Like [`Gateway::start`], with commands and queries going through `platform` (e.g. over
    /// the platform of this very process) instead of NATS request/reply.
    ///
    /// # Errors
    /// As for [`Gateway::start`].
    pub async fn start_with(
        client: async_nats::Client,
        config: GatewayConfig,
        platform: PlatformClient,
        backends: Backends,
    ) -> Result<Self, GatewayError> {
        let users = Users::open(&client)
            .await
            .map_err(|e| nats_error("users")(e.to_string()))?;
        // Created once here, so Publish and BuildLog can follow it without asking every time.
        neo_builder::buildlog::ensure(&jetstream::new(client.clone()))
            .await
            .map_err(nats_error("build log stream"))?;
        let revocations = Arc::new(crate::revocation::Revocations::new(config.token_ttl));
        let revocation_tasks = revocations
            .follow(jetstream::new(client.clone()), users.store().clone())
            .await;
        let ctx = Arc::new(Ctx {
            bus: Bus::new(platform),
            js: jetstream::new(client.clone()),
            users,
            revisions: backends.revisions,
            consumers: backends.consumers,
            secrets: backends.secrets,
            verifier: crate::auth::Verifier::new(&config.token_key),
            revocations,
            key: config.token_key.clone(),
            token_ttl: config.token_ttl,
            max_upload_bytes: config.max_upload_bytes,
            known_tenants: Default::default(),
            status_cache: Default::default(),
        });
        let max = config.max_message_bytes;

        let (health, health_service) = tonic_health::server::health_reporter();
        let services = vec![
            <api::identity_server::IdentityServer<IdentityService> as NamedService>::NAME,
            <api::tenants_server::TenantsServer<TenantsService> as NamedService>::NAME,
            <api::apps_server::AppsServer<AppsService> as NamedService>::NAME,
            <api::builds_server::BuildsServer<BuildsService> as NamedService>::NAME,
            <api::deployments_server::DeploymentsServer<DeploymentsService> as NamedService>::NAME,
            <api::events_server::EventsServer<EventsService> as NamedService>::NAME,
            <api::runtime_server::RuntimeServer<RuntimeService> as NamedService>::NAME,
            <api::settings_server::SettingsServer<SettingsService> as NamedService>::NAME,
        ];
        for name in &services {
            health
                .set_service_status(*name, tonic_health::ServingStatus::Serving)
                .await;
        }
        let health_task = crate::health::watch(client.clone(), health, services);
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| nats_error("reflection")(e.to_string()))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| nats_error("reflection")(e.to_string()))?;

        let mut builder = Server::builder()
            .timeout(config.request_timeout * 6)
            .layer(crate::request_id::RequestIdLayer)
            .layer(tower::util::MapResponseLayer::new(
                crate::error::oversize_is_resource_exhausted,
            ));
        let tls = config.tls.is_some();
        if let Some(files) = &config.tls {
            let read = |path: &PathBuf| {
                std::fs::read(path).map_err(|source| GatewayError::Tls {
                    path: path.clone(),
                    source,
                })
            };
            let identity = TlsIdentity::from_pem(read(&files.cert)?, read(&files.key)?);
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .map_err(|e| GatewayError::Tls {
                    path: files.cert.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
        }
        let router = builder
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(limited!(
                api::identity_server::IdentityServer<IdentityService>,
                IdentityService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::tenants_server::TenantsServer<TenantsService>,
                TenantsService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::apps_server::AppsServer<AppsService>,
                AppsService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::builds_server::BuildsServer<BuildsService>,
                BuildsService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::deployments_server::DeploymentsServer<DeploymentsService>,
                DeploymentsService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::events_server::EventsServer<EventsService>,
                EventsService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::runtime_server::RuntimeServer<RuntimeService>,
                RuntimeService(ctx.clone()),
                max
            ))
            .add_service(limited!(
                api::settings_server::SettingsServer<SettingsService>,
                SettingsService(ctx),
                max
            ));

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| GatewayError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        // TCP_NODELAY, as tonic sets it on the listeners it binds itself (it leaves sockets
        // from `serve_with_incoming_shutdown` as they come): streamed replies (publish
        // progress, logs, watches) are small writes that Nagle's algorithm would hold back
        // until the client's (delayed) ACK.
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            move |accepted| {
                if let Ok(stream) = &accepted
                    && let Err(e) = stream.set_nodelay(true)
                {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY on a gateway connection");
                }
                accepted
            },
        );
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = router
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
            {
                tracing::error!(error = %e, "gateway stopped with an error");
            }
        });
        tracing::info!(%addr, tls, "gRPC gateway serving");
        Ok(Self {
            addr,
            tls,
            stop: Some(stop),
            task,
            health: health_task,
            revocations: revocation_tasks,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL clients connect to.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting calls and waits for the server to finish.
    pub async fn shutdown(mut self) {
        self.health.abort();
        for task in &self.revocations {
            task.abort();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.health.abort();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
