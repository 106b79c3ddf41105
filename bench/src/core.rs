//! `neo bench core`: the event-sourced core on a nats-server of its own.
//!
//! Phases, in order:
//! 1. `--rounds` rounds of, back to back: `raw_publish_per_s`, async-nats publish-with-ack
//!    into `NEO_EVENTS` with the expected-sequence headers, same payload size, entities and
//!    concurrency (the baseline); `raw_publish_neo_headers_per_s`, the same with the headers
//!    Neo's store writes; `host_commands_per_s`, the in-process entity host (decide, append,
//!    reply). The figures are the rounds' medians, each ratio taken within its round (the
//!    machine's speed drifts between rounds). Then `raw_atomic_batch_per_s`: Neo's events of
//!    [`ATOMIC_BATCH_GROUP`] entities committed as one ADR-50 atomic batch, the way to batch
//!    appends while keeping each entity's optimistic concurrency;
//! 2. `peer_commands_per_s`: the same workload on the event store a Rust user would otherwise
//!    pick, `cqrs-es` with `postgres-es`, on a Postgres of its own (`core/peer.rs`);
//! 3. `nats_commands_per_s`, `command_p50_ms`, `command_p99_ms`: the same through NATS
//!    request/reply and the intake;
//! 4. `rehydrate_100k_ms` / `rehydrate_100k_snapshot_ms`: activating one entity with 100,000
//!    events, without and with a snapshot;
//! 5. `bytes_per_live_actor`: RSS growth over N live actors, divided by N, measured by a child
//!    process (`neo bench live-actors`) on a fresh heap.

mod peer;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use neo_actors::intake::{self, IntakeConfig};
use neo_actors::store::EventStore;
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_protocol::envelope::EventMeta;
use neo_protocol::{AppName, EntityRef, StageName, TenantName, headers, pb, subjects};
use prost::Message;
use serde::Serialize;

use super::BenchArgs;
use super::stats::{median_ms, percentile_ms, rate, rss_bytes};
use neo_harness::{NatsServer, PostgresServer};

/// The figures `neo bench core` prints.
#[derive(Debug, Serialize)]
pub struct CoreFigures {
    /// Baseline: raw publish-with-ack per second.
    pub raw_publish_per_s: f64,
    /// The same raw publish carrying the headers Neo puts on every event (ids, who, time,
    /// `Nats-Msg-Id`): what the log itself costs.
    pub raw_publish_neo_headers_per_s: f64,
    /// In-process entity host commands per second.
    pub host_commands_per_s: f64,
    /// Events per second written as ADR-50 atomic batches of [`ATOMIC_BATCH_GROUP`] entities
    /// (with Neo's headers): what batching the append path across entities would cost.
    pub raw_atomic_batch_per_s: f64,
    /// The same workload on `cqrs-es` with `postgres-es`: commands per second.
    pub peer_commands_per_s: f64,
    /// The peer's Postgres: version and the settings that decide what a commit costs.
    pub peer_postgres: String,
    /// Commands per second through NATS request/reply.
    pub nats_commands_per_s: f64,
    /// Median command latency through NATS.
    pub command_p50_ms: f64,
    /// 99th percentile command latency through NATS.
    pub command_p99_ms: f64,
    /// Activation of one entity with `rehydrate_events` events, no snapshot.
    pub rehydrate_100k_ms: f64,
    /// The same with a snapshot covering them.
    pub rehydrate_100k_snapshot_ms: f64,
    /// RSS growth per live actor.
    pub bytes_per_live_actor: f64,
    /// `host_commands_per_s / raw_publish_per_s` (target ≥ 0.7), the median of the rounds'.
    pub host_to_raw_ratio: f64,
    /// `host_commands_per_s / raw_publish_neo_headers_per_s`: the host against the same
    /// events written by a client doing nothing else (median of the rounds').
    pub host_to_raw_neo_headers_ratio: f64,
    /// `raw_publish_neo_headers_per_s / raw_publish_per_s`: what the headers alone cost
    /// JetStream (median of the rounds'); no client writing Neo's events can pass it.
    pub raw_neo_headers_to_raw_ratio: f64,
    /// `host_commands_per_s / peer_commands_per_s` (target ≥ 4).
    pub host_to_peer_ratio: f64,
    /// Each round's three rates and their ratios (the figures above are their medians).
    pub rounds: Vec<Round>,
    /// How the run was shaped.
    pub entities: usize,
    /// Commands per entity.
    pub commands_per_entity: usize,
    /// Concurrency.
    pub concurrency: usize,
    /// Events rehydrated.
    pub rehydrate_events: usize,
    /// Live actors measured.
    pub live_actors: usize,
}

