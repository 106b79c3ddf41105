//! `neo bench gateway`: commands through the gRPC gateway (64 concurrent clients over
//! loopback, distinct entities, in a child process) against the in-process entity host.
//!
//! Both paths run the same workload: one `CreateApp` per distinct app, host then gRPC back to
//! back in each of `--rounds` rounds; the figures are the round's with the median ratio (the
//! machine's speed drifts, so a ratio is only taken within a round). The gRPC clients run
//! in a process of their own ([`clients`], the hidden `neo bench grpc-clients`), so the server
//! process is charged only for serving; the CPU of each process per call is reported beside
//! the rates, to show where the time goes.

pub mod clients;

use std::sync::Arc;
use std::time::Duration;

use neo_actors::intake::{self, IntakeConfig};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_gateway::api::{self, identity_client::IdentityClient};
use neo_gateway::{Gateway, GatewayConfig};
use neo_protocol::{AppName, EntityRef, TenantName, pb};
use serde::Serialize;
use tonic::Request;

use self::clients::{Call, ClientFigures, GrpcClientsArgs};
use super::core::{in_parallel, share};
use super::procstat;
use super::stats::{percentile_ms, rate};
use neo_harness::NatsServer;

/// Options of `neo bench gateway`.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Distinct apps created on each path.
    #[arg(long, default_value_t = 20_000)]
    pub entities: usize,
    /// Concurrent gRPC clients (one HTTP/2 connection each) and host callers.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Also run the gRPC clients inside the bench process (the figure before they moved out).
    #[arg(long)]
    pub in_process: bool,
    /// Rounds of host then gRPC, back to back (`--entities` new apps on each path each
    /// round); the figures are those of the round with the median ratio.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
}

/// CPU time per call of each process, in µs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPerCall {
    /// The bench process: platform, gateway, intake, S3 (and the clients, in process).
    pub server: f64,
    /// nats-server.
    pub nats: f64,
    /// The clients' process (0 when they run in the bench process).
    pub clients: f64,
}

impl CpuPerCall {
    /// Every process's CPU per call.
    pub fn total(&self) -> f64 {
        self.server + self.nats + self.clients
    }
}

/// The figures `neo bench gateway` prints.
#[derive(Debug, Serialize)]
pub struct GatewayFigures {
    /// Commands per second through gRPC → gateway → platform, clients in another process.
    pub grpc_commands_per_s: f64,
    /// Median gRPC command latency.
    pub grpc_p50_ms: f64,
    /// 99th percentile gRPC command latency.
    pub grpc_p99_ms: f64,
    /// Authenticated no-op calls per second over the same clients: the gRPC stack alone.
    pub grpc_noop_per_s: f64,
    /// The same workload on the in-process entity host.
    pub host_commands_per_s: f64,
    /// `grpc_commands_per_s / host_commands_per_s` (target ≥ 0.5), the median round's.
    pub grpc_to_host_ratio: f64,
    /// Every round's ratio, in order (the machine's speed drifts, so each is taken within
    /// its round).
    pub grpc_to_host_ratios: Vec<f64>,
    /// Commands per second with the clients in the bench process (`--in-process` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_in_process_commands_per_s: Option<f64>,
    /// CPU per command on the host path.
    pub host_cpu_us: CpuPerCall,
    /// CPU per gRPC command.
    pub grpc_cpu_us: CpuPerCall,
    /// CPU per gRPC no-op.
    pub noop_cpu_us: CpuPerCall,
    /// The ratio a gateway costing nothing beyond the gRPC stack would reach on this machine:
    /// host CPU per command ÷ (host CPU + no-op CPU per call), every process counted (the
    /// clients share the cores). `grpc_to_host_ratio` cannot pass it while the run is
    /// CPU-bound.
    pub grpc_to_host_ceiling: f64,
    /// Apps per path.
    pub entities: usize,
    /// Concurrency.
    pub concurrency: usize,
}

fn create_app() -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: "bench".into(),
        })),
    }
}

async fn host_path(
    platform: &Arc<Platform>,
    args: &GatewayBenchArgs,
    prefix: &str,
) -> anyhow::Result<f64> {
    let tenant = TenantName::new("bench")?;
    let (c, n) = (args.concurrency, args.entities);
    let elapsed = in_parallel(c, |w| {
        let (platform, tenant, prefix) = (platform.clone(), tenant.clone(), prefix.to_owned());
        async move {
            for i in share(w, c, n) {
                let e = EntityRef::app(&tenant, &AppName::new(format!("{prefix}{i}"))?);
                platform
                    .apps
                    .execute(&e, CommandMeta::new("bench"), create_app())
                    .await?;
            }
            Ok(())
        }
    })
    .await?;
    Ok(rate(n, elapsed))
}

