//! `neo nats-config`: the nats-server configuration of a secured installation (TLS, and one
//! NATS user per component with only the subjects it needs) and each user's credential; and
//! `neo nats-provision`: what restricted users may not create themselves (the agents' durable
//! consumers). docs/security.md explains every grant.
//!
//! Users: `platform`, `gateway`, `build-worker`, `agent-{stage}` per stage, `tool-{tenant}` per
//! tooling tenant, and `admin` for operator tools. Each authenticates with an nkey: the
//! configuration holds only public keys; the seeds are in `{dir}/{user}.nk` (mode 0600), kept
//! across runs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use neo_protocol::{StageName, TenantName, subjects};
use neo_runtime_agent::agent::AgentConfig;

use crate::nats_connect::{CREDS_HEADER, NatsArgs, inbox_prefix};

/// The subject of the secrets requests of the agents of `{stage}` (served by the platform).
fn secrets_of_stage(stage: &StageName) -> String {
    format!("neo.secrets.{stage}.>")
}

/// The KV buckets of the secrets store: written by the gateway, read by the platform only.
const SECRET_BUCKETS: [&str; 2] = ["neo_secrets", "neo_tenant_keys"];
/// The KV bucket of the gateway's users.
const USERS_BUCKET: &str = "neo_users";

/// What one user may publish and subscribe to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Subjects it may publish to.
    pub publish_allow: Vec<String>,
    /// Subjects it may never publish to (wins over `publish_allow`).
    pub publish_deny: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe_allow: Vec<String>,
    /// Subjects it may never subscribe to.
    pub subscribe_deny: Vec<String>,
    /// It may answer the requests it receives (publish once to their reply subject).
    pub allow_responses: bool,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Deletions no component but `admin` makes: whole streams, purges, single messages.
fn destructive() -> Vec<String> {
    strings(&[
        "$JS.API.STREAM.DELETE.>",
        "$JS.API.STREAM.PURGE.>",
        "$JS.API.STREAM.MSG.DELETE.>",
    ])
}

/// The platform: the entity hosts (append to `NEO_EVENTS`, snapshots), the intake (answers
/// commands, queries, stage commands), reactors and projections (durable and ordered
/// consumers on `NEO_EVENTS`), the desired state, the build queue's enqueuer, the build
/// configuration, the secrets responder (reads the secrets buckets, never writes them).
pub fn platform() -> Grants {
    let inbox = format!("{}.>", inbox_prefix("platform"));
    let mut publish_deny = destructive();
    for bucket in SECRET_BUCKETS.iter().chain([&USERS_BUCKET]) {
        publish_deny.push(format!("$KV.{bucket}.>"));
    }
    Grants {
        publish_allow: vec![
            "neo.>".into(),
            "$JS.API.>".into(),
            "$JS.ACK.>".into(),
            "$JS.FC.>".into(),
            "$KV.>".into(),
            inbox.clone(),
        ],
        publish_deny,
        subscribe_allow: vec!["neo.>".into(), inbox],
        subscribe_deny: Vec::new(),
        allow_responses: true,
    }
}

/// The gateway: reads every stream (history, watch, logs, status, build logs), keeps its
/// users and the secrets store (writes the secrets buckets), sends commands and queries; it
/// never writes the event log itself.
pub fn gateway() -> Grants {
    let inbox = format!("{}.>", inbox_prefix("gateway"));
    let mut publish_allow = strings(&["neo.cmd.>", "neo.qry.>", "$JS.API.>", "$JS.FC.>"]);
    for bucket in SECRET_BUCKETS.iter().chain([&USERS_BUCKET]) {
        publish_allow.push(format!("$KV.{bucket}.>"));
    }
    publish_allow.push(inbox.clone());
    let mut publish_deny = destructive();
    publish_deny.extend(strings(&["neo.evt.>", "neo.desired.>"]));
    Grants {
        publish_allow,
        publish_deny,
        subscribe_allow: vec!["neo.>".into(), inbox],
        subscribe_deny: Vec::new(),
        allow_responses: false,
    }
}

