//! `neo nats-config`: the nats-server configuration of a secured installation (TLS, and one
//! NATS user per component with only the subjects it needs) and each user's credential; and
//! `neo nats-provision`: what restricted users may not create themselves (the agents' durable
//! consumers, the tooling accounts' event copies). docs/security.md explains every grant.
//!
//! Users: `platform`, `gateway`, `build-worker`, `agent-{stage}` per stage and `admin` for
//! operator tools, in the account `NEO`; `tool-{tenant}` per tooling tenant, each in its own
//! account `TOOL_{tenant}` (see [`accounts`]). Each authenticates with an nkey: the
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
/// (`neo.stagecmd.{stage}.>`), its secrets requests (`neo.secrets.{stage}.>`) and its stage's
/// leases (`$KV.NEO_AGENT_LEASES.{stage}` and its groups). It may not create consumers or
/// streams, read the event log, or write into it or another stage's lease.
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
    let leases = subjects::AGENT_LEASES_BUCKET;
    publish_allow.extend([
        format!("$KV.{leases}.{stage}"),
        format!("$KV.{leases}.{stage}.*"),
        format!("$JS.API.STREAM.INFO.KV_{leases}"),
        format!("$JS.API.STREAM.MSG.GET.KV_{leases}"),
        format!("$JS.API.DIRECT.GET.KV_{leases}.>"),
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
            "$JS.API.STREAM.CREATE.>",
            "$JS.API.STREAM.UPDATE.>",
        ]),
        subscribe_allow: vec![inbox],
        subscribe_deny: strings(&["neo.>", "$JS.>", "$KV.>"]),
        allow_responses: false,
    }
}

