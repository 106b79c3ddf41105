//! `neo bench replay`: reading the event log back, on a nats-server of its own.
//!
//! `NEO_EVENTS` is filled directly (no actor host): N app and deployment events spread over
//! ~10,000 entities, with Neo's headers, published asynchronously in windows of acks. Then,
//! alternating for `--rounds` rounds with the same ordered-consumer settings:
//! - `raw_read_per_s`: the ordered consumer reads every message (the baseline);
//! - `replay_per_s`: the same read, plus decoding and folding every event into its entity's
//!   state ([`neo_actors::replay`]).
//!
//! Each figure is the best of its rounds (the first round also warms the server's caches).

use std::time::Instant;

use anyhow::Context as _;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use neo_actors::replay::{self, ReadSettings};
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_protocol::envelope::EventMeta;
use neo_protocol::pb::{app_event, deployment_event};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb, subjects};
use prost::Message as _;
use serde::Serialize;

use super::stats::rate;
use neo_harness::NatsServer;

/// Options of `neo bench replay`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayBenchArgs {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Events written, then read back.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Entities the events are spread over (half apps, half deployments).
    #[arg(long, default_value_t = 10_000)]
    pub entities: usize,
    /// Publish acks awaited at once while filling the stream.
    #[arg(long, default_value_t = 4096)]
    pub window: usize,
    /// Cap on messages per pull of the ordered consumer (0: async-nats's 500).
    #[arg(long, default_value_t = 0)]
    pub max_batch: i64,
    /// Rounds of (raw read, replay); each figure is the best of its rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
}

/// The figures printed.
#[derive(Debug, Serialize)]
pub struct ReplayFigures {
    /// Baseline: ordered-consumer messages read per second.
    pub raw_read_per_s: f64,
    /// Events read, decoded and folded into state per second.
    pub replay_per_s: f64,
    /// `replay_per_s / raw_read_per_s` (target ≥ 0.8).
    pub replay_to_raw_ratio: f64,
    /// Events in the stream, read by each phase.
    pub events: u64,
    /// Entities folded.
    pub entities: usize,
    /// Events written per second while filling the stream.
    pub fill_per_s: f64,
    /// Stored bytes of the stream.
    pub stream_bytes: u64,
    /// Rounds run.
    pub rounds: usize,
}

/// The entity and event of the `i`-th event: entity `i % entities`, its `i / entities`-th
/// event (an app's creation then revisions; a deployment's releases and rollouts).
fn event(
    tenant: &TenantName,
    stage: &StageName,
    entities: usize,
    i: usize,
) -> anyhow::Result<(EntityRef, &'static str, Vec<u8>)> {
    let n = i % entities;
    let nth = i / entities;
    let app = AppName::new(format!("app-{n}"))?;
    if n.is_multiple_of(2) {
        let entity = EntityRef::app(tenant, &app);
        let (ty, event) = if nth == 0 {
            let created = pb::AppCreated {
                description: format!("bench app {n}: an inventory of things"),
            };
            ("AppCreated", app_event::Event::Created(created))
        } else {
            let revision = pb::Revision {
                number: nth as u32,
                digest: format!("sha256:{i:064x}"),
                size: 40_000 + (i % 1000) as u64,
                author: "alice@example.com".into(),
                message: format!("revision {nth}: fix the thing"),
                dependencies: vec![],
                deploy_to: String::new(),
            };
            let created = pb::RevisionCreated {
                revision: Some(revision),
            };
            (
                "RevisionCreated",
                app_event::Event::RevisionCreated(created),
            )
        };
        let payload = pb::AppEvent { event: Some(event) }.encode_to_vec();
        Ok((entity, ty, payload))
    } else {
        let entity = EntityRef::deployment(tenant, &app, stage);
        let number = (nth / 2 + 1) as u32;
        let (ty, event) = if nth.is_multiple_of(2) {
            let release = pb::Release {
                number,
                image_digest: format!("sha256:{i:064x}"),
                revision: number,
                build_id: format!("app-{n}_r{number}"),
                ..Default::default()
            };
            let created = pb::ReleaseCreated {
                app: app.to_string(),
                stage: stage.to_string(),
                release: Some(release),
            };
            (
                "ReleaseCreated",
                deployment_event::Event::ReleaseCreated(created),
            )
        } else {
            let rollout = pb::RolloutRecorded {
                release: number,
                status: pb::RolloutStatus::Succeeded as i32,
                reason: "all replicas ready".into(),
            };
            (
                "RolloutRecorded",
                deployment_event::Event::RolloutRecorded(rollout),
            )
        };
        let payload = pb::DeploymentEvent { event: Some(event) }.encode_to_vec();
        Ok((entity, ty, payload))
    }
}