/// The CPU time of this process (platform, gateway, intake, S3) and of its nats-server.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    server: Duration,
    nats: Duration,
}

impl Cpu {
    fn now() -> Self {
        Self {
            server: procstat::own_cpu(),
            nats: nats_cpu(),
        }
    }

    /// µs per call of each process since `before`, with the clients' figure.
    fn per_call(&self, before: &Cpu, calls: usize, clients: f64) -> CpuPerCall {
        let round = |us: f64| (us * 10.0).round() / 10.0;
        CpuPerCall {
            server: round(clients::us_per_call(
                self.server.saturating_sub(before.server),
                calls,
            )),
            nats: round(clients::us_per_call(
                self.nats.saturating_sub(before.nats),
                calls,
            )),
            clients: round(clients),
        }
    }
}

/// The CPU of the nats-server children of this process (the bench starts one).
fn nats_cpu() -> Duration {
    let me = std::process::id();
    procstat::processes()
        .iter()
        .filter(|p| p.comm == "nats-server" && p.ppid == me)
        .map(procstat::ProcStat::cpu)
        .sum()
}

/// Runs `call` from a child process (or from this one, `in_process`) and measures the CPU
/// every process spent on it.
async fn phase(
    args: &GatewayBenchArgs,
    endpoint: &str,
    token: &str,
    call: Call,
    prefix: &str,
    in_process: bool,
) -> anyhow::Result<(ClientFigures, CpuPerCall)> {
    let clients_args = GrpcClientsArgs {
        endpoint: endpoint.to_owned(),
        token: token.to_owned(),
        entities: args.entities,
        concurrency: args.concurrency,
        call,
        prefix: prefix.to_owned(),
    };
    let before = Cpu::now();
    let figures = if in_process {
        let (calls_per_s, mut latencies) = clients::drive(&clients_args).await?;
        ClientFigures {
            calls_per_s,
            p50_ms: percentile_ms(&mut latencies, 50.0),
            p99_ms: percentile_ms(&mut latencies, 99.0),
            client_cpu_us_per_call: 0.0,
        }
    } else {
        clients::in_child(&clients_args).await?
    };
    let cpu = Cpu::now().per_call(&before, args.entities, figures.client_cpu_us_per_call);
    Ok((figures, cpu))
}

fn authorised<T>(message: T, bearer: Bearer) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", bearer);
    request
}