/// A tooling user of `tenant`, in the tenant's own account (see [`accounts`]): read-only
/// consumers on the tenant's copy of its events, filtered to the tenant, delivered within its
/// account; never the imports its copy is sourced through.
pub fn tool(tenant: &TenantName) -> Grants {
    let user = format!("tool-{tenant}");
    let inbox = format!("{}.>", inbox_prefix(&user));
    let copy = subjects::TENANT_EVENTS_STREAM;
    let events = subjects::tenant_events(tenant);
    Grants {
        publish_allow: vec![
            "$JS.API.INFO".into(),
            format!("$JS.API.STREAM.INFO.{copy}"),
            format!("$JS.API.STREAM.MSG.GET.{copy}"),
            format!("$JS.API.CONSUMER.CREATE.{copy}.*.{events}"),
            format!("$JS.API.CONSUMER.INFO.{copy}.>"),
            format!("$JS.API.CONSUMER.DELETE.{copy}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{copy}.>"),
            format!("$JS.ACK.{copy}.>"),
            format!("$JS.FC.{copy}.>"),
        ],
        publish_deny: vec![
            format!("{PLATFORM_API_PREFIX}.>"),
            format!("$JS.FC.{}.>", subjects::EVENTS_STREAM),
            "neo.>".into(),
            "$KV.>".into(),
        ],
        subscribe_allow: vec![inbox],
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

/// The account of the platform's components and the operator.
pub const PLATFORM_ACCOUNT: &str = "NEO";
/// Where a tooling account reaches the platform account's consumer API: its copy's sourcing,
/// and nothing its users may publish to.
pub const PLATFORM_API_PREFIX: &str = "$JS.NEO.API";

/// `TOOL_{tenant}`: the account of `tenant`'s tooling users.
pub fn tool_account(tenant: &TenantName) -> String {
    format!("TOOL_{tenant}")
}

/// `$JS.TOOL_{tenant}.API`: where the platform account's operator reaches a tooling account's
/// JetStream (to keep its copy, [`provision`]).
pub fn tool_api_prefix(tenant: &TenantName) -> String {
    format!("$JS.{}.API", tool_account(tenant))
}

/// One NATS account: its users, its JetStream limits, what it exports and imports (each a
/// line of the server configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    /// The account's name.
    pub name: String,
    /// Its `jetstream` setting.
    pub jetstream: String,
    /// Its users and their grants.
    pub users: BTreeMap<String, Grants>,
    /// `{ service: … }` or `{ stream: … }` exports.
    pub exports: Vec<String>,
    /// `{ service: … }` or `{ stream: … }` imports.
    pub imports: Vec<String>,
}

/// The accounts of an installation serving `stages`, with tooling accounts for
/// `tool_tenants`.
///
/// Every component and the operator share [`PLATFORM_ACCOUNT`]. Each tooling tenant has its own
/// account holding one stream, [`subjects::TENANT_EVENTS_STREAM`], sourced from `NEO_EVENTS`
/// filtered to the tenant: the platform exports to it only the consumer create pinned to that
/// filter, the deliveries under [`subjects::tool_delivery`] and their flow control, which the
/// server's sourcing uses and the tool's users may not publish to. A consumer a tool creates
/// delivers within its own account, so it cannot put its events anywhere in the platform's.
pub fn accounts(stages: &[StageName], tool_tenants: &[TenantName]) -> Vec<Account> {
    let mut platform = Account {
        name: PLATFORM_ACCOUNT.into(),
        jetstream: "enabled".into(),
        users: BTreeMap::from([
            ("platform".to_owned(), self::platform()),
            ("gateway".to_owned(), gateway()),
            ("build-worker".to_owned(), build_worker()),
            ("admin".to_owned(), admin()),
        ]),
        ..Account::default()
    };
    for stage in stages {
        platform
            .users
            .insert(format!("agent-{stage}"), agent(stage));
    }
    let events = subjects::EVENTS_STREAM;
    // Flow control of every copy's source consumers: one subject, one export to every tooling
    // account.
    let flow_control = format!("$JS.FC.{events}.>");
    if !tool_tenants.is_empty() {
        let names: Vec<String> = tool_tenants.iter().map(tool_account).collect();
        platform.exports.push(format!(
            "{{ service: {flow_control:?}, accounts: {names:?} }}"
        ));
    }
    let mut tools = Vec::new();
    for tenant in tool_tenants {
        let name = tool_account(tenant);
        let create = format!(
            "$JS.API.CONSUMER.CREATE.{events}.*.{}",
            subjects::tenant_events(tenant)
        );
        let delivery = format!("{}.>", subjects::tool_delivery(tenant));
        platform.exports.extend([
            format!("{{ service: {create:?}, accounts: [{name:?}] }}"),
            format!("{{ stream: {delivery:?}, accounts: [{name:?}] }}"),
        ]);
        platform.imports.push(format!(
            "{{ service: {{ account: {name:?}, subject: \"$JS.API.>\" }}, to: {:?} }}",
            format!("{}.>", tool_api_prefix(tenant))
        ));
        let platform_name = PLATFORM_ACCOUNT;
        tools.push(Account {
            users: BTreeMap::from([(format!("tool-{tenant}"), tool(tenant))]),
            jetstream: "{ max_file: 1G, max_mem: 64M }".into(),
            exports: vec![format!(
                "{{ service: \"$JS.API.>\", accounts: [{platform_name:?}] }}"
            )],
            imports: vec![
                format!(
                    "{{ service: {{ account: {platform_name:?}, subject: {create:?} }}, to: {:?} }}",
                    create.replacen("$JS.API", PLATFORM_API_PREFIX, 1)
                ),
                format!("{{ stream: {{ account: {platform_name:?}, subject: {delivery:?} }} }}"),
                format!(
                    "{{ service: {{ account: {platform_name:?}, subject: {flow_control:?} }} }}"
                ),
            ],
            name,
        });
    }
    let mut all = vec![platform];
    all.extend(tools);
    all
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

/// The `tls { … }` and `accounts { … }` blocks for `accounts` (public keys from `keys`).
fn security_block(
    tls: Option<(&Path, &Path)>,
    accounts: &[Account],
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
    out.push_str("accounts {\n");
    for account in accounts {
        let _ = writeln!(out, "  {:?}: {{", account.name);
        let _ = writeln!(out, "    jetstream: {}", account.jetstream);
        out.push_str("    users = [\n");
        for (user, grants) in &account.users {
            let _ = writeln!(out, "      # {user}");
            let _ = write!(out, "      {{ nkey: {:?}, permissions: {{", keys[user]);
            let publish = allow_deny(&grants.publish_allow, &grants.publish_deny);
            let subscribe = allow_deny(&grants.subscribe_allow, &grants.subscribe_deny);
            let _ = write!(out, "\n        publish: {publish}");
            let _ = write!(out, "\n        subscribe: {subscribe}");
            if grants.allow_responses {
                out.push_str("\n        allow_responses: true");
            }
            out.push_str("\n      } }\n");
        }
        out.push_str("    ]\n");
        for (key, lines) in [("exports", &account.exports), ("imports", &account.imports)] {
            if !lines.is_empty() {
                let _ = writeln!(out, "    {key} = [");
                for line in lines {
                    let _ = writeln!(out, "      {line}");
                }
                out.push_str("    ]\n");
            }
        }
        out.push_str("  }\n");
    }
    out.push_str("}\n");
    out
}

/// A secured installation's server settings.
#[derive(Debug, Clone)]
pub struct Secured {
    /// The credential files by user.
    pub creds: BTreeMap<String, PathBuf>,
    /// The `tls` and `accounts` blocks of the server configuration.
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
    let accounts = accounts(stages, tool_tenants);
    let mut keys = BTreeMap::new();
    let mut creds = BTreeMap::new();
    for user in accounts.iter().flat_map(|account| account.users.keys()) {
        keys.insert(user.clone(), user_key(dir, user)?.public_key());
        creds.insert(user.clone(), creds_path(dir, user));
    }
    Ok(Secured {
        creds,
        block: security_block(tls, &accounts, &keys),
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
    /// How often JetStream writes to disk: `always` (every write before it is acknowledged;
    /// the default in a cluster) or a duration such as `10s` (default on a single server: the
    /// server's, 2m, so a power failure can lose up to that much acknowledged data).
    #[arg(long, value_parser = parse_sync_interval)]
    pub sync_interval: Option<String>,
    /// Cluster: this node's name (unique in the cluster).
    #[arg(long, requires = "cluster_listen")]
    pub server_name: Option<String>,
    /// Cluster: where this node takes its peers' routes (`host:port`). Routes speak TLS with
    /// the server certificate both ways (`--tls-ca` verifies the peer's) and authenticate
    /// with the cluster's password (`{dir}/cluster.password`, made once and kept).
    #[arg(long, requires_all = ["server_name", "tls_ca", "tls_cert"])]
    pub cluster_listen: Option<String>,
    /// Cluster: a node's route address (`host:port`; repeat for each, this node's own too).
    #[arg(long = "route", requires = "cluster_listen")]
    pub routes: Vec<String>,
    /// The CA of the cluster's certificates (routes verify their peers with it).
    #[arg(long)]
    pub tls_ca: Option<PathBuf>,
}

/// The name routes authenticate as.
const ROUTE_USER: &str = "route";

/// The `server_name` and `cluster { … }` settings of a cluster node.
fn cluster_block(args: &NatsConfigArgs) -> anyhow::Result<String> {
    let (Some(listen), Some(name)) = (&args.cluster_listen, &args.server_name) else {
        return Ok(String::new());
    };
    let password_file = args.dir.join("cluster.password");
    if !password_file.exists() {
        // 122 random bits.
        let password = uuid::Uuid::new_v4().simple().to_string();
        crate::certs::write_secret(&password_file, &password)?;
    }
    let password = std::fs::read_to_string(&password_file)
        .with_context(|| format!("reading {}", password_file.display()))?;
    let password = password.trim();
    let routes: Vec<String> = args
        .routes
        .iter()
        .map(|route| {
            format!(
                "{:?}",
                format!("nats-route://{ROUTE_USER}:{password}@{route}")
            )
        })
        .collect();
    let path = |p: &Option<PathBuf>| p.as_deref().map(|p| p.display().to_string());
    // SIGUSR2 (lame duck mode, what ops/upgrade sends): the node hands its streams'
    // leadership to its peers, moves its clients away over 30 s (the least nats-server allows) and exits.
    Ok(format!(
        "server_name: {name:?}\nlame_duck_duration: \"30s\"\nlame_duck_grace_period: \"2s\"\n\
         cluster {{\n  name: neo\n  listen: {listen:?}\n  \
         authorization {{ user: {ROUTE_USER:?}, password: {password:?} }}\n  \
         routes: [{}]\n  tls {{\n    cert_file: {:?}\n    key_file: {:?}\n    \
         ca_file: {:?}\n    verify: true\n    timeout: 5\n  }}\n}}\n",
        routes.join(", "),
        path(&args.tls_cert).unwrap_or_default(),
        path(&args.tls_key).unwrap_or_default(),
        path(&args.tls_ca).unwrap_or_default(),
    ))
}

/// `always`, or a duration nats-server understands (`500ms`, `10s`, `2m`).
fn parse_sync_interval(value: &str) -> Result<String, String> {
    let duration = value
        .strip_suffix("ms")
        .or_else(|| value.strip_suffix('s'))
        .or_else(|| value.strip_suffix('m'))
        .or_else(|| value.strip_suffix('h'));
    match duration {
        _ if value == "always" => Ok(value.to_owned()),
        Some(number) if !number.is_empty() && number.chars().all(|c| c.is_ascii_digit()) => {
            Ok(value.to_owned())
        }
        _ => Err(format!(
            "`{value}`: `always` or a duration such as 500ms, 10s, 2m"
        )),
    }
}

/// `neo nats-config`: writes the configuration and the credentials, and prints where.
///
/// # Errors
/// Bad stage or tenant names, unwritable files.
pub fn run(args: NatsConfigArgs) -> anyhow::Result<()> {
    let (stages, tenants) = names(&args.stages, &args.tool_tenants)?;
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
    let cluster = cluster_block(&args)?;
    let sync = args
        .sync_interval
        .clone()
        .or_else(|| (!cluster.is_empty()).then(|| "always".to_owned()))
        .map(|sync| format!("  sync_interval: {sync}\n"))
        .unwrap_or_default();
    text.push_str(&cluster);
    let _ = writeln!(
        text,
        "jetstream {{\n  store_dir: {:?}\n  max_memory_store: 256MB\n  max_file_store: 4GB\n{sync}}}",
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

/// The `--stage` and `--tool-tenant` values as names.
fn names(
    stages: &[String],
    tool_tenants: &[String],
) -> anyhow::Result<(Vec<StageName>, Vec<TenantName>)> {
    let stages = stages
        .iter()
        .map(|s| StageName::new(s.as_str()).context("--stage"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tenants = tool_tenants
        .iter()
        .map(|t| TenantName::new(t.as_str()).context("--tool-tenant"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((stages, tenants))
}

/// Options of `neo nats-provision`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub nats: NatsArgs,
    /// A stage whose agent's durable consumer to create.
    #[arg(long = "stage", required = true)]
    pub stages: Vec<String>,
    /// A tenant whose tooling account's copy of its events to keep (as configured with
    /// `neo nats-config --tool-tenant`).
    #[arg(long = "tool-tenant")]
    pub tool_tenants: Vec<String>,
    /// On a cluster, then wait (up to this many seconds) until every replica of every stream
    /// is current: a node just restarted has caught up (what a rolling upgrade waits for
    /// before restarting the next).
    #[arg(long, value_name = "SECONDS")]
    pub wait_current: Option<u64>,
}

/// Waits until every stream's replicas are current (no lag, none offline), up to `within`.
///
/// # Errors
/// When they are not by then (naming a stream that lags), or JetStream does not answer.
pub async fn wait_current(
    js: &async_nats::jetstream::Context,
    within: std::time::Duration,
) -> anyhow::Result<()> {
    use futures::TryStreamExt as _;
    let deadline = std::time::Instant::now() + within;
    loop {
        let infos: Vec<async_nats::jetstream::stream::Info> = js
            .streams()
            .try_collect()
            .await
            .context("listing the streams")?;
        let lagging = infos.iter().find_map(|info| {
            let cluster = info.cluster.as_ref()?;
            let behind = cluster.leader.is_none()
                || cluster
                    .replicas
                    .iter()
                    .any(|r| !r.current || r.offline || r.lag.unwrap_or(0) > 0);
            behind.then(|| info.config.name.clone())
        });
        let Some(stream) = lagging else {
            return Ok(());
        };
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "stream {stream} still has a replica catching up (or no leader) after {}s",
            within.as_secs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Creates the Runtime streams and the agents' leases bucket; for each of `stages`, the
/// agent's durable consumer on `NEO_DESIRED` (agents may not create consumers); and for each
/// of `tool_tenants`, the copy of its events in its tooling account (see [`accounts`]), which
/// tools may not create.
///
/// # Guarantees
/// Idempotent: what exists is left as it is.
///
/// # Errors
/// When JetStream refuses (the connection must be the operator's: allowed to create streams
/// and consumers, and to reach the tooling accounts).
pub async fn provision(
    js: &async_nats::jetstream::Context,
    stages: &[StageName],
    tool_tenants: &[TenantName],
) -> anyhow::Result<()> {
    neo_runtime_agent::streams::ensure(js, neo_runtime_agent::streams::Retention::default())
        .await?;
    neo_client::lease::open(js)
        .await
        .context("the agents' leases bucket")?;
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
    for tenant in tool_tenants {
        let tool = async_nats::jetstream::with_prefix(js.client(), &tool_api_prefix(tenant));
        neo_client::streams::ensure_stream(&tool, tenant_copy(tenant))
            .await
            .with_context(|| {
                format!(
                    "creating {} in account {}",
                    subjects::TENANT_EVENTS_STREAM,
                    tool_account(tenant)
                )
            })?;
    }
    Ok(())
}

/// The tooling account's copy of `tenant`'s events: sourced from `NEO_EVENTS` through the
/// platform account's exports, filtered to the tenant.
fn tenant_copy(tenant: &TenantName) -> async_nats::jetstream::stream::Config {
    use async_nats::jetstream::stream::{Config, External, Source, StorageType};
    Config {
        name: subjects::TENANT_EVENTS_STREAM.into(),
        description: Some(format!("tenant {tenant}'s events, sourced from NEO_EVENTS")),
        storage: StorageType::File,
        sources: Some(vec![Source {
            name: subjects::EVENTS_STREAM.into(),
            filter_subject: Some(subjects::tenant_events(tenant)),
            external: Some(External {
                api_prefix: PLATFORM_API_PREFIX.into(),
                delivery_prefix: Some(subjects::tool_delivery(tenant)),
            }),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// `neo nats-provision`.
///
/// # Errors
/// See [`provision`].
pub async fn run_provision(args: ProvisionArgs) -> anyhow::Result<()> {
    let (stages, tenants) = names(&args.stages, &args.tool_tenants)?;
    let client = args.nats.connect_once("neo-provision").await?;
    let js = async_nats::jetstream::new(client.clone());
    provision(&js, &stages, &tenants).await?;
    if let Some(seconds) = args.wait_current {
        wait_current(&js, std::time::Duration::from_secs(seconds)).await?;
    }
    client.flush().await.ok();
    println!(
        "provisioned the agents' consumers of {}{}",
        args.stages.join(", "),
        if tenants.is_empty() {
            String::new()
        } else {
            format!(
                " and the event copies of tooling tenants {}",
                args.tool_tenants.join(", ")
            )
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_interval_is_always_or_a_whole_duration() {
        for ok in ["always", "500ms", "10s", "2m", "1h"] {
            assert_eq!(parse_sync_interval(ok).as_deref(), Ok(ok));
        }
        for bad in ["", "sometimes", "10", "s", "-1s", "1.5s", "10d"] {
            assert!(parse_sync_interval(bad).is_err(), "{bad}");
        }
    }
}
