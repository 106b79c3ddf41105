//! The gateway stack for end-to-end tests: nats-server, a platform process and the gRPC
//! gateway on loopback, with authorised clients, a two-tenant fixture and stream inspection.

use std::time::Duration;

use anyhow::{Context, bail};
use neo_actors::HostConfig;
use neo_gateway::api::{
    self, apps_client::AppsClient, builds_client::BuildsClient,
    deployments_client::DeploymentsClient, events_client::EventsClient,
    identity_client::IdentityClient, runtime_client::RuntimeClient, tenants_client::TenantsClient,
};
use neo_gateway::{Gateway, GatewayConfig, identity};
use neo_protocol::{AppName, EntityRef, TenantName, headers, pb, subjects};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

use crate::{Core, PlatformProcess, commands, send};

/// The platform admin created by [`Stack::start`].
pub const ROOT: &str = "root";
/// Its password.
pub const ROOT_PASSWORD: &str = "root-pass";
/// The size of the chunks [`upload_parts`] cuts a model into.
pub const CHUNK: usize = 64 * 1024;

/// A channel whose calls carry a bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// nats-server, one platform process and the gateway; all stopped when dropped.
pub struct Stack {
    /// The nats-server (stop and restart it to test outages).
    pub core: Core,
    /// The platform process serving NATS commands.
    pub platform: PlatformProcess,
    /// The gateway under test.
    pub gateway: Gateway,
    /// The key the gateway signs tokens with.
    pub key: Vec<u8>,
    /// The S3 endpoint holding revision content.
    pub s3: crate::storage::S3,
    /// The secrets store the gateway seals with (a fresh key-encryption key per stack); the
    /// platform process answers the agents' secret requests from it.
    pub secrets: std::sync::Arc<neo_secrets::SecretStore>,
    channel: Channel,
    _secret_requests: AbortOnDrop,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Adds `authorization: Bearer <token>` to every call of a client.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The tokens of the fixture's users: tenant `acme` (alice admin, dave developer, otto devops,
/// vic viewer) and tenant `beta` (bob admin), plus the platform admin's.
#[derive(Debug, Clone)]
pub struct People {
    /// root, platform admin (token without a tenant).
    pub root: String,
    /// alice, admin of acme.
    pub alice: String,
    /// dave, developer in acme.
    pub dave: String,
    /// otto, devops in acme.
    pub otto: String,
    /// vic, viewer in acme.
    pub vic: String,
    /// bob, admin of beta.
    pub bob: String,
}

/// Builders of the API's requests, so a test reads one call per line; arguments in field order.
pub mod req {
    use neo_gateway::api::{self, Page};
    use neo_protocol::pb::Role;

    macro_rules! requests {
        ($($name:ident($($arg:ident: $ty:ty),*) -> $request:ident { $($body:tt)* })*) => {
            $(
                #[doc = concat!("A `", stringify!($request), "`.")]
                pub fn $name($($arg: $ty),*) -> api::$request {
                    api::$request { $($body)* }
                }
            )*
        };
    }

