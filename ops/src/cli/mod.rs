//! The `neo` client commands (login, tenant, app, build, deploy, …) over the gRPC gateway.
//! (Stub: the client commands are being written.)

/// Options every client command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {}

/// The client commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ClientCommand {}

/// Runs a client command and returns the process exit code.
pub async fn run(_global: GlobalArgs, command: ClientCommand) -> std::process::ExitCode {
    match command {}
}
