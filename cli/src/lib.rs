//! The `neo` client commands (login, tenant, app, build, deploy, events, …) over the gRPC gateway.
//!
//! Every command reads the config file (see [`config`]), connects to the gateway with the saved
//! or given token, makes its calls with a deadline of `--timeout` seconds each, and prints a
//! table (or, with `--output json`, a JSON document; `neo events watch` prints one JSON object
//! per line; so do `neo publish`, `neo build log` and `neo logs`). Errors go to stderr as `error: <message>`, with the gateway's `neo-rule` and
//! `neo-field` details when it sent them. A closed stdout (`neo … | head`) ends a command
//! quietly with 0.
//!
//! # Exit codes
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | any other error (config file, local files, unexpected gRPC codes, a cut-off publish) |
//! | 2 | usage or input error: bad command line (clap), `INVALID_ARGUMENT`, `OUT_OF_RANGE`, an invalid `neo.toml` (`neo publish`, checked before any upload) |
//! | 3 | not found (`NOT_FOUND`) |
//! | 4 | not logged in, `UNAUTHENTICATED`, `PERMISSION_DENIED` |
//! | 5 | refused by a rule or a conflict: `FAILED_PRECONDITION`, `ALREADY_EXISTS`, `ABORTED`; a publish whose deploy impact analysis refused; `neo impact` finding blockers; `neo settings diff` finding what blocks a promotion |
//! | 6 | cannot connect, `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `CANCELLED` (the client's deadline) |
//! | 7 | too large (`RESOURCE_EXHAUSTED`, a project over the size or file-count limit) |
//! | 8 | the build failed (`neo publish`; its diagnostics are printed) |
//!
//! # Layout
//!
//! - [`config`]: the config file (endpoint, tenant, user, token, CA), read and written 0600.
//! - [`connect`]: the gateway connection (TLS, deadline, bearer token) and the API clients.
//! - [`failover`]: several gateways of one platform, the next used when one stops answering.
//! - [`error`]: [`CliError`], its message and its exit code.
//! - [`output`]: the output format, table helpers, enum values and times as words.
//! - [`render`]: the JSON document and the table of each API message.
//! - [`progress`]: spinners and the upload's byte bar (stderr, terminals only).
//! - [`retry`]: a call answered `UNAVAILABLE` tried again with the same request id.
//! - [`commands`]: one module per command group, each with its clap arguments and its runner.

pub mod commands;
pub mod config;
pub mod connect;
pub mod error;
pub mod failover;
pub mod output;
pub mod probe;
pub mod progress;
pub mod render;
pub mod retry;

use std::path::PathBuf;
use std::process::ExitCode;

pub use connect::Context;
pub use error::CliError;
pub use output::{OutputFormat, Sink};
/// The JSON crate whose `Value` the [`render`] functions return and `--output json` prints.
pub use serde_json;

use commands::{
    app, audit, build, canary, deploy, events, login, publish, runtime, settings, tenant,
};

/// Options every client command takes.
#[derive(Debug, Clone, Default, clap::Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The gateway URL, e.g. `https://neo.example.com:443` (`http://` is assumed without a
    /// scheme), or several comma-separated (the gateways of one platform: the first that
    /// answers is used); default: the one saved by `neo login`.
    #[arg(long, global = true, env = "NEO_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// The tenant to act on; default: the one saved by `neo login`.
    #[arg(long, global = true, env = "NEO_TENANT", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// The bearer token to present; default: the one saved by `neo login`.
    #[arg(
        long,
        global = true,
        env = "NEO_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// The config file; default: `$XDG_CONFIG_HOME/neo/config.toml` or
    /// `~/.config/neo/config.toml`.
    #[arg(long, global = true, env = "NEO_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// How to print results.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// A PEM file of the CA that signed an https gateway's certificate; default: the one saved
    /// by `neo login`, else the system's trusted roots.
    #[arg(long, global = true, value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,
    /// The deadline of each gateway call, in seconds (0: none). An upload is one call.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30)]
    pub timeout: u64,
}

