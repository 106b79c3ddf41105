//! Follows one tenant's deployment events (its tooling account's copy, or `NEO_EVENTS`) and
//! prints one line per event: an example of reading Neo's event log from outside the platform
//! with nothing but the `.proto` schema, the subjects and the headers (see `docs/subjects.md`).
//!
//! # Layout
//!
//! - [`Args`]: the command line (`--nats`, `--nats-ca`, `--nats-creds`, `--tenant`,
//!   `--from-sequence`, `--json`); [`connect`] connects with its TLS and credential.
//! - [`DeploymentLine`] and [`DeploymentLine::from_message`]: one event, decoded (pure).
//! - [`DeploymentLine::text`] and [`DeploymentLine::json`]: its two printed forms (pure).
//! - [`watch`]: the ordered consumer that feeds them (I/O).

use std::io::Write;

use async_nats::HeaderMap;
use async_nats::jetstream::{
    self,
    consumer::{DeliverPolicy, push::OrderedConfig},
};
use futures::StreamExt;
use neo_protocol::envelope::{EventMeta, MetaError, rfc3339_millis};
use neo_protocol::pb::{self, deployment_event::Event};
use neo_protocol::subjects::{self, SubjectError};
use neo_protocol::{EntityKind, NameError, TenantName};
use prost::Message as _;
use serde::Serialize;

/// The command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "neo-watch-deployments",
    about = "Print one tenant's deployment events as they happen"
)]
pub struct Args {
    /// The NATS server (the one `neo serve` uses).
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Trust this CA (PEM) for the server's certificate, and require TLS (`ops/up`:
    /// `$NEO_DATA/certs/ca.pem`).
    #[arg(long, env = "NEO_NATS_CA")]
    pub nats_ca: Option<std::path::PathBuf>,
    /// The tooling user's credential (`neo nats-config --tool-tenant T` writes
    /// `tool-T.nk`; a JWT `.creds` file works too).
    #[arg(long, env = "NEO_NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// The tenant whose deployments to follow.
    #[arg(long)]
    pub tenant: String,
    /// Start at this sequence of the stream read (1: the whole history); without it, new
    /// events only.
    #[arg(long)]
    pub from_sequence: Option<u64>,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Connects to `args.nats` with TLS required and its CA trusted (`--nats-ca`) and the
/// tooling user's credential (`--nats-creds`), as the user's own inbox prefix requires.
///
/// # Errors
///
/// When a file cannot be used or the server refuses the connection.
pub async fn connect(args: &Args) -> anyhow::Result<async_nats::Client> {
    let options = neo_client::credentials::with_tls_and_credential(
        async_nats::ConnectOptions::new().name("neo-watch-deployments"),
        args.nats_ca.as_deref(),
        args.nats_creds.as_deref(),
    )
    .await?;
    options
        .connect(&args.nats)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", args.nats))
}

/// Why an event could not be read or the watch stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The tenant given is not a valid tenant name.
    #[error("--tenant: {0}")]
    Tenant(#[from] NameError),
    /// The subject is not an event subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The event is of another kind than deployment.
    #[error("`{0}` is not a deployment event")]
    NotDeployment(String),
    /// The event's `Neo-*` headers are missing or malformed.
    #[error("event {sequence}: {source}")]
    Headers {
        /// The event's stream sequence.
        sequence: u64,
        /// What was wrong.
        source: MetaError,
    },
    /// The payload is not a `neo.v1.DeploymentEvent`.
    #[error("event {sequence}: payload is not a neo.v1.DeploymentEvent: {source}")]
    Payload {
        /// The event's stream sequence.
        sequence: u64,
        /// The decoding error.
        source: prost::DecodeError,
    },
    /// NATS could not be reached, or the consumer could not be created or was interrupted.
    #[error("nats: {0}")]
    Nats(String),
    /// The output could not be written.
    #[error("output: {0}")]
    Output(#[from] std::io::Error),
}

/// One deployment event, flattened for printing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentLine {
    /// The event's sequence in the stream it was read from (`NEO_TENANT_EVENTS` as a tooling
    /// user, else `NEO_EVENTS`; resume with `--from-sequence` + 1).
    pub sequence: u64,
    /// When it was decided, RFC 3339 UTC (the event's `ce-time`).
    pub time: String,
    /// The principal whose command produced it (`Neo-Who`).
    pub who: String,
    /// The event type: `ReleaseCreated`, `RolloutRecorded` or `DeployBlocked`.
    pub event: String,
    /// The app.
    pub app: String,
    /// The stage.
    pub stage: String,
    /// The release number (0 for a blocked deploy).
    pub release: u32,
    /// How the release came about: `deploy`, `promotion`, `rollback` (empty when unknown).
    pub origin: String,
    /// The image digest of the release (empty when the event does not carry it).
    pub image_digest: String,
    /// The rollout status: `pending`, `succeeded`, `failed`, `blocked` (empty when unknown).
    pub rollout: String,
    /// What else matters: the promotion's source, the rollback's target, a rollout's reason,
    /// the blockers.
    pub detail: String,
}

fn origin(origin: i32) -> &'static str {
    match pb::ReleaseOrigin::try_from(origin) {
        Ok(pb::ReleaseOrigin::Deploy) => "deploy",
        Ok(pb::ReleaseOrigin::Promotion) => "promotion",
        Ok(pb::ReleaseOrigin::Rollback) => "rollback",
        Ok(pb::ReleaseOrigin::Config) => "config",
        _ => "",
    }
}

