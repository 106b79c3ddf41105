//! Phase 4: cold activation of podgroups that have a snapshot and a tail of events after it.
//!
//! Two sets of `--cold` podgroups, each created and scaled through real commands by a host with
//! `snapshot_every = SNAPSHOT_AT` until it has written its snapshot; then each gets a `--tail`
//! of `Scaled` events ([`super::tail`]): in the first set each tail is one unbroken run of the
//! log, in the second the tails of `--interleave` podgroups alternate, as when that many
//! entities are busy at once. A fresh host then asks each podgroup's state once, one at a time,
//! over a store that counts and times what each activation reads ([`Probe`]): the run fails
//! unless every activation started from the snapshot and read exactly the tail, and the first
//! few are checked against a rebuild from the whole log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use neo_actors::store::EventStore;
use neo_actors::store::jetstream::JetStreamStore;
use neo_actors::{CommandMeta, HostConfig, Platform};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb};

use super::ScaleBenchArgs;
use super::create::bar;
use super::probe::Probe;
use super::tail::{self, desired_after};
use crate::core::{in_parallel, share};
use crate::procstat;
use crate::stats::percentile_ms;

/// Events each cold podgroup's snapshot covers (the host's default `snapshot_every`).
pub(super) const SNAPSHOT_AT: usize = 256;

/// How long the snapshots written in the background may take to land.
const SNAPSHOT_WAIT: Duration = Duration::from_secs(30);

/// Cold activations per set checked against a rebuild from the whole log, without snapshot.
const CHECKED_IN_FULL: usize = 5;

/// What the activations of one set measured.
pub(super) struct Activations {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub last_sequence_p50_ms: f64,
    pub read_snapshot_p50_ms: f64,
    pub load_p50_ms: f64,
    pub load_p99_ms: f64,
    /// CPU the nats-server spent per activation, on average (ms).
    pub server_cpu_ms: f64,
    /// CPU this process (the host) spent per activation, on average (ms).
    pub client_cpu_ms: f64,
}

/// Both sets.
pub(super) struct Cold {
    /// Tails written one podgroup at a time.
    pub contiguous: Activations,
    /// Tails of `--interleave` podgroups alternating.
    pub interleaved: Activations,
}

/// Cold podgroup `k` of set `set`: app `{set}{k}` on stage `dev` of tenant `t{k % tenants}`.
fn cold_entity(set: &str, k: usize, tenants: usize) -> anyhow::Result<EntityRef> {
    Ok(EntityRef::podgroup(
        &TenantName::new(format!("t{}", k % tenants.max(1)))?,
        &AppName::new(format!("{set}{k}"))?,
        &StageName::new("dev")?,
    ))
}

/// The podgroup's `n`-th command: create, then scale to 2, 1, 2, …
fn command(app: &str, n: usize) -> pb::PodgroupCommand {
    let command = if n == 0 {
        pb::podgroup_command::Command::Create(pb::CreatePodgroup {
            app: app.to_owned(),
            stage: "dev".into(),
            ..Default::default()
        })
    } else {
        pb::podgroup_command::Command::Scale(pb::ScaleTo {
            desired: desired_after(n),
            reason: "scale bench".into(),
        })
    };
    pb::PodgroupCommand {
        command: Some(command),
    }
}

/// Creates every podgroup and scales it until the host has snapshotted it, through commands.
async fn write_prefixes(
    store: Arc<JetStreamStore>,
    entities: &[(String, EntityRef)],
    concurrency: usize,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let platform = Platform::start(
        store,
        HostConfig {
            snapshot_every: SNAPSHOT_AT as u64,
            max_live: entities.len() + 1,
            ..HostConfig::default()
        },
    )
    .await?;
    let entities = Arc::new(entities.to_vec());
    in_parallel(concurrency, |w| {
        let (platform, entities, progress) = (platform.clone(), entities.clone(), progress.clone());
        async move {
            for k in share(w, concurrency, entities.len()) {
                let (app, entity) = &entities[k];
                for n in 0..SNAPSHOT_AT {
                    platform
                        .podgroups
                        .execute(entity, CommandMeta::new("bench"), command(app, n))
                        .await?;
                    progress.inc(1);
                }
            }
            Ok(())
        }
    })
    .await?;
    platform.passivate_all();
    Ok(())
}

