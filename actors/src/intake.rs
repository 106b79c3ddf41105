//! Command intake over NATS: request/reply on `neo.cmd.{tenant}.{kind}.{id}` and state queries
//! on `neo.qry.{tenant}.{kind}.{id}`, both in queue group `neo-platform`, so that any platform
//! process can serve any tenant; and the agents' commands on
//! `neo.stagecmd.{stage}.{tenant}.{kind}.{id}`, where only what an agent of that stage may do
//! is accepted (see [`agent_may`]), and only from the stage's active agent: its command
//! carries the lease it acts under, which must be the current one (see
//! [`neo_client::lease::check`]).

use std::sync::Arc;

use futures::StreamExt;
use neo_protocol::pb::{self, ErrorCode};
use neo_protocol::{EntityKind, EntityRef, StageName, subjects};
use prost::Message as _;
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::platform::{Platform, error, invalid};

/// Limits of the intake.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// The largest encoded command request accepted, in bytes.
    pub max_command_bytes: usize,
    /// Requests handled at once; more wait in the subscription.
    pub max_in_flight: usize,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            max_command_bytes: 256 * 1024,
            max_in_flight: 4096,
        }
    }
}

/// Why the intake could not start.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The subscription could not be made.
    #[error("cannot subscribe to {subject}: {reason}")]
    Subscribe {
        /// The subject.
        subject: &'static str,
        /// Why.
        reason: String,
    },
    /// The agents' leases bucket could not be opened.
    #[error("the agents' leases: {0}")]
    Leases(String),
}

/// What every request handler shares.
struct Shared {
    platform: Arc<Platform>,
    config: IntakeConfig,
    /// The agents' leases, to fence stage commands.
    leases: async_nats::jetstream::kv::Store,
}

/// The running intake; dropping it stops serving at once (requests in flight get no answer,
/// as when the process dies), [`Intake::drain`] stops it without failing a request.
pub struct Intake {
    /// One per subscription; each owns the handlers of the requests it took.
    tasks: Vec<JoinHandle<()>>,
    /// Tells the subscription loops to leave the queue group and finish what they received.
    draining: watch::Sender<bool>,
    /// The connection the answers go out on: flushed at the end of a drain.
    client: async_nats::Client,
}

impl Intake {
    /// Stops taking requests without failing one: leaves the queue group (NATS then sends
    /// every new request to the other platform processes), answers what it had received, and
    /// returns once nothing is in flight, or after `within`.
    pub async fn drain(mut self, within: std::time::Duration) {
        let _ = self.draining.send(true);
        let deadline = tokio::time::Instant::now() + within;
        let mut drained = true;
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                abort.abort();
                drained = false;
            }
        }
        // The last answers may still sit in the connection's buffer: a process that exits
        // right after the drain would lose them (their callers would wait in vain).
        let flush = tokio::time::timeout_at(deadline, self.client.flush()).await;
        if !matches!(flush, Ok(Ok(()))) {
            drained = false;
        }
        if drained {
            tracing::info!("command intake drained");
        } else {
            tracing::warn!(
                "command intake: requests or answers still in flight at the drain's deadline"
            );
        }
    }
}