    requests! {
        user(name: &str) -> CreateUserRequest { user: name.into(), password: super::password(name) }
        tenant(name: &str, admin: &str) -> CreateTenantRequest {
            name: name.into(), admin: admin.into(), ..Default::default()
        }
        get_tenant(tenant: &str) -> GetTenantRequest { tenant: tenant.into() }
        list_tenants(page: Option<Page>) -> ListTenantsRequest { page }
        add_stage(tenant: &str, stage: &str, after: &str) -> AddStageRequest {
            tenant: tenant.into(), stage: stage.into(), after: after.into()
        }
        remove_stage(tenant: &str, stage: &str) -> RemoveStageRequest {
            tenant: tenant.into(), stage: stage.into()
        }
        set_member(tenant: &str, user: &str, role: Role) -> SetMemberRequest {
            tenant: tenant.into(), user: user.into(), role: role.into()
        }
        remove_member(tenant: &str, user: &str) -> RemoveMemberRequest {
            tenant: tenant.into(), user: user.into()
        }
        create_app(tenant: &str, app: &str) -> CreateAppRequest {
            tenant: tenant.into(), app: app.into(), description: format!("{app} of {tenant}")
        }
        get_app(tenant: &str, app: &str) -> GetAppRequest { tenant: tenant.into(), app: app.into() }
        list_apps(tenant: &str, page: Option<Page>) -> ListAppsRequest { tenant: tenant.into(), page }
        list_revisions(tenant: &str, app: &str, page: Option<Page>) -> ListRevisionsRequest {
            tenant: tenant.into(), app: app.into(), page
        }
        request_build(tenant: &str, app: &str, revision: u32) -> RequestBuildRequest {
            tenant: tenant.into(), app: app.into(), revision
        }
        get_build(tenant: &str, build_id: &str) -> GetBuildRequest {
            tenant: tenant.into(), build_id: build_id.into()
        }
        list_builds(tenant: &str, app: &str, page: Option<Page>) -> ListBuildsRequest {
            tenant: tenant.into(), app: app.into(), page
        }
        cancel_build(tenant: &str, build_id: &str, reason: &str) -> CancelBuildRequest {
            tenant: tenant.into(), build_id: build_id.into(), reason: reason.into()
        }
        deploy(tenant: &str, app: &str, stage: &str, revision: u32) -> DeployRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into(), revision, force: false
        }
        promote(tenant: &str, app: &str, stage: &str) -> PromoteRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into(), force: false,
            canary: false
        }
        rollback(tenant: &str, app: &str, stage: &str, to_release: u32) -> RollbackRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into(), to_release, force: false
        }
        set_secret(tenant: &str, app: &str, stage: &str, name: &str, value: &str) -> SetSecretRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into(), name: name.into(),
            value: value.into()
        }
        impact(tenant: &str, app: &str, stage: &str, revision: u32) -> ImpactRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into(), revision
        }
        get_deployment(tenant: &str, app: &str, stage: &str) -> GetDeploymentRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into()
        }
        list_releases(tenant: &str, app: &str, stage: &str, page: Option<Page>) -> ListReleasesRequest {
            tenant: tenant.into(), app: app.into(), stage: stage.into(), page
        }
        watch(tenant: &str, after_sequence: u64) -> WatchRequest {
            tenant: tenant.into(), after_sequence, ..Default::default()
        }
    }
}

/// The password the fixture gives `user`.
pub fn password(user: &str) -> String {
    format!("{user}-password")
}

/// The bearer metadata value of `token`.
fn bearer(token: &str) -> MetadataValue<Ascii> {
    format!("Bearer {token}")
        .parse()
        .expect("a token is printable ASCII")
}

/// `message` as a request carrying `authorization: Bearer <token>`.
pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer(token));
    request
}

/// The `neo-rule` a refusal carries, or "" when it has none.
pub fn rule(status: &Status) -> String {
    metadata(status, "neo-rule")
}

/// The `neo-field` an invalid argument carries, or "" when it has none.
pub fn field(status: &Status) -> String {
    metadata(status, "neo-field")
}

fn metadata(status: &Status, key: &str) -> String {
    status
        .metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Asserts a refusal's code, and its `neo-rule` (also named in the message) unless `rule_name`
/// is empty.
#[track_caller]
pub fn refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, rule_name: &str) {
    let status = result.expect_err("a refusal");
    assert_eq!(status.code(), code, "{status:?}");
    if !rule_name.is_empty() {
        assert_eq!(rule(&status), rule_name, "{status:?}");
        assert!(status.message().contains(rule_name), "{status:?}");
    }
}

/// Walks every page: `list(token)` returns one page and the next token.
pub async fn pages<T, F, Fut>(mut list: F) -> Vec<Vec<T>>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = (Vec<T>, String)>,
{
    let (mut all, mut token) = (Vec::new(), String::new());
    for _ in 0..100 {
        let (items, next) = list(token).await;
        all.push(items);
        if next.is_empty() {
            return all;
        }
        token = next;
    }
    panic!("more than 100 pages: the token never ends");
}

/// A page request.
pub fn page(size: u32, token: &str) -> Option<api::Page> {
    Some(api::Page {
        page_size: size,
        page_token: token.to_owned(),
    })
}

