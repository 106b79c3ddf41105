//! Impact analysis for deploys: the consumers deployed on the target stage (from the read
//! models) checked against what the new revision exposes and what they were built against.

use neo_model::impact::{self, Report};
use neo_protocol::{AppName, EntityRef, pb};
use tonic::Status;

use super::Ctx;
use super::deployments::Target;
use crate::api;
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
    let uses = consumers
        .on_stage(t.as_str(), s.as_str(), a.as_str())
        .await
        .map_err(|e| unavailable(format!("impact analysis: read models unavailable: {e}")))?;
    let mut previous = Vec::with_capacity(uses.len());
    for used in &uses {
        previous.push(exposed_at(ctx, t, &used.dependency).await?);
    }
    Ok(impact::analyse(
        uses.iter().zip(previous.iter().map(|p| p.as_deref())),
        &build.exposes,
    ))
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

/// What the producer revision a consumer was built against exposed (None: unknown).
async fn exposed_at(
    ctx: &Ctx,
    t: &neo_protocol::TenantName,
    used: &pb::Dependency,
) -> Result<Option<Vec<pb::ExposedEntity>>, Status> {
    let Ok(app) = AppName::new(&used.producer_app) else {
        return Ok(None);
    };
    let build = EntityRef::build(t, &app, used.producer_revision);
    let (state, _) = ctx.bus.state::<pb::BuildState>(&build).await?;
    Ok((state.status() == pb::BuildStatus::Succeeded).then_some(state.exposes))
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
    }
}
