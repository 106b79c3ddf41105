//! `neo bench gateway`: commands through the gRPC gateway (64 concurrent clients over
//! loopback, distinct entities) against the in-process entity host, in one run.
//!
//! Both paths run the same workload: one `CreateApp` per distinct app.

use std::sync::Arc;
use std::time::{Duration, Instant};

use neo_actors::intake::{self, IntakeConfig};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_gateway::api::{self, apps_client::AppsClient, identity_client::IdentityClient};
use neo_gateway::{Gateway, GatewayConfig};
use neo_protocol::{AppName, EntityRef, TenantName, pb};
use serde::Serialize;
use tonic::Request;
use tonic::transport::Channel;

use super::core::{in_parallel, share};
use super::stats::{percentile_ms, rate};
use crate::servers::NatsServer;

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
}

/// The figures `neo bench gateway` prints.
#[derive(Debug, Serialize)]
pub struct GatewayFigures {
    /// Commands per second through gRPC → gateway → NATS → platform.
    pub grpc_commands_per_s: f64,
    /// Median gRPC command latency.
    pub grpc_p50_ms: f64,
    /// 99th percentile gRPC command latency.
    pub grpc_p99_ms: f64,
    /// Authenticated no-op calls per second over the same clients: the gRPC stack alone.
    pub grpc_noop_per_s: f64,
    /// The same workload on the in-process entity host.
    pub host_commands_per_s: f64,
    /// `grpc_commands_per_s / host_commands_per_s` (target ≥ 0.5).
    pub grpc_to_host_ratio: f64,
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

async fn host_path(platform: &Arc<Platform>, args: &GatewayBenchArgs) -> anyhow::Result<f64> {
    let tenant = TenantName::new("bench")?;
    let (c, n) = (args.concurrency, args.entities);
    let elapsed = in_parallel(c, |w| {
        let (platform, tenant) = (platform.clone(), tenant.clone());
        async move {
            for i in share(w, c, n) {
                let e = EntityRef::app(&tenant, &AppName::new(format!("h{i}"))?);
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

type Bearer = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

/// Makes `args.entities` calls over `args.concurrency` connections (one HTTP/2 connection
/// each); call `i` is `call(channel, i, bearer)`. Returns the rate and each call's latency.
async fn drive<F, Fut>(
    endpoint: &str,
    token: &str,
    args: &GatewayBenchArgs,
    call: F,
) -> anyhow::Result<(f64, Vec<Duration>)>
where
    F: Fn(Channel, usize, Bearer) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let c = args.concurrency;
    let mut channels = Vec::with_capacity(c);
    for _ in 0..c {
        channels.push(Channel::from_shared(endpoint.to_owned())?.connect().await?);
    }
    let bearer: Bearer = format!("Bearer {token}").parse()?;
    let start = Instant::now();
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(w, channel)| {
            let (bearer, n, call) = (bearer.clone(), args.entities, call.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (w..n).step_by(c) {
                    let t = Instant::now();
                    call(channel.clone(), i, bearer.clone()).await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(args.entities);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok((rate(args.entities, start.elapsed()), all))
}

fn authorised<T>(message: T, bearer: Bearer) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", bearer);
    request
}

/// One `CreateApp` per distinct app.
async fn grpc_path(
    endpoint: &str,
    token: &str,
    args: &GatewayBenchArgs,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    drive(endpoint, token, args, |channel, i, bearer| async move {
        let request = api::CreateAppRequest {
            tenant: "bench".into(),
            app: format!("g{i}"),
            description: "bench".into(),
        };
        AppsClient::new(channel)
            .create_app(authorised(request, bearer))
            .await?;
        Ok(())
    })
    .await
}

/// Authenticated no-op calls (`Identity.WhoAmI`) per second: the cost of the gRPC stack and
/// token check alone, to read the command figure against.
async fn grpc_noop(endpoint: &str, token: &str, args: &GatewayBenchArgs) -> anyhow::Result<f64> {
    let (rate, _) = drive(endpoint, token, args, |channel, _, bearer| async move {
        IdentityClient::new(channel)
            .who_am_i(authorised(api::WhoAmIRequest {}, bearer))
            .await?;
        Ok(())
    })
    .await?;
    Ok(rate)
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
    let local = Arc::new(crate::local::LocalDispatch(platform.clone()));
    let s3_dir = tempfile::tempdir()?;
    let s3 = neo_storage::EmbeddedS3::start(s3_dir.path(), 0).await?;
    let backends = neo_gateway::Backends {
        revisions: neo_storage::RevisionStore::connect(&s3.config("neo-revisions")).await?,
        consumers: None,
        secrets: None,
    };
    let gateway = Gateway::start_with(
        gateway_client.clone(),
        GatewayConfig::local(key),
        local,
        backends,
    )
    .await?;
    neo_gateway::identity::bootstrap_admin(&gateway_client, "admin", "bench-password").await?;
    let endpoint = gateway.endpoint();
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
    let mut create = Request::new(api::CreateTenantRequest {
        name: "bench".into(),
        ..Default::default()
    });
    create
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    neo_gateway::api::tenants_client::TenantsClient::connect(endpoint.clone())
        .await?
        .create_tenant(create)
        .await?;
    // The calls are made as a developer of the tenant, as a real client would.
    let admin = format!("Bearer {token}").parse::<Bearer>()?;
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

    if !args.json {
        eprintln!(
            "… host: {} apps, concurrency {}",
            args.entities, args.concurrency
        );
    }
    let host_commands_per_s = host_path(&platform, &args).await?;
    if !args.json {
        eprintln!(
            "… gRPC: {} apps, {} clients",
            args.entities, args.concurrency
        );
    }
    let (grpc_commands_per_s, mut latencies) = grpc_path(&endpoint, &token, &args).await?;
    let grpc_noop_per_s = grpc_noop(&endpoint, &token, &args).await?;
    let figures = GatewayFigures {
        grpc_commands_per_s,
        grpc_p50_ms: percentile_ms(&mut latencies, 50.0),
        grpc_p99_ms: percentile_ms(&mut latencies, 99.0),
        grpc_noop_per_s,
        host_commands_per_s,
        grpc_to_host_ratio: grpc_commands_per_s / host_commands_per_s,
        entities: args.entities,
        concurrency: args.concurrency,
    };
    gateway.shutdown().await;
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("{:<24} {:>10}  target", "figure", "value");
        println!(
            "{:<24} {:>10.0}",
            "grpc_commands_per_s", figures.grpc_commands_per_s
        );
        println!("{:<24} {:>10.2}", "grpc_p50_ms", figures.grpc_p50_ms);
        println!("{:<24} {:>10.2}", "grpc_p99_ms", figures.grpc_p99_ms);
        println!(
            "{:<24} {:>10.0}",
            "grpc_noop_per_s", figures.grpc_noop_per_s
        );
        println!(
            "{:<24} {:>10.0}",
            "host_commands_per_s", figures.host_commands_per_s
        );
        println!(
            "{:<24} {:>10.2}  ≥ 0.50",
            "grpc_to_host_ratio", figures.grpc_to_host_ratio
        );
    }
    Ok(())
}