/// One round of `neo bench core`: the raw baselines and the host, back to back.
#[derive(Debug, Clone, Serialize)]
pub struct Round {
    /// Raw publish-with-ack per second.
    pub raw_publish_per_s: f64,
    /// The same with Neo's headers.
    pub raw_publish_neo_headers_per_s: f64,
    /// Entity host commands per second.
    pub host_commands_per_s: f64,
    /// host / raw.
    pub host_to_raw_ratio: f64,
    /// host / raw with Neo's headers.
    pub host_to_raw_neo_headers_ratio: f64,
    /// raw with Neo's headers / raw.
    pub raw_neo_headers_to_raw_ratio: f64,
}

/// Entities whose events one atomic batch of the batching baseline commits together.
pub const ATOMIC_BATCH_GROUP: usize = 8;

/// Events written by the atomic batch baseline (it is slow: each batch is staged on disk).
const ATOMIC_BATCH_EVENTS: usize = 4_000;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or_default()
}

fn name(s: &str) -> anyhow::Result<AppName> {
    Ok(AppName::new(s)?)
}

fn create_app() -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::Create(pb::CreateApp {
            description: "bench".into(),
        })),
    }
}

fn revision(n: usize) -> pb::AppCommand {
    pb::AppCommand {
        command: Some(pb::app_command::Command::CreateRevision(
            pb::CreateRevision {
                digest: format!("sha256:{n:064x}"),
                size: 1000,
                author: "bench".into(),
                message: "bench".into(),
                dependencies: vec![],
                deploy_to: String::new(),
            },
        )),
    }
}

fn command(i: usize) -> pb::AppCommand {
    if i == 0 { create_app() } else { revision(i) }
}

/// Runs `per_worker(worker)` on `concurrency` tasks and returns the elapsed time.
pub(super) async fn in_parallel<F, Fut>(
    concurrency: usize,
    per_worker: F,
) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| tokio::spawn(per_worker(w)))
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(start.elapsed())
}

/// The entity indices worker `w` of `c` handles.
pub(super) fn share(w: usize, c: usize, entities: usize) -> impl Iterator<Item = usize> {
    (w..entities).step_by(c)
}

/// Options of the hidden `neo bench live-actors`, which `neo bench core` runs as a child
/// process so that the memory figure is taken on a fresh heap and nothing else runs meanwhile.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveActorArgs {
    /// The NATS server to use.
    #[arg(long)]
    pub nats: String,
    /// Actors to activate.
    #[arg(long)]
    pub count: usize,
    /// Activations in flight.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
}

/// Activates `count` actors and prints `{"bytes_per_live_actor": …}`.
///
/// # Errors
/// When NATS is unreachable or `/proc/self/statm` cannot be read.
pub async fn live_actors(args: LiveActorArgs) -> anyhow::Result<()> {
    let client = async_nats::connect(&args.nats).await?;
    let store = Arc::new(JetStreamStore::open(client, StoreConfig::default()).await?);
    let (n, c) = (args.count, args.concurrency);
    let platform = Platform::start(
        store,
        HostConfig {
            max_live: n + 10_000,
            ..HostConfig::default()
        },
    )
    .await?;
    let tenant = TenantName::new("mem")?;
    let activate = |range: std::ops::Range<usize>| {
        let platform = platform.clone();
        let tenant = tenant.clone();
        in_parallel(c, move |w| {
            let (platform, tenant, range) = (platform.clone(), tenant.clone(), range.clone());
            async move {
                for i in share(w, c, range.len()) {
                    let e = EntityRef::app(&tenant, &name(&format!("m{}", range.start + i))?);
                    platform.apps.state(&e).await?;
                }
                Ok(())
            }
        })
    };
    activate(0..2_000).await?; // warm the allocator and the runtime
    let before = rss_bytes().context("cannot read /proc/self/statm")?;
    activate(2_000..2_000 + n).await?;
    let after = rss_bytes().context("cannot read /proc/self/statm")?;
    anyhow::ensure!(
        platform.live_count() == n + 2_000,
        "actors were stopped during the run"
    );
    let per_actor = after.saturating_sub(before) as f64 / n as f64;
    println!(
        "{}",
        serde_json::json!({ "bytes_per_live_actor": per_actor })
    );
    Ok(())
}