/// The messages of one upload: a header, then `content` in [`CHUNK`]-sized chunks.
pub fn upload_parts(
    tenant: &str,
    app: &str,
    message: &str,
    content: &[u8],
) -> Vec<api::UploadRevisionRequest> {
    use api::upload_revision_request::Part;
    let header = api::RevisionHeader {
        tenant: tenant.into(),
        app: app.into(),
        message: message.into(),
        dependencies: vec![],
    };
    std::iter::once(Part::Header(header))
        .chain(
            content
                .chunks(CHUNK)
                .map(|c| Part::Chunk(bytes::Bytes::copy_from_slice(c))),
        )
        .map(|part| api::UploadRevisionRequest { part: Some(part) })
        .collect()
}

/// The `sha256:` content digest of `content`, as the gateway records it.
pub fn content_digest(content: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(content)))
}

impl Stack {
    /// Starts nats-server, a platform process and the gateway (`GatewayConfig::loopback`), and
    /// bootstraps the platform admin [`ROOT`].
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Like [`Stack::start`], with impact analysis answered by `consumers`.
    pub async fn start_with(
        consumers: Option<std::sync::Arc<dyn neo_model::impact::Consumers>>,
    ) -> anyhow::Result<Self> {
        Self::start_on_core(Core::start().await?, consumers).await
    }

