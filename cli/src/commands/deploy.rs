//! `neo deploy`, `neo impact`, `neo promote`, `neo rollback`, `neo releases` and
//! `neo deployment get`.

use neo_gateway::api;
use serde_json::json;

use super::{Target, all_pages};
use crate::connect::Context;
use crate::error::CliError;
use crate::progress::with_spinner;
use crate::render;

/// Arguments of `neo deploy`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeployArgs {
    /// The app and the stage to deploy to.
    #[command(flatten)]
    pub target: Target,
    /// The revision whose succeeded build is deployed.
    #[arg(long, value_name = "N")]
    pub revision: u32,
    /// Deploy although impact analysis finds blockers (see `neo impact`); the force and the
    /// blockers are recorded in the release.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `neo impact`.
#[derive(Debug, Clone, clap::Args)]
pub struct ImpactArgs {
    /// The app (the producer whose new revision is assessed) and the stage it would be
    /// deployed to.
    #[command(flatten)]
    pub target: Target,
    /// The revision (it needs a succeeded build).
    #[arg(long, value_name = "N")]
    pub revision: u32,
}

/// Arguments of `neo promote`.
#[derive(Debug, Clone, clap::Args)]
pub struct PromoteArgs {
    /// The app and the stage to promote into (from the stage before it).
    #[command(flatten)]
    pub target: Target,
    /// Promote although the promoted revision's migration loses data stored on the stage (see
    /// `neo impact`); the force and what it loses are recorded in the release.
    #[arg(long)]
    pub force: bool,
    /// Roll out as a canary beside the stage's current release, step by step under the
    /// stage's canary policy (`neo canary policy`); rolled back by itself when its errors or
    /// latency are worse than the current release's.
    #[arg(long)]
    pub canary: bool,
}

/// Arguments of `neo rollback`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollbackArgs {
    /// The app and the stage to roll back.
    #[command(flatten)]
    pub target: Target,
    /// The earlier release whose image is restored (`3` or `v3`).
    #[arg(long = "to", value_name = "RELEASE", value_parser = parse_release)]
    pub to: u32,
    /// Roll back although the restored revision's migration loses data stored since (a field
    /// retyped back); the force and what it loses are recorded in the release.
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `neo releases`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReleasesArgs {
    /// The app and the stage.
    #[command(flatten)]
    pub target: Target,
}

/// `neo deployment …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeploymentCommand {
    /// Show the deployment of an app to a stage: its current release and all releases.
    #[command(after_help = "Examples:\n  neo deployment get shop --stage prod")]
    Get(Target),
}

/// A release number, with or without its `v`.
fn parse_release(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix('v').unwrap_or(text);
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a release number (like 3 or v3)")),
    }
}

/// `neo deploy`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, or the gateway's error
/// (exit 5 when the revision has no succeeded build, or when impact analysis finds blockers and
/// `--force` is not given: rule `deploy.impact_blockers`).
pub async fn deploy(cx: &Context, args: DeployArgs) -> Result<(), CliError> {
    let request = api::DeployRequest {
        tenant: cx.tenant()?,
        app: args.target.app,
        stage: args.target.stage,
        revision: args.revision,
        force: args.force,
    };
    let client = cx.connect().await?.deployments();
    let forced = if request.force { " (forced)" } else { "" };
    let message = format!("deploying revision {}{forced}", request.revision);
    let deployment = crate::retrying!(message, client.deploy(request)).await?;
    show_new_release(cx, &deployment.into_inner())
}