/// A build worker: the build queue (its durable consumer, acks and progress), build logs,
/// the build metadata and configuration buckets, commands and queries to the platform.
pub fn build_worker() -> Grants {
    let inbox = format!("{}.>", inbox_prefix("build-worker"));
    let queue = neo_builder::queue::QUEUE_STREAM;
    let logs = neo_builder::buildlog::LOG_STREAM;
    let mut publish_allow = strings(&["neo.cmd.*.build.*", "neo.qry.>", "$JS.API.INFO"]);
    publish_allow.push(neo_builder::buildlog::LOG_SUBJECTS.to_owned());
    for stream in [queue, logs] {
        publish_allow.push(format!("$JS.API.STREAM.INFO.{stream}"));
        publish_allow.push(format!("$JS.API.STREAM.CREATE.{stream}"));
    }
    publish_allow.extend([
        format!("$JS.API.CONSUMER.CREATE.{queue}.>"),
        format!("$JS.API.CONSUMER.INFO.{queue}.>"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{queue}.>"),
        format!("$JS.ACK.{queue}.>"),
    ]);
    for bucket in [
        neo_builder::meta::META_BUCKET,
        neo_builder::meta::CONFIG_BUCKET,
    ] {
        publish_allow.extend([
            format!("$KV.{bucket}.>"),
            format!("$JS.API.STREAM.INFO.KV_{bucket}"),
            format!("$JS.API.STREAM.CREATE.KV_{bucket}"),
            format!("$JS.API.STREAM.MSG.GET.KV_{bucket}"),
            format!("$JS.API.DIRECT.GET.KV_{bucket}.>"),
            format!("$JS.API.DIRECT.GET.KV_{bucket}"),
        ]);
    }
    publish_allow.push(inbox.clone());
    Grants {
        publish_allow,
        publish_deny: strings(&["neo.evt.>", "neo.desired.>"]),
        subscribe_allow: vec![inbox],
        subscribe_deny: Vec::new(),
        allow_responses: false,
    }
}

/// The agent of `stage`: its stage's desired states (pull from its durable consumer, read
/// single subjects of its stage), its reports (`neo.rt.*.{stage}.>`), its commands
/// (`neo.stagecmd.{stage}.>`) and its secrets requests (`neo.secrets.{stage}.>`). It may not
/// create consumers, read the event log, or write into it.
pub fn agent(stage: &StageName) -> Grants {
    let user = format!("agent-{stage}");
    let inbox = format!("{}.>", inbox_prefix(&user));
    let durable = neo_runtime_agent::agent::desired::durable(&AgentConfig::new(stage.clone()))
        .durable_name
        .unwrap_or_default();
    let desired = subjects::DESIRED_STREAM;
    let mut publish_allow = vec![
        subjects::stage_commands(stage),
        secrets_of_stage(stage),
        format!("neo.rt.*.{stage}.>"),
    ];
    for stream in [desired, subjects::RUNTIME_STREAM, subjects::LOGS_STREAM] {
        publish_allow.push(format!("$JS.API.STREAM.INFO.{stream}"));
    }
    publish_allow.extend([
        format!(
            "$JS.API.DIRECT.GET.{desired}.{}",
            subjects::desired_stage(stage)
        ),
        format!("$JS.API.CONSUMER.INFO.{desired}.{durable}"),
        format!("$JS.API.CONSUMER.MSG.NEXT.{desired}.{durable}"),
        format!("$JS.ACK.{desired}.{durable}.>"),
    ]);
    Grants {
        publish_allow,
        publish_deny: strings(&[
            "neo.evt.>",
            "neo.cmd.>",
            "neo.desired.>",
            "$JS.API.CONSUMER.CREATE.>",
            "$JS.API.CONSUMER.DELETE.>",
            "$JS.API.DIRECT.GET.NEO_EVENTS.>",
            "$JS.API.DIRECT.GET.NEO_EVENTS",
            "$KV.>",
        ]),
        subscribe_allow: vec![inbox],
        subscribe_deny: strings(&["neo.>", "$JS.>", "$KV.>"]),
        allow_responses: false,
    }
}

/// A tooling user of `tenant`: ordered push consumers filtered to `neo.evt.{tenant}.>`,
/// delivered to its own inbox, and live events of the tenant; nothing else.
pub fn tool(tenant: &TenantName) -> Grants {
    let user = format!("tool-{tenant}");
    let inbox = format!("{}.>", inbox_prefix(&user));
    let events = subjects::tenant_events(tenant);
    Grants {
        publish_allow: vec![
            format!(
                "$JS.API.CONSUMER.CREATE.{}.*.{events}",
                subjects::EVENTS_STREAM
            ),
            format!("$JS.FC.{}.>", subjects::EVENTS_STREAM),
        ],
        publish_deny: strings(&[
            "neo.>",
            "$KV.>",
            "$JS.API.DIRECT.GET.>",
            "$JS.API.STREAM.>",
            "$JS.API.CONSUMER.MSG.NEXT.>",
        ]),
        subscribe_allow: vec![inbox, events],
        subscribe_deny: Vec::new(),
        allow_responses: false,
    }
}

/// The operator (`neo audit` of every tenant, key rotation, provisioning): everything.
pub fn admin() -> Grants {
    Grants {
        publish_allow: vec![">".into()],
        subscribe_allow: vec![">".into()],
        allow_responses: false,
        ..Grants::default()
    }
}

/// Every user of an installation serving `stages`, with tooling users for `tool_tenants`.
pub fn users(stages: &[StageName], tool_tenants: &[TenantName]) -> BTreeMap<String, Grants> {
    let mut users = BTreeMap::from([
        ("platform".to_owned(), platform()),
        ("gateway".to_owned(), gateway()),
        ("build-worker".to_owned(), build_worker()),
        ("admin".to_owned(), admin()),
    ]);
    for stage in stages {
        users.insert(format!("agent-{stage}"), agent(stage));
    }
    for tenant in tool_tenants {
        users.insert(format!("tool-{tenant}"), tool(tenant));
    }
    users
}

/// The credential file of `user` in `dir`.
pub fn creds_path(dir: &Path, user: &str) -> PathBuf {
    dir.join(format!("{user}.nk"))
}

/// The nkey of `user`: read from its credential file in `dir`, or made and written there.
fn user_key(dir: &Path, user: &str) -> anyhow::Result<nkeys::KeyPair> {
    let path = creds_path(dir, user);
    if path.exists() {
        if let crate::nats_connect::Credential::Nkey { seed, .. } =
            crate::nats_connect::Credential::read(&path)?
        {
            return nkeys::KeyPair::from_seed(&seed)
                .with_context(|| format!("{}: not an nkey seed", path.display()));
        }
        anyhow::bail!("{}: not an nkey seed file", path.display());
    }
    let key = nkeys::KeyPair::new_user();
    let seed = key.seed().context("encoding an nkey seed")?;
    crate::certs::write_secret(&path, &format!("{CREDS_HEADER}{user}\n{seed}\n"))?;
    Ok(key)
}

/// `{ allow: [...], deny: [...] }`, leaving out empty lists.
fn allow_deny(allow: &[String], deny: &[String]) -> String {
    let quoted = |items: &[String]| -> String {
        let items: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
        items.join(", ")
    };
    let mut parts = Vec::new();
    if !allow.is_empty() {
        parts.push(format!("allow: [{}]", quoted(allow)));
    }
    if !deny.is_empty() {
        parts.push(format!("deny: [{}]", quoted(deny)));
    }
    format!("{{ {} }}", parts.join(", "))
}

/// The `tls { … }` and `authorization { … }` blocks for `users` (public keys from `keys`).
fn security_block(
    tls: Option<(&Path, &Path)>,
    users: &BTreeMap<String, Grants>,
    keys: &BTreeMap<String, String>,
) -> String {
    let mut out = String::new();
    if let Some((cert, key)) = tls {
        let _ = writeln!(
            out,
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  timeout: 5\n}}",
            cert.display().to_string(),
            key.display().to_string()
        );
    }
    out.push_str("authorization {\n  users = [\n");
    for (user, grants) in users {
        let _ = writeln!(out, "    # {user}");
        let _ = write!(out, "    {{ nkey: {:?}, permissions: {{", keys[user]);
        let publish = allow_deny(&grants.publish_allow, &grants.publish_deny);
        let subscribe = allow_deny(&grants.subscribe_allow, &grants.subscribe_deny);
        let _ = write!(out, "\n      publish: {publish}");
        let _ = write!(out, "\n      subscribe: {subscribe}");
        if grants.allow_responses {
            out.push_str("\n      allow_responses: true");
        }
        out.push_str("\n    } }\n");
    }
    out.push_str("  ]\n}\n");
    out
}

