//! `neo events watch`: follows the tenant's events, resuming after the last one on a dropped
//! stream so nothing is missed or repeated.

use std::io::IsTerminal as _;
use std::time::Duration;

use neo_gateway::api;
use neo_gateway::api::events_client::EventsClient;
use tonic::Code;

use crate::connect::{AuthChannel, Context};
use crate::error::{CliError, describe_status};
use crate::output::{OutputFormat, Sink};
use crate::render;

/// Reconnections tried in a row (with no event in between) before giving up.
pub const MAX_RECONNECTS: u32 = 5;
/// The wait before the first reconnection; it doubles each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between reconnections.
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// `neo events …` (on --tenant or the saved tenant).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum EventsCommand {
    /// Print the tenant's events as they happen, until Ctrl-C: one line each (sequence, time,
    /// kind/entity, type, who), or one JSON object per line with --output json.
    #[command(
        after_help = "Examples:\n  neo events watch\n  neo events watch --kind deployment --entity shop_prod --output json"
    )]
    Watch(WatchArgs),
}

/// Arguments of `neo events watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Only events of this kind (tenant, app, build, deployment, podgroup).
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// Only events of this entity id (e.g. `shop`, `shop_r2`, `shop_dev`).
    #[arg(long, value_name = "ID")]
    pub entity: Option<String>,
    /// Only events of this type.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Start after this stream sequence (0: from the first event).
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
}

/// Runs `neo events watch`.
///
/// # Guarantees
///
/// Each event is printed once, in sequence order: a reconnection asks for the events after the
/// last one printed, and any event at or before it is skipped.
///
/// # Errors
///
/// [`CliError::NotLoggedIn`], [`CliError::Usage`] with no tenant, a gateway error that retrying
/// cannot fix (e.g. permission denied), or the last error after [`MAX_RECONNECTS`] failed
/// reconnections. Ctrl-C ends the watch successfully.
pub async fn run(cx: &Context, command: EventsCommand) -> Result<(), CliError> {
    let EventsCommand::Watch(args) = command;
    let tenant = cx.tenant()?;
    let mut client = cx.connect().await?.events();
    if std::io::stderr().is_terminal() {
        eprintln!("watching the events of {tenant} (Ctrl-C to stop)");
    }
    let mut watch = Watch {
        last: args.after,
        failures: 0,
        format: cx.output(),
        sink: cx.sink.clone(),
    };
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let request = api::WatchRequest {
            tenant: tenant.clone(),
            kind: args.kind.clone().unwrap_or_default(),
            entity_id: args.entity.clone().unwrap_or_default(),
            event_type: args.event_type.clone().unwrap_or_default(),
            after_sequence: watch.last,
        };
        let outcome = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            outcome = watch.follow(&mut client, request) => outcome,
        };
        let status = match outcome {
            Ok(()) => tonic::Status::unavailable("the gateway ended the stream"),
            Err(CliError::Rpc(status)) if retryable(status.code()) => status,
            Err(e) => return Err(e),
        };
        watch.failures += 1;
        if watch.failures > MAX_RECONNECTS {
            return Err(CliError::Rpc(status));
        }
        let delay = backoff(watch.failures);
        eprintln!(
            "warning: the watch stopped ({}); resuming after sequence {} in {:.1}s ({}/{MAX_RECONNECTS})",
            describe_status(&status),
            watch.last,
            delay.as_secs_f64(),
            watch.failures,
        );
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// The state of a watch across reconnections.
struct Watch {
    /// The sequence of the last event printed (or `--after`).
    last: u64,
    /// Failed attempts since the last event.
    failures: u32,
    /// How events are printed.
    format: OutputFormat,
    /// Where events are printed.
    sink: Sink,
}

impl Watch {
    /// Opens the stream and prints its events until it ends or fails.
    async fn follow(
        &mut self,
        client: &mut EventsClient<AuthChannel>,
        request: api::WatchRequest,
    ) -> Result<(), CliError> {
        let mut stream = client.watch(request).await?.into_inner();
        while let Some(event) = stream.message().await? {
            self.failures = 0;
            if event.sequence <= self.last {
                continue;
            }
            self.last = event.sequence;
            let line = match self.format {
                OutputFormat::Table => render::event_line(&event),
                OutputFormat::Json => render::event_json(&event).to_string(),
            };
            self.sink.emit(&line)?;
        }
        Ok(())
    }
}

/// Whether a watch that failed with `code` is worth resuming.
fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Internal
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
    )
}

/// The wait before reconnection number `attempt` (1-based): 0.5 s, 1 s, 2 s, … up to 8 s.
fn backoff(attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    FIRST_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_a_ceiling() {
        let waits: Vec<u64> = (1..=7).map(|n| backoff(n).as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(retryable(Code::Unavailable));
        assert!(retryable(Code::Unknown));
        assert!(!retryable(Code::PermissionDenied));
        assert!(!retryable(Code::Unauthenticated));
        assert!(!retryable(Code::InvalidArgument));
        assert!(!retryable(Code::NotFound));
    }
}
