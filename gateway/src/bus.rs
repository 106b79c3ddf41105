//! The gateway's way to the platform: a [`neo_client::PlatformClient`] (over NATS
//! request/reply, or in process when this process hosts the platform) whose errors become
//! gRPC statuses, and whose commands carry the call's request id and trace.

use bytes::Bytes;
use neo_client::{ClientError, PlatformClient};
use neo_protocol::{EntityRef, pb};
use neo_telemetry::trace;
use prost::Message;
use tonic::Status;
use tracing::Instrument as _;

use crate::error::{from_command_error, unavailable};

/// The status a client error answers a call with: a refusal keeps its code, rule and field;
/// an unreachable platform is `UNAVAILABLE`.
pub fn status(e: ClientError) -> Status {
    match e {
        ClientError::Unavailable(message) => unavailable(message),
        ClientError::Refused {
            rule,
            code,
            field,
            message,
            ..
        } => from_command_error(pb::CommandError {
            code: code as i32,
            rule,
            field,
            message,
        }),
        ClientError::Undecodable(e) => Status::internal(format!("undecodable platform reply: {e}")),
    }
}

/// Sends commands and state queries to the platform and maps replies to statuses.
#[derive(Clone)]
pub struct Bus {
    client: PlatformClient,
}

impl Bus {
    /// A bus over `client`.
    pub fn new(client: PlatformClient) -> Self {
        Self { client }
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
        self.client
            .send(entity, request)
            .instrument(span)
            .await
            .map_err(status)
    }

    /// The current state of `entity` and the sequence it covers.
    ///
    /// # Errors
    /// `UNAVAILABLE`, or the platform's error.
    pub async fn state<S: Message + Default>(
        &self,
        entity: &EntityRef,
    ) -> Result<(S, u64), Status> {
        self.client.state(entity).await.map_err(status)
    }
}
