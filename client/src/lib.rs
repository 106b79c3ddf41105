//! The platform client: commands and state queries to the entity host, the one way every
//! caller (the gateway, build workers, runtime agents, tools) talks to the platform.
//!
//! - [`PlatformClient`]: sends a command (`CommandRequest` → `CommandAccepted`) or reads an
//!   entity's state, decodes the reply and turns a refusal into a [`ClientError`].
//! - [`Transport`]: how requests travel. [`NatsTransport`] uses NATS request/reply on
//!   `neo.cmd.…` / `neo.qry.…` (any platform process answers; an agent's commands go to its
//!   stage's `neo.stagecmd.…`); a process that hosts the platform hands it in process instead
//!   (`neo_actors::Platform` implements [`Transport`]).
//!
//! [`credentials`] reads a NATS connection's TLS and credential files, for every process and
//! tool; [`tenant_events`] finds the event log a tool may read; [`streams`] makes streams and
//! buckets with the installation's replica count; [`lease`] keeps one active agent per stage;
//! [`retry`] spaces the tries of what waits for a service to come back.
//!
//! Callers map [`ClientError`] to what they speak: the gateway to gRPC statuses, a worker to
//! "retry later" ([`ClientError::is_transient`]) or a failed build.

pub mod credentials;
mod error;
pub mod lease;
mod nats;
pub mod retry;
pub mod streams;
pub mod tenant_events;

use std::sync::Arc;

use bytes::Bytes;
use neo_protocol::{EntityRef, pb};
use prost::Message;

pub use error::ClientError;
pub use nats::NatsTransport;

/// How a [`PlatformClient`]'s requests reach the platform.
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Runs one command and answers with the platform's reply (a refusal is an `Ok` reply
    /// carrying its error).
    ///
    /// # Errors
    /// [`ClientError::Unavailable`] when the platform cannot be reached.
    async fn command(
        &self,
        entity: &EntityRef,
        request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, ClientError>;

    /// Reads one entity's state.
    ///
    /// # Errors
    /// As for [`Transport::command`].
    async fn query(&self, entity: &EntityRef) -> Result<pb::StateReply, ClientError>;
}

/// Sends commands and state queries to the platform.
#[derive(Clone)]
pub struct PlatformClient {
    transport: Arc<dyn Transport>,
}

impl PlatformClient {
    /// A client over `transport`.
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self { transport }
    }

    /// A client over NATS request/reply, waiting at most `timeout` for each answer.
    pub fn nats(client: async_nats::Client, timeout: std::time::Duration) -> Self {
        Self::new(Arc::new(NatsTransport::new(client, timeout)))
    }

    /// The client of the agent of `stage` over NATS: its commands go to the stage's own
    /// subjects (`neo.stagecmd.{stage}.…`), the only ones its NATS user may publish to, each
    /// carrying the lease `fence` holds.
    pub fn for_agent(
        client: async_nats::Client,
        timeout: std::time::Duration,
        stage: neo_protocol::StageName,
        fence: lease::Fence,
    ) -> Self {
        Self::new(Arc::new(NatsTransport::for_agent(
            client, timeout, stage, fence,
        )))
    }

    /// Runs `request` against `entity`.
    ///
    /// # Errors
    /// [`ClientError::Refused`] when the entity refused it; [`ClientError::Unavailable`] or
    /// [`ClientError::Undecodable`] when no good answer came.
    pub async fn send(
        &self,
        entity: &EntityRef,
        request: pb::CommandRequest,
    ) -> Result<pb::CommandAccepted, ClientError> {
        match self.transport.command(entity, request).await?.result {
            Some(pb::command_reply::Result::Accepted(accepted)) => Ok(accepted),
            Some(pb::command_reply::Result::Error(e)) => Err(ClientError::refused(entity, e)),
            None => Err(ClientError::Undecodable("empty reply".into())),
        }
    }

    /// Runs `command` on `entity` with the given (derived) command id, caused by `causation`
    /// (`evt:{sequence}` of the event that led to it, or empty); a retry with the same id is
    /// answered with the original result. The command continues the current span's trace.
    ///
    /// # Errors
    /// As for [`PlatformClient::send`].
    pub async fn command(
        &self,
        entity: &EntityRef,
        command_id: &str,
        causation: &str,
        principal: &str,
        command: &impl Message,
    ) -> Result<pb::CommandAccepted, ClientError> {
        let request = pb::CommandRequest {
            command_id: command_id.to_owned(),
            correlation_id: command_id.to_owned(),
            causation_id: causation.to_owned(),
            principal: principal.to_owned(),
            command: Bytes::from(command.encode_to_vec()),
            traceparent: neo_telemetry::trace::current_traceparent(),
            want_state: false,
            lease: None,
        };
        self.send(entity, request).await
    }

    /// The current state of `entity` (the default state when it has no events) and the
    /// sequence it covers.
    ///
    /// # Errors
    /// As for [`PlatformClient::send`].
    pub async fn state<S: Message + Default>(
        &self,
        entity: &EntityRef,
    ) -> Result<(S, u64), ClientError> {
        match self.transport.query(entity).await?.result {
            Some(pb::state_reply::Result::State(s)) => {
                let state =
                    S::decode(s.state).map_err(|e| ClientError::Undecodable(e.to_string()))?;
                Ok((state, s.sequence))
            }
            Some(pb::state_reply::Result::Error(e)) => Err(ClientError::refused(entity, e)),
            None => Err(ClientError::Undecodable("empty reply".into())),
        }
    }
}
