//! The gateway's way to the platform: NATS request/reply on `neo.cmd.…` and `neo.qry.…`.

use std::time::Duration;

use bytes::Bytes;
use neo_protocol::{EntityRef, pb, subjects};
use prost::Message;
use tonic::Status;

use crate::error::{from_command_error, unavailable};

/// Sends commands and state queries to whichever platform process serves them.
#[derive(Clone)]
pub struct Bus {
    client: async_nats::Client,
    timeout: Duration,
}

fn request_error(e: async_nats::RequestError) -> Status {
    match e.kind() {
        async_nats::RequestErrorKind::NoResponders => {
            unavailable("no platform process is serving commands; retry shortly")
        }
        async_nats::RequestErrorKind::TimedOut => {
            unavailable("the platform did not answer in time; retry shortly")
        }
        _ => unavailable(format!("NATS is unreachable: {e}")),
    }
}

impl Bus {
    /// A bus over `client`, waiting at most `timeout` per request.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    /// The NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn request(&self, subject: String, payload: Vec<u8>) -> Result<Bytes, Status> {
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

    /// Runs `command` (a `{Kind}Command`) against `entity` on behalf of `principal`.
    ///
    /// # Errors
    /// The platform's refusal mapped to its gRPC code, or `UNAVAILABLE`.
    pub async fn command(
        &self,
        entity: &EntityRef,
        principal: &str,
        command: &impl Message,
    ) -> Result<pb::CommandAccepted, Status> {
        let id = uuid::Uuid::new_v4().to_string();
        let request = pb::CommandRequest {
            command_id: id.clone(),
            correlation_id: id,
            causation_id: String::new(),
            principal: principal.to_owned(),
            command: Bytes::from(command.encode_to_vec()),
            traceparent: String::new(),
        };
        let reply = self
            .request(subjects::command(entity), request.encode_to_vec())
            .await?;
        let reply = pb::CommandReply::decode(reply)
            .map_err(|e| Status::internal(format!("undecodable platform reply: {e}")))?;
        match reply.result {
            Some(pb::command_reply::Result::Accepted(a)) => Ok(a),
            Some(pb::command_reply::Result::Error(e)) => Err(from_command_error(e)),
            None => Err(Status::internal("empty platform reply")),
        }
    }

    /// The current state of `entity` and the sequence it covers.
    ///
    /// # Errors
    /// `UNAVAILABLE`, or the platform's error.
    pub async fn state<S: Message + Default>(
        &self,
        entity: &EntityRef,
    ) -> Result<(S, u64), Status> {
        let reply = self
            .request(subjects::query(entity), pb::StateRequest {}.encode_to_vec())
            .await?;
        let reply = pb::StateReply::decode(reply)
            .map_err(|e| Status::internal(format!("undecodable platform reply: {e}")))?;
        match reply.result {
            Some(pb::state_reply::Result::State(s)) => {
                let state = S::decode(s.state)
                    .map_err(|e| Status::internal(format!("undecodable state: {e}")))?;
                Ok((state, s.sequence))
            }
            Some(pb::state_reply::Result::Error(e)) => Err(from_command_error(e)),
            None => Err(Status::internal("empty platform reply")),
        }
    }
}