/// Waits until every podgroup's snapshot covers its whole log so far.
async fn snapshots_written(
    store: &JetStreamStore,
    entities: &[(String, EntityRef)],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + SNAPSHOT_WAIT;
    for (_, entity) in entities {
        let last = store.last_sequence(entity).await?;
        loop {
            let covered = store.read_snapshot(entity).await?.map(|s| s.sequence);
            if covered == Some(last) {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{entity}: no snapshot at sequence {last} after {SNAPSHOT_WAIT:?} (found {covered:?})"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// Writes both sets, then activates each podgroup once on a fresh host.
///
/// # Errors
/// When a command or publish fails, a snapshot is not written in time, or an activation did
/// not start from the snapshot, read other than the tail, or rebuilt another state than the
/// whole log.
pub(super) async fn run(store: Arc<JetStreamStore>, args: &ScaleBenchArgs) -> anyhow::Result<Cold> {
    let set = |name: &str| -> anyhow::Result<Vec<(String, EntityRef)>> {
        (0..args.cold)
            .map(|k| Ok((format!("{name}{k}"), cold_entity(name, k, args.tenants)?)))
            .collect()
    };
    let (contiguous, interleaved) = (set("cold")?, set("mixed")?);
    let both: Vec<_> = contiguous.iter().chain(&interleaved).cloned().collect();
    let progress = bar(both.len() * SNAPSHOT_AT, args.json, "snapshotted podgroups");
    write_prefixes(store.clone(), &both, args.concurrency, &progress).await?;
    progress.finish_and_clear();
    snapshots_written(&store, &both).await?;

    let progress = bar(both.len() * args.tail, args.json, "tails");
    let refs = |s: &[(String, EntityRef)]| s.iter().map(|(_, e)| e.clone()).collect::<Vec<_>>();
    tail::write(
        &store,
        &refs(&contiguous),
        SNAPSHOT_AT,
        args.tail,
        1,
        &progress,
    )
    .await?;
    tail::write(
        &store,
        &refs(&interleaved),
        SNAPSHOT_AT,
        args.tail,
        args.interleave,
        &progress,
    )
    .await?;
    progress.finish_and_clear();

    if !args.json {
        eprintln!("… activating {} cold podgroups, one at a time", both.len());
    }
    let probe = Arc::new(Probe::new(store.clone()));
    let platform = Platform::start(probe.clone(), HostConfig::default()).await?;
    // One activation first, so no figure carries the host's first-use costs.
    let warm = EntityRef::podgroup(
        &TenantName::new("warm")?,
        &AppName::new("warm")?,
        &StageName::new("dev")?,
    );
    platform.podgroups.state(&warm).await?;
    Ok(Cold {
        contiguous: activate(&platform, &probe, &store, &refs(&contiguous), args).await?,
        interleaved: activate(&platform, &probe, &store, &refs(&interleaved), args).await?,
    })
}

/// Asks each podgroup's state once, one at a time, and checks what it read.
async fn activate(
    platform: &Platform,
    probe: &Probe,
    store: &JetStreamStore,
    entities: &[EntityRef],
    args: &ScaleBenchArgs,
) -> anyhow::Result<Activations> {
    let events = SNAPSHOT_AT + args.tail;
    let mut samples = Samples::default();
    // The CPU each side spends, read around each activation only (not the checks after it).
    // `/proc` counts in 10 ms ticks; summed over every activation the rounding evens out.
    let nats = procstat::child_named("nats-server");
    let cpu = || (procstat::own_cpu(), nats.and_then(procstat::cpu_of));
    for (k, entity) in entities.iter().enumerate() {
        let _ = probe.take();
        let (client_before, server_before) = cpu();
        let start = Instant::now();
        let (state, sequence) = platform.podgroups.state(entity).await?;
        let elapsed = start.elapsed();
        let (client_after, server_after) = cpu();
        samples.client_cpu += client_after.saturating_sub(client_before);
        if let (Some(after), Some(before)) = (server_after, server_before) {
            samples.server_cpu += after.saturating_sub(before);
        }
        let read = probe.take();
        anyhow::ensure!(
            read.snapshots == 1 && read.events == args.tail as u64,
            "{entity}: activation read {} snapshot(s) and {} events, not the snapshot and the \
             {}-event tail",
            read.snapshots,
            read.events,
            args.tail
        );
        anyhow::ensure!(
            state.exists && state.desired == desired_after(events - 1),
            "{entity}: rebuilt a wrong state: {state:?}"
        );
        if k < CHECKED_IN_FULL {
            let (full, full_sequence, _) =
                neo_actors::host::restore::<pb::PodgroupState>(store, entity, false).await?;
            anyhow::ensure!(
                full == state && full_sequence == sequence,
                "{entity}: snapshot plus tail differs from the whole log of {events} events"
            );
            // A bounded load reads subject by subject; an unbounded one through the entity's
            // wildcard filter: both must find the same events.
            let seqs = |events: Vec<neo_actors::store::StoredEvent>| {
                events.iter().map(|e| e.sequence).collect::<Vec<_>>()
            };
            let bounded = seqs(store.load(entity, 0, sequence).await?);
            let unbounded = seqs(store.load(entity, 0, u64::MAX).await?);
            anyhow::ensure!(
                bounded.len() == events && bounded == unbounded,
                "{entity}: the log read subject by subject ({} events) differs from the log \
                 read through the wildcard ({} events)",
                bounded.len(),
                unbounded.len()
            );
        }
        samples.total.push(elapsed);
        samples.last_sequence.push(read.last_sequence);
        samples.read_snapshot.push(read.read_snapshot);
        samples.load.push(read.load);
    }
    Ok(Activations {
        p50_ms: percentile_ms(&mut samples.total, 50.0),
        p99_ms: percentile_ms(&mut samples.total, 99.0),
        max_ms: percentile_ms(&mut samples.total, 100.0),
        last_sequence_p50_ms: percentile_ms(&mut samples.last_sequence, 50.0),
        read_snapshot_p50_ms: percentile_ms(&mut samples.read_snapshot, 50.0),
        load_p50_ms: percentile_ms(&mut samples.load, 50.0),
        load_p99_ms: percentile_ms(&mut samples.load, 99.0),
        server_cpu_ms: per_activation_ms(samples.server_cpu, entities.len()),
        client_cpu_ms: per_activation_ms(samples.client_cpu, entities.len()),
    })
}

fn per_activation_ms(total: Duration, activations: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / activations.max(1) as f64
}

#[derive(Default)]
struct Samples {
    total: Vec<Duration>,
    last_sequence: Vec<Duration>,
    read_snapshot: Vec<Duration>,
    load: Vec<Duration>,
    server_cpu: Duration,
    client_cpu: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_alternate_so_every_scale_is_accepted() {
        use neo_actors::Aggregate as _;
        let mut state = pb::PodgroupState::default();
        for n in 0..10 {
            for event in state.handle(command("cold3", n)).expect("accepted") {
                state.apply(&event);
            }
            assert_eq!(state.desired, desired_after(n));
        }
    }
}
