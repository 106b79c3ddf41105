//! `neo build …`: request, show, list and cancel the builds of app revisions, and print or
//! follow their logs.

use neo_gateway::api;
use neo_gateway::api::builds_client::BuildsClient;
use serde_json::json;

use super::all_pages;
use crate::connect::{AuthChannel, Context};
use crate::error::CliError;
use crate::output::OutputFormat;
use crate::render;

/// `neo build …` (on --tenant or the saved tenant).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum BuildCommand {
    /// Request the build of an app revision (a succeeded revision is never rebuilt).
    #[command(after_help = "Examples:\n  neo build request shop 3")]
    Request {
        /// The app.
        app: String,
        /// The revision number.
        revision: u32,
    },
    /// Show a build, with its diagnostics when it failed.
    #[command(after_help = "Examples:\n  neo build get shop_r3")]
    Get {
        /// The build id, `{app}_r{revision}`.
        build_id: String,
    },
    /// List the tenant's builds.
    #[command(after_help = "Examples:\n  neo build list\n  neo build list shop")]
    List {
        /// Only this app's builds.
        app: Option<String>,
    },
    /// Cancel a build that has not finished.
    #[command(after_help = "Examples:\n  neo build cancel shop_r3 --reason 'wrong branch'")]
    Cancel {
        /// The build id, `{app}_r{revision}`.
        build_id: String,
        /// Why it is cancelled.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Print a build's log as `time level text` (one JSON object per line with --output json).
    #[command(after_help = "Examples:\n  neo build log shop_r3 -f")]
    Log {
        /// The build id, `{app}_r{revision}`.
        build_id: String,
        /// Keep printing new lines until the current attempt's last line (no --timeout).
        #[arg(long, short = 'f')]
        follow: bool,
    },
}

/// Runs `neo build …`.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, or the gateway's error
/// (exit 3 for an unknown build).
pub async fn run(cx: &Context, command: BuildCommand) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    let gateway = cx.connect().await?;
    let mut client = gateway.builds();
    let build = match command {
        BuildCommand::Request { app, revision } => {
            let request = api::RequestBuildRequest {
                tenant,
                app,
                revision,
            };
            crate::retrying!("requesting the build", client.request_build(request)).await?
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
            crate::retrying!("cancelling the build", client.cancel_build(request)).await?
        }
        BuildCommand::List { app } => return list(cx, client, tenant, app).await,
        BuildCommand::Log { build_id, follow } => {
            // A followed log lasts as long as the build: no deadline.
            let client = if follow {
                gateway.without_deadline().builds()
            } else {
                client
            };
            return log(cx, client, tenant, build_id, follow).await;
        }
    }
    .into_inner();
    cx.print(
        || render::build_json(&build),
        || render::build_table(&build),
    )
}

/// `neo build list`: every page of the tenant's (or one app's) builds.
async fn list(
    cx: &Context,
    client: BuildsClient<AuthChannel>,
    tenant: String,
    app: Option<String>,
) -> Result<(), CliError> {
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
    cx.print(
        || json!(builds.iter().map(render::build_json).collect::<Vec<_>>()),
        || render::builds_table(&builds),
    )
}

/// `neo build log`: each line as it comes; when following, until the attempt's last line.
async fn log(
    cx: &Context,
    mut client: BuildsClient<AuthChannel>,
    tenant: String,
    build_id: String,
    follow: bool,
) -> Result<(), CliError> {
    let request = api::BuildLogRequest {
        tenant,
        build_id,
        follow,
    };
    let mut lines = client.build_log(request).await?.into_inner();
    while let Some(line) = lines.message().await? {
        let text = match cx.output() {
            OutputFormat::Json => render::build_log_json(&line).to_string(),
            OutputFormat::Table => render::build_log_line(&line),
        };
        cx.emit(&text)?;
        if follow && line.end {
            break;
        }
    }
    Ok(())
}
