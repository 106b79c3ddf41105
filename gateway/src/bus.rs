//! The gateway's way to the platform: a [`Dispatch`] that runs encoded commands and state
//! queries. [`NatsDispatch`] sends them over NATS request/reply on `neo.cmd.…` / `neo.qry.…`
//! (any platform process answers); a process that hosts the platform itself can hand the
//! gateway an in-process dispatch instead and skip the network hop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use neo_protocol::{EntityRef, pb, subjects, trace};
use prost::Message;
use tonic::Status;
use tracing::Instrument as _;

use crate::error::{from_command_error, unavailable};

/// Runs commands and queries against the platform.
#[tonic::async_trait]
pub trait Dispatch: Send + Sync + 'static {
    /// Runs one command.
    ///
    /// # Errors
    /// `UNAVAILABLE` (or another status) when the platform cannot be reached; a refusal by the
    /// platform is an `Ok` reply carrying its error.
    async fn command(
        &self,
        entity: &EntityRef,
        request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, Status>;

    /// Reads one entity's state.
    ///
    /// # Errors
    /// As for [`Dispatch::command`].
    async fn query(&self, entity: &EntityRef) -> Result<pb::StateReply, Status>;
}

/// Dispatch over NATS request/reply.
pub struct NatsDispatch {
    client: async_nats::Client,
    timeout: Duration,
}

impl NatsDispatch {
    /// Requests over `client`, waiting at most `timeout` each.
    pub fn new(client: async_nats::Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }

    async fn request(&self, subject: String, payload: Vec<u8>) -> Result<Bytes, Status> {
        // While the connection is down a request would only wait out its timeout: fail fast,
        // so the client retries (with its request id) instead of hanging.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(unavailable(
                "NATS is unreachable (reconnecting); retry shortly",
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

fn undecodable(e: prost::DecodeError) -> Status {
    Status::internal(format!("undecodable platform reply: {e}"))
}

#[tonic::async_trait]
impl Dispatch for NatsDispatch {
    async fn command(
        &self,
        entity: &EntityRef,
        request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, Status> {
        let reply = self
            .request(subjects::command(entity), request.encode_to_vec())
            .await?;
        pb::CommandReply::decode(reply).map_err(undecodable)
    }

    async fn query(&self, entity: &EntityRef) -> Result<pb::StateReply, Status> {
        let reply = self
            .request(subjects::query(entity), pb::StateRequest {}.encode_to_vec())
            .await?;
        pb::StateReply::decode(reply).map_err(undecodable)
    }
}

/// Sends commands and state queries to the platform and maps replies to statuses.
#[derive(Clone)]
pub struct Bus {
    dispatch: Arc<dyn Dispatch>,
}

impl Bus {
    /// A bus over `dispatch`.
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Self {
        Self { dispatch }
    }

    /// Runs `command` (a `{Kind}Command`) against `entity` on behalf of `principal`. Its id
    /// derives from the call's request id when the client sent one
    /// ([`crate::request_id::command_id`]), so a retried call is written once.
    ///
    /// Runs in a `gateway.command` span (the child of the current span, if any) whose
    /// `traceparent` the request carries, so the platform's spans join the same trace.
    ///
    /// # Errors
    /// The platform's refusal mapped to its gRPC code, or `UNAVAILABLE`.
    pub async fn command(
        &self,
        entity: &EntityRef,
        principal: &str,
        command: &impl Message,
    ) -> Result<pb::CommandAccepted, Status> {
        let command = Bytes::from(command.encode_to_vec());
        let id = crate::request_id::command_id(entity, &command)?;
        let span = tracing::info_span!(
            "gateway.command",
            kind = entity.kind.as_str(),
            entity = %entity,
            command_id = %id,
        );
        let request = pb::CommandRequest {
            command_id: id.clone(),
            correlation_id: id,
            causation_id: String::new(),
            principal: principal.to_owned(),
            command,
            traceparent: trace::traceparent(&span).unwrap_or_default(),
            want_state: true,
        };
        let reply = self
            .dispatch
            .command(entity, request)
            .instrument(span)
            .await?;
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
        match self.dispatch.query(entity).await?.result {
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
