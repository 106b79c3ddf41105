//! The hash chain on real events: a clean log verifies; a modified, missing, reordered or
//! republished event, and a log shorter than its checkpoints, are each reported.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use neo_actors::HostConfig;
use neo_actors::audit::{self, Problem, Record};
use neo_protocol::{AppName, EntityRef, TenantName};
use neo_tests::commands::{create_app, create_tenant, request, revision};
use neo_tests::{Core, expect_accepted, send};

const FILTER: &str = "neo.evt.acme.>";

async fn fixture() -> (Core, neo_tests::PlatformProcess, Vec<Record>) {
    let core = Core::start().await.unwrap();
    let config = HostConfig {
        snapshot_every: 2,
        ..HostConfig::default()
    };
    let platform = core.platform(config).await.unwrap();
    let client = core.connect().await.unwrap();
    let acme = TenantName::new("acme").unwrap();
    let shop = EntityRef::app(&acme, &AppName::new("shop").unwrap());
    expect_accepted(
        send(
            &client,
            &EntityRef::tenant(&acme),
            &request(create_tenant("alice")),
        )
        .await
        .unwrap(),
    );
    expect_accepted(send(&client, &shop, &request(create_app())).await.unwrap());
    for n in 1..=5 {
        expect_accepted(send(&client, &shop, &request(revision(n))).await.unwrap());
    }
    // Snapshots are written in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = audit::read(platform.store.context(), FILTER).await.unwrap();
    (core, platform, records)
}

fn shop_positions(records: &[Record]) -> Vec<usize> {
    records
        .iter()
        .enumerate()
        .filter(|(_, r)| r.subject.starts_with("neo.evt.acme.app.shop."))
        .map(|(i, _)| i)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_log_verifies_against_its_checkpoints() {
    let (_core, platform, records) = fixture().await;
    let checkpoints = audit::checkpoints(platform.store.context(), &records)
        .await
        .unwrap();
    assert!(
        checkpoints.contains_key("acme.app.shop"),
        "snapshots checkpoint the chain: {checkpoints:?}"
    );
    let report = audit::verify(records.clone(), &checkpoints);
    assert_eq!(report.problems, vec![], "{report:#?}");
    assert_eq!(
        (report.events, report.entities, report.unchained),
        (records.len() as u64, 2, 0)
    );
    assert!(records.len() >= 7, "{records:?}");

    // An export line round-trips and still verifies.
    let lines: Vec<String> = records
        .iter()
        .map(|r| audit::export_line(r).unwrap())
        .collect();
    let back: Vec<Record> = lines
        .iter()
        .map(|l| audit::parse_line(l).unwrap())
        .collect();
    assert_eq!(back, records);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modified_missing_or_reordered_event_is_reported() {
    let (_core, _platform, records) = fixture().await;
    let shop = shop_positions(&records);
    let none = audit::Checkpoints::new();

    let mut modified = records.clone();
    modified[shop[2]].payload.push(0);
    let report = audit::verify(modified, &none);
    assert_eq!(
        report.problems,
        vec![Problem::Modified {
            entity: "acme.app.shop".into(),
            sequence: records[shop[2]].sequence,
            version: 3,
        }]
    );

    let mut missing = records.clone();
    missing.remove(shop[3]);
    let report = audit::verify(missing, &none);
    assert_eq!(
        report.problems,
        vec![Problem::Missing {
            entity: "acme.app.shop".into(),
            from: 4,
            to: 4,
            before_sequence: records[shop[4]].sequence,
        }]
    );

    let mut reordered = records.clone();
    reordered.swap(shop[1], shop[3]);
    let report = audit::verify(reordered, &none);
    assert!(
        report
            .problems
            .iter()
            .any(|p| matches!(p, Problem::OutOfOrder { version: 2, .. })),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_modified_copy_republished_into_the_stream_is_reported() {
    let (_core, platform, records) = fixture().await;
    let js = platform.store.context();
    let original = &records[shop_positions(&records)[2]];
    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in &original.headers {
        if !k.starts_with("Nats-") {
            headers.insert(k.as_str(), v.as_str());
        }
    }
    let mut payload = original.payload.clone();
    payload.push(0);
    js.publish_with_headers(original.subject.clone(), headers, payload.into())
        .await
        .unwrap()
        .await
        .unwrap();
    let tampered = audit::read(js, FILTER).await.unwrap();
    let checkpoints = audit::checkpoints(js, &tampered).await.unwrap();
    let report = audit::verify(tampered, &checkpoints);
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            Problem::OutOfOrder {
                version: 3,
                after_version: 6,
                ..
            }
        )),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_shorter_than_its_checkpoint_is_reported() {
    let (_core, platform, records) = fixture().await;
    let checkpoints = audit::checkpoints(platform.store.context(), &records)
        .await
        .unwrap();
    let (version, _) = checkpoints["acme.app.shop"].clone();
    let kept: Vec<Record> = records
        .iter()
        .filter(|r| {
            !r.subject.starts_with("neo.evt.acme.app.shop.")
                || r.headers["Neo-Version"].parse::<u64>().unwrap() < version
        })
        .cloned()
        .collect();
    let report = audit::verify(kept, &checkpoints);
    assert!(
        report.problems.iter().any(|p| matches!(
            p,
            Problem::Checkpoint { entity, version: v, .. } if entity == "acme.app.shop" && *v == version
        )),
        "{report:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn neo_audit_verify_and_export_run_against_the_stream() {
    use neo_server::audit::{AuditCommand, ExportArgs, Source, VerifyArgs};
    let (core, _platform, records) = fixture().await;
    let source = Source {
        nats: neo_server::nats_connect::NatsArgs::plain(core.nats.url()),
        tenant: Some("acme".into()),
    };
    let clean = neo_server::audit::run(AuditCommand::Verify(VerifyArgs {
        source: source.clone(),
        file: None,
        json: true,
    }))
    .await
    .unwrap();
    assert!(clean, "a clean log verifies");
    assert!(
        neo_server::audit::run(AuditCommand::Export(ExportArgs {
            source: source.clone()
        }))
        .await
        .unwrap()
    );

    // An export with a line removed fails verification.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.jsonl");
    let shop = shop_positions(&records);
    let lines: Vec<String> = records
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != shop[2])
        .map(|(_, r)| audit::export_line(r).unwrap())
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    let tampered = neo_server::audit::run(AuditCommand::Verify(VerifyArgs {
        source,
        file: Some(path),
        json: false,
    }))
    .await
    .unwrap();
    assert!(!tampered, "a missing event fails verification");
}
