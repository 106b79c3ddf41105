//! The shared harness of Neo's end-to-end tests: a real nats-server on a free loopback port,
//! the JetStream store, and platform processes (hosts + NATS intake) on it.
//!
//! # Layout
//!
//! - [`Core`]: one nats-server plus helpers to start platforms and send commands.
//! - [`commands`]: builders for the commands the tests send.
//! - [`gateway`]: the gRPC gateway on top of [`Core`], with authorised clients and a
//!   two-tenant fixture.
//! - [`load`]: a steady load through a fault, and the check that nothing acknowledged is lost.

pub mod build_stack;
pub mod cli;
pub mod commands;
pub mod gateway;
pub mod load;
pub mod runtime_stack;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use neo_actors::intake::{self, Intake, IntakeConfig};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};
use neo_harness::NatsServer;
use neo_protocol::{EntityRef, pb, subjects};
use prost::Message;

/// A nats-server for one test; stopped when dropped, even if the test fails.
pub struct Core {
    /// The server.
    pub nats: NatsServer,
    /// Set when the server is secured ([`Core::start_secured`]).
    pub security: Option<Security>,
}

/// A secured server's TLS and users: every component connects over TLS as its own user.
pub struct Security {
    /// The CA, the server certificate and the users' credentials.
    pub dir: tempfile::TempDir,
    /// The CA and the server certificate.
    pub certs: neo_server::certs::CertFiles,
    /// The users' credential files.
    pub creds: std::collections::BTreeMap<String, std::path::PathBuf>,
    /// Every error a server reported to a client made by [`Core::connect_as`] (a permissions
    /// violation above all), prefixed with the user.
    pub errors: Arc<std::sync::Mutex<Vec<String>>>,
}

/// A platform process: its own NATS connection, store, hosts and intake.
pub struct PlatformProcess {
    /// The platform's hosts.
    pub platform: Arc<Platform>,
    /// Its store.
    pub store: Arc<JetStreamStore>,
    /// Its connection.
    pub client: async_nats::Client,
    intake: Intake,
}

impl Core {
    /// Starts a nats-server with JetStream on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Self {
            nats: NatsServer::start().await?,
            security: None,
        })
    }

    /// Starts a nats-server that requires TLS and knows one user per component
    /// (`neo_server::nats_config`), with agents for `stages` and tooling users for `tenants`.
    pub async fn start_secured(stages: &[&str], tenants: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let certs = neo_server::certs::init(&dir.path().join("certs"), &[])?;
        let stages = stages
            .iter()
            .map(|s| neo_protocol::StageName::new(*s))
            .collect::<Result<Vec<_>, _>>()?;
        let tenants = tenants
            .iter()
            .map(|t| neo_protocol::TenantName::new(*t))
            .collect::<Result<Vec<_>, _>>()?;
        let secured = neo_server::nats_config::secure(
            &dir.path().join("creds"),
            Some((&certs.cert, &certs.key)),
            &stages,
            &tenants,
        )?;
        Ok(Self {
            nats: NatsServer::start_with(secured.block).await?,
            security: Some(Security {
                dir,
                certs,
                creds: secured.creds,
                errors: Arc::default(),
            }),
        })
    }

    /// The connect settings of `user` (TLS and its credential); plain and anonymous when the
    /// server is not secured.
    pub fn nats_args(&self, user: &str) -> anyhow::Result<neo_server::nats_connect::NatsArgs> {
        let mut args = neo_server::nats_connect::NatsArgs::plain(self.nats.url());
        if let Some(security) = &self.security {
            args.nats_ca = Some(security.certs.ca.clone());
            args.nats_creds = Some(
                security
                    .creds
                    .get(user)
                    .ok_or_else(|| anyhow::anyhow!("no NATS user {user}"))?
                    .clone(),
            );
        }
        Ok(args)
    }

    /// A new connection as `user` (anonymous when the server is not secured); errors the
    /// server reports to it are kept in [`Security::errors`].
    pub async fn connect_as(&self, user: &str) -> anyhow::Result<async_nats::Client> {
        let options = self
            .nats_args(user)?
            .options(&format!("test-{user}"))
            .await?
            .request_timeout(Some(Duration::from_secs(10)));
        let options = match &self.security {
            Some(security) => {
                let (errors, user) = (security.errors.clone(), user.to_owned());
                options.event_callback(move |event| {
                    let (errors, user) = (errors.clone(), user.clone());
                    async move {
                        if let async_nats::Event::ServerError(e) = event
                            && let Ok(mut errors) = errors.lock()
                        {
                            errors.push(format!("{user}: {e}"));
                        }
                    }
                })
            }
            None => options,
        };
        Ok(options.connect(self.nats.url()).await?)
    }

    /// The errors servers reported to connections of [`Core::connect_as`].
    pub fn server_errors(&self) -> Vec<String> {
        self.security
            .as_ref()
            .and_then(|s| s.errors.lock().ok().map(|e| e.clone()))
            .unwrap_or_default()
    }

    /// A new client connection (as `admin` on a secured server).
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
        if self.security.is_some() {
            return self.connect_as("admin").await;
        }
        Ok(async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(10)))
            .connect(self.nats.url())
            .await?)
    }

    /// Opens the JetStream store on a new connection.
    pub async fn store(&self) -> anyhow::Result<Arc<JetStreamStore>> {
        let client = self.connect().await?;
        Ok(Arc::new(
            JetStreamStore::open(client, StoreConfig::default()).await?,
        ))
    }

    /// Starts a platform process (hosts + intake) with `config`.
    pub async fn platform(&self, config: HostConfig) -> anyhow::Result<PlatformProcess> {
        let client = if self.security.is_some() {
            self.connect_as("platform").await?
        } else {
            self.connect().await?
        };
        PlatformProcess::start(client, config).await
    }
}

