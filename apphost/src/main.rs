//! `neo-apphost`: serves the bundle at `NEO_BUNDLE_DIR` until SIGTERM or Ctrl-C.
//!
//! Exit codes: 0 after a graceful shutdown, 2 for a bad bundle or configuration, 1 otherwise.

use std::process::ExitCode;

use clap::Parser;
use neo_apphost::{Cli, logging, serve};
use tracing::{error, info};

#[tokio::main]
async fn main() -> ExitCode {
    let config = Cli::parse().into_config(std::env::vars());
    logging::init(config.identity.clone());
    match serve(config, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(error = %e, "apphost failed");
            eprintln!("neo-apphost: {e}");
            ExitCode::from(if e.is_bad_input() { 2 } else { 1 })
        }
    }
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => info!("Ctrl-C: shutting down"),
        () = term => info!("SIGTERM: shutting down"),
    }
}
