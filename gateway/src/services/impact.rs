//! The Impact call: what deploying a revision would do to the consumers on a stage and to the
//! data stored there, assessed by the assessments the platform runs on every deploy
//! ([`impact::assess`], [`migration::assess`]), reading builds through the platform client.

use neo_model::impact::{self, Builds, Report};
use neo_model::migration;
use neo_protocol::{EntityRef, pb};
use tonic::Status;

use super::Ctx;
use super::deployments::Target;
use crate::api;
use crate::bus::Bus;
use crate::error::{refused, unavailable};

/// What deploying `build` (a succeeded build of the target app) to the target stage would do
/// to the consumers there. Without read models, nothing is known: an empty report.
///
/// # Errors
/// `UNAVAILABLE` when the read models or the platform cannot be reached.
pub async fn assess(ctx: &Ctx, target: &Target, build: &pb::BuildState) -> Result<Report, Status> {
    let (t, a, s) = target;
    let Some(consumers) = &ctx.consumers else {
        return Ok(Report::default());
    };
    impact::assess(
        consumers.as_ref(),
        &BusBuilds(&ctx.bus),
        (t.as_str(), s.as_str(), a.as_str()),
        &build.exposes,
    )
    .await
    .map_err(unavailable)
}

/// What deploying `build` to the target stage, whose deployment is `deployment`, does to the
/// data of the release running there ([`migration::assess`], as the platform assesses every
/// deploy): every change, and a blocker for each that loses data.
///
/// # Errors
/// `UNAVAILABLE` when the platform cannot be reached.
pub async fn data_changes(
    ctx: &Ctx,
    target: &Target,
    deployment: &pb::DeploymentState,
    build: &pb::BuildState,
) -> Result<(Vec<api::DataChange>, Vec<api::ImpactFinding>), Status> {
    let (t, a, s) = target;
    let changes = migration::assess(&BusBuilds(&ctx.bus), t, deployment, &build.entities)
        .await
        .map_err(unavailable)?;
    let blockers = changes
        .iter()
        .filter(|c| c.loses_data)
        .map(|c| api::ImpactFinding {
            consumer_app: a.to_string(),
            consumer_revision: build.revision,
            entity: c.entity.clone(),
            field: c.field.clone().unwrap_or_default(),
            message: format!(
                "its migration loses data stored on {s}: {}; a deploy must be forced",
                c.message
            ),
        })
        .collect();
    let changes = changes
        .into_iter()
        .map(|c| api::DataChange {
            entity: c.entity,
            field: c.field.unwrap_or_default(),
            loses_data: c.loses_data,
            message: c.message,
        })
        .collect();
    Ok((changes, blockers))
}

/// Refuses when no read models are configured (the Impact RPC must not answer "nothing breaks"
/// when it cannot know).
///
/// # Errors
/// `FAILED_PRECONDITION`.
pub fn available(ctx: &Ctx) -> Result<(), Status> {
    if ctx.consumers.is_none() {
        return Err(refused(
            "impact.unavailable",
            "impact analysis needs the read models: run the platform with --database-url",
        ));
    }
    Ok(())
}

/// Builds read through the platform client.
struct BusBuilds<'a>(&'a Bus);

#[tonic::async_trait]
impl Builds for BusBuilds<'_> {
    async fn build(&self, build: &EntityRef) -> Result<pb::BuildState, String> {
        let (state, _) = self
            .0
            .state::<pb::BuildState>(build)
            .await
            .map_err(|e| format!("cannot read build {}: {}", build.id, e.message()))?;
        Ok(state)
    }
}

/// The report as the API returns it.
pub fn to_api(report: &Report) -> api::ImpactReport {
    let convert = |items: &[impact::ConsumerFinding]| {
        items
            .iter()
            .map(|f| api::ImpactFinding {
                consumer_app: f.consumer_app.clone(),
                consumer_revision: f.consumer_revision,
                entity: f.finding.entity.clone(),
                field: f.finding.field.clone().unwrap_or_default(),
                message: f.finding.message.clone(),
            })
            .collect()
    };
    api::ImpactReport {
        blockers: convert(&report.blockers),
        warnings: convert(&report.warnings),
        data_changes: Vec::new(),
    }
}
