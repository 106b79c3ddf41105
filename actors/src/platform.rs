//! The platform: one entity host per kind, and dispatch of encoded commands and state queries
//! to them, with the error mapping every caller (NATS intake, reactors, the gateway) shares.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use neo_model::impact::Consumers;
use neo_protocol::names::validate_id;
use neo_protocol::pb::{self, ErrorCode};
use neo_protocol::{EntityKind, EntityRef};
use neo_telemetry::metrics;
use neo_telemetry::trace;
use prost::Message;
use tracing::Instrument as _;

use crate::aggregate::{Aggregate, Rejection, RejectionCode};
use crate::host::{CommandMeta, EntityHost, HostConfig, HostError};
use crate::store::{EventStore, StoreError};

pub mod deleted;
mod facts;
mod transport;

/// The largest principal name accepted.
const MAX_PRINCIPAL_LEN: usize = 256;

/// Every entity host of one platform process.
pub struct Platform {
    /// Tenants.
    pub tenants: EntityHost<pb::TenantState>,
    /// Apps and their revisions.
    pub apps: EntityHost<pb::AppState>,
    /// Builds.
    pub builds: EntityHost<pb::BuildState>,
    /// Deployments.
    pub deployments: EntityHost<pb::DeploymentState>,
    /// Podgroups.
    pub podgroups: EntityHost<pb::PodgroupState>,
    /// The consumers of each stage, for impact analysis of deploys (none attached: no analysis).
    consumers: OnceLock<Arc<dyn Consumers>>,
    /// Tenants deleted for good: commands on their entities are refused.
    deleted: deleted::Deleted,
}

/// A [`pb::CommandError`] with a code, message and optional field.
pub fn error(code: ErrorCode, message: impl Into<String>) -> pb::CommandError {
    pb::CommandError {
        code: code as i32,
        message: message.into(),
        ..Default::default()
    }
}

/// An invalid-argument error naming the offending field.
pub fn invalid(field: &str, message: impl Into<String>) -> pb::CommandError {
    pb::CommandError {
        code: ErrorCode::InvalidArgument as i32,
        field: field.to_owned(),
        message: message.into(),
        ..Default::default()
    }
}

/// Maps a host error to the reply error, in one place.
pub fn host_error(e: HostError) -> pb::CommandError {
    match e {
        HostError::Rejected(r) => rejection(r),
        HostError::Aborted { .. } => error(ErrorCode::Aborted, e.to_string()),
        HostError::Store(StoreError::Unavailable(_)) | HostError::Stopped(_) => {
            error(ErrorCode::Unavailable, e.to_string())
        }
        HostError::Store(StoreError::Malformed { .. }) => error(ErrorCode::DataLoss, e.to_string()),
        HostError::Store(StoreError::TooLarge(_)) => {
            error(ErrorCode::ResourceExhausted, e.to_string())
        }
        HostError::Store(StoreError::Conflict { .. }) => error(ErrorCode::Aborted, e.to_string()),
        HostError::Store(StoreError::Other(_)) => error(ErrorCode::Internal, e.to_string()),
    }
}

/// Maps a domain rejection to the reply error.
pub fn rejection(r: Rejection) -> pb::CommandError {
    let code = match r.code {
        RejectionCode::InvalidArgument => ErrorCode::InvalidArgument,
        RejectionCode::NotFound => ErrorCode::NotFound,
        RejectionCode::AlreadyExists => ErrorCode::AlreadyExists,
        RejectionCode::FailedPrecondition => ErrorCode::FailedPrecondition,
    };
    pb::CommandError {
        code: code as i32,
        rule: r.rule.to_owned(),
        field: r.field.unwrap_or_default(),
        message: r.message,
    }
}

fn reply_error(e: pb::CommandError) -> pb::CommandReply {
    pb::CommandReply {
        result: Some(pb::command_reply::Result::Error(e)),
    }
}

fn decode<M: Message + Default>(bytes: Bytes, what: &str) -> Result<M, pb::CommandError> {
    M::decode(bytes).map_err(|e| invalid("command", format!("payload is not a {what}: {e}")))
}