/// A secured installation's server settings.
#[derive(Debug, Clone)]
pub struct Secured {
    /// The credential files by user.
    pub creds: BTreeMap<String, PathBuf>,
    /// The `tls` and `authorization` blocks of the server configuration.
    pub block: String,
}

/// Makes (or reads back) every user's credential in `dir` and returns the server settings
/// granting them, with TLS from `tls` (certificate, key).
///
/// # Guarantees
/// Idempotent: keys already in `dir` are kept, so running it again changes no credential.
///
/// # Errors
/// An unwritable directory, an unreadable credential file.
pub fn secure(
    dir: &Path,
    tls: Option<(&Path, &Path)>,
    stages: &[StageName],
    tool_tenants: &[TenantName],
) -> anyhow::Result<Secured> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let users = users(stages, tool_tenants);
    let mut keys = BTreeMap::new();
    let mut creds = BTreeMap::new();
    for user in users.keys() {
        keys.insert(user.clone(), user_key(dir, user)?.public_key());
        creds.insert(user.clone(), creds_path(dir, user));
    }
    Ok(Secured {
        creds,
        block: security_block(tls, &users, &keys),
    })
}

/// Options of `neo nats-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsConfigArgs {
    /// Where the users' credentials are kept (one `{user}.nk` each, mode 0600).
    #[arg(long)]
    pub dir: PathBuf,
    /// The configuration file to write (default: `{dir}/nats.conf`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A stage served by an agent (one `agent-{stage}` user each).
    #[arg(long = "stage", required = true)]
    pub stages: Vec<String>,
    /// A tenant whose events a tooling user `tool-{tenant}` may read.
    #[arg(long = "tool-tenant")]
    pub tool_tenants: Vec<String>,
    /// The server certificate (PEM; with --tls-key): clients must use TLS.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The server certificate's key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where the server listens.
    #[arg(long, default_value = "127.0.0.1:4222")]
    pub listen: String,
    /// The JetStream store.
    #[arg(long)]
    pub store_dir: PathBuf,
    /// The server's pid file.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// The server's log file.
    #[arg(long)]
    pub log_file: Option<PathBuf>,
}