impl Drop for Intake {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts serving commands and queries for `platform` on `client`.
///
/// # Errors
/// [`IntakeError::Subscribe`] when NATS refuses the subscriptions.
pub async fn serve(
    client: async_nats::Client,
    platform: Arc<Platform>,
    config: IntakeConfig,
) -> Result<Intake, IntakeError> {
    let limit = Arc::new(Semaphore::new(config.max_in_flight));
    let leases = neo_client::lease::open(&async_nats::jetstream::new(client.clone()))
        .await
        .map_err(|e| IntakeError::Leases(e.to_string()))?;
    let shared = Arc::new(Shared {
        platform,
        config,
        leases,
    });
    let (draining, drained) = watch::channel(false);
    let mut tasks = Vec::new();
    for subject in [
        subjects::COMMANDS_ALL,
        subjects::QUERIES_ALL,
        subjects::STAGE_COMMANDS_ALL,
    ] {
        let mut sub = client
            .queue_subscribe(subject, subjects::PLATFORM_QUEUE.to_owned())
            .await
            .map_err(|e| IntakeError::Subscribe {
                subject,
                reason: e.to_string(),
            })?;
        let (client, shared, limit, mut drained) = (
            client.clone(),
            shared.clone(),
            limit.clone(),
            drained.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Dropped with this task: an intake stopped at once aborts its requests in flight.
            let mut handlers = JoinSet::new();
            // Whether this subscription has left the queue group. (Not the flag's value: a drain
            // asked while a message was being taken in would disable the branch for good, and
            // the task, still in the group, would be aborted at the deadline with requests in
            // flight.)
            let mut leaving = false;
            loop {
                while handlers.try_join_next().is_some() {}
                let msg = tokio::select! {
                    msg = sub.next() => msg,
                    Ok(()) = drained.changed(), if !leaving => {
                        leaving = true;
                        // Leave the queue group; what the server already sent still comes.
                        if let Err(e) = sub.drain().await {
                            tracing::warn!(subject, error = %e, "leaving the queue group");
                        }
                        continue;
                    }
                };
                let Some(msg) = msg else { break };
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    return;
                };
                let (client, shared) = (client.clone(), shared.clone());
                handlers.spawn(async move {
                    handle(&client, &shared, msg).await;
                    drop(permit);
                });
            }
            // Drained: answer everything taken before leaving.
            while handlers.join_next().await.is_some() {}
        }));
    }
    // The subscriptions are in effect once the server has processed them: a message this
    // connection sends to itself and gets back proves it did, so a request made right after
    // `serve` returns finds a responder.
    sync_with_server(&client)
        .await
        .map_err(|reason| IntakeError::Subscribe {
            subject: subjects::COMMANDS_ALL,
            reason,
        })?;
    tracing::info!(subjects = %format!("{} {} {}", subjects::COMMANDS_ALL, subjects::QUERIES_ALL,
        subjects::STAGE_COMMANDS_ALL),
        queue = subjects::PLATFORM_QUEUE, "command intake serving");
    Ok(Intake {
        tasks,
        draining,
        client,
    })
}