impl PlatformProcess {
    /// Starts hosts and intake on `client`.
    pub async fn start(client: async_nats::Client, config: HostConfig) -> anyhow::Result<Self> {
        let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);
        let platform = Platform::start(store.clone(), config).await?;
        let intake =
            intake::serve(client.clone(), platform.clone(), IntakeConfig::default()).await?;
        Ok(Self {
            platform,
            store,
            client,
            intake,
        })
    }

    /// Stops it the way SIGTERM stops `neo serve`: its intake leaves the queue group and
    /// answers what it had received.
    pub async fn drain(self) {
        self.intake.drain(Duration::from_secs(10)).await;
    }
}

/// Sends an encoded command request for `entity` over NATS and decodes the reply.
pub async fn send(
    client: &async_nats::Client,
    entity: &EntityRef,
    request: &pb::CommandRequest,
) -> anyhow::Result<pb::CommandReply> {
    send_raw(
        client,
        &subjects::command(entity),
        Bytes::from(request.encode_to_vec()),
    )
    .await
}

/// Sends raw bytes on a command subject and decodes the reply.
pub async fn send_raw(
    client: &async_nats::Client,
    subject: &str,
    payload: Bytes,
) -> anyhow::Result<pb::CommandReply> {
    let reply = client.request(subject.to_owned(), payload).await?;
    Ok(pb::CommandReply::decode(reply.payload)?)
}

/// The error of a reply, or a panic naming what was accepted instead.
#[track_caller]
pub fn expect_error(reply: pb::CommandReply) -> pb::CommandError {
    match reply.result {
        Some(pb::command_reply::Result::Error(e)) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The accepted outcome of a reply, or a panic naming the error.
#[track_caller]
pub fn expect_accepted(reply: pb::CommandReply) -> pb::CommandAccepted {
    match reply.result {
        Some(pb::command_reply::Result::Accepted(a)) => a,
        other => panic!("expected acceptance, got {other:?}"),
    }
}

/// Polls `check` every 100 ms until it gives a value; fails the test, naming `what`, after
/// `within`.
///
/// # Panics
/// When `within` passes without a value.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Logs to the test's output by `RUST_LOG` (quiet by default); once per test binary.
pub fn test_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
