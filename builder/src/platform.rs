//! The build worker's view of the platform: commands and state queries over NATS
//! request/reply (`neo.cmd.*` / `neo.qry.*`), like any other client of the entity host.

use std::time::Duration;

use bytes::Bytes;
use neo_protocol::{EntityRef, StageName, pb, subjects};
use prost::Message;

/// The platform refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// NATS or the platform did not answer.
    #[error("the platform is unreachable: {0}")]
    Unavailable(String),
    /// The entity refused the command (or the query).
    #[error("{entity}: {rule}: {message}")]
    Refused {
        /// The entity.
        entity: String,
        /// The rule that refused.
        rule: String,
        /// The error code.
        code: pb::ErrorCode,
        /// Why.
        message: String,
    },
    /// The platform answered something undecodable.
    #[error("undecodable platform reply: {0}")]
    Undecodable(String),
}

impl PlatformError {
    /// The refusing rule, if the entity refused.
    pub fn rule(&self) -> Option<&str> {
        match self {
            Self::Refused { rule, .. } => Some(rule),
            _ => None,
        }
    }

    /// Whether retrying later may succeed (an outage or an exhausted conflict).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Refused { code, .. } => matches!(
                code,
                pb::ErrorCode::Unavailable | pb::ErrorCode::Aborted | pb::ErrorCode::Internal
            ),
            Self::Undecodable(_) => false,
        }
    }
}

/// Sends commands and queries to the platform.
#[derive(Clone)]
pub struct PlatformClient {
    client: async_nats::Client,
    timeout: Duration,
    /// Commands go to `neo.stagecmd.{stage}.…` (an agent of this stage) instead of `neo.cmd.…`.
    agent_stage: Option<StageName>,
}

impl PlatformClient {
    /// A client answering within `timeout`.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            agent_stage: None,
        }
    }

    /// The client of the agent of `stage`: its commands go to the stage's own subjects
    /// (`neo.stagecmd.{stage}.…`), the only ones its NATS user may publish to.
    pub fn for_agent(client: async_nats::Client, timeout: Duration, stage: StageName) -> Self {
        Self {
            client,
            timeout,
            agent_stage: Some(stage),
        }
    }

    async fn request(&self, subject: String, payload: Vec<u8>) -> Result<Bytes, PlatformError> {
        let request = async_nats::Request::new()
            .payload(Bytes::from(payload))
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(subject, request)
            .await
            .map_err(|e| PlatformError::Unavailable(e.to_string()))?;
        Ok(reply.payload)
    }

    /// Runs `command` on `entity` with the given (derived) command id, caused by `causation`
    /// (`evt:{sequence}` of the event that led to it, or empty); a retry with the same id is
    /// answered with the original result. The command continues the current span's trace.
    pub async fn command(
        &self,
        entity: &EntityRef,
        command_id: &str,
        causation: &str,
        principal: &str,
        command: &impl Message,
    ) -> Result<pb::CommandAccepted, PlatformError> {
        let request = pb::CommandRequest {
            command_id: command_id.to_owned(),
            correlation_id: command_id.to_owned(),
            causation_id: causation.to_owned(),
            principal: principal.to_owned(),
            command: Bytes::from(command.encode_to_vec()),
            traceparent: neo_protocol::trace::current_traceparent(),
            want_state: false,
        };
        let subject = match &self.agent_stage {
            Some(stage) => subjects::stage_command(stage, entity),
            None => subjects::command(entity),
        };
        let reply = self.request(subject, request.encode_to_vec()).await?;
        let reply = pb::CommandReply::decode(reply)
            .map_err(|e| PlatformError::Undecodable(e.to_string()))?;
        match reply.result {
            Some(pb::command_reply::Result::Accepted(accepted)) => Ok(accepted),
            Some(pb::command_reply::Result::Error(e)) => Err(refused(entity, e)),
            None => Err(PlatformError::Undecodable("empty reply".into())),
        }
    }

    /// The current state of `entity` (the default state when it has no events).
    pub async fn state<S: Message + Default>(
        &self,
        entity: &EntityRef,
    ) -> Result<(S, u64), PlatformError> {
        let reply = self
            .request(subjects::query(entity), pb::StateRequest {}.encode_to_vec())
            .await?;
        let reply =
            pb::StateReply::decode(reply).map_err(|e| PlatformError::Undecodable(e.to_string()))?;
        match reply.result {
            Some(pb::state_reply::Result::State(s)) => {
                let state =
                    S::decode(s.state).map_err(|e| PlatformError::Undecodable(e.to_string()))?;
                Ok((state, s.sequence))
            }
            Some(pb::state_reply::Result::Error(e)) => Err(refused(entity, e)),
            None => Err(PlatformError::Undecodable("empty reply".into())),
        }
    }
}

fn refused(entity: &EntityRef, e: pb::CommandError) -> PlatformError {
    PlatformError::Refused {
        entity: entity.to_string(),
        rule: e.rule,
        code: pb::ErrorCode::try_from(e.code).unwrap_or(pb::ErrorCode::Internal),
        message: e.message,
    }
}