/// Runs `neo bench live-actors` in a child process and reads its figure.
async fn live_actor_memory(nats: &str, n: usize, c: usize) -> anyhow::Result<f64> {
    let exe = std::env::current_exe().context("locating the neo binary")?;
    let output = tokio::process::Command::new(exe)
        .args(["bench", "live-actors", "--nats", nats])
        .args(["--count", &n.to_string(), "--concurrency", &c.to_string()])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .context("running neo bench live-actors")?;
    anyhow::ensure!(
        output.status.success(),
        "neo bench live-actors failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let figure: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    figure["bytes_per_live_actor"]
        .as_f64()
        .context("neo bench live-actors printed no figure")
}

/// The headers Neo's store puts on an event besides the expected-sequence ones
/// ([`EventMeta::stored_headers`] and `Nats-Msg-Id`), for the second baseline
/// (`raw_publish_neo_headers_per_s`).
fn neo_headers(h: &mut HeaderMap, entity: &EntityRef, i: usize) {
    let meta = EventMeta {
        event_type: "RevisionCreated".into(),
        schema_version: 1,
        command_id: uuid::Uuid::new_v4().to_string(),
        correlation_id: format!("raw-{i}"),
        who: "bench".into(),
        time_ms: 1,
        ..EventMeta::default()
    };
    for (k, v) in meta.stored_headers(entity, 0) {
        h.insert(k, v);
    }
    h.insert(headers::NATS_MSG_ID, meta.command_id);
}

/// The expected-sequence headers Neo's store puts on an entity's event: the last sequence
/// over the entity's subjects (`filter`).
fn expect_last(h: &mut HeaderMap, filter: &str, last: u64) {
    h.insert(
        headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        last.to_string(),
    );
    h.insert(headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT, filter);
}

/// The shape of a raw publish baseline: `entities` subjects, `per_entity` acknowledged
/// publishes on each (each expecting the last one's sequence), `concurrency` at once.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawLoad {
    pub entities: usize,
    pub per_entity: usize,
    pub concurrency: usize,
}

