//! `Runtime.Status`: per app and stage, the deployment's current release and rollout, the
//! podgroup's desired replicas, policy and resources, and the replicas of the latest
//! `HealthReport` the stage's agent published.
//!
//! Which apps and stages there are comes from the event stream's subjects (every deployment
//! with a release, every podgroup) and from the health reports (an agent may report what the
//! platform has forgotten); the latest report of each is read with one ordered consumer
//! delivering the last message per subject of `neo.rt.{tenant}.{stage|*}.{app|*}.health`.
//! The entities' states are read from the entity host only when they have had events since
//! the last call ([`cache`]).

use std::collections::{BTreeSet, HashMap};

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_nats::jetstream::{self, ErrorCode, context::GetStreamErrorKind};
use futures::StreamExt;
use neo_actors::aggregates::tenant::stage_position;
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{AppName, EntityKind, EntityRef, StageName, TenantName, pb};
use prost::Message;
use tonic::Status;

use crate::api;
use crate::error::unavailable;
use crate::listing::subject_counts;
use crate::services::Ctx;

pub mod cache;

use self::cache::Cached;

/// How many entities are queried at once.
const CONCURRENCY: usize = 16;

/// One app on one stage, by name.
type Key = (String, String);

/// The status of every app and stage of `tenant` that passes the filters, ordered by app, then
/// by the tenant's stage order.
///
/// # Errors
/// `NOT_FOUND` for an unknown tenant, a stage it lacks, or an app that does not exist;
/// `UNAVAILABLE`.
pub async fn status(
    ctx: &Ctx,
    tenant: &TenantName,
    stage: Option<&StageName>,
    app: Option<&AppName>,
) -> Result<Vec<api::PodgroupStatus>, Status> {
    let (tenant_state, _) = ctx.tenant_state(tenant).await?;
    if let Some(s) = stage {
        stage_position(&tenant_state.stages, tenant.as_str(), s.as_str())
            .map_err(|r| Status::not_found(r.message))?;
    }
    let wanted =
        |(a, s): &Key| app.is_none_or(|x| x.as_str() == a) && stage.is_none_or(|x| x.as_str() == s);
    let mut health = latest_health(&ctx.js, tenant, stage, app).await?;
    let mut keys: BTreeSet<Key> = health.keys().cloned().collect();
    let id = match (app, stage) {
        (Some(a), Some(s)) => format!("{a}_{s}"),
        _ => "*".to_owned(),
    };
    let mut events = Events::default();
    for (kind, created) in [
        (EntityKind::Deployment, "ReleaseCreated"),
        (EntityKind::Podgroup, "PodgroupCreated"),
    ] {
        let filter = format!("neo.evt.{tenant}.{kind}.{id}.>");
        for (subject, count) in subject_counts(&ctx.js, &filter).await? {
            let (Some(id), Some(event_type)) =
                (subjects::token(&subject, 4), subjects::token(&subject, 5))
            else {
                continue;
            };
            *events.of(kind).entry(id.to_owned()).or_default() += count as u64;
            if event_type == created
                && let Some((a, s)) = id.split_once('_')
            {
                keys.insert((a.to_owned(), s.to_owned()));
            }
        }
    }
    keys.retain(wanted);
    if keys.is_empty()
        && let Some(a) = app
    {
        let (state, _) = ctx
            .bus
            .state::<pb::AppState>(&EntityRef::app(tenant, a))
            .await?;
        if !state.exists {
            return Err(Status::not_found(format!(
                "app `{a}` does not exist in tenant `{tenant}`"
            )));
        }
    }
    let events = &events;
    let rows = futures::stream::iter(keys)
        .map(|key| {
            let report = health.remove(&key);
            async move { row(ctx, tenant, key, report, events).await }
        })
        .buffered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    let mut rows = rows.into_iter().collect::<Result<Vec<_>, Status>>()?;
    let order = |s: &str| {
        tenant_state
            .stages
            .iter()
            .position(|x| x == s)
            .unwrap_or(usize::MAX)
    };
    rows.sort_by(|x, y| {
        (x.app.as_str(), order(&x.stage), x.stage.as_str()).cmp(&(
            y.app.as_str(),
            order(&y.stage),
            y.stage.as_str(),
        ))
    });
    Ok(rows)
}

/// How many events each deployment and podgroup of the tenant has (by entity id).
#[derive(Debug, Default)]
struct Events {
    deployments: HashMap<String, u64>,
    podgroups: HashMap<String, u64>,
}

impl Events {
    fn of(&mut self, kind: EntityKind) -> &mut HashMap<String, u64> {
        match kind {
            EntityKind::Podgroup => &mut self.podgroups,
            _ => &mut self.deployments,
        }
    }
}

/// The state of `entity`: the one read last when it has had no event since (`events` is its
/// count now), else read from the entity host and kept.
async fn state<S: Cached + prost::Message + Default>(
    ctx: &Ctx,
    entity: &EntityRef,
    events: u64,
) -> Result<(S, u64), Status> {
    let key = entity.to_string();
    if let Some(known) = ctx.status_cache.get::<S>(&key, events) {
        return Ok(known);
    }
    let (state, sequence) = ctx.bus.state::<S>(entity).await?;
    ctx.status_cache.put(key, events, state.clone(), sequence);
    Ok((state, sequence))
}

