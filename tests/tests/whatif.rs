//! The autoscaler and its what-if on a real nats-server and platform: a podgroup observed under
//! rising then falling load scales as the rules say; the what-if under its own policy finds the
//! decisions recorded in the stream, under another policy different ones, and writes nothing.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use neo_actors::HostConfig;
use neo_actors::whatif::{self, Change, Decision, Overrides};
use neo_protocol::pb::{self, podgroup_command::Command, podgroup_event::Event};
use neo_protocol::{AppName, EntityRef, StageName, TenantName, subjects};
use neo_server::whatif::WhatIfArgs;
use neo_tests::commands::request;
use neo_tests::{Core, expect_accepted, send};

const SECOND: u64 = 1000;
/// Some time in 2025, as the agent's clock would give.
const T0: u64 = 1_750_000_000_000;

fn podgroup() -> EntityRef {
    EntityRef::podgroup(
        &TenantName::new("acme").unwrap(),
        &AppName::new("shop").unwrap(),
        &StageName::new("prod").unwrap(),
    )
}

fn policy() -> pb::ScalePolicy {
    pb::ScalePolicy {
        min_replicas: 1,
        max_replicas: 5,
        target_cpu_percent: 70,
        target_memory_percent: 80,
        scale_down_window_s: 60,
        idle_to_zero_s: 0,
    }
}

fn command(command: Command) -> pb::PodgroupCommand {
    pb::PodgroupCommand {
        command: Some(command),
    }
}

fn observe(at_s: u64, ready: u32, cpu: f64, memory: f64) -> pb::PodgroupCommand {
    command(Command::Observe(pb::Observe {
        observation: Some(pb::Observation {
            at_ms: T0 + at_s * SECOND,
            ready_replicas: ready,
            cpu_percent: cpu,
            memory_percent: memory,
        }),
    }))
}

async fn stream_last_sequence(js: &async_nats::jetstream::Context) -> u64 {
    let mut stream = js.get_stream(subjects::EVENTS_STREAM).await.unwrap();
    stream.info().await.unwrap().state.last_sequence
}

/// `(seconds after T0, from, to)` of each replica decision.
fn replicas(decisions: &[Decision]) -> Vec<(u64, u32, u32)> {
    decisions
        .iter()
        .filter_map(|d| match d.change {
            Change::Replicas { from, to } => Some(((d.at_ms - T0) / SECOND, from, to)),
            Change::Resources { .. } => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_what_if_replays_the_live_decisions_and_differs_under_another_policy() {
    let core = Core::start().await.unwrap();
    let p = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let js = p.store.context().clone();
    let pg = podgroup();

    let create = command(Command::Create(pb::CreatePodgroup {
        app: "shop".into(),
        stage: "prod".into(),
        policy: Some(policy()),
        ..Default::default()
    }));
    expect_accepted(send(&client, &pg, &request(create)).await.unwrap());
    // Load rises, then falls; the agent reports the replicas that are ready.
    for o in [
        observe(0, 1, 150.0, 20.0),  // ceil(1 × 150/70) = 3: scale out at once
        observe(30, 3, 140.0, 95.0), // ceil(3 × 2) = 6, capped at 5; memory raised
        observe(60, 5, 72.0, 20.0),  // inside the tolerance
        observe(90, 5, 20.0, 20.0),  // → 2, but 5 is in the 60 s window
        observe(80, 5, 300.0, 99.0), // older than the last: recorded, decides nothing
        observe(100, 0, 0.0, 0.0),   // no ready replica: no data
        observe(200, 5, 20.0, 20.0), // the window passed: → 2
        observe(300, 2, 10.0, 20.0), // → 1
    ] {
        expect_accepted(send(&client, &pg, &request(o)).await.unwrap());
    }
    let (state, _) = p.platform.podgroups.state(&pg).await.unwrap();
    assert_eq!(state.desired, 1);
    assert_eq!(state.resources.unwrap().memory_mib, 384);

    // The live decisions, straight from the stream's Autoscaled events.
    let history = whatif::read_history(&js, &pg).await.unwrap();
    let autoscaled: Vec<Decision> = history
        .events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Autoscaled(_))))
        .filter_map(Decision::of_event)
        .collect();
    assert_eq!(
        replicas(&autoscaled),
        [(0, 1, 3), (30, 3, 5), (200, 5, 2), (300, 2, 1)]
    );
    let observed = history
        .events
        .iter()
        .filter(|e| matches!(e.event, Some(Event::Observed(_))))
        .count();
    assert_eq!(observed, 8);

    // Under the same policy, the what-if takes exactly those decisions (and the raise).
    let same = whatif::what_if(&history.events, &policy(), "pg").unwrap();
    assert_eq!(
        same.decisions
            .iter()
            .filter(|d| matches!(d.change, Change::Replicas { .. }))
            .cloned()
            .collect::<Vec<_>>(),
        autoscaled
    );
    let recorded = whatif::recorded(&history.events, "pg").unwrap();
    assert_eq!(same, recorded);
    assert_eq!(recorded.summary.raises, 1);

    let before = stream_last_sequence(&js).await;
    assert_eq!(history.last_sequence, before);

    // Under another policy: at most 2 replicas.
    let capped = Overrides {
        max_replicas: Some(2),
        ..Overrides::default()
    };
    let report = whatif::what_if_podgroup(&js, &pg, &capped).await.unwrap();
    assert_eq!(report.recorded, recorded);
    assert_eq!(report.observations, 8);
    assert_eq!(report.what_if.policy.max_replicas, 2);
    assert_eq!(
        replicas(&report.what_if.decisions),
        [(0, 1, 2), (300, 2, 1)]
    );
    assert_ne!(report.what_if.decisions, report.recorded.decisions);
    assert_eq!(report.what_if.summary.peak_replicas, 2);
    assert!(report.what_if.summary.replica_seconds < report.recorded.summary.replica_seconds);

    // Under another policy: a ten-minute window never lets the load's fall scale in.
    let patient = Overrides {
        scale_down_window_s: Some(600),
        ..Overrides::default()
    };
    let report = whatif::what_if_podgroup(&js, &pg, &patient).await.unwrap();
    assert_eq!(replicas(&report.what_if.decisions), [(0, 1, 3), (30, 3, 5)]);

    // `neo what-if` prints both (table and JSON) from the stream.
    for json in [false, true] {
        neo_server::whatif::run(WhatIfArgs {
            nats: neo_server::nats_connect::NatsArgs::plain(core.nats.url()),
            tenant: "acme".into(),
            app: "shop".into(),
            stage: "prod".into(),
            policy: neo_cli::commands::runtime::PolicyArgs {
                max: Some(2),
                ..Default::default()
            },
            json,
        })
        .await
        .unwrap();
    }

    // A refused policy and an unknown podgroup are errors, not panics.
    let bad = Overrides {
        min_replicas: Some(9),
        ..Overrides::default()
    };
    assert!(matches!(
        whatif::what_if_podgroup(&js, &pg, &bad).await,
        Err(whatif::WhatIfError::Policy(_))
    ));
    let none = EntityRef::podgroup(
        &TenantName::new("acme").unwrap(),
        &AppName::new("blog").unwrap(),
        &StageName::new("prod").unwrap(),
    );
    assert!(matches!(
        whatif::what_if_podgroup(&js, &none, &Overrides::default()).await,
        Err(whatif::WhatIfError::NotFound(_))
    ));

    // Nothing was written, and the live podgroup is as it was.
    assert_eq!(stream_last_sequence(&js).await, before);
    let (after, _) = p.platform.podgroups.state(&pg).await.unwrap();
    assert_eq!(after, state);
}
