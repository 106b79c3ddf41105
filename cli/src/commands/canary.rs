//! `neo canary policy|abort|promote|status|watch`: a stage's canary policy, the running canary
//! ended by hand, and followed until it ends (`neo promote --canary` starts one).

use neo_gateway::api::{self, deployments_client::DeploymentsClient};
use neo_protocol::pb;

use super::Target;
use crate::connect::{AuthChannel, Context};
use crate::error::CliError;
use crate::render;

/// `neo canary …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CanaryCommand {
    /// Set how promotions into a stage roll out as canaries (fields not given take the
    /// defaults: steps 10,50, 60 s each, +1 error-rate point, p95 × 1.5, 20 requests).
    #[command(
        after_help = "Examples:\n  neo canary policy shop --stage prod --steps 10,25,50 --step 2m\n  neo canary policy shop -s prod --max-error-increase 0.5 --sticky"
    )]
    Policy(PolicyArgs),
    /// Roll the running canary back: the baseline serves all the traffic again.
    #[command(
        after_help = "Examples:\n  neo canary abort shop --stage prod --reason 'slow checkout'"
    )]
    Abort(AbortArgs),
    /// Give the running canary all the traffic now, skipping its remaining steps.
    #[command(after_help = "Examples:\n  neo canary promote shop --stage prod")]
    Promote(Target),
    /// Show the canary of an app on a stage: its step, share and each judged step's figures.
    #[command(after_help = "Examples:\n  neo canary status shop --stage prod")]
    Status(Target),
    /// Follow the canary of an app on a stage until it ends, printing each judged step (exit 0
    /// when it completes, 5 when it is rolled back).
    #[command(after_help = "Examples:\n  neo canary watch shop --stage prod")]
    Watch(Target),
}

/// How often `neo canary watch` reads the deployment.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Arguments of `neo canary policy`.
#[derive(Debug, Clone, clap::Args)]
pub struct PolicyArgs {
    /// The app and stage.
    #[command(flatten)]
    pub target: Target,
    /// The canary's share of the traffic at each step, in percent, increasing (`10,50`).
    #[arg(long, value_delimiter = ',', value_name = "PERCENT,…")]
    pub steps: Option<Vec<u32>>,
    /// How long each step runs before it is judged (`60s`, `2m`).
    #[arg(long = "step", value_name = "DURATION", value_parser = super::runtime::parse_window)]
    pub step: Option<u32>,
    /// How many percentage points the canary's error rate may exceed the baseline's by.
    #[arg(long, value_name = "POINTS")]
    pub max_error_increase: Option<f64>,
    /// How many times the baseline's p95 latency the canary's may be.
    #[arg(long, value_name = "RATIO")]
    pub max_p95_ratio: Option<f64>,
    /// The fewest requests the canary must answer in a step to be judged.
    #[arg(long, value_name = "N")]
    pub min_requests: Option<u32>,
    /// Keep each client on one release.
    #[arg(long)]
    pub sticky: bool,
}

/// Arguments of `neo canary abort`.
#[derive(Debug, Clone, clap::Args)]
pub struct AbortArgs {
    /// The app and stage.
    #[command(flatten)]
    pub target: Target,
    /// Why (recorded with the rollback).
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// Runs `neo canary …`.
///
/// # Errors
/// The gateway's refusal (a policy part named in `neo-field`; no running canary: exit 5).
pub async fn run(cx: &Context, command: CanaryCommand) -> Result<(), CliError> {
    let tenant = cx.tenant()?;
    let client = cx.connect().await?.deployments();
    let deployment = match command {
        CanaryCommand::Watch(target) => return watch(cx, &client, tenant, target).await,
        CanaryCommand::Policy(args) => {
            let defaults = neo_protocol::canary::default_policy();
            let policy = pb::CanaryPolicy {
                steps: args.steps.unwrap_or(defaults.steps),
                step_seconds: args.step.unwrap_or(defaults.step_seconds),
                max_error_rate_increase: args
                    .max_error_increase
                    .unwrap_or(defaults.max_error_rate_increase),
                max_p95_ratio: args.max_p95_ratio.unwrap_or(defaults.max_p95_ratio),
                min_requests: args.min_requests.unwrap_or(defaults.min_requests),
                sticky: args.sticky,
            };
            let request = api::SetCanaryPolicyRequest {
                tenant,
                app: args.target.app,
                stage: args.target.stage,
                policy: Some(policy),
            };
            crate::retrying!(
                "setting the canary policy",
                client.set_canary_policy(request)
            )
            .await?
        }
        CanaryCommand::Abort(args) => {
            let request = api::EndCanaryRequest {
                tenant,
                app: args.target.app,
                stage: args.target.stage,
                release: 0,
                promote: false,
                reason: args.reason,
            };
            crate::retrying!("aborting the canary", client.end_canary(request)).await?
        }
        CanaryCommand::Promote(target) => {
            let request = api::EndCanaryRequest {
                tenant,
                app: target.app,
                stage: target.stage,
                release: 0,
                promote: true,
                reason: String::new(),
            };
            crate::retrying!("promoting the canary", client.end_canary(request)).await?
        }
        CanaryCommand::Status(target) => {
            let request = api::GetDeploymentRequest {
                tenant,
                app: target.app,
                stage: target.stage,
            };
            crate::retrying!("reading the deployment", client.get_deployment(request)).await?
        }
    };
    let deployment = deployment.into_inner();
    cx.print(
        || render::deployment_json(&deployment),
        || render::current_release_table(&deployment),
    )
}

/// `neo canary watch`: reads the deployment every [`WATCH_EVERY`], prints each newly judged
/// step above a spinner showing where the canary is, until it completes or is rolled back.
async fn watch(
    cx: &Context,
    client: &DeploymentsClient<AuthChannel>,
    tenant: String,
    target: Target,
) -> Result<(), CliError> {
    let spinner = crate::progress::spinner(format!("reading {}'s canary", target.app));
    let mut printed = 0;
    loop {
        let request = api::GetDeploymentRequest {
            tenant: tenant.clone(),
            app: target.app.clone(),
            stage: target.stage.clone(),
        };
        let client = client.clone();
        let deployment = crate::retrying!("reading the deployment", client.get_deployment(request))
            .await?
            .into_inner();
        let state = deployment.state.clone().unwrap_or_default();
        let Some((release, canary)) = state
            .releases
            .last()
            .and_then(|r| Some((r, r.canary.as_ref()?)))
        else {
            spinner.finish_and_clear();
            return Err(CliError::Usage(format!(
                "the newest release of {} on {} is not a canary (neo promote --canary starts one)",
                target.app, target.stage
            )));
        };
        for line in render::canary::step_lines(canary).iter().skip(printed) {
            spinner.suspend(|| eprintln!("{line}"));
        }
        printed = canary.steps.len();
        let text = render::canary::canary_text(release);
        match canary.phase() {
            pb::CanaryPhase::Running | pb::CanaryPhase::Unspecified => {
                spinner.set_message(format!("v{}: {text}", release.number));
                tokio::time::sleep(WATCH_EVERY).await;
            }
            pb::CanaryPhase::Completed => {
                spinner.finish_and_clear();
                return cx.print(
                    || render::deployment_json(&deployment),
                    || render::current_release_table(&deployment),
                );
            }
            pb::CanaryPhase::RolledBack => {
                spinner.finish_and_clear();
                return Err(CliError::CanaryRolledBack {
                    app: target.app,
                    stage: target.stage,
                    release: release.number,
                    baseline: canary.baseline,
                    reason: canary.outcome.clone(),
                });
            }
        }
    }
}
