//! `neo audit verify` and `neo audit export`: the hash chain of the event log checked (from
//! NATS, or from an export file), and the log exported as JSON lines. They read JetStream
//! directly, as an auditor's tool would, with no platform process needed.

use std::io::{BufRead as _, Write as _};
use std::path::PathBuf;

use anyhow::Context as _;
use neo_actors::audit::{self, Record};

/// `neo audit …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AuditCommand {
    /// Check every event's hash chain link and the snapshots' checkpoints; list each
    /// modified, missing, reordered or duplicated event (exit 1 when any).
    Verify(VerifyArgs),
    /// Write the events as JSON lines (sequence, subject, headers, base64 payload) to stdout.
    Export(ExportArgs),
}

/// Where the events come from.
#[derive(Debug, Clone, clap::Args)]
pub struct Source {
    /// The NATS server, its CA and the credential (`admin`, or `tool-{tenant}` with
    /// `--tenant`).
    #[command(flatten)]
    pub nats: crate::nats_connect::NatsArgs,
    /// Only this tenant's events (default: the whole stream).
    #[arg(long)]
    pub tenant: Option<String>,
}

impl Source {
    fn filter(&self) -> anyhow::Result<String> {
        Ok(match &self.tenant {
            Some(t) => format!("neo.evt.{}.>", neo_protocol::TenantName::new(t.as_str())?),
            None => neo_protocol::subjects::EVENTS_ALL.to_owned(),
        })
    }

    async fn connect(&self) -> anyhow::Result<async_nats::jetstream::Context> {
        let client = self.nats.connect_once("neo-audit").await?;
        Ok(async_nats::jetstream::new(client))
    }
}

/// Arguments of `neo audit verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub source: Source,
    /// Verify an export file instead of the stream (checkpoints are then not checked).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `neo audit export`.
#[derive(Debug, Clone, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: Source,
}

/// Runs an audit command; `Ok(false)` when verification found problems.
///
/// # Errors
/// NATS unreachable, an unreadable file.
pub async fn run(command: AuditCommand) -> anyhow::Result<bool> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Export(args) => {
            let js = args.source.connect().await?;
            let records = audit::read(&js, &args.source.filter()?).await?;
            let mut out = std::io::stdout().lock();
            for record in &records {
                writeln!(out, "{}", audit::export_line(record)?)?;
            }
            eprintln!("exported {} events", records.len());
            Ok(true)
        }
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<bool> {
    let (records, checkpoints) = match &args.file {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let mut records: Vec<Record> = Vec::new();
            for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                records.push(audit::parse_line(&line).with_context(|| {
                    format!("{}:{}: not an event record", path.display(), n + 1)
                })?);
            }
            (records, audit::Checkpoints::new())
        }
        None => {
            let js = args.source.connect().await?;
            let records = audit::read(&js, &args.source.filter()?).await?;
            let checkpoints = audit::checkpoints(&js, &records).await?;
            (records, checkpoints)
        }
    };
    let report = audit::verify(records, &checkpoints);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{} events of {} entities verified ({} written before the chain, {} checkpoints)",
            report.events,
            report.entities,
            report.unchained,
            checkpoints.len()
        );
        for problem in &report.problems {
            println!("{}", serde_json::to_string(problem)?);
        }
        if report.problems.is_empty() {
            println!("no problem found");
        }
    }
    Ok(report.problems.is_empty())
}