fn rollout(status: i32) -> &'static str {
    match pb::RolloutStatus::try_from(status) {
        Ok(pb::RolloutStatus::Pending) => "pending",
        Ok(pb::RolloutStatus::Succeeded) => "succeeded",
        Ok(pb::RolloutStatus::Failed) => "failed",
        _ => "",
    }
}

impl DeploymentLine {
    /// Decodes one message of `NEO_EVENTS`: its subject, headers, payload and stream sequence.
    ///
    /// # Errors
    /// When the subject is not a deployment event's, the `Neo-*` headers are unreadable or the
    /// payload is not a `neo.v1.DeploymentEvent`.
    pub fn from_message(
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: &[u8],
        sequence: u64,
    ) -> Result<Self, WatchError> {
        let (entity, event_type) = subjects::parse_event(subject)?;
        if entity.kind != EntityKind::Deployment {
            return Err(WatchError::NotDeployment(
                subject.chars().take(200).collect(),
            ));
        }
        let meta =
            EventMeta::from_headers(|name| headers.and_then(|h| h.get(name)).map(|v| v.as_str()))
                .map_err(|source| WatchError::Headers { sequence, source })?;
        let event = pb::DeploymentEvent::decode(payload)
            .map_err(|source| WatchError::Payload { sequence, source })?;
        let (app, stage) = entity
            .id
            .app_and_stage()
            .map(|(a, s)| (a.to_string(), s.to_string()))
            .unwrap_or_default();
        let mut line = Self {
            sequence,
            time: rfc3339_millis(meta.time_ms),
            who: meta.who,
            event: event_type,
            app,
            stage,
            release: 0,
            origin: String::new(),
            image_digest: String::new(),
            rollout: String::new(),
            detail: String::new(),
        };
        match event.event {
            Some(Event::ReleaseCreated(created)) => {
                let release = created.release.unwrap_or_default();
                line.release = release.number;
                line.origin = origin(release.origin).to_owned();
                line.image_digest = release.image_digest;
                line.rollout = rollout(release.rollout).to_owned();
                line.detail = match (&release.promoted_from, release.rolled_back_to) {
                    (Some(from), _) => format!("from {} v{}", from.stage, from.number),
                    (None, to) if to > 0 => format!("restores v{to}"),
                    _ => format!("build {}", release.build_id),
                };
                if release.forced {
                    line.detail.push_str(&format!(
                        ", forced over: {}",
                        release.forced_blockers.join("; ")
                    ));
                }
            }
            Some(Event::RolloutRecorded(recorded)) => {
                line.release = recorded.release;
                line.rollout = rollout(recorded.status).to_owned();
                line.detail = recorded.reason;
            }
            Some(Event::DeployBlocked(blocked)) => {
                line.origin = "deploy".into();
                line.rollout = "blocked".into();
                line.detail = format!(
                    "build {}: {}",
                    blocked.build_id,
                    blocked.blockers.join("; ")
                );
            }
            Some(Event::SettingsChanged(changed)) => {
                let mut names: Vec<String> = changed.set.keys().cloned().collect();
                names.extend(changed.unset.iter().map(|n| format!("-{n}")));
                line.detail = format!("settings {}", names.join(", "));
            }
            Some(Event::SecretChanged(changed)) => {
                line.detail = format!("secret {} v{}", changed.name, changed.version);
            }
            Some(Event::SecretRemoved(removed)) => {
                line.detail = format!("secret {} removed", removed.name);
            }
            Some(Event::CanaryPolicySet(set)) => {
                let steps = set.policy.map(|p| p.steps).unwrap_or_default();
                line.detail = format!("canary policy: steps {steps:?} %");
            }
            Some(Event::CanaryAdvanced(advanced)) => {
                line.release = advanced.release;
                line.rollout = "canary".into();
                line.detail = format!("{} % of the traffic: {}", advanced.weight, advanced.reason);
            }
            Some(Event::CanaryCompleted(completed)) => {
                line.release = completed.release;
                line.rollout = "canary completed".into();
                line.detail = completed.reason;
            }
            Some(Event::CanaryRolledBack(rolled)) => {
                line.release = rolled.release;
                line.rollout = "canary rolled back".into();
                line.detail = format!("to v{}: {}", rolled.baseline, rolled.reason);
            }
            None => {}
        }
        Ok(line)
    }

