//! The NATS transport: request/reply on `neo.cmd.…` / `neo.qry.…`, answered by any platform
//! process's intake; an agent's commands go to its stage's `neo.stagecmd.…`.

use std::time::Duration;

use bytes::Bytes;
use neo_protocol::{EntityRef, StageName, pb, subjects};
use prost::Message;

use crate::lease::Fence;
use crate::{ClientError, Transport};

/// Requests over NATS, each answered within a timeout.
pub struct NatsTransport {
    client: async_nats::Client,
    timeout: Duration,
    /// Commands go to `neo.stagecmd.{stage}.…` (an agent of this stage) instead of `neo.cmd.…`,
    /// carrying the agent's lease.
    agent: Option<(StageName, Fence)>,
}

impl NatsTransport {
    /// Requests over `client`, waiting at most `timeout` for each answer.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self {
            client,
            timeout,
            agent: None,
        }
    }

    /// The transport of the agent of `stage`: its commands go to the stage's own subjects
    /// (`neo.stagecmd.{stage}.…`), the only ones its NATS user may publish to; each carries
    /// the lease `fence` holds when it is sent.
    pub fn for_agent(
        client: async_nats::Client,
        timeout: Duration,
        stage: StageName,
        fence: Fence,
    ) -> Self {
        Self {
            client,
            timeout,
            agent: Some((stage, fence)),
        }
    }

    async fn request(&self, subject: String, payload: Vec<u8>) -> Result<Bytes, ClientError> {
        // While the connection is down a request would only wait out its timeout: fail fast,
        // so the caller retries (with the same command id) instead of hanging.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(ClientError::Unavailable(
                "NATS is unreachable (reconnecting); retry shortly".into(),
            ));
        }
        let request = async_nats::Request::new()
            .payload(Bytes::from(payload))
            .timeout(Some(self.timeout));
        let reply = self
            .client
            .send_request(subject, request)
            .await
            .map_err(request_error)?;
        Ok(reply.payload)
    }
}

fn request_error(e: async_nats::RequestError) -> ClientError {
    ClientError::Unavailable(match e.kind() {
        async_nats::RequestErrorKind::NoResponders => {
            "no platform process is serving commands; retry shortly".into()
        }
        async_nats::RequestErrorKind::TimedOut => {
            "the platform did not answer in time; retry shortly".into()
        }
        _ => format!("NATS is unreachable: {e}"),
    })
}

fn undecodable(e: prost::DecodeError) -> ClientError {
    ClientError::Undecodable(e.to_string())
}

#[async_trait::async_trait]
impl Transport for NatsTransport {
    async fn command(
        &self,
        entity: &EntityRef,
        mut request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, ClientError> {
        let subject = match &self.agent {
            Some((stage, fence)) => {
                request.lease = Some(fence.lease());
                subjects::stage_command(stage, entity)
            }
            None => subjects::command(entity),
        };
        let reply = self.request(subject, request.encode_to_vec()).await?;
        pb::CommandReply::decode(reply).map_err(undecodable)
    }

    async fn query(&self, entity: &EntityRef) -> Result<pb::StateReply, ClientError> {
        let reply = self
            .request(subjects::query(entity), pb::StateRequest {}.encode_to_vec())
            .await?;
        pb::StateReply::decode(reply).map_err(undecodable)
    }
}