type Bearer = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// Bootstraps an admin, creates tenant `bench` and its developer `dev`, and returns a token of
/// `dev` in `bench`: the calls are made as a developer of the tenant, as a real client would.
async fn developer_token(nats: &async_nats::Client, endpoint: &str) -> anyhow::Result<String> {
    let endpoint = endpoint.to_owned();
    neo_gateway::identity::bootstrap_admin(nats, "admin", "bench-password").await?;
    let token = IdentityClient::connect(endpoint.clone())
        .await?
        .login(api::LoginRequest {
            user: "admin".into(),
            password: "bench-password".into(),
            tenant: String::new(),
        })
        .await?
        .into_inner()
        .token;
    let admin = format!("Bearer {token}").parse::<Bearer>()?;
    neo_gateway::api::tenants_client::TenantsClient::connect(endpoint.clone())
        .await?
        .create_tenant(authorised(
            api::CreateTenantRequest {
                name: "bench".into(),
                ..Default::default()
            },
            admin.clone(),
        ))
        .await?;
    IdentityClient::connect(endpoint.clone())
        .await?
        .create_user(authorised(
            api::CreateUserRequest {
                user: "dev".into(),
                password: "bench-password".into(),
            },
            admin.clone(),
        ))
        .await?;
    neo_gateway::api::tenants_client::TenantsClient::connect(endpoint.clone())
        .await?
        .set_member(authorised(
            api::SetMemberRequest {
                tenant: "bench".into(),
                user: "dev".into(),
                role: pb::Role::Developer as i32,
            },
            admin,
        ))
        .await?;
    let token = IdentityClient::connect(endpoint.clone())
        .await?
        .login(api::LoginRequest {
            user: "dev".into(),
            password: "bench-password".into(),
            tenant: "bench".into(),
        })
        .await?
        .into_inner()
        .token;
    Ok(token)
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When a server cannot start or a phase fails.
pub async fn run(args: GatewayBenchArgs) -> anyhow::Result<()> {
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);
    let platform = Platform::start(store, HostConfig::default()).await?;
    let _intake = intake::serve(client.clone(), platform.clone(), IntakeConfig::default()).await?;
    let gateway_client = async_nats::connect(nats.url()).await?;
    let key = uuid::Uuid::new_v4().as_bytes().repeat(2);
    // As `neo serve` runs it: the gateway dispatches to the platform of its own process.
    let local = neo_client::PlatformClient::new(platform.clone());
    let s3_dir = tempfile::tempdir()?;
    let s3 = neo_revisions::EmbeddedS3::start(s3_dir.path(), 0).await?;
    let backends = neo_gateway::Backends {
        revisions: neo_revisions::RevisionStore::connect(&s3.config("neo-revisions")).await?,
        consumers: None,
        secrets: None,
    };
    let gateway = Gateway::start_with(
        gateway_client.clone(),
        GatewayConfig::loopback(key),
        local,
        backends,
    )
    .await?;
    let endpoint = gateway.endpoint();
    let token = developer_token(&gateway_client, &endpoint).await?;

    let say = |what: String| {
        if !args.json {
            eprintln!("… {what}");
        }
    };
    let mut rounds = Vec::with_capacity(args.rounds);
    for r in 1..=args.rounds.max(1) {
        say(format!(
            "round {r}: host then gRPC, {} apps each, concurrency {}, the gRPC clients in a \
             child process",
            args.entities, args.concurrency
        ));
        let before = Cpu::now();
        let host = host_path(&platform, &args, &format!("h{r}x")).await?;
        let host_cpu = Cpu::now().per_call(&before, args.entities, 0.0);
        let (create, grpc_cpu) = phase(
            &args,
            &endpoint,
            &token,
            Call::Create,
            &format!("g{r}x"),
            false,
        )
        .await?;
        rounds.push((create.calls_per_s / host, host, host_cpu, create, grpc_cpu));
    }
    let grpc_to_host_ratios: Vec<f64> = rounds.iter().map(|r| r.0).collect();
    rounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (grpc_to_host_ratio, host_commands_per_s, host_cpu_us, create, grpc_cpu_us) =
        rounds.swap_remove(rounds.len() / 2);
    say(format!(
        "gRPC no-op: {} calls, {} clients in a child process",
        args.entities, args.concurrency
    ));
    let (noop, noop_cpu_us) = phase(&args, &endpoint, &token, Call::Noop, "", false).await?;
    let grpc_in_process_commands_per_s = if args.in_process {
        say(format!(
            "gRPC: {} apps, {} clients in this process",
            args.entities, args.concurrency
        ));
        let (figures, _) = phase(&args, &endpoint, &token, Call::Create, "i", true).await?;
        Some(figures.calls_per_s)
    } else {
        None
    };
    let figures = GatewayFigures {
        grpc_commands_per_s: create.calls_per_s,
        grpc_p50_ms: create.p50_ms,
        grpc_p99_ms: create.p99_ms,
        grpc_noop_per_s: noop.calls_per_s,
        host_commands_per_s,
        grpc_to_host_ratio,
        grpc_to_host_ratios,
        grpc_in_process_commands_per_s,
        host_cpu_us,
        grpc_cpu_us,
        noop_cpu_us,
        grpc_to_host_ceiling: host_cpu_us.total() / (host_cpu_us.total() + noop_cpu_us.total()),
        entities: args.entities,
        concurrency: args.concurrency,
    };
    gateway.shutdown().await;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

fn print_table(f: &GatewayFigures) {
    println!("{:<31} {:>10}  target", "figure", "value");
    let row = |name: &str, value: f64| println!("{name:<31} {value:>10.0}");
    row("grpc_commands_per_s", f.grpc_commands_per_s);
    println!("{:<31} {:>10.2}", "grpc_p50_ms", f.grpc_p50_ms);
    println!("{:<31} {:>10.2}", "grpc_p99_ms", f.grpc_p99_ms);
    row("grpc_noop_per_s", f.grpc_noop_per_s);
    row("host_commands_per_s", f.host_commands_per_s);
    println!(
        "{:<31} {:>10.2}  ≥ 0.50 (rounds: {})",
        "grpc_to_host_ratio",
        f.grpc_to_host_ratio,
        f.grpc_to_host_ratios
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "{:<31} {:>10.2}  (a gateway costing nothing beyond the gRPC stack)",
        "grpc_to_host_ceiling", f.grpc_to_host_ceiling
    );
    if let Some(rate) = f.grpc_in_process_commands_per_s {
        row("grpc_in_process_commands_per_s", rate);
    }
    println!("\nCPU per call, µs      server       nats    clients");
    for (name, cpu) in [
        ("host command", f.host_cpu_us),
        ("gRPC command", f.grpc_cpu_us),
        ("gRPC no-op", f.noop_cpu_us),
    ] {
        println!(
            "{name:<16} {:>11.1} {:>10.1} {:>10.1}",
            cpu.server, cpu.nats, cpu.clients
        );
    }
}