/// One row: the deployment and podgroup states, and the agent's report if any.
async fn row(
    ctx: &Ctx,
    tenant: &TenantName,
    (app, stage): Key,
    report: Option<pb::HealthReport>,
    events: &Events,
) -> Result<api::PodgroupStatus, Status> {
    let mut row = api::PodgroupStatus {
        app,
        stage,
        ..Default::default()
    };
    // Names from stored subjects are valid, but a report's subject is the agent's to choose.
    let (Ok(a), Ok(s)) = (AppName::new(&row.app), StageName::new(&row.stage)) else {
        return Ok(row);
    };
    let (deployment_ref, podgroup_ref) = (
        EntityRef::deployment(tenant, &a, &s),
        EntityRef::podgroup(tenant, &a, &s),
    );
    let id = format!("{a}_{s}");
    let (deployment, podgroup) = futures::try_join!(
        state::<pb::DeploymentState>(
            ctx,
            &deployment_ref,
            events.deployments.get(&id).copied().unwrap_or(0)
        ),
        state::<pb::PodgroupState>(
            ctx,
            &podgroup_ref,
            events.podgroups.get(&id).copied().unwrap_or(0)
        ),
    )?;
    let (deployment, deployment_sequence) = deployment;
    let (podgroup, podgroup_sequence) = podgroup;
    row.deployment_sequence = deployment_sequence;
    row.canary_release = deployment
        .releases
        .last()
        .filter(|r| r.canary.is_some())
        .cloned();
    if let Some(release) = deployment
        .releases
        .iter()
        .find(|r| r.number == deployment.current)
    {
        row.release = release.number;
        row.image_digest.clone_from(&release.image_digest);
        row.revision = release.revision;
        row.rollout = release.rollout;
        row.rollout_reason.clone_from(&release.rollout_reason);
    }
    if podgroup.exists {
        row.podgroup_sequence = podgroup_sequence;
        row.desired = podgroup.desired;
        row.policy = podgroup.policy;
        row.resources = podgroup.resources;
    }
    if let Some(report) = report {
        row.ready = report
            .replicas
            .iter()
            .filter(|r| r.phase() == pb::ReplicaPhase::Ready)
            .count() as u32;
        row.replicas = report.replicas;
        row.url = report.url;
        row.reported_ms = report.at_ms;
        row.agent = report.agent;
        row.running_release = report.release;
        if row.image_digest.is_empty() {
            row.image_digest = report.image_digest;
        }
    }
    Ok(row)
}

/// The latest health report of each app and stage of `tenant` passing the filters, keyed by
/// the names in its subject; none when the stream does not exist yet.
///
/// # Errors
/// `UNAVAILABLE` when JetStream cannot be read.
async fn latest_health(
    js: &jetstream::Context,
    tenant: &TenantName,
    stage: Option<&StageName>,
    app: Option<&AppName>,
) -> Result<HashMap<Key, pb::HealthReport>, Status> {
    let stream = match js.get_stream(subjects::RUNTIME_STREAM).await {
        Ok(stream) => stream,
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                return Ok(HashMap::new());
            }
            _ => return Err(unavailable(format!("runtime stream unavailable: {e}"))),
        },
    };
    let failed = |e: &dyn std::fmt::Display| unavailable(format!("cannot read health: {e}"));
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::runtime_filter(
                Some(tenant.as_str()),
                stage.map(StageName::as_str),
                app.map(AppName::as_str),
                Channel::Health,
            ),
            deliver_policy: DeliverPolicy::LastPerSubject,
            ..Default::default()
        })
        .await
        .map_err(|e| failed(&e))?;
    let name = consumer.cached_info().name.clone();
    let read = read_health(consumer).await;
    // Deleted once read: an ordered consumer otherwise lingers for 30 s after its last pull,
    // and a busy gateway reading health on every call kept hundreds of them. In the
    // background: the answer does not wait for it.
    tokio::spawn(async move {
        if let Err(e) = stream.delete_consumer(&name).await {
            tracing::debug!(consumer = %name, error = %e, "health consumer not deleted");
        }
    });
    read
}

/// The latest report per app and stage from a health read's consumer.
async fn read_health(
    consumer: jetstream::consumer::Consumer<OrderedConfig>,
) -> Result<HashMap<Key, pb::HealthReport>, Status> {
    let failed = |e: &dyn std::fmt::Display| unavailable(format!("cannot read health: {e}"));
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.map_err(|e| failed(&e))?;
    let mut reports = HashMap::new();
    while pending > 0 {
        let msg = match messages.next().await {
            Some(Ok(msg)) => msg,
            Some(Err(e)) => return Err(failed(&e)),
            None => break,
        };
        pending = msg.info().map(|i| i.pending).unwrap_or(0);
        let Some((_, stage, app)) = subjects::split_runtime(&msg.subject) else {
            continue;
        };
        match pb::HealthReport::decode(msg.payload.clone()) {
            Ok(report) => {
                reports.insert((app.to_owned(), stage.to_owned()), report);
            }
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "undecodable health report skipped")
            }
        }
    }
    Ok(reports)
}
