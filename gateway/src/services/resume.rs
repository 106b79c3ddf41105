//! Resuming a publish: `Apps.Publish` of content identical to the app's latest revision
//! finishes that revision's publish instead of refusing it, so one command gets a publish
//! interrupted by an outage (a failed build, a deploy that never came) to the end.
//!
//! What is left is decided from the build and the stage's deployment:
//!
//! | build | deployment on the stage | the publish |
//! | --- | --- | --- |
//! | none, failed or cancelled | — | requests a new build attempt, deployed to the stage when it succeeds |
//! | requested or started | — | follows it (deployed when it succeeds, if it was published to the stage) |
//! | succeeded | runs another build | deploys it (after impact analysis, as the publish chain does) |
//! | succeeded | runs this build | nothing: already deployed, the release is reported |

use neo_protocol::pb::{self, BuildStatus, build_command, deployment_command};
use neo_protocol::{AppName, EntityRef, StageName, TenantName};
use tonic::Status;

use super::Ctx;

/// What the resumed publish does.
#[derive(Debug)]
pub enum Resumed {
    /// A command was sent (or nothing needed sending): follow the chain's events after
    /// `after`.
    Follow {
        /// What was done, for the user.
        message: String,
        /// The stream sequence to follow from (exclusive).
        after: u64,
    },
    /// The revision already runs on the stage as `release`.
    AlreadyDeployed {
        /// The release number.
        release: u32,
        /// Its image.
        image_digest: String,
    },
}

/// Finishes the publish of `revision` (whose content was published again) to stage `s`.
///
/// # Errors
/// `UNAVAILABLE` when the platform or the read models cannot be reached; the platform's
/// refusal of the build request or the deploy.
pub async fn resume(
    ctx: &Ctx,
    user: &str,
    (t, a, s): (&TenantName, &AppName, &StageName),
    revision: &pb::Revision,
) -> Result<Resumed, Status> {
    let build = EntityRef::build(t, a, revision.number);
    let deployment = EntityRef::deployment(t, a, s);
    let (built, build_seq) = ctx.bus.state::<pb::BuildState>(&build).await?;
    let (deployed, deploy_seq) = ctx.bus.state::<pb::DeploymentState>(&deployment).await?;
    let after = build_seq.max(deploy_seq);
    let status = if built.app.is_empty() {
        None
    } else {
        Some(built.status())
    };
    match status {
        None | Some(BuildStatus::Failed | BuildStatus::Cancelled) => {
            let command = pb::BuildCommand {
                command: Some(build_command::Command::Request(pb::RequestBuild {
                    app: a.to_string(),
                    revision: revision.number,
                    revision_digest: revision.digest.clone(),
                    deploy_to: s.to_string(),
                })),
            };
            ctx.bus.command(&build, user, &command).await?;
            let why = match status {
                None => "it was never built".to_owned(),
                Some(_) => format!("its last build failed: {}", built.reason),
            };
            Ok(Resumed::Follow {
                message: format!(
                    "revision {} is unchanged; building it again ({why})",
                    revision.number
                ),
                after,
            })
        }
        Some(BuildStatus::Succeeded) => {
            let current = deployed
                .releases
                .iter()
                .find(|r| r.number == deployed.current && deployed.current > 0);
            if let Some(release) = current.filter(|r| r.build_id == build.id.as_str()) {
                return Ok(Resumed::AlreadyDeployed {
                    release: release.number,
                    image_digest: release.image_digest.clone(),
                });
            }
            // The platform assesses the impact, as for the publish chain's deploy.
            let command = pb::DeploymentCommand {
                command: Some(deployment_command::Command::Deploy(pb::Deploy {
                    app: a.to_string(),
                    stage: s.to_string(),
                    build_id: build.id.to_string(),
                    revision: revision.number,
                    image_digest: built.image_digest.clone(),
                    ..Default::default()
                })),
            };
            ctx.bus.command(&deployment, user, &command).await?;
            Ok(Resumed::Follow {
                message: format!(
                    "revision {} is unchanged and built; deploying it to {s}",
                    revision.number
                ),
                after,
            })
        }
        Some(_) => Ok(Resumed::Follow {
            message: format!(
                "revision {} is unchanged; its build (attempt {}) is under way",
                revision.number, built.attempt
            ),
            after,
        }),
    }
}