    /// The line as text: time, who, app/stage, event, release, origin, image, rollout, detail.
    pub fn text(&self) -> String {
        let release = match self.release {
            0 => "-".to_owned(),
            n => format!("v{n}"),
        };
        let dash = |s: &str| if s.is_empty() { "-" } else { s }.to_owned();
        let mut out = format!(
            "{} #{} {} {}/{} {} {} {} {} {}",
            self.time,
            self.sequence,
            dash(&self.who),
            self.app,
            self.stage,
            self.event,
            release,
            dash(&self.origin),
            dash(&self.image_digest),
            dash(&self.rollout),
        );
        if !self.detail.is_empty() {
            out.push_str(" (");
            out.push_str(&self.detail);
            out.push(')');
        }
        out
    }

    /// The line as one JSON object.
    pub fn json(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `neo.evt.{tenant}.deployment.*.*`: every deployment event of one tenant.
///
/// `neo_protocol::subjects` has no builder for one kind of one tenant yet; this is the pattern
/// documented in `docs/subjects.md`, from a validated tenant name.
pub fn filter_subject(tenant: &TenantName) -> String {
    format!("neo.evt.{tenant}.{}.*.*", EntityKind::Deployment)
}

/// Follows the tenant's deployment events with an ordered consumer and writes one line per
/// event to `out` until the stream ends or fails. An event that cannot be decoded is reported
/// on stderr and skipped.
///
/// # Errors
/// [`WatchError::Tenant`] for a bad tenant name; [`WatchError::Nats`] when the stream cannot
/// be reached or the consumer is interrupted; [`WatchError::Output`] when `out` fails.
pub async fn watch(
    client: async_nats::Client,
    args: &Args,
    out: &mut impl Write,
) -> Result<(), WatchError> {
    let tenant = TenantName::new(&args.tenant)?;
    let inbox = client.new_inbox();
    let js = jetstream::new(client);
    let deliver_policy = match args.from_sequence {
        Some(start_sequence) => DeliverPolicy::ByStartSequence {
            start_sequence: start_sequence.max(1),
        },
        None => DeliverPolicy::New,
    };
    // A named push consumer delivered to this connection's own inbox, on the tenant's copy in
    // a tooling user's account (its grant pins the filter to its tenant), else on NEO_EVENTS.
    let consumer = neo_client::tenant_events::ordered(
        &js,
        OrderedConfig {
            name: Some(format!("watch_{}", inbox.rsplit('.').next().unwrap_or("0"))),
            deliver_subject: inbox.clone(),
            filter_subject: filter_subject(&tenant),
            deliver_policy,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| WatchError::Nats(format!("cannot create the consumer: {e}")))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| WatchError::Nats(format!("cannot consume: {e}")))?;
    while let Some(next) = messages.next().await {
        let msg = next.map_err(|e| WatchError::Nats(format!("watch interrupted: {e}")))?;
        let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
        match DeploymentLine::from_message(
            msg.subject.as_str(),
            msg.headers.as_ref(),
            &msg.payload,
            sequence,
        ) {
            Ok(line) => {
                let text = if args.json { line.json() } else { line.text() };
                writeln!(out, "{text}")?;
                out.flush()?;
            }
            Err(e) => eprintln!("skipped: {e}"),
        }
    }
    Ok(())
}
