//! The Impact call: what deploying a revision would do to the consumers on a stage, assessed
//! by the one assessment the platform runs on every deploy ([`impact::assess`]), reading
//! producer builds through the platform client.

use neo_model::impact::{self, Builds, Report};
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
    }
}