/// Validates the envelope's ids and principal into command metadata.
pub fn command_meta(request: &pb::CommandRequest) -> Result<CommandMeta, pb::CommandError> {
    let check = |field: &'static str, value: &str| {
        validate_id(field, value).map_err(|e| invalid(field, e.to_string()))
    };
    check("command_id", &request.command_id)?;
    let correlation_id = if request.correlation_id.is_empty() {
        request.command_id.clone()
    } else {
        check("correlation_id", &request.correlation_id)?;
        request.correlation_id.clone()
    };
    if !request.causation_id.is_empty() {
        check("causation_id", &request.causation_id)?;
    }
    if request.principal.is_empty()
        || request.principal.len() > MAX_PRINCIPAL_LEN
        || request.principal.chars().any(char::is_control)
    {
        return Err(invalid(
            "principal",
            format!("principal must be 1 to {MAX_PRINCIPAL_LEN} printable characters"),
        ));
    }
    Ok(CommandMeta {
        command_id: request.command_id.clone(),
        correlation_id,
        causation_id: request.causation_id.clone(),
        principal: request.principal.clone(),
        traceparent: (!request.traceparent.is_empty()).then(|| request.traceparent.clone()),
        want_state: request.want_state,
    })
}

async fn run<A: Aggregate>(
    host: &EntityHost<A>,
    entity: &EntityRef,
    meta: CommandMeta,
    command: A::Command,
) -> pb::CommandReply {
    match host.execute(entity, meta, command).await {
        Ok(accepted) => pb::CommandReply {
            result: Some(pb::command_reply::Result::Accepted(pb::CommandAccepted {
                events: accepted
                    .events
                    .into_iter()
                    .map(|r| pb::EventRecord {
                        sequence: r.sequence,
                        event_type: r.event_type,
                        payload: Bytes::from(r.event.encode_to_vec()),
                    })
                    .collect(),
                last_sequence: accepted.last_sequence,
                duplicate: accepted.duplicate,
                state: accepted.state,
            })),
        },
        Err(e) => {
            tracing::debug!(%entity, error = %e, "command not accepted");
            reply_error(host_error(e))
        }
    }
}

async fn read<A: Aggregate>(host: &EntityHost<A>, entity: &EntityRef) -> pb::StateReply {
    match host.state(entity).await {
        Ok((state, sequence)) => pb::StateReply {
            result: Some(pb::state_reply::Result::State(pb::EntityState {
                state: Bytes::from(state.encode_to_vec()),
                sequence,
            })),
        },
        Err(e) => pb::StateReply {
            result: Some(pb::state_reply::Result::Error(host_error(e))),
        },
    }
}

impl Platform {
    /// Starts one host per kind over `store`.
    ///
    /// # Errors
    /// When a host's supervisor cannot start.
    pub async fn start(
        store: Arc<dyn EventStore>,
        config: HostConfig,
    ) -> Result<Arc<Self>, HostError> {
        Ok(Arc::new(Self {
            tenants: EntityHost::start(store.clone(), config.clone()).await?,
            apps: EntityHost::start(store.clone(), config.clone()).await?,
            builds: EntityHost::start(store.clone(), config.clone()).await?,
            deployments: EntityHost::start(store.clone(), config.clone()).await?,
            podgroups: EntityHost::start(store, config).await?,
            consumers: OnceLock::new(),
            deleted: deleted::Deleted::default(),
        }))
    }

    /// Deploys are assessed for impact against `consumers` (the read models) from now on. The
    /// first call wins: a process has one set of read models.
    pub fn attach_consumers(&self, consumers: Arc<dyn Consumers>) {
        if self.consumers.set(consumers).is_err() {
            tracing::debug!("consumers already attached; keeping the first");
        }
    }

    /// Live actors across every kind.
    pub fn live_count(&self) -> usize {
        self.tenants.live_count()
            + self.apps.live_count()
            + self.builds.live_count()
            + self.deployments.live_count()
            + self.podgroups.live_count()
    }

