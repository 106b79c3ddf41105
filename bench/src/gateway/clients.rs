//! The gRPC clients of `neo bench gateway`: the hidden `neo bench grpc-clients`, which drives
//! the calls from a process of its own (so the clients' HTTP/2 and protobuf work is not
//! charged to the server process), and the runner that starts it and reads its figures.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use neo_gateway::api::{self, apps_client::AppsClient, identity_client::IdentityClient};
use serde::{Deserialize, Serialize};
use tonic::Request;
use tonic::transport::Channel;

use crate::stats::{percentile_ms, rate};

/// The call each client makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Call {
    /// `Apps.CreateApp` on app `{prefix}{i}` of tenant `bench`, one per distinct app.
    Create,
    /// `Identity.WhoAmI`: the gRPC stack and the token check alone.
    Noop,
}

impl Call {
    fn word(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Noop => "noop",
        }
    }
}

/// Options of the hidden `neo bench grpc-clients`, which `neo bench gateway` runs as a child
/// process.
#[derive(Debug, Clone, clap::Args)]
pub struct GrpcClientsArgs {
    /// The gateway's URL.
    #[arg(long)]
    pub endpoint: String,
    /// The bearer token the calls carry (the parent passes it in the environment, out of
    /// the process list).
    #[arg(long, env = "NEO_BENCH_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Calls in all (for `create`, distinct apps).
    #[arg(long)]
    pub entities: usize,
    /// Concurrent clients, one HTTP/2 connection each, one call in flight each.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The call made.
    #[arg(long, value_enum)]
    pub call: Call,
    /// The prefix of the app names created.
    #[arg(long, default_value = "g")]
    pub prefix: String,
}

/// What `neo bench grpc-clients` prints (one JSON object).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientFigures {
    /// Calls per second, from the first call to the last reply.
    pub calls_per_s: f64,
    /// Median call latency.
    pub p50_ms: f64,
    /// 99th percentile call latency.
    pub p99_ms: f64,
    /// CPU time (user + system) of the client process per call, in µs.
    pub client_cpu_us_per_call: f64,
}

type Bearer = tonic::metadata::MetadataValue<tonic::metadata::Ascii>;

fn authorised<T>(message: T, bearer: &Bearer) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    request
}

/// One call `i`.
async fn call_once(
    call: Call,
    channel: Channel,
    i: usize,
    prefix: &str,
    bearer: &Bearer,
) -> anyhow::Result<()> {
    match call {
        Call::Create => {
            let request = api::CreateAppRequest {
                tenant: "bench".into(),
                app: format!("{prefix}{i}"),
                description: "bench".into(),
            };
            AppsClient::new(channel)
                .create_app(authorised(request, bearer))
                .await?;
        }
        Call::Noop => {
            IdentityClient::new(channel)
                .who_am_i(authorised(api::WhoAmIRequest {}, bearer))
                .await?;
        }
    }
    Ok(())
}

/// Makes `args.entities` calls over `args.concurrency` connections; returns the rate and each
/// call's latency. Runs in whichever process calls it (the child, or the bench itself for the
/// in-process figure).
///
/// # Errors
/// When a connection cannot be made or a call fails.
pub async fn drive(args: &GrpcClientsArgs) -> anyhow::Result<(f64, Vec<Duration>)> {
    let c = args.concurrency.max(1);
    let mut channels = Vec::with_capacity(c);
    for _ in 0..c {
        channels.push(
            Channel::from_shared(args.endpoint.clone())?
                .connect()
                .await?,
        );
    }
    let bearer: Bearer = format!("Bearer {}", args.token).parse()?;
    let start = Instant::now();
    let tasks: Vec<_> = channels
        .into_iter()
        .enumerate()
        .map(|(w, channel)| {
            let (bearer, n, call, prefix) = (
                bearer.clone(),
                args.entities,
                args.call,
                args.prefix.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (w..n).step_by(c) {
                    let t = Instant::now();
                    call_once(call, channel.clone(), i, &prefix, &bearer).await?;
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

/// CPU `spent` per call in µs.
pub(crate) fn us_per_call(spent: Duration, calls: usize) -> f64 {
    spent.as_secs_f64() * 1e6 / calls.max(1) as f64
}

/// `neo bench grpc-clients`: drives the calls and prints [`ClientFigures`] as JSON.
///
/// # Errors
/// When the gateway cannot be reached or a call fails.
pub async fn run(args: GrpcClientsArgs) -> anyhow::Result<()> {
    let cpu = crate::procstat::own_cpu();
    let (calls_per_s, mut latencies) = drive(&args).await?;
    let figures = ClientFigures {
        calls_per_s,
        p50_ms: percentile_ms(&mut latencies, 50.0),
        p99_ms: percentile_ms(&mut latencies, 99.0),
        client_cpu_us_per_call: us_per_call(
            crate::procstat::own_cpu().saturating_sub(cpu),
            args.entities,
        ),
    };
    println!("{}", serde_json::to_string(&figures)?);
    Ok(())
}

/// Runs `neo bench grpc-clients` in a child process with `args` and reads its figures.
///
/// # Errors
/// When the child cannot start, fails, or prints no figures.
pub async fn in_child(args: &GrpcClientsArgs) -> anyhow::Result<ClientFigures> {
    let exe = std::env::current_exe().context("locating the neo binary")?;
    let output = tokio::process::Command::new(exe)
        .args(["bench", "grpc-clients", "--endpoint", &args.endpoint])
        .args(["--call", args.call.word()])
        .args(["--entities", &args.entities.to_string()])
        .args(["--concurrency", &args.concurrency.to_string()])
        .args(["--prefix", &args.prefix])
        .env("NEO_BENCH_TOKEN", &args.token)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output()
        .await
        .context("running neo bench grpc-clients")?;
    anyhow::ensure!(
        output.status.success(),
        "neo bench grpc-clients failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).context("neo bench grpc-clients printed no figures")
}