/// The client commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {
    /// Log in to a gateway (--endpoint) as a user, into a tenant (--tenant; without it the token
    /// is platform-wide, for platform admins), and save the endpoint, user, tenant and token.
    #[command(
        after_help = "Examples:\n  neo login --endpoint https://127.0.0.1:50051 --ca-cert ca.pem --user dave --tenant acme\n  neo login --user dave --password-stdin"
    )]
    Login(login::LoginArgs),
    /// Forget the saved token (the endpoint, user and tenant stay).
    #[command(after_help = "Examples:\n  neo logout")]
    Logout,
    /// Show who the token says you are.
    #[command(after_help = "Examples:\n  neo whoami\n  neo whoami --output json")]
    Whoami,
    /// Manage users.
    User {
        /// What to do.
        #[command(subcommand)]
        command: login::UserCommand,
    },
    /// Manage tenants: stages, members and roles.
    Tenant {
        /// What to do.
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    /// Manage apps and upload their revisions.
    App {
        /// What to do.
        #[command(subcommand)]
        command: app::AppCommand,
    },
    /// Request, inspect and cancel builds; print their logs.
    Build {
        /// What to do.
        #[command(subcommand)]
        command: build::BuildCommand,
    },
    /// 1-Click Publish: check a project's model, upload it as the app's next revision, build
    /// it and deploy it, printing each step as it happens.
    #[command(
        after_help = "Examples:\n  neo publish examples/catalog\n  neo publish . --stage test -m 'a price per region'"
    )]
    Publish(publish::PublishArgs),
    /// Deploy the built image of an app revision to a stage.
    #[command(
        after_help = "Examples:\n  neo deploy shop --stage dev --revision 3\n  neo deploy shop -s prod --revision 3 --force"
    )]
    Deploy(deploy::DeployArgs),
    /// Show what deploying a revision to a stage would break (exit 5 when there are blockers).
    #[command(after_help = "Examples:\n  neo impact catalog --stage prod --revision 4")]
    Impact(deploy::ImpactArgs),
    /// Promote the current release of the previous stage into a stage (same image).
    #[command(
        after_help = "Examples:\n  neo promote shop --stage test\n  neo promote shop -s prod --force\n  neo promote shop -s prod --canary"
    )]
    Promote(deploy::PromoteArgs),
    /// Canary releases: a stage's canary policy; abort or promote the running canary; its
    /// steps and figures.
    Canary {
        /// What to do.
        #[command(subcommand)]
        command: canary::CanaryCommand,
    },
    /// Roll a stage back to an earlier release, as a new release.
    #[command(
        after_help = "Examples:\n  neo rollback shop --stage prod --to v2\n  neo rollback shop -s prod --to 2 --force"
    )]
    Rollback(deploy::RollbackArgs),
    /// List the releases of an app on a stage, newest first.
    #[command(
        after_help = "Examples:\n  neo releases shop --stage prod\n  neo releases shop -s dev --output json"
    )]
    Releases(deploy::ReleasesArgs),
    /// Inspect deployments.
    Deployment {
        /// What to do.
        #[command(subcommand)]
        command: deploy::DeploymentCommand,
    },
    /// An entity's events, oldest first: who, what, when, command and causation ids.
    #[command(
        after_help = "Examples:\n  neo history app shop\n  neo history deployment shop_prod --after 120 --limit 20"
    )]
    History(audit::HistoryArgs),
    /// Why an event happened: its chain of causes across entities, back to who started it.
    #[command(after_help = "Examples:\n  neo why 1234")]
    Why(audit::WhyArgs),
    /// An entity's state as of a stream sequence or a time.
    #[command(
        after_help = "Examples:\n  neo state-at deployment shop_prod --time 2026-11-27T14:02:00Z\n  neo state-at app shop --sequence 120"
    )]
    StateAt(audit::StateAtArgs),
    /// Follow the tenant's events.
    Events {
        /// What to do.
        #[command(subcommand)]
        command: events::EventsCommand,
    },
    /// Print the apps' log lines as `time level stage/app/replica text`, filtered; `-f`
    /// follows new lines until Ctrl-C.
    #[command(
        after_help = "Examples:\n  neo logs shop --stage prod --level warn --since 10m\n  neo logs shop -f\n  neo logs --grep timeout --until 5m"
    )]
    Logs(runtime::LogsArgs),
    /// Show what runs on each stage: release, image, rollout, ready/desired replicas, url, and
    /// each replica as its stage's agent last reported it.
    #[command(after_help = "Examples:\n  neo status\n  neo status shop --stage prod")]
    Status(runtime::StatusArgs),
    /// Change the scale policy of an app on a stage (fields not given keep their value).
    #[command(
        after_help = "Examples:\n  neo scale shop --stage prod --min 2 --max 6 --cpu 60\n  neo scale shop -s dev --window 300s"
    )]
    Scale(runtime::ScaleArgs),
    /// Manage an app's settings on a stage (each stage has its own; a promotion never copies
    /// them), and compare two stages.
    Settings {
        /// What to do.
        #[command(subcommand)]
        command: settings::SettingsCommand,
    },
    /// Manage an app's secrets on a stage: values go in (from a file, stdin or a hidden
    /// prompt, never the command line) and never come out; only names and versions are shown.
    Secrets {
        /// What to do.
        #[command(subcommand)]
        command: settings::SecretsCommand,
    },
}