    /// Runs an encoded command against `entity` and answers with the reply to send back.
    /// Never panics on bad input: every failure is a [`pb::CommandError`] with its code.
    ///
    /// The command runs in a `command` span, the child of the request's `traceparent`; the
    /// events it writes carry this span's `traceparent`, so their consumers continue the trace.
    pub async fn dispatch(
        &self,
        entity: &EntityRef,
        mut request: pb::CommandRequest,
    ) -> pb::CommandReply {
        let span = tracing::info_span!(
            "command",
            kind = entity.kind.as_str(),
            entity = %entity,
            command_id = %request.command_id,
            outcome = tracing::field::Empty,
        );
        trace::set_parent(&span, &request.traceparent);
        request.traceparent = trace::traceparent_or(&span, &request.traceparent);
        let reply = match self
            .try_dispatch(entity, request)
            .instrument(span.clone())
            .await
        {
            Ok(reply) => reply,
            Err(e) => reply_error(e),
        };
        let outcome = count(entity.kind, &reply);
        span.record("outcome", outcome);
        reply
    }

    async fn try_dispatch(
        &self,
        entity: &EntityRef,
        request: pb::CommandRequest,
    ) -> Result<pb::CommandReply, pb::CommandError> {
        let meta = command_meta(&request)?;
        self.deleted.check(entity)?;
        let body = request.command;
        Ok(match entity.kind {
            EntityKind::Tenant => {
                let c = decode(body, "TenantCommand")?;
                let reply = run(&self.tenants, entity, meta, c).await;
                if let Some(pb::command_reply::Result::Accepted(a)) = &reply.result
                    && a.events.iter().any(|e| e.event_type == "TenantDeleted")
                {
                    self.tenant_deleted(entity.tenant.as_str());
                }
                reply
            }
            EntityKind::App => {
                let c = decode(body, "AppCommand")?;
                run(&self.apps, entity, meta, c).await
            }
            EntityKind::Build => {
                let c = decode(body, "BuildCommand")?;
                facts::check_build(entity, &c)?;
                run(&self.builds, entity, meta, c).await
            }
            EntityKind::Deployment => {
                let mut c = decode(body, "DeploymentCommand")?;
                self.enrich_deployment(entity, &mut c).await?;
                let rollout = match &c.command {
                    Some(pb::deployment_command::Command::RecordRollout(r)) => Some(r.status()),
                    _ => None,
                };
                let reply = run(&self.deployments, entity, meta, c).await;
                if let (Some(status), Some(pb::command_reply::Result::Accepted(a))) =
                    (rollout, &reply.result)
                    && !a.duplicate
                {
                    let outcome = match status {
                        pb::RolloutStatus::Succeeded => "succeeded",
                        _ => "failed",
                    };
                    metrics::global()
                        .rollouts
                        .get_or_create(&metrics::OutcomeLabel { outcome })
                        .inc();
                }
                reply
            }
            EntityKind::Podgroup => {
                let c = decode(body, "PodgroupCommand")?;
                facts::check_podgroup(entity, &c)?;
                run(&self.podgroups, entity, meta, c).await
            }
        })
    }

    /// The current state of `entity`, encoded, with the sequence it covers.
    pub async fn query(&self, entity: &EntityRef) -> pb::StateReply {
        match entity.kind {
            EntityKind::Tenant => read(&self.tenants, entity).await,
            EntityKind::App => read(&self.apps, entity).await,
            EntityKind::Build => read(&self.builds, entity).await,
            EntityKind::Deployment => read(&self.deployments, entity).await,
            EntityKind::Podgroup => read(&self.podgroups, entity).await,
        }
    }

    /// Stops every live actor (state is rebuilt from the log on next use).
    pub fn passivate_all(&self) {
        self.tenants.passivate_all();
        self.apps.passivate_all();
        self.builds.passivate_all();
        self.deployments.passivate_all();
        self.podgroups.passivate_all();
    }
}

/// Counts a command's outcome in the process's metrics, and names it.
fn count(kind: EntityKind, reply: &pb::CommandReply) -> &'static str {
    let outcome = match &reply.result {
        Some(pb::command_reply::Result::Accepted(a)) if a.duplicate => "duplicate",
        Some(pb::command_reply::Result::Accepted(_)) => "accepted",
        Some(pb::command_reply::Result::Error(e)) => {
            match ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Internal) {
                ErrorCode::Aborted => "aborted",
                ErrorCode::Unavailable | ErrorCode::Internal | ErrorCode::DataLoss => "error",
                _ => "rejected",
            }
        }
        None => "error",
    };
    metrics::global()
        .commands
        .get_or_create(&metrics::CommandLabels {
            kind: kind.as_str(),
            outcome,
        })
        .inc();
    outcome
}