    /// Like [`Stack::start_with`] on `core`; on a secured core the gateway connects as user
    /// `gateway` and serves TLS with the core's certificate.
    pub async fn start_on_core(
        core: Core,
        consumers: Option<std::sync::Arc<dyn neo_model::impact::Consumers>>,
    ) -> anyhow::Result<Self> {
        let platform = core.platform(HostConfig::default()).await?;
        let client = core.connect_as("gateway").await?;
        identity::bootstrap_admin(&client, ROOT, ROOT_PASSWORD)
            .await
            .context("bootstrapping the platform admin")?;
        let key = format!("neo-test-key-{}", uuid::Uuid::new_v4()).into_bytes();
        let s3 = crate::storage::S3::start().await?;
        let keyring = neo_secrets::Keyring::new(neo_secrets::Kek::generate()?);
        let secrets = std::sync::Arc::new(
            neo_secrets::SecretStore::open(
                async_nats::jetstream::new(client.clone()),
                keyring.clone(),
            )
            .await?,
        );
        let platform_secrets = std::sync::Arc::new(
            neo_secrets::SecretStore::open(
                async_nats::jetstream::new(platform.client.clone()),
                keyring,
            )
            .await?,
        );
        let secret_requests = AbortOnDrop(
            neo_secrets::serve_stage_requests(platform.client.clone(), platform_secrets).await?,
        );
        if let Some(consumers) = &consumers {
            platform.platform.attach_consumers(consumers.clone());
        }
        let backends = neo_gateway::Backends {
            revisions: s3.store.clone(),
            consumers,
            secrets: Some(secrets.clone()),
        };
        let tls = core.security.as_ref().map(|s| neo_gateway::TlsFiles {
            cert: s.certs.cert.clone(),
            key: s.certs.key.clone(),
        });
        let config = GatewayConfig {
            tls: tls.clone(),
            ..GatewayConfig::loopback(key.clone())
        };
        let gateway = Gateway::start(client, config, backends)
            .await
            .context("starting the gateway")?;
        let mut endpoint = Endpoint::from_shared(gateway.endpoint())?;
        if let Some(security) = &core.security {
            let ca = std::fs::read_to_string(&security.certs.ca)?;
            endpoint = Endpoint::from_shared(format!(
                "https://localhost:{}",
                gateway.local_addr().port()
            ))?
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )?;
        }
        let channel = endpoint
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        Ok(Self {
            core,
            platform,
            gateway,
            key,
            s3,
            secrets,
            channel,
            _secret_requests: secret_requests,
        })
    }

    /// A channel to the gateway, without credentials.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn authed(&self, token: &str) -> Authed {
        InterceptedService::new(self.channel(), Bearer(bearer(token)))
    }

    /// Identity, with no credentials (for Login).
    pub fn anonymous(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel())
    }

    /// Identity as the holder of `token`.
    pub fn identity(&self, token: &str) -> IdentityClient<Authed> {
        IdentityClient::new(self.authed(token))
    }

    /// Tenants as the holder of `token`.
    pub fn tenants(&self, token: &str) -> TenantsClient<Authed> {
        TenantsClient::new(self.authed(token))
    }

    /// Apps as the holder of `token`.
    pub fn apps(&self, token: &str) -> AppsClient<Authed> {
        AppsClient::new(self.authed(token))
    }

    /// Builds as the holder of `token`.
    pub fn builds(&self, token: &str) -> BuildsClient<Authed> {
        BuildsClient::new(self.authed(token))
    }

    /// Deployments as the holder of `token`.
    pub fn deployments(&self, token: &str) -> DeploymentsClient<Authed> {
        DeploymentsClient::new(self.authed(token))
    }

    /// The Runtime (logs, status, scale) as the holder of `token`.
    pub fn runtime(&self, token: &str) -> RuntimeClient<Authed> {
        RuntimeClient::new(self.authed(token))
    }

    /// Settings and secrets as the holder of `token`.
    pub fn settings(&self, token: &str) -> api::settings_client::SettingsClient<Authed> {
        api::settings_client::SettingsClient::new(self.authed(token))
    }

    /// Events as the holder of `token`.
    pub fn events(&self, token: &str) -> EventsClient<Authed> {
        EventsClient::new(self.authed(token))
    }

    /// Logs `user` in to `tenant` ("" for the platform) and returns the token.
    pub async fn login(&self, user: &str, password: &str, tenant: &str) -> Result<String, Status> {
        let reply = self
            .anonymous()
            .login(api::LoginRequest {
                user: user.into(),
                password: password.into(),
                tenant: tenant.into(),
            })
            .await?;
        Ok(reply.into_inner().token)
    }

    /// The platform admin's token.
    pub async fn root(&self) -> anyhow::Result<String> {
        Ok(self.login(ROOT, ROOT_PASSWORD, "").await?)
    }

    /// Creates user `name` (password [`password`]) as the holder of `token`.
    pub async fn create_user(&self, token: &str, name: &str) -> anyhow::Result<()> {
        self.identity(token)
            .create_user(req::user(name))
            .await
            .with_context(|| format!("creating user {name}"))?;
        Ok(())
    }

    /// Creates tenant `acme` (alice admin, dave developer, otto devops, vic viewer) and tenant
    /// `beta` (bob admin), and logs everyone in.
    pub async fn people(&self) -> anyhow::Result<People> {
        let root = self.root().await?;
        for user in ["alice", "dave", "otto", "vic", "bob"] {
            self.create_user(&root, user).await?;
        }
        for (tenant, admin) in [("acme", "alice"), ("beta", "bob")] {
            self.tenants(&root)
                .create_tenant(req::tenant(tenant, admin))
                .await
                .with_context(|| format!("creating tenant {tenant}"))?;
        }
        let alice = self.login("alice", &password("alice"), "acme").await?;
        for (user, role) in [
            ("dave", pb::Role::Developer),
            ("otto", pb::Role::Devops),
            ("vic", pb::Role::Viewer),
        ] {
            self.tenants(&alice)
                .set_member(req::set_member("acme", user, role))
                .await
                .with_context(|| format!("adding {user} to acme"))?;
        }
        let login = |user: &'static str, tenant: &'static str| async move {
            self.login(user, &password(user), tenant)
                .await
                .with_context(|| format!("logging {user} in to {tenant}"))
        };
        Ok(People {
            root,
            alice,
            dave: login("dave", "acme").await?,
            otto: login("otto", "acme").await?,
            vic: login("vic", "acme").await?,
            bob: login("bob", "beta").await?,
        })
    }

    /// Uploads `content` as the next revision of `app` in `tenant`.
    pub async fn upload(
        &self,
        token: &str,
        tenant: &str,
        app: &str,
        content: &[u8],
    ) -> Result<pb::Revision, Status> {
        let parts = upload_parts(tenant, app, "a change", content);
        let reply = self
            .apps(token)
            .upload_revision(tokio_stream::iter(parts))
            .await?;
        Ok(reply.into_inner())
    }

    /// Creates `app` in `tenant`, uploads one revision per item of `contents`, and returns them.
    pub async fn app_with_revisions(
        &self,
        token: &str,
        tenant: &str,
        app: &str,
        contents: &[&[u8]],
    ) -> anyhow::Result<Vec<pb::Revision>> {
        self.apps(token)
            .create_app(req::create_app(tenant, app))
            .await
            .with_context(|| format!("creating app {app}"))?;
        let mut revisions = Vec::new();
        for content in contents {
            revisions.push(self.upload(token, tenant, app, content).await?);
        }
        Ok(revisions)
    }

    /// Plays the build worker (there is none yet): starts the current attempt of build
    /// `{app}_r{revision}` and succeeds it with image `commands::digest(image)`, over NATS.
    /// The build must have been requested. Returns the image digest.
    pub async fn finish_build(
        &self,
        tenant: &str,
        app: &str,
        revision: u32,
        image: u64,
    ) -> anyhow::Result<String> {
        let build = EntityRef::build(&TenantName::new(tenant)?, &AppName::new(app)?, revision);
        let (state, _) = self.platform.platform.builds.state(&build).await?;
        let attempt = state.attempt;
        let digest = commands::digest(image);
        let steps = [
            pb::build_command::Command::Start(pb::StartBuild {
                attempt,
                worker: "w1".into(),
                takeover: false,
            }),
            pb::build_command::Command::Succeed(pb::SucceedBuild {
                attempt,
                image_digest: digest.clone(),
                image_ref: String::new(),
                ..Default::default()
            }),
        ];
        for step in steps {
            let command = pb::BuildCommand {
                command: Some(step),
            };
            let reply = send(&self.platform.client, &build, &commands::request(command)).await?;
            if let Some(pb::command_reply::Result::Error(e)) = reply.result {
                bail!("the simulated worker was refused on {build}: {e:?}");
            }
        }
        Ok(digest)
    }

    /// Requests the build of `revision` through the gateway and plays its worker to success.
    pub async fn built(
        &self,
        token: &str,
        tenant: &str,
        app: &str,
        revision: u32,
        image: u64,
    ) -> anyhow::Result<String> {
        self.builds(token)
            .request_build(req::request_build(tenant, app, revision))
            .await
            .with_context(|| format!("requesting the build of {app} r{revision}"))?;
        self.finish_build(tenant, app, revision, image).await
    }

    /// The number of events in stream `NEO_EVENTS`.
    pub async fn event_count(&self) -> anyhow::Result<u64> {
        let js = async_nats::jetstream::new(self.platform.client.clone());
        let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
        Ok(stream.info().await?.state.messages)
    }

    /// Every event of `tenant` in stream `NEO_EVENTS`, read straight from JetStream.
    pub async fn stored_events(&self, tenant: &str) -> anyhow::Result<Vec<StoredEvent>> {
        let js = async_nats::jetstream::new(self.platform.client.clone());
        let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
        let last = stream.info().await?.state.last_sequence;
        let mut events = Vec::new();
        for sequence in 1..=last {
            let message = stream.get_raw_message(sequence).await?;
            let (entity, event_type) = subjects::parse_event(&message.subject)?;
            if entity.tenant.as_str() != tenant {
                continue;
            }
            let who = message
                .headers
                .get(headers::WHO)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            events.push(StoredEvent {
                sequence,
                kind: entity.kind.as_str().to_owned(),
                entity_id: entity.id.as_str().to_owned(),
                event_type,
                who,
            });
        }
        Ok(events)
    }
}

