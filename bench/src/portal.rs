//! `neo bench portal`: the portal's heaviest pages, timed as a browser asks for them.
//!
//! On servers of its own ([`BenchPlatform`] without a build worker, with the Runtime's
//! reactors) and a portal in this process over the bench gateway (plain HTTP on loopback: the
//! server's time, not TLS's):
//!
//! - `board_ms_p50`/`p90`: `GET /` of tenant `bench` with `--apps` apps released on its three
//!   stages (dev, test, prod) and a health report of one ready replica for each: the apps,
//!   revisions and succeeded builds are recorded straight on the entity host (no image is
//!   built), each deployed to dev and promoted to test and prod through the gateway, as a user
//!   would; the reports are published on the agents' subjects.
//! - `log_page_ms_p50`/`p90`: `GET /logs?text=…` of the first page (1,000 lines) among
//!   `--log-lines` lines of one app on dev, one line in ten matching; the lines are published
//!   on the logs subject as an agent ships them (batches of 1,000).
//!
//! Each figure is `--samples` requests, one at a time, after two not counted.

use std::future::IntoFuture as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use futures::StreamExt as _;
use neo_actors::CommandMeta;
use neo_gateway::api::{self, deployments_client::DeploymentsClient};
use neo_portal::gateway::Gateway;
use neo_portal::{Portal, PortalConfig};
use neo_protocol::subjects::{self, Channel};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb};
use prost::Message as _;
use serde::Serialize;
use tonic::Request;

use super::build::{BenchOptions, BenchPlatform};
use super::stats::percentile_ms;

/// The tenant (created by [`BenchPlatform`] with the default stages).
const TENANT: &str = "bench";
/// Its stages, in promotion order.
const STAGES: [&str; 3] = ["dev", "test", "prod"];
/// The text one log line in ten carries.
const NEEDLE: &str = "needle";
/// Lines per published batch.
const BATCH: usize = 1000;
/// Apps seeded at once.
const CONCURRENCY: usize = 16;

/// Options of `neo bench portal`.
#[derive(Debug, Clone, clap::Args)]
pub struct PortalBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Apps on the board, each on every stage.
    #[arg(long, default_value_t = 300)]
    pub apps: usize,
    /// Log lines stored, one in ten matching the filter.
    #[arg(long, default_value_t = 1_000_000)]
    pub log_lines: usize,
    /// Requests timed per figure.
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
}

/// What `neo bench portal` measures.
#[derive(Debug, Clone, Serialize)]
pub struct PortalFigures {
    /// Apps on the board.
    pub apps: usize,
    /// Cells on the board (apps × stages).
    pub cells: usize,
    /// `GET /`, median and 90th percentile.
    pub board_ms_p50: f64,
    /// 90th percentile.
    pub board_ms_p90: f64,
    /// Bytes of the board's page.
    pub board_bytes: usize,
    /// The board's first request, before the gateway knows any state (cold).
    pub board_first_ms: f64,
    /// `Runtime.Status` of the tenant alone (the board's main call), median: where the
    /// board's time goes.
    pub status_ms_p50: f64,
    /// Log lines stored.
    pub log_lines: usize,
    /// Lines on the first page of the filtered logs.
    pub log_page_lines: usize,
    /// `GET /logs?text=…`, median.
    pub log_page_ms_p50: f64,
    /// 90th percentile.
    pub log_page_ms_p90: f64,
}