/// `neo nats-config`: writes the configuration and the credentials, and prints where.
///
/// # Errors
/// Bad stage or tenant names, unwritable files.
pub fn run(args: NatsConfigArgs) -> anyhow::Result<()> {
    let stages = args
        .stages
        .iter()
        .map(|s| StageName::new(s.as_str()).context("--stage"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tenants = args
        .tool_tenants
        .iter()
        .map(|t| TenantName::new(t.as_str()).context("--tool-tenant"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tls = args.tls_cert.as_deref().zip(args.tls_key.as_deref());
    let secured = secure(&args.dir, tls, &stages, &tenants)?;
    let mut text = format!(
        "# written by neo nats-config: TLS and one user per component (docs/security.md)\n\
         listen: {:?}\nmax_payload: 8MB\n",
        args.listen
    );
    if let Some(pid) = &args.pid_file {
        let _ = writeln!(text, "pid_file: {:?}", pid.display().to_string());
    }
    if let Some(log) = &args.log_file {
        let _ = writeln!(text, "log_file: {:?}", log.display().to_string());
    }
    let _ = writeln!(
        text,
        "jetstream {{\n  store_dir: {:?}\n  max_memory_store: 256MB\n  max_file_store: 4GB\n}}",
        args.store_dir.display().to_string()
    );
    text.push_str(&secured.block);
    let config = args
        .config
        .clone()
        .unwrap_or_else(|| args.dir.join("nats.conf"));
    crate::certs::write_secret(&config, &text)?;
    println!("config: {}", config.display());
    for (user, path) in &secured.creds {
        println!("{user}: {}", path.display());
    }
    Ok(())
}

/// Options of `neo nats-provision`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// A stage whose agent's durable consumer to create.
    #[arg(long = "stage", required = true)]
    pub stages: Vec<String>,
}

/// Creates the Runtime streams and, for each of `stages`, the agent's durable consumer on
/// `NEO_DESIRED` (agents may not create consumers).
///
/// # Guarantees
/// Idempotent: what exists is left as it is.
///
/// # Errors
/// When JetStream refuses (the connection must be allowed to create streams and consumers).
pub async fn provision(
    js: &async_nats::jetstream::Context,
    stages: &[StageName],
) -> anyhow::Result<()> {
    neo_runtime_agent::streams::ensure(js, neo_runtime_agent::streams::Retention::default())
        .await?;
    let stream = js
        .get_stream_no_info(subjects::DESIRED_STREAM)
        .await
        .context("the desired-state stream")?;
    for stage in stages {
        let config = neo_runtime_agent::agent::desired::durable(&AgentConfig::new(stage.clone()));
        let name = config.durable_name.clone().unwrap_or_default();
        stream
            .get_or_create_consumer(&name, config)
            .await
            .with_context(|| format!("creating consumer {name}"))?;
    }
    Ok(())
}

/// `neo nats-provision`.
///
/// # Errors
/// See [`provision`].
pub async fn run_provision(args: ProvisionArgs) -> anyhow::Result<()> {
    let stages = args
        .stages
        .iter()
        .map(|s| StageName::new(s.as_str()).context("--stage"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = args.nats.connect_once("neo-provision").await?;
    provision(&async_nats::jetstream::new(client.clone()), &stages).await?;
    client.flush().await.ok();
    println!(
        "provisioned the agents' consumers of {}",
        args.stages.join(", ")
    );
    Ok(())
}