/// Fills `NEO_EVENTS` with `args.events` events, `args.window` acks in flight.
async fn fill(js: &async_nats::jetstream::Context, args: &ReplayBenchArgs) -> anyhow::Result<()> {
    let tenant = TenantName::new("bench")?;
    let stage = StageName::new("prod")?;
    let mut in_flight = FuturesUnordered::new();
    for i in 0..args.events {
        let (entity, event_type, payload) = event(&tenant, &stage, args.entities, i)?;
        let meta = EventMeta {
            event_type: event_type.to_owned(),
            schema_version: 1,
            command_id: format!("fill-{i}"),
            correlation_id: format!("fill-{i}"),
            causation_id: String::new(),
            who: "alice".into(),
            time_ms: 1_700_000_000_000 + i as u64,
            traceparent: None,
            ..Default::default()
        };
        let mut headers = HeaderMap::new();
        for (name, value) in meta.to_headers() {
            headers.insert(name, value);
        }
        let ack = js
            .publish_with_headers(
                subjects::event(&entity, event_type),
                headers,
                Bytes::from(payload),
            )
            .await?;
        in_flight.push(ack.into_future());
        if in_flight.len() >= args.window
            && let Some(done) = in_flight.next().await
        {
            done?;
        }
    }
    while let Some(done) = in_flight.next().await {
        done?;
    }
    Ok(())
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When the server cannot start, a publish fails, or a phase reads a different count.
pub async fn run(args: ReplayBenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.events > 0 && args.entities > 0 && args.rounds > 0,
        "events, entities and rounds must be positive"
    );
    let nats = NatsServer::start().await?;
    let client = async_nats::connect(nats.url()).await?;
    let store = JetStreamStore::open(client, StoreConfig::default()).await?;
    let js = store.context().clone();

    let start = Instant::now();
    fill(&js, &args).await.context("filling NEO_EVENTS")?;
    let fill_per_s = rate(args.events, start.elapsed());
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await?;
    let info = stream.info().await?;
    let (last, stream_bytes) = (info.state.last_sequence, info.state.bytes);
    tracing::info!(events = args.events, fill_per_s, "stream filled");

    let settings = ReadSettings {
        max_batch: args.max_batch,
        ..ReadSettings::default()
    };
    let expected_entities = args.entities.min(args.events);
    let (mut raw_best, mut replay_best) = (0f64, 0f64);
    let mut entities = 0;
    for round in 1..=args.rounds {
        for fold in [false, true] {
            let (stats, _) = replay::replay_all_with(&js, 1, last, fold, settings).await?;
            anyhow::ensure!(
                stats.events == args.events as u64,
                "round {round} read {} events of {}",
                stats.events,
                args.events
            );
            let per_s = stats.events as f64 / stats.seconds.max(f64::EPSILON);
            tracing::info!(round, fold, per_s, "read");
            if fold {
                anyhow::ensure!(
                    stats.entities == expected_entities,
                    "replay folded {} entities of {expected_entities}",
                    stats.entities
                );
                entities = stats.entities;
                replay_best = replay_best.max(per_s);
            } else {
                raw_best = raw_best.max(per_s);
            }
        }
    }
    let figures = ReplayFigures {
        raw_read_per_s: raw_best,
        replay_per_s: replay_best,
        replay_to_raw_ratio: replay_best / raw_best.max(f64::EPSILON),
        events: args.events as u64,
        entities,
        fill_per_s,
        stream_bytes,
        rounds: args.rounds,
    };
    if args.json {
        println!("{}", serde_json::to_string(&figures)?);
    } else {
        println!("{:<22} {:>12}  target", "figure", "value");
        println!("{:<22} {:>12.0}", "raw_read_per_s", figures.raw_read_per_s);
        println!("{:<22} {:>12.0}", "replay_per_s", figures.replay_per_s);
        println!(
            "{:<22} {:>12.2}  ≥ 0.8",
            "replay_to_raw_ratio", figures.replay_to_raw_ratio
        );
        println!("{:<22} {:>12}", "events", figures.events);
        println!("{:<22} {:>12}", "entities", figures.entities);
        println!("{:<22} {:>12.0}", "fill_per_s", figures.fill_per_s);
        println!("{:<22} {:>12}", "stream_bytes", figures.stream_bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use neo_actors::replay::Replayer;

    #[test]
    fn generated_events_fold_and_spread_over_the_entities() {
        let tenant = TenantName::new("bench").unwrap();
        let stage = StageName::new("prod").unwrap();
        let mut replayer = Replayer::new();
        let mut headers = HeaderMap::new();
        headers.insert(neo_protocol::headers::SCHEMA_VERSION, "1");
        for i in 0..100 {
            let (entity, ty, payload) = event(&tenant, &stage, 10, i).unwrap();
            let subject = subjects::event(&entity, ty);
            replayer
                .apply(i as u64 + 1, &subject, Some(&headers), Bytes::from(payload))
                .unwrap();
        }
        assert_eq!((replayer.events(), replayer.entities()), (100, 10));
        let app = EntityRef::app(&tenant, &AppName::new("app-0").unwrap());
        match &replayer.get(&app).unwrap().state {
            replay::EntityState::App(s) => assert_eq!((s.exists, s.revisions.len()), (true, 9)),
            other => panic!("{other:?}"),
        }
    }
}