/// Publishes-with-ack per second into `NEO_EVENTS` (which must exist) under `tenant`'s
/// subjects, each as Neo's store publishes an event: the expected last subject sequence, and
/// Neo's own headers when `with_neo_headers`.
pub(crate) async fn raw_publish(
    client: &async_nats::Client,
    load: RawLoad,
    payload: usize,
    tenant: &str,
    with_neo_headers: bool,
) -> anyhow::Result<f64> {
    let js = async_nats::jetstream::new(client.clone());
    let body = Bytes::from(vec![b'x'; payload]);
    let k = load.per_entity;
    let elapsed = in_parallel(load.concurrency, |w| {
        let (js, body, entities, c) = (js.clone(), body.clone(), load.entities, load.concurrency);
        let tenant = tenant.to_owned();
        async move {
            for i in share(w, c, entities) {
                let entity = EntityRef::app(&TenantName::new(&tenant)?, &name(&format!("e{i}"))?);
                let filter = subjects::entity_events(&entity);
                let mut last = 0u64;
                for _ in 0..k {
                    let mut h = HeaderMap::new();
                    expect_last(&mut h, &filter, last);
                    if with_neo_headers {
                        neo_headers(&mut h, &entity, i);
                    }
                    let ack = js
                        .publish_with_headers(
                            subjects::event(&entity, "RevisionCreated"),
                            h,
                            body.clone(),
                        )
                        .await?
                        .await?;
                    last = ack.sequence;
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(rate(load.entities * k, elapsed))
}

/// Events per second when `group` entities' events are committed together as one ADR-50
/// atomic batch (each with its own expected subject sequence and Neo's headers): the one way
/// JetStream batches appends while keeping optimistic concurrency per entity. `entities` are
/// written once each, `concurrency / group` batches in flight.
pub(crate) async fn raw_atomic_batches(
    client: &async_nats::Client,
    load: RawLoad,
    payload: usize,
    tenant: &str,
    group: usize,
) -> anyhow::Result<f64> {
    let js = async_nats::jetstream::new(client.clone());
    let body = Bytes::from(vec![b'x'; payload]);
    let workers = (load.concurrency / group).max(1);
    let elapsed = in_parallel(workers, |w| {
        let (js, client, body, tenant) = (
            js.clone(),
            client.clone(),
            body.clone(),
            TenantName::new(tenant),
        );
        let mine: Vec<usize> = share(w, workers, load.entities).collect();
        async move {
            let tenant = tenant?;
            for chunk in mine.chunks(group) {
                let batch_id = uuid::Uuid::new_v4().simple().to_string();
                for (j, i) in chunk.iter().enumerate() {
                    let entity = EntityRef::app(&tenant, &name(&format!("e{i}"))?);
                    let mut h = HeaderMap::new();
                    expect_last(&mut h, &subjects::entity_events(&entity), 0);
                    neo_headers(&mut h, &entity, *i);
                    h.insert(headers::NATS_BATCH_ID, batch_id.as_str());
                    h.insert(headers::NATS_BATCH_SEQUENCE, (j + 1).to_string());
                    let subject = subjects::event(&entity, "RevisionCreated");
                    if j + 1 < chunk.len() {
                        client
                            .publish_with_headers(subject, h, body.clone())
                            .await?;
                    } else {
                        h.insert(headers::NATS_BATCH_COMMIT, "1");
                        js.publish_with_headers(subject, h, body.clone())
                            .await?
                            .await?;
                    }
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(rate(load.entities, elapsed))
}

async fn host_commands(
    platform: &Arc<Platform>,
    args: &BenchArgs,
    tenant: &str,
) -> anyhow::Result<f64> {
    let tenant = TenantName::new(tenant)?;
    let k = args.commands_per_entity;
    let elapsed = in_parallel(args.concurrency, |w| {
        let (platform, tenant, entities, c) = (
            platform.clone(),
            tenant.clone(),
            args.entities,
            args.concurrency,
        );
        async move {
            for i in share(w, c, entities) {
                let e = EntityRef::app(&tenant, &name(&format!("e{i}"))?);
                for j in 0..k {
                    platform
                        .apps
                        .execute(&e, CommandMeta::new("bench"), command(j))
                        .await?;
                }
            }
            Ok(())
        }
    })
    .await?;
    Ok(rate(args.entities * k, elapsed))
}

async fn nats_commands(
    client: &async_nats::Client,
    args: &BenchArgs,
) -> anyhow::Result<(f64, f64, f64)> {
    let tenant = TenantName::new("natsbench")?;
    let k = args.commands_per_entity;
    let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(args.entities * k)));
    let elapsed = in_parallel(args.concurrency, |w| {
        let (client, tenant, latencies) = (client.clone(), tenant.clone(), latencies.clone());
        let (entities, c) = (args.entities, args.concurrency);
        async move {
            let mut mine = Vec::new();
            for i in share(w, c, entities) {
                let subject = subjects::command(&EntityRef::app(&tenant, &name(&format!("e{i}"))?));
                for j in 0..k {
                    let request = pb::CommandRequest {
                        command_id: uuid::Uuid::new_v4().to_string(),
                        principal: "bench".into(),
                        command: Bytes::from(command(j).encode_to_vec()),
                        ..Default::default()
                    };
                    let start = Instant::now();
                    let reply = client
                        .request(subject.clone(), Bytes::from(request.encode_to_vec()))
                        .await?;
                    mine.push(start.elapsed());
                    let reply = pb::CommandReply::decode(reply.payload)?;
                    if let Some(pb::command_reply::Result::Error(e)) = reply.result {
                        anyhow::bail!("command refused: {}", e.message);
                    }
                }
            }
            latencies
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(mine);
            Ok(())
        }
    })
    .await?;
    let mut samples =
        std::mem::take(&mut *latencies.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    Ok((
        rate(args.entities * k, elapsed),
        percentile_ms(&mut samples, 50.0),
        percentile_ms(&mut samples, 99.0),
    ))
}

fn podgroup_event(event: pb::podgroup_event::Event) -> (String, Bytes) {
    let e = pb::PodgroupEvent { event: Some(event) };
    let ty = <pb::PodgroupState as neo_actors::Aggregate>::event_type(&e).to_owned();
    (ty, Bytes::from(e.encode_to_vec()))
}

/// Writes one podgroup with `n` events, pipelined.
async fn write_long_entity(
    client: &async_nats::Client,
    entity: &EntityRef,
    n: usize,
) -> anyhow::Result<()> {
    let js = async_nats::jetstream::new(client.clone());
    let mut pending = FuturesUnordered::new();
    for i in 0..n {
        let (event_type, payload) = if i == 0 {
            podgroup_event(pb::podgroup_event::Event::Created(pb::PodgroupCreated {
                app: "big".into(),
                stage: "dev".into(),
                release: 1,
                image_digest: format!("sha256:{:064x}", 1),
                policy: Some(pb::ScalePolicy {
                    min_replicas: 1,
                    max_replicas: 3,
                    target_cpu_percent: 70,
                    target_memory_percent: 80,
                    scale_down_window_s: 300,
                    idle_to_zero_s: 0,
                }),
                resources: Some(pb::Resources {
                    cpu_millis: 250,
                    memory_mib: 256,
                }),
                desired: 1,
                config: None,
            }))
        } else {
            let (from, to) = if i % 2 == 1 { (1, 2) } else { (2, 1) };
            podgroup_event(pb::podgroup_event::Event::Scaled(pb::ScaledTo {
                from,
                to,
                reason: "bench".into(),
            }))
        };
        let meta = EventMeta {
            event_type: event_type.clone(),
            schema_version: 1,
            command_id: format!("bench-{i}"),
            correlation_id: format!("bench-{i}"),
            who: "bench".into(),
            time_ms: 1,
            ..EventMeta::default()
        };
        let mut h = HeaderMap::new();
        for (k, v) in meta.stored_headers(entity, 0) {
            h.insert(k, v);
        }
        pending.push(
            js.publish_with_headers(subjects::event(entity, &event_type), h, payload)
                .await?
                .into_future(),
        );
        if pending.len() >= 2_000
            && let Some(ack) = pending.next().await
        {
            ack?;
        }
    }
    while let Some(ack) = pending.next().await {
        ack?;
    }
    Ok(())
}

async fn rehydration(
    client: &async_nats::Client,
    store: Arc<JetStreamStore>,
    n: usize,
) -> anyhow::Result<(f64, f64)> {
    let entity = EntityRef::podgroup(
        &TenantName::new("rehydrate")?,
        &name("big")?,
        &StageName::new("dev")?,
    );
    write_long_entity(client, &entity, n).await?;
    let platform = Platform::start(store.clone(), HostConfig::default()).await?;
    let time_activation = |runs: usize| {
        let (platform, entity) = (platform.clone(), entity.clone());
        async move {
            let mut samples = Vec::new();
            let mut state = None;
            for _ in 0..runs {
                platform.passivate_all();
                let start = Instant::now();
                let (s, seq) = platform.podgroups.state(&entity).await?;
                samples.push(start.elapsed());
                state = Some((s, seq));
            }
            anyhow::Ok((median_ms(&mut samples), state))
        }
    };
    let (without, state) = time_activation(3).await?;
    let (state, sequence) = state.context("no state")?;
    anyhow::ensure!(state.exists, "the long entity did not rebuild");
    store
        .write_snapshot(
            &entity,
            &pb::Snapshot {
                state: Bytes::from(state.encode_to_vec()),
                sequence,
                recent_commands: vec![],
                ..Default::default()
            },
        )
        .await?;
    let (with, snap_state) = time_activation(21).await?;
    anyhow::ensure!(
        snap_state.map(|s| s.0) == Some(state),
        "state from the snapshot differs"
    );
    Ok((without, with))
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When the nats-server cannot start or a phase fails.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let progress = |msg: &str| {
        if !args.json {
            eprintln!("… {msg}");
        }
    };
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let store = Arc::new(JetStreamStore::open(client.clone(), StoreConfig::default()).await?);

    let payload = pb::AppEvent {
        event: Some(pb::app_event::Event::RevisionCreated(pb::RevisionCreated {
            revision: Some(pb::Revision {
                number: 2,
                digest: format!("sha256:{:064x}", 2),
                size: 1000,
                author: "bench".into(),
                message: "bench".into(),
                dependencies: vec![],
                deploy_to: String::new(),
            }),
        })),
    }
    .encoded_len();
    let total = args.entities * args.commands_per_entity;
    let load = RawLoad {
        entities: args.entities,
        per_entity: args.commands_per_entity,
        concurrency: args.concurrency,
    };
    let platform = Platform::start(store.clone(), HostConfig::default()).await?;
    // The machine's speed drifts (other guests share it), so the three paths run back to back
    // in each round and every ratio is taken within its round.
    let mut rounds = Vec::with_capacity(args.rounds);
    for r in 1..=args.rounds.max(1) {
        progress(&format!(
            "round {r}: raw publish, raw publish with Neo's headers, entity host: {total} each \
             over {} entities",
            args.entities
        ));
        let raw = raw_publish(&client, load, payload, &format!("rawbench{r}"), false).await?;
        let raw_headers =
            raw_publish(&client, load, payload, &format!("rawheaders{r}"), true).await?;
        let host = host_commands(&platform, &args, &format!("hostbench{r}")).await?;
        rounds.push(Round {
            raw_publish_per_s: raw,
            raw_publish_neo_headers_per_s: raw_headers,
            host_commands_per_s: host,
            host_to_raw_ratio: host / raw,
            host_to_raw_neo_headers_ratio: host / raw_headers,
            raw_neo_headers_to_raw_ratio: raw_headers / raw,
        });
    }
    let batch_load = RawLoad {
        entities: args.entities.min(ATOMIC_BATCH_EVENTS),
        ..load
    };
    progress(&format!(
        "{} events in atomic batches of {ATOMIC_BATCH_GROUP} entities",
        batch_load.entities
    ));
    let raw_atomic_batch_per_s =
        raw_atomic_batches(&client, batch_load, payload, "rawbatch", ATOMIC_BATCH_GROUP).await?;

    progress("the same on the peer: cqrs-es with postgres-es, on a Postgres of its own");
    let peer = {
        let postgres = PostgresServer::start().await.context("starting Postgres")?;
        postgres.create_database("peer").await?;
        peer::run(&postgres.url("peer"), &args).await?
    };

    progress("NATS request/reply through the intake");
    let intake_client = async_nats::connect(nats.url()).await?;
    let _intake = intake::serve(intake_client, platform.clone(), IntakeConfig::default()).await?;
    let (nats_commands_per_s, command_p50_ms, command_p99_ms) =
        nats_commands(&client, &args).await?;
    platform.passivate_all();

    progress(&format!(
        "rehydrating one entity of {} events",
        args.rehydrate_events
    ));
    let (rehydrate_100k_ms, rehydrate_100k_snapshot_ms) =
        rehydration(&client, store.clone(), args.rehydrate_events).await?;

    progress(&format!(
        "activating {} live actors (in a child process)",
        args.live_actors
    ));
    let bytes_per_live_actor =
        live_actor_memory(&nats.url(), args.live_actors, args.concurrency).await?;

    let median = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    let host_commands_per_s = median(|r| r.host_commands_per_s);
    let figures = CoreFigures {
        raw_publish_per_s: median(|r| r.raw_publish_per_s),
        raw_publish_neo_headers_per_s: median(|r| r.raw_publish_neo_headers_per_s),
        host_commands_per_s,
        raw_atomic_batch_per_s,
        peer_commands_per_s: peer.commands_per_s,
        peer_postgres: peer.postgres,
        nats_commands_per_s,
        command_p50_ms,
        command_p99_ms,
        rehydrate_100k_ms,
        rehydrate_100k_snapshot_ms,
        bytes_per_live_actor,
        host_to_raw_ratio: median(|r| r.host_to_raw_ratio),
        host_to_raw_neo_headers_ratio: median(|r| r.host_to_raw_neo_headers_ratio),
        raw_neo_headers_to_raw_ratio: median(|r| r.raw_neo_headers_to_raw_ratio),
        host_to_peer_ratio: host_commands_per_s / peer.commands_per_s,
        rounds,
        entities: args.entities,
        commands_per_entity: args.commands_per_entity,
        concurrency: args.concurrency,
        rehydrate_events: args.rehydrate_events,
        live_actors: args.live_actors,
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        print_table(&figures);
    }
    Ok(())
}

fn print_table(f: &CoreFigures) {
    let rows = [
        (
            "raw_publish_per_s",
            format!("{:.0}", f.raw_publish_per_s),
            "baseline",
        ),
        (
            "raw_publish_neo_headers_per_s",
            format!("{:.0}", f.raw_publish_neo_headers_per_s),
            "same, with Neo's event headers",
        ),
        (
            "host_commands_per_s",
            format!("{:.0}", f.host_commands_per_s),
            "≥ 0.7 × raw",
        ),
        (
            "host_to_raw_ratio",
            format!("{:.2}", f.host_to_raw_ratio),
            "≥ 0.70",
        ),
        (
            "host_to_raw_neo_headers_ratio",
            format!("{:.2}", f.host_to_raw_neo_headers_ratio),
            "",
        ),
        (
            "raw_neo_headers_to_raw_ratio",
            format!("{:.2}", f.raw_neo_headers_to_raw_ratio),
            "the host's ceiling",
        ),
        (
            "raw_atomic_batch_per_s",
            format!("{:.0}", f.raw_atomic_batch_per_s),
            "batching the append path",
        ),
        (
            "peer_commands_per_s",
            format!("{:.0}", f.peer_commands_per_s),
            "cqrs-es + postgres-es",
        ),
        (
            "host_to_peer_ratio",
            format!("{:.2}", f.host_to_peer_ratio),
            "≥ 4.00",
        ),
        (
            "nats_commands_per_s",
            format!("{:.0}", f.nats_commands_per_s),
            "",
        ),
        ("command_p50_ms", format!("{:.2}", f.command_p50_ms), ""),
        ("command_p99_ms", format!("{:.2}", f.command_p99_ms), ""),
        (
            "rehydrate_100k_ms",
            format!("{:.1}", f.rehydrate_100k_ms),
            "",
        ),
        (
            "rehydrate_100k_snapshot_ms",
            format!("{:.2}", f.rehydrate_100k_snapshot_ms),
            "< 5",
        ),
        (
            "bytes_per_live_actor",
            format!("{:.0}", f.bytes_per_live_actor),
            "≤ 10240",
        ),
    ];
    println!("{:<30} {:>12}  target", "figure", "value");
    for (name, value, target) in rows {
        println!("{name:<30} {value:>12}  {target}");
    }
    println!(
        "({} entities × {} commands, concurrency {}, {} rounds (medians), {} events \
         rehydrated, {} live actors)",
        f.entities,
        f.commands_per_entity,
        f.concurrency,
        f.rounds.len(),
        f.rehydrate_events,
        f.live_actors
    );
    println!("(the peer's {})", f.peer_postgres);
}