/// Returns once the server has processed everything this connection sent before the call.
async fn sync_with_server(client: &async_nats::Client) -> Result<(), String> {
    let probe = client.new_inbox();
    let mut sub = client
        .subscribe(probe.clone())
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish(probe, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::timeout(std::time::Duration::from_secs(10), sub.next())
        .await
        .map_err(|_| "the server did not answer in 10 s".to_owned())?
        .ok_or_else(|| "the connection closed".to_owned())?;
    let _ = sub.unsubscribe().await;
    Ok(())
}

fn command_error(e: pb::CommandError) -> Vec<u8> {
    pb::CommandReply {
        result: Some(pb::command_reply::Result::Error(e)),
    }
    .encode_to_vec()
}

async fn handle(client: &async_nats::Client, shared: &Shared, msg: async_nats::Message) {
    let Some(reply_to) = msg.reply.clone() else {
        tracing::warn!(subject = %msg.subject, "dropping a command without a reply subject");
        return;
    };
    let subject = msg.subject.as_str();
    let body = if subject.starts_with("neo.qry.") {
        match subjects::parse_query(subject) {
            Ok(entity) => shared.platform.query(&entity).await.encode_to_vec(),
            Err(e) => pb::StateReply {
                result: Some(pb::state_reply::Result::Error(invalid(
                    "subject",
                    e.to_string(),
                ))),
            }
            .encode_to_vec(),
        }
    } else if subject.starts_with("neo.stagecmd.") {
        answer_stage_command(shared, subject, msg.payload).await
    } else {
        answer_command(shared, subject, msg.payload).await
    };
    if let Err(e) = client.publish(reply_to, body.into()).await {
        tracing::warn!(error = %e, "reply not sent");
    }
}

/// The rule a refused stage command names.
pub const AGENT_RULE: &str = "agent.own_stage";
/// The rule a stage command sent without the stage's current lease names.
pub const LEASE_RULE: &str = "agent.lease";

/// Whether the agent of `stage` may send `request` to `entity`: a rollout record, a canary
/// step's figures or the abort of a canary that cannot start to its stage's deployment of an
/// app, an observation, a replacement record, a scale to zero or a
/// wake to its stage's podgroup of an app, under its own principal (`agent:{stage}:…`). `Err`
/// says why not.
///
/// # Errors
/// The reason for the refusal, for the reply.
pub fn agent_may(
    stage: &StageName,
    entity: &EntityRef,
    request: &pb::CommandRequest,
) -> Result<(), String> {
    let own = entity.id.app_and_stage().is_some_and(|(_, s)| &s == stage);
    if !own {
        return Err(format!(
            "the agent of stage {stage} may not command {entity}"
        ));
    }
    if !request.principal.starts_with(&format!("agent:{stage}:")) {
        return Err(format!(
            "the agent of stage {stage} must act as `agent:{stage}:…`, not `{}`",
            request.principal
        ));
    }
    let allowed = match entity.kind {
        EntityKind::Deployment => matches!(
            pb::DeploymentCommand::decode(request.command.clone()).map(|c| c.command),
            Ok(Some(
                pb::deployment_command::Command::RecordRollout(_)
                    | pb::deployment_command::Command::RecordCanaryStep(_)
                    | pb::deployment_command::Command::AbortCanary(_)
            ))
        ),
        EntityKind::Podgroup => matches!(
            pb::PodgroupCommand::decode(request.command.clone()).map(|c| c.command),
            Ok(Some(
                pb::podgroup_command::Command::Observe(_)
                    | pb::podgroup_command::Command::RecordReplacement(_)
                    | pb::podgroup_command::Command::ScaleToZero(_)
                    | pb::podgroup_command::Command::Wake(_)
            ))
        ),
        _ => false,
    };
    if allowed {
        Ok(())
    } else {
        Err(format!(
            "an agent may only record rollouts, canary steps, observations and replacements, \
             abort a canary that cannot start, and scale to zero and wake, not this command to \
             {entity}"
        ))
    }
}

async fn answer_stage_command(shared: &Shared, subject: &str, payload: bytes::Bytes) -> Vec<u8> {
    let (stage, entity) = match subjects::parse_stage_command(subject) {
        Ok(parsed) => parsed,
        Err(e) => return command_error(invalid("subject", e.to_string())),
    };
    run_command(shared, entity, payload, Some(&stage)).await
}

async fn answer_command(shared: &Shared, subject: &str, payload: bytes::Bytes) -> Vec<u8> {
    let entity = match subjects::parse_command(subject) {
        Ok(e) => e,
        Err(e) => return command_error(invalid("subject", e.to_string())),
    };
    run_command(shared, entity, payload, None).await
}

/// Decodes and dispatches a command; `agent_stage`: sent by the agent of this stage, which
/// may only do what [`agent_may`] allows, and only under the stage's current lease.
async fn run_command(
    shared: &Shared,
    entity: EntityRef,
    payload: bytes::Bytes,
    agent_stage: Option<&StageName>,
) -> Vec<u8> {
    let config = &shared.config;
    if payload.len() > config.max_command_bytes {
        return command_error(error(
            ErrorCode::ResourceExhausted,
            format!(
                "command is {} bytes; the limit is {}",
                payload.len(),
                config.max_command_bytes
            ),
        ));
    }
    let request = match pb::CommandRequest::decode(payload) {
        Ok(r) => r,
        Err(e) => {
            return command_error(invalid(
                "request",
                format!("payload is not a neo.v1.CommandRequest: {e}"),
            ));
        }
    };
    if let Some(stage) = agent_stage
        && let Err(why) = agent_may(stage, &entity, &request)
    {
        tracing::warn!(%stage, %entity, principal = %request.principal, %why,
            "stage command refused");
        return command_error(pb::CommandError {
            rule: AGENT_RULE.to_owned(),
            ..error(ErrorCode::FailedPrecondition, why)
        });
    }
    if let Some(stage) = agent_stage
        && let Err(refusal) =
            neo_client::lease::check(&shared.leases, stage, request.lease.as_ref()).await
    {
        tracing::warn!(%stage, %entity, principal = %request.principal, %refusal,
            "stage command refused: lease");
        let code = match refusal {
            neo_client::lease::Refusal::Fenced(_) => ErrorCode::FailedPrecondition,
            neo_client::lease::Refusal::Unreadable(_) => ErrorCode::Unavailable,
        };
        return command_error(pb::CommandError {
            rule: LEASE_RULE.to_owned(),
            ..error(code, refusal.to_string())
        });
    }
    shared
        .platform
        .dispatch(&entity, request)
        .await
        .encode_to_vec()
}
