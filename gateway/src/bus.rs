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

/// How the fields a command's refusal names are called in the request that caused it:
/// `(prefix of the platform's field, what the request calls it)`, the first match wins, e.g.
/// `("add_stage.name", "stage")` or `("set_policy.", "")`. The platform names fields of its
/// command (`create.stages[1]`), which a client never sent: a field no entry renames is not
/// named (`neo-field` always names a field of the request; the message still says what was
/// wrong).
pub type FieldNames<'a> = &'a [(&'a str, &'a str)];

/// The status a client error answers a call with: a refusal keeps its code and rule, and its
/// field as the request names it (`names`); an unreachable platform is `UNAVAILABLE`.
pub fn status_naming(e: ClientError, names: FieldNames<'_>) -> Status {
    status_with(e, |field| {
        names
            .iter()
            .find_map(|(from, to)| field.strip_prefix(from).map(|rest| format!("{to}{rest}")))
            .unwrap_or_default()
    })
}

/// The status a client error answers a call with: a refusal keeps its code, rule and field;
/// an unreachable platform is `UNAVAILABLE`.
pub fn status(e: ClientError) -> Status {
    status_with(e, |field| field)
}

fn status_with(e: ClientError, field_name: impl FnOnce(String) -> String) -> Status {
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
            field: field_name(field),
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
    /// The platform's refusal mapped to its gRPC code (naming no field: see
    /// [`Bus::command_naming`]), or `UNAVAILABLE`.
    pub async fn command(
        &self,
        entity: &EntityRef,
        principal: &str,
        command: &impl Message,
    ) -> Result<pb::CommandAccepted, Status> {
        self.command_naming(entity, principal, command, &[]).await
    }

    /// [`Bus::command`] for a call whose request names some of the command's fields: a
    /// refusal names its field as `names` renames it.
    ///
    /// # Errors
    /// As for [`Bus::command`].
    pub async fn command_naming(
        &self,
        entity: &EntityRef,
        principal: &str,
        command: &impl Message,
        names: FieldNames<'_>,
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
            lease: None,
        };
        self.client
            .send(entity, request)
            .instrument(span)
            .await
            .map_err(|e| status_naming(e, names))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FIELD_METADATA;

    fn refused(field: &str) -> ClientError {
        ClientError::Refused {
            entity: "acme/podgroup/shop_dev".into(),
            rule: "policy.bounds".into(),
            code: pb::ErrorCode::InvalidArgument,
            field: field.into(),
            message: "min replicas 5 is over max replicas 2".into(),
        }
    }

    fn field(status: &Status) -> Option<&str> {
        status
            .metadata()
            .get(FIELD_METADATA)
            .and_then(|v| v.to_str().ok())
    }

    #[test]
    fn a_command_field_is_named_as_the_request_names_it_or_not_at_all() {
        let names: FieldNames<'_> = &[("add_stage.name", "stage"), ("set_policy.", "")];
        let renamed = status_naming(refused("set_policy.policy.min_replicas"), names);
        assert_eq!(renamed.code(), tonic::Code::InvalidArgument);
        assert_eq!(field(&renamed), Some("policy.min_replicas"));
        assert!(
            renamed
                .message()
                .starts_with("policy.min_replicas: min replicas 5"),
            "{renamed:?}"
        );
        assert!(renamed.message().contains("(rule policy.bounds)"));
        assert_eq!(
            field(&status_naming(refused("add_stage.name"), names)),
            Some("stage")
        );
        let unnamed = status_naming(refused("create.stages[1]"), names);
        assert_eq!(field(&unnamed), None, "not a field of the request");
        assert!(unnamed.message().starts_with("min replicas 5"));
    }
}