/// Runs the bench and prints its figures.
///
/// # Errors
/// When a server cannot start or a step fails.
pub async fn run(args: PortalBenchArgs) -> anyhow::Result<()> {
    let mut bench = BenchPlatform::start_with(BenchOptions {
        without_worker: true,
        ..BenchOptions::default()
    })
    .await?;
    bench.run_runtime_reactors().await?;
    let measured = measure(&bench, &args).await;
    bench.shutdown().await;
    let f = measured?;
    if args.json {
        println!("{}", serde_json::to_string(&f)?);
    } else {
        println!("{:<20} {:>10}  target", "figure", "value");
        println!("{:<20} {:>10}", "cells", f.cells);
        println!("{:<20} {:>10.1}  < 100", "board_ms_p50", f.board_ms_p50);
        println!("{:<20} {:>10.1}", "board_ms_p90", f.board_ms_p90);
        println!("{:<20} {:>10}", "board_bytes", f.board_bytes);
        println!("{:<20} {:>10.1}", "board_first_ms", f.board_first_ms);
        println!("{:<20} {:>10.1}", "status_ms_p50", f.status_ms_p50);
        println!("{:<20} {:>10}", "log_lines", f.log_lines);
        println!("{:<20} {:>10}", "log_page_lines", f.log_page_lines);
        println!(
            "{:<20} {:>10.1}  < 200",
            "log_page_ms_p50", f.log_page_ms_p50
        );
        println!("{:<20} {:>10.1}", "log_page_ms_p90", f.log_page_ms_p90);
    }
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The app named `i`.
fn app_name(i: usize) -> anyhow::Result<AppName> {
    Ok(AppName::new(format!("app{i:03}"))?)
}

async fn measure(bench: &BenchPlatform, args: &PortalBenchArgs) -> anyhow::Result<PortalFigures> {
    let tenant = TenantName::new(TENANT)?;
    eprintln!(
        "portal bench: seeding {} apps on {} stages",
        args.apps,
        STAGES.len()
    );
    let channel = tonic::transport::Channel::from_shared(bench.endpoint.clone())?
        .connect()
        .await?;
    futures::stream::iter(0..args.apps)
        .map(|i| seed(bench, &tenant, channel.clone(), i))
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<()>>>()?;
    report_health(bench, &tenant, args.apps).await?;
    eprintln!("portal bench: publishing {} log lines", args.log_lines);
    let first = app_name(0)?;
    publish_logs(bench, &tenant, &first, args.log_lines).await?;

    let portal = Portal::start(
        PortalConfig {
            listen: "127.0.0.1:0".parse()?,
            tls: None,
        },
        Gateway::new(channel.clone()),
    )
    .await?;
    let channel_for_status = channel;
    let measured = async {
        let visitor = Visitor::sign_in(&portal.url()).await?;
        let (mut board, board_bytes, board_first) =
            visitor.time("/", args.samples, "cell-app000-prod").await?;
        let status = {
            let mut runtime = api::runtime_client::RuntimeClient::new(channel_for_status.clone());
            let mut times = Vec::with_capacity(args.samples);
            for i in 0..args.samples + 2 {
                let start = Instant::now();
                let request = api::StatusRequest {
                    tenant: TENANT.into(),
                    ..Default::default()
                };
                runtime.status(authed(&bench.bearer, request)).await?;
                if i >= 2 {
                    times.push(start.elapsed());
                }
            }
            percentile_ms(&mut times, 50.0)
        };
        let logs = format!("/logs?app={first}&stage=dev&text={NEEDLE}");
        let (mut log_page, _, _) = visitor.time(&logs, args.samples, NEEDLE).await?;
        let log_page_lines = visitor.count(&logs, "<tr class=\"level-").await?;
        Ok::<_, anyhow::Error>(PortalFigures {
            apps: args.apps,
            cells: args.apps * STAGES.len(),
            board_ms_p50: percentile_ms(&mut board, 50.0),
            board_ms_p90: percentile_ms(&mut board, 90.0),
            board_bytes,
            board_first_ms: board_first.as_secs_f64() * 1000.0,
            status_ms_p50: status,
            log_lines: args.log_lines,
            log_page_lines,
            log_page_ms_p50: percentile_ms(&mut log_page, 50.0),
            log_page_ms_p90: percentile_ms(&mut log_page, 90.0),
        })
    }
    .await;
    portal.shutdown().await;
    measured
}

/// App `i`: created with one revision and its succeeded build on the host, deployed to dev and
/// promoted to test and prod through the gateway.
async fn seed(
    bench: &BenchPlatform,
    tenant: &TenantName,
    channel: tonic::transport::Channel,
    i: usize,
) -> anyhow::Result<()> {
    use pb::{app_command::Command as AppCmd, build_command::Command as BuildCmd};
    let app = app_name(i)?;
    let meta = || CommandMeta::new("bench");
    let digest = format!("sha256:{:064x}", i + 1);
    let apps = &bench.platform.apps;
    let entity = EntityRef::app(tenant, &app);
    for command in [
        AppCmd::Create(pb::CreateApp {
            description: format!("app {i} of the portal bench"),
        }),
        AppCmd::CreateRevision(pb::CreateRevision {
            digest: digest.clone(),
            size: 1000,
            author: "bench".into(),
            message: "the portal bench".into(),
            ..Default::default()
        }),
    ] {
        apps.execute(
            &entity,
            meta(),
            pb::AppCommand {
                command: Some(command),
            },
        )
        .await
        .with_context(|| format!("creating {app}"))?;
    }
    let image = format!("sha256:{:064x}", 1_000_000 + i);
    let build = EntityRef::build(tenant, &app, 1);
    for command in [
        BuildCmd::Request(pb::RequestBuild {
            app: app.to_string(),
            revision: 1,
            revision_digest: digest,
            ..Default::default()
        }),
        BuildCmd::Start(pb::StartBuild {
            attempt: 1,
            worker: "bench".into(),
            ..Default::default()
        }),
        BuildCmd::Succeed(pb::SucceedBuild {
            attempt: 1,
            image_digest: image.clone(),
            image_ref: format!("bench/{app}@{image}"),
            ..Default::default()
        }),
    ] {
        bench
            .platform
            .builds
            .execute(
                &build,
                meta(),
                pb::BuildCommand {
                    command: Some(command),
                },
            )
            .await
            .with_context(|| format!("building {app}"))?;
    }
    let mut deployments = DeploymentsClient::new(channel);
    let deploy = api::DeployRequest {
        tenant: TENANT.into(),
        app: app.to_string(),
        stage: STAGES[0].into(),
        revision: 1,
        force: false,
    };
    deployments
        .deploy(authed(&bench.bearer, deploy))
        .await
        .with_context(|| format!("deploying {app}"))?;
    for stage in &STAGES[1..] {
        let promote = api::PromoteRequest {
            tenant: TENANT.into(),
            app: app.to_string(),
            stage: (*stage).into(),
            force: false,
            canary: false,
        };
        deployments
            .promote(authed(&bench.bearer, promote))
            .await
            .with_context(|| format!("promoting {app} to {stage}"))?;
    }
    Ok(())
}

/// `message` with the bench admin's `bearer`.
fn authed<T>(bearer: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = bearer.parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A health report of one ready replica for each app on each stage, as the agents publish.
async fn report_health(
    bench: &BenchPlatform,
    tenant: &TenantName,
    apps: usize,
) -> anyhow::Result<()> {
    for i in 0..apps {
        let app = app_name(i)?;
        for stage in STAGES {
            let stage = StageName::new(stage)?;
            let image = format!("sha256:{:064x}", 1_000_000 + i);
            let report = pb::HealthReport {
                tenant: tenant.to_string(),
                app: app.to_string(),
                stage: stage.to_string(),
                release: 1,
                image_digest: image.clone(),
                desired: 1,
                replicas: vec![pb::ReplicaStatus {
                    id: format!("{app}-{stage}-1"),
                    release: 1,
                    image_digest: image,
                    phase: pb::ReplicaPhase::Ready as i32,
                    started_ms: now_ms(),
                    ..Default::default()
                }],
                at_ms: now_ms(),
                agent: format!("bench-{stage}"),
                url: format!("http://127.0.0.1:1/{tenant}/{app}/"),
            };
            let subject = subjects::runtime(tenant, &stage, &app, Channel::Health.as_str());
            bench
                .js
                .publish(subject, report.encode_to_vec().into())
                .await?
                .await?;
        }
    }
    Ok(())
}

/// `lines` log lines of `app` on dev, one in ten carrying [`NEEDLE`], in batches.
async fn publish_logs(
    bench: &BenchPlatform,
    tenant: &TenantName,
    app: &AppName,
    lines: usize,
) -> anyhow::Result<()> {
    let subject = subjects::runtime(tenant, &StageName::new("dev")?, app, Channel::Logs.as_str());
    let mut acks = futures::stream::FuturesUnordered::new();
    let mut sent = 0;
    while sent < lines {
        let n = BATCH.min(lines - sent);
        let at = now_ms();
        let batch = pb::LogBatch {
            lines: (sent..sent + n)
                .map(|k| pb::LogLine {
                    replica: format!("{app}-dev-1"),
                    level: pb::LogLevel::Info as i32,
                    at_ms: at,
                    text: if k % 10 == 0 {
                        format!("GET /api/product/{k} 200 {NEEDLE}")
                    } else {
                        format!("GET /api/category/{k} 200")
                    },
                    stream: "stdout".into(),
                    ..Default::default()
                })
                .collect(),
        };
        acks.push(
            bench
                .js
                .publish(subject.clone(), batch.encode_to_vec().into())
                .await?
                .into_future(),
        );
        if acks.len() >= 64
            && let Some(ack) = acks.next().await
        {
            ack?;
        }
        sent += n;
    }
    while let Some(ack) = acks.next().await {
        ack?;
    }
    Ok(())
}

/// A signed-in browser, as far as the portal can tell.
struct Visitor {
    base: String,
    http: reqwest::Client,
    cookie: String,
}

impl Visitor {
    /// Signs in as the bench's admin of tenant `bench`.
    async fn sign_in(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()?;
        let login = http.get(format!("{base}/login")).send().await?;
        let csrf = cookie(&login, "neo_csrf").context("no CSRF cookie")?;
        let answer = http
            .post(format!("{base}/login"))
            .header("cookie", format!("neo_csrf={csrf}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        ("csrf", csrf.as_str()),
                        ("user", "admin"),
                        ("password", "bench-password"),
                        ("tenant", TENANT),
                    ])
                    .finish(),
            )
            .send()
            .await?;
        let session = cookie(&answer, "neo_session").context("not signed in")?;
        Ok(Self {
            base: base.to_owned(),
            http,
            cookie: format!("neo_csrf={csrf}; neo_session={session}"),
        })
    }

    async fn get(&self, path: &str) -> anyhow::Result<String> {
        let answer = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await?;
        let status = answer.status();
        let body = answer.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status}: {body}");
        Ok(body)
    }

    /// `samples` requests of `path` (after two not counted), each page holding `expect`; the
    /// last page's size, and how long the first request took.
    async fn time(
        &self,
        path: &str,
        samples: usize,
        expect: &str,
    ) -> anyhow::Result<(Vec<Duration>, usize, Duration)> {
        let start = Instant::now();
        self.get(path).await?;
        let first = start.elapsed();
        self.get(path).await?;
        let mut times = Vec::with_capacity(samples);
        let mut bytes = 0;
        for _ in 0..samples.max(1) {
            let start = Instant::now();
            let page = self.get(path).await?;
            times.push(start.elapsed());
            anyhow::ensure!(page.contains(expect), "{path} lacks {expect}");
            bytes = page.len();
        }
        Ok((times, bytes, first))
    }

    /// How often `needle` occurs in the page at `path`.
    async fn count(&self, path: &str, needle: &str) -> anyhow::Result<usize> {
        Ok(self.get(path).await?.matches(needle).count())
    }
}

/// The value of cookie `name` an answer sets.
fn cookie(answer: &reqwest::Response, name: &str) -> Option<String> {
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}