/// One event as JetStream holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its stream sequence.
    pub sequence: u64,
    /// The entity kind (`app`, …).
    pub kind: String,
    /// The entity id.
    pub entity_id: String,
    /// The event type (`AppCreated`, …).
    pub event_type: String,
    /// The principal in its `Neo-Who` header.
    pub who: String,
}

/// The first event of a watch, or the status that refused it (on the call or on its first
/// message).
pub async fn first_event(
    client: &mut EventsClient<Authed>,
    request: api::WatchRequest,
) -> Result<api::Event, Status> {
    let mut stream = client.watch(request).await?.into_inner();
    match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
        Ok(Ok(Some(event))) => Ok(event),
        Ok(Ok(None)) => Err(Status::cancelled("the watch ended without an event")),
        Ok(Err(status)) => Err(status),
        Err(_) => Err(Status::deadline_exceeded("no event within 10 s")),
    }
}

/// Up to `n` events of `stream`, stopping early when none arrives within `quiet`.
pub async fn next_events(
    stream: &mut Streaming<api::Event>,
    n: usize,
    quiet: Duration,
) -> Result<Vec<api::Event>, Status> {
    let mut events = Vec::new();
    while events.len() < n {
        match tokio::time::timeout(quiet, stream.message()).await {
            Ok(Ok(Some(event))) => events.push(event),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(status)) => return Err(status),
        }
    }
    Ok(events)
}
