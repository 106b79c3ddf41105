//! `neo history`, `neo state-at` and `neo why`: an entity's events, its state at a point in
//! time, and the chain of causes of one event.

use neo_gateway::api;
use neo_protocol::pb;
use prost::Message;

use crate::connect::Context;
use crate::error::CliError;
use crate::output::OutputFormat;
use crate::render;

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

/// Arguments of `neo state-at`.
#[derive(Debug, Clone, clap::Args)]
pub struct StateAtArgs {
    /// The entity's kind (tenant, app, build, deployment, podgroup).
    pub kind: String,
    /// The entity's id.
    pub id: String,
    /// The state after the entity's last event at or before this stream sequence.
    #[arg(long, value_name = "SEQ", conflicts_with = "time")]
    pub sequence: Option<u64>,
    /// The state as of this time (RFC 3339, e.g. 2026-11-27T14:02:00Z).
    #[arg(long, value_name = "TIME")]
    pub time: Option<String>,
}

/// `neo state-at KIND ID --sequence N | --time T`: the entity's state then, rendered like
/// `neo … get`, with the sequence of the last event folded.
///
/// # Errors
/// Not logged in, a malformed time, the gateway's errors.
pub async fn state_at(cx: &Context, args: StateAtArgs) -> Result<(), CliError> {
    let time_ms = match &args.time {
        Some(t) => {
            let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| CliError::Usage(format!("--time `{t}`: {e} (use RFC 3339)")))?;
            u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
                .map_err(|_| CliError::Usage(format!("--time `{t}` is before 1970")))?
        }
        None => 0,
    };
    let tenant = cx.tenant()?;
    let request = api::StateAtRequest {
        tenant: tenant.clone(),
        kind: args.kind.clone(),
        entity_id: args.id.clone(),
        sequence: args.sequence.unwrap_or(0),
        time_ms,
    };
    let r = cx
        .connect()
        .await?
        .events()
        .state_at(request)
        .await?
        .into_inner();
    let bad = |e: prost::DecodeError| CliError::Usage(format!("undecodable state: {e}"));
    let sequence = r.sequence;
    let state = r.state.map(|any| any.value).unwrap_or_default();
    let state = state.as_slice();
    let (json, table) = match r.kind.as_str() {
        "tenant" => {
            let t = api::Tenant {
                name: args.id.clone(),
                state: Some(pb::TenantState::decode(state).map_err(bad)?),
                sequence,
            };
            (render::tenant_json(&t), render::tenant_table(&t))
        }
        "app" => {
            let a = api::App {
                tenant: tenant.clone(),
                name: args.id.clone(),
                state: Some(pb::AppState::decode(state).map_err(bad)?),
                sequence,
            };
            (render::app_json(&a), render::app_table(&a))
        }
        "build" => {
            let b = api::Build {
                tenant: tenant.clone(),
                id: args.id.clone(),
                state: Some(pb::BuildState::decode(state).map_err(bad)?),
                sequence,
            };
            (render::build_json(&b), render::build_table(&b))
        }
        "deployment" => {
            let state = pb::DeploymentState::decode(state).map_err(bad)?;
            let d = api::Deployment {
                tenant: tenant.clone(),
                app: state.app.clone(),
                stage: state.stage.clone(),
                state: Some(state),
                sequence,
            };
            (render::deployment_json(&d), render::deployment_table(&d))
        }
        _ => {
            let state = pb::PodgroupState::decode(state).map_err(bad)?;
            let text = format!("{state:#?}");
            (serde_json::json!({ "state": text }), text)
        }
    };
    match cx.output() {
        OutputFormat::Table => {
            cx.sink.emit(&format!("as of sequence {sequence}"))?;
            cx.sink.emit(&table)
        }
        OutputFormat::Json => cx.sink.emit(
            &serde_json::json!({ "sequence": sequence, "kind": r.kind, "state": json }).to_string(),
        ),
    }
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
