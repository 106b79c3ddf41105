//! `neo history` and `neo why`: an entity's events, and the chain of causes of one event.

use neo_gateway::api;

use crate::cli::connect::Context;
use crate::cli::error::CliError;
use crate::cli::output::OutputFormat;
use crate::cli::render;

/// Arguments of `neo history`.
#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// The entity's kind (tenant, app, build, deployment, podgroup).
    pub kind: String,
    /// The entity's id (e.g. `shop`, `shop_r2`, `shop_dev`).
    pub id: String,
    /// Only events after this stream sequence.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
    /// At most this many events (up to 1,000 per call).
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

/// Arguments of `neo why`.
#[derive(Debug, Clone, clap::Args)]
pub struct WhyArgs {
    /// The event's stream sequence (as `neo history` or `neo events watch` print it).
    pub sequence: u64,
}

/// `neo history KIND ID`: one line per event (sequence, time, entity, type, who, command and
/// causation), oldest first; or one JSON object per line.
///
/// # Errors
/// Not logged in, an unknown tenant, a malformed id, the gateway's errors.
pub async fn history(cx: &Context, args: HistoryArgs) -> Result<(), CliError> {
    let request = api::HistoryRequest {
        tenant: cx.tenant()?,
        kind: args.kind,
        entity_id: args.id,
        after_sequence: args.after,
        limit: args.limit,
    };
    let response = cx
        .connect()
        .await?
        .events()
        .history(request)
        .await?
        .into_inner();
    for event in &response.events {
        emit(cx, event, true)?;
    }
    if response.more && cx.output() == OutputFormat::Table {
        let last = response
            .events
            .last()
            .map(|e| e.sequence)
            .unwrap_or_default();
        eprintln!("(more events: neo history … --after {last})");
    }
    Ok(())
}

/// `neo why SEQ`: the event, then each cause back to the root, then who started it.
///
/// # Errors
/// Not logged in, an event that is not the tenant's (not found), the gateway's errors.
pub async fn why(cx: &Context, args: WhyArgs) -> Result<(), CliError> {
    let request = api::WhyRequest {
        tenant: cx.tenant()?,
        sequence: args.sequence,
    };
    let response = cx
        .connect()
        .await?
        .events()
        .why(request)
        .await?
        .into_inner();
    for (depth, event) in response.chain.iter().enumerate() {
        if depth > 0 && cx.output() == OutputFormat::Table {
            cx.sink.emit("  ↑ caused by")?;
        }
        emit(cx, event, false)?;
    }
    match cx.output() {
        OutputFormat::Table => cx.sink.emit(&format!("started by {}", response.root)),
        OutputFormat::Json => cx
            .sink
            .emit(&serde_json::json!({ "root": response.root }).to_string()),
    }
}

fn emit(cx: &Context, event: &api::Event, ids: bool) -> Result<(), CliError> {
    let line = match cx.output() {
        OutputFormat::Table if ids => format!(
            "{}  command {}  cause {}",
            render::event_line(event),
            or_dash(&event.command_id),
            or_dash(&event.causation_id)
        ),
        OutputFormat::Table => render::event_line(event),
        OutputFormat::Json => render::event_json(event).to_string(),
    };
    cx.sink.emit(&line)
}

fn or_dash(value: &str) -> &str {
    if value.is_empty() { "-" } else { value }
}
