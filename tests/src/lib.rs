//! The shared harness of Neo's end-to-end tests: a real nats-server on a free loopback port,
//! the JetStream store, and platform processes (hosts + NATS intake) on it.
//!
//! # Layout
//!
//! - [`Core`]: one nats-server plus helpers to start platforms and send commands.
//! - [`commands`]: builders for the commands the tests send.
//! - [`gateway`]: the gRPC gateway on top of [`Core`], with authorised clients and a
//!   two-tenant fixture.

pub mod build_stack;
pub mod cli;
pub mod commands;
pub mod gateway;
pub mod runtime_stack;
pub mod storage;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use neo_actors::intake::{self, Intake, IntakeConfig};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};
use neo_ops::servers::NatsServer;
use neo_protocol::{EntityRef, pb, subjects};
use prost::Message;

/// A nats-server for one test; stopped when dropped, even if the test fails.
pub struct Core {
    /// The server.
    pub nats: NatsServer,
}

/// A platform process: its own NATS connection, store, hosts and intake.
pub struct PlatformProcess {
    /// The platform's hosts.
    pub platform: Arc<Platform>,
    /// Its store.
    pub store: Arc<JetStreamStore>,
    /// Its connection.
    pub client: async_nats::Client,
    _intake: Intake,
}

impl Core {
    /// Starts a nats-server with JetStream on a free port.
    pub async fn start() -> anyhow::Result<Self> {
        Ok(Self {
            nats: NatsServer::start().await?,
        })
    }

    /// A new client connection.
    pub async fn connect(&self) -> anyhow::Result<async_nats::Client> {
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
        PlatformProcess::start(self.connect().await?, config).await
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
            _intake: intake,
        })
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