/// `neo impact`: what deploying a revision to a stage would break, blockers then warnings.
///
/// # Errors
///
/// As [`deploy`]; [`CliError::ImpactBlockers`] (exit 5, after printing the report) when there
/// are blockers, so that a script can gate a deploy on `neo impact`.
pub async fn impact(cx: &Context, args: ImpactArgs) -> Result<(), CliError> {
    let request = api::ImpactRequest {
        tenant: cx.tenant()?,
        app: args.target.app.clone(),
        stage: args.target.stage.clone(),
        revision: args.revision,
    };
    let mut client = cx.connect().await?.deployments();
    let report = with_spinner("assessing the impact", client.impact(request))
        .await?
        .into_inner();
    cx.print(
        || render::impact_json(&report),
        || render::impact_table(&report),
    )?;
    if report.blockers.is_empty() {
        return Ok(());
    }
    Err(CliError::ImpactBlockers {
        count: report.blockers.len(),
        app: args.target.app,
        stage: args.target.stage,
        revision: args.revision,
    })
}

/// `neo promote`.
///
/// # Errors
///
/// As [`deploy`] (exit 5 when the previous stage has no current release).
pub async fn promote(cx: &Context, args: PromoteArgs) -> Result<(), CliError> {
    let request = api::PromoteRequest {
        tenant: cx.tenant()?,
        app: args.target.app,
        stage: args.target.stage,
        force: args.force,
        canary: args.canary,
    };
    let client = cx.connect().await?.deployments();
    let message = format!("promoting into {}", request.stage);
    let deployment = crate::retrying!(message, client.promote(request)).await?;
    show_new_release(cx, &deployment.into_inner())
}

/// `neo rollback`.
///
/// # Errors
///
/// As [`deploy`] (exit 5 when the release cannot be restored).
pub async fn rollback(cx: &Context, args: RollbackArgs) -> Result<(), CliError> {
    let request = api::RollbackRequest {
        tenant: cx.tenant()?,
        app: args.target.app,
        stage: args.target.stage,
        to_release: args.to,
        force: args.force,
    };
    let client = cx.connect().await?.deployments();
    let message = format!("rolling back to v{}", request.to_release);
    let deployment = crate::retrying!(message, client.rollback(request)).await?;
    show_new_release(cx, &deployment.into_inner())
}

/// Prints the release a deploy, promotion or rollback made.
fn show_new_release(cx: &Context, deployment: &api::Deployment) -> Result<(), CliError> {
    cx.print(
        || render::deployment_json(deployment),
        || render::current_release_table(deployment),
    )
}

/// `neo releases`: every page of the releases, newest first.
///
/// # Errors
///
/// As [`deploy`].
pub async fn releases(cx: &Context, args: ReleasesArgs) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    let client = cx.connect().await?.deployments();
    let releases = all_pages(|page| {
        let mut client = client.clone();
        let request = api::ListReleasesRequest {
            tenant: tenant.clone(),
            app: args.target.app.clone(),
            stage: args.target.stage.clone(),
            page: Some(page),
        };
        async move {
            let response = client.list_releases(request).await?.into_inner();
            Ok((response.releases, response.next_page_token))
        }
    })
    .await?;
    cx.print(
        || {
            json!(
                releases
                    .iter()
                    .map(render::release_json)
                    .collect::<Vec<_>>()
            )
        },
        || render::releases_table(&releases, None),
    )
}

/// `neo deployment get`.
///
/// # Errors
///
/// As [`deploy`] (exit 3 when nothing was ever deployed there).
pub async fn deployment(cx: &Context, command: DeploymentCommand) -> Result<(), CliError> {
    let DeploymentCommand::Get(Target { app, stage }) = command;
    let request = api::GetDeploymentRequest {
        tenant: cx.tenant()?,
        app,
        stage,
    };
    let deployment = cx
        .connect()
        .await?
        .deployments()
        .get_deployment(request)
        .await?
        .into_inner();
    cx.print(
        || render::deployment_json(&deployment),
        || render::deployment_table(&deployment),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_number_may_carry_its_v() {
        assert_eq!(parse_release("3"), Ok(3));
        assert_eq!(parse_release("v12"), Ok(12));
        assert!(parse_release("0").is_err());
        assert!(parse_release("latest").is_err());
    }
}