/// Runs a client command and returns the process exit code, printing any error to stderr.
pub async fn run(global: GlobalArgs, command: ClientCommand) -> ExitCode {
    let result = match Context::load(global) {
        Ok(mut cx) => execute(&mut cx, command).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Stdout(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs a client command in a loaded context (whose sink receives what it prints).
///
/// # Errors
///
/// The command's [`CliError`]; [`CliError::exit_code`] gives its exit code.
pub async fn execute(cx: &mut Context, command: ClientCommand) -> Result<(), CliError> {
    match dispatch(cx, command).await {
        Err(e) if e.is_transport() => Err(explained(cx, e).await),
        done => done,
    }
}

/// `error`, a transport failure, with what to use instead when an endpoint answers otherwise
/// than its scheme says (see [`probe`]).
async fn explained(cx: &Context, error: CliError) -> CliError {
    for endpoint in cx.endpoint().unwrap_or_default().split(',') {
        let endpoint = connect::normalize_endpoint(endpoint.trim());
        if let Some(hint) = probe::explain(&endpoint).await {
            return CliError::WrongEndpoint {
                hint,
                source: Box::new(error),
            };
        }
    }
    error
}

async fn dispatch(cx: &mut Context, command: ClientCommand) -> Result<(), CliError> {
    match command {
        ClientCommand::Login(args) => login::login(cx, args).await,
        ClientCommand::Logout => login::logout(cx).await,
        ClientCommand::Whoami => login::whoami(cx).await,
        ClientCommand::User { command } => login::user(cx, command).await,
        ClientCommand::Tenant { command } => tenant::run(cx, command).await,
        ClientCommand::App { command } => app::run(cx, command).await,
        ClientCommand::Build { command } => build::run(cx, command).await,
        ClientCommand::Publish(args) => publish::publish(cx, args).await,
        ClientCommand::Deploy(args) => deploy::deploy(cx, args).await,
        ClientCommand::Impact(args) => deploy::impact(cx, args).await,
        ClientCommand::Promote(args) => deploy::promote(cx, args).await,
        ClientCommand::Canary { command } => canary::run(cx, command).await,
        ClientCommand::Rollback(args) => deploy::rollback(cx, args).await,
        ClientCommand::Releases(args) => deploy::releases(cx, args).await,
        ClientCommand::Deployment { command } => deploy::deployment(cx, command).await,
        ClientCommand::Events { command } => events::run(cx, command).await,
        ClientCommand::History(args) => audit::history(cx, args).await,
        ClientCommand::Why(args) => audit::why(cx, args).await,
        ClientCommand::StateAt(args) => audit::state_at(cx, args).await,
        ClientCommand::Logs(args) => runtime::logs(cx, args).await,
        ClientCommand::Status(args) => runtime::status(cx, args).await,
        ClientCommand::Scale(args) => runtime::scale(cx, args).await,
        ClientCommand::Settings { command } => settings::settings(cx, command).await,
        ClientCommand::Secrets { command } => settings::secrets(cx, command).await,
    }
}

/// The client half of `neo`'s command line (the binary adds serve, bench and completions).
#[derive(Debug, clap::Parser)]
#[command(name = "neo")]
struct ClientCli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: ClientCommand,
}

/// Parses a client command line (`args` starts with the program name), for running commands
/// in process with [`execute`].
///
/// # Errors
///
/// clap's error for an invalid command line (its `exit_code()` is 2).
pub fn parse<I, T>(args: I) -> Result<(GlobalArgs, ClientCommand), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = <ClientCli as clap::Parser>::try_parse_from(args)?;
    Ok((cli.global, cli.command))
}

#[cfg(test)]
mod tests;
