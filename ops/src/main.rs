//! `neo`: run the platform, use it through the gateway, and benchmark it.

mod memory;

use clap::{CommandFactory, Parser, Subcommand};
use neo_bench::{self as bench, BenchArgs};
use neo_cli::{self as cli, ClientCommand, GlobalArgs};
use neo_server::serve::{self, ServeArgs};
use neo_server::telemetry;

/// mimalloc: the platform allocates from many threads at once, where glibc's malloc contends.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Neo, the cloud-native app platform.
#[derive(Debug, Parser)]
#[command(name = "neo", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a platform process (entity hosts, NATS command intake, reactors, gRPC gateway).
    Serve(Box<ServeArgs>),
    /// Check the event log's hash chain, or export the log (reads JetStream directly).
    Audit {
        #[command(subcommand)]
        which: neo_server::audit::AuditCommand,
    },
    /// Replay a podgroup's recorded observations through the autoscaler under another scale
    /// policy and compare its decisions with those taken (reads JetStream directly).
    WhatIf(neo_server::whatif::WhatIfArgs),
    /// Run the runtime agent of one stage (process driver with a load balancer, or kube).
    Agent(Box<neo_server::agent::AgentArgs>),
    /// Make the local CA and the certificate the gateway and NATS serve TLS with.
    Certs {
        #[command(subcommand)]
        which: neo_server::certs::CertsCommand,
    },
    /// Generate the secrets store's key-encryption key, re-seal data keys under a new one, or
    /// rotate a tenant's data key (reads and writes JetStream directly).
    Keys {
        #[command(subcommand)]
        which: neo_server::keys::KeysCommand,
    },
    /// Write a nats-server configuration with TLS and one NATS user per component, and
    /// the users' credentials.
    NatsConfig(neo_server::nats_config::NatsConfigArgs),
    /// Create what restricted NATS users may not (the agents' durable consumers); as admin.
    NatsProvision(neo_server::nats_config::ProvisionArgs),
    /// Run build workers only (they take builds from the platform's work queue).
    BuildWorker(neo_server::build_service::BuildWorkerArgs),
    /// Assemble and push the image Neo itself runs from (deploy/: the platform on Kubernetes).
    Image {
        #[command(subcommand)]
        which: neo_server::platform_image::ImageCommand,
    },
    /// Run a benchmark and print its figures.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    #[command(flatten)]
    Client(ClientCommand),
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The event-sourced core: raw JetStream vs entity host vs NATS intake, rehydration,
    /// memory per live actor.
    Core(BenchArgs),
    /// The gRPC gateway: 64 concurrent clients against the in-process entity host.
    Gateway(bench::gateway::GatewayBenchArgs),
    /// The Build Service: 1-Click Publish of an example to a real registry (build and
    /// publish-to-image times).
    Build(bench::build::BuildBenchArgs),
    /// Replay: the event log read back by an ordered consumer and folded into entity states,
    /// against the same read alone.
    Replay(bench::replay::ReplayBenchArgs),
    /// The Runtime: publish and promote to the first 200 from the app, and log lines shipped
    /// by an agent and read through the gateway.
    Runtime(bench::runtime::RuntimeBenchArgs),
    /// Recovery: each fault (NATS restart, Postgres and registry outages, a killed replica)
    /// under a steady load; time to heal, and acknowledged commands lost (must be none).
    Recovery(bench::recovery::RecoveryBenchArgs),
    /// Idle cost: CPU per process kind and NATS messages/s with 10 and 100 apps doing nothing.
    Idle(bench::idle::IdleBenchArgs),
    /// The portal: the board of 300 apps on three stages, a page of logs out of a million lines.
    Portal(bench::portal::PortalBenchArgs),
    /// High availability: a three-node NATS cluster (R3, fsync always) against one server,
    /// and the event stream's leader killed under load (gap, nothing lost or doubled).
    Ha(bench::ha::HaBenchArgs),
    /// Scale: 1,000,000 apps over 10,000 tenants: creation rate, disk per event, memory of
    /// 200,000 live actors, cold activation from a snapshot and a 1,000-event tail.
    Scale(bench::scale::ScaleBenchArgs),
    /// Memory per live actor, measured in a fresh process (run by `neo bench core`).
    #[command(hide = true)]
    LiveActors(bench::core::LiveActorArgs),
    /// gRPC clients driving the gateway from a process of their own (run by
    /// `neo bench gateway`).
    #[command(hide = true)]
    GrpcClients(bench::gateway::clients::GrpcClientsArgs),
    /// Memory of N live actors of created apps, in a fresh process (run by `neo bench scale`).
    #[command(hide = true)]
    ScaleLive(bench::scale::ScaleLiveArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    memory::no_transparent_huge_pages();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = std::env::var("NEO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Logs on stderr; spans over OTLP when `neo serve` has an endpoint (flushed when dropped).
    let otlp_endpoint = match &cli.command {
        Command::Serve(args) => args.otlp_endpoint.clone(),
        _ => None,
    };
    let _telemetry = match runtime.block_on(async { telemetry::init(otlp_endpoint.as_deref()) }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(*args).await,
            Command::Audit { which } => {
                return match neo_server::audit::run(which).await {
                    Ok(true) => Ok(None),
                    Ok(false) => Ok(Some(std::process::ExitCode::FAILURE)),
                    Err(e) => Err(e),
                };
            }
            Command::WhatIf(args) => neo_server::whatif::run(args).await,
            Command::Agent(args) => neo_server::agent::run(*args).await,
            Command::BuildWorker(args) => neo_server::build_service::run_worker(args).await,
            Command::Image {
                which: neo_server::platform_image::ImageCommand::Platform(args),
            } => neo_server::platform_image::run(args)
                .await
                .map_err(anyhow::Error::from),
            Command::Certs { which } => neo_server::certs::run(which),
            Command::Keys { which } => neo_server::keys::run(which).await,
            Command::NatsConfig(args) => neo_server::nats_config::run(args),
            Command::NatsProvision(args) => neo_server::nats_config::run_provision(args).await,
            Command::Bench {
                which: Bench::Core(args),
            } => bench::core::run(args).await,
            Command::Bench {
                which: Bench::Gateway(args),
            } => bench::gateway::run(args).await,
            Command::Bench {
                which: Bench::Build(args),
            } => bench::build::run(args).await,
            Command::Bench {
                which: Bench::Replay(args),
            } => bench::replay::run(args).await,
            Command::Bench {
                which: Bench::Runtime(args),
            } => bench::runtime::run(args).await,
            Command::Bench {
                which: Bench::Recovery(args),
            } => bench::recovery::run(args).await,
            Command::Bench {
                which: Bench::Idle(args),
            } => bench::idle::run(args).await,
            Command::Bench {
                which: Bench::Portal(args),
            } => bench::portal::run(args).await,
            Command::Bench {
                which: Bench::Ha(args),
            } => bench::ha::run(args).await,
            Command::Bench {
                which: Bench::LiveActors(args),
            } => bench::core::live_actors(args).await,
            Command::Bench {
                which: Bench::GrpcClients(args),
            } => bench::gateway::clients::run(args).await,
            Command::Bench {
                which: Bench::Scale(args),
            } => bench::scale::run(args).await,
            Command::Bench {
                which: Bench::ScaleLive(args),
            } => bench::scale::scale_live(args).await,
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "neo", &mut std::io::stdout());
                Ok(())
            }
            Command::Client(command) => return Ok(Some(cli::run(cli.global, command).await)),
        }
        .map(|()| None)
    });
    match result {
        Ok(Some(code)) => code,
        Ok(None) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
