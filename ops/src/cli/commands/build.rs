//! `neo build …`: request, show, list and cancel the builds of app revisions.

use neo_gateway::api;
use serde_json::json;

use super::all_pages;
use crate::cli::connect::Context;
use crate::cli::error::CliError;
use crate::cli::progress::with_spinner;
use crate::cli::render;

/// `neo build …` (on --tenant or the saved tenant).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BuildCommand {
    /// Request the build of an app revision (a succeeded revision is never rebuilt).
    Request {
        /// The app.
        app: String,
        /// The revision number.
        revision: u32,
    },
    /// Show a build, with its diagnostics when it failed.
    Get {
        /// The build id, `{app}_r{revision}`.
        build_id: String,
    },
    /// List the tenant's builds.
    List {
        /// Only this app's builds.
        #[arg(long, value_name = "APP")]
        app: Option<String>,
    },
    /// Cancel a build that has not finished.
    Cancel {
        /// The build id, `{app}_r{revision}`.
        build_id: String,
        /// Why it is cancelled.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
}

/// Runs `neo build …`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, or the gateway's error.
pub async fn run(cx: &Context, command: BuildCommand) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    let mut client = cx.connect().await?.builds();
    let build = match command {
        BuildCommand::Request { app, revision } => {
            let request = api::RequestBuildRequest {
                tenant,
                app,
                revision,
            };
            with_spinner("requesting the build", client.request_build(request)).await?
        }
        BuildCommand::Get { build_id } => {
            let request = api::GetBuildRequest { tenant, build_id };
            client.get_build(request).await?
        }
        BuildCommand::Cancel { build_id, reason } => {
            let request = api::CancelBuildRequest {
                tenant,
                build_id,
                reason: reason.unwrap_or_default(),
            };
            with_spinner("cancelling the build", client.cancel_build(request)).await?
        }
        BuildCommand::List { app } => {
            let builds = all_pages(|page| {
                let mut client = client.clone();
                let request = api::ListBuildsRequest {
                    tenant: tenant.clone(),
                    app: app.clone().unwrap_or_default(),
                    page: Some(page),
                };
                async move {
                    let response = client.list_builds(request).await?.into_inner();
                    Ok((response.builds, response.next_page_token))
                }
            })
            .await?;
            return cx.print(
                || json!(builds.iter().map(render::build_json).collect::<Vec<_>>()),
                || render::builds_table(&builds),
            );
        }
    }
    .into_inner();
    cx.print(
        || render::build_json(&build),
        || render::build_table(&build),
    )
}
