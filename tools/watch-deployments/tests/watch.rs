//! Against a real nats-server and the real platform: deploy, promote, and read the deployment
//! events back the way the tool does.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use neo_actors::store::jetstream::{JetStreamStore, StoreConfig};
use neo_actors::{HostConfig, Platform};
use neo_harness::NatsServer;
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb, subjects};
use neo_watch_deployments::{Args, DeploymentLine, filter_subject, watch};
use prost::Message;

fn request(id: &str, command: impl Message) -> pb::CommandRequest {
    pb::CommandRequest {
        command_id: id.into(),
        principal: "alice".into(),
        command: Bytes::from(command.encode_to_vec()),
        ..Default::default()
    }
}

fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

#[track_caller]
fn accepted(reply: pb::CommandReply) -> pb::CommandAccepted {
    match reply.result {
        Some(pb::command_reply::Result::Accepted(a)) => a,
        other => panic!("expected acceptance, got {other:?}"),
    }
}

/// A writer the test can read while `watch` writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("output lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.0.lock().expect("output lock").clone())
            .expect("utf-8 output")
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test]
async fn prints_real_deployment_events() {
    let nats = NatsServer::start().await.unwrap();
    let client = async_nats::connect(nats.url()).await.unwrap();
    let store = Arc::new(
        JetStreamStore::open(client.clone(), StoreConfig::default())
            .await
            .unwrap(),
    );
    let platform = Platform::start(store.clone(), HostConfig::default())
        .await
        .unwrap();

    let acme = TenantName::new("acme").unwrap();
    let shop = AppName::new("shop").unwrap();
    let (dev, test) = (
        StageName::new("dev").unwrap(),
        StageName::new("test").unwrap(),
    );
    let tenant = EntityRef::tenant(&acme);
    accepted(
        platform
            .dispatch(
                &tenant,
                request(
                    "t1",
                    pb::TenantCommand {
                        command: Some(pb::tenant_command::Command::Create(pb::CreateTenant {
                            display_name: "Acme".into(),
                            stages: vec![],
                            admin: "alice".into(),
                        })),
                    },
                ),
            )
            .await,
    );
    let dep_dev = EntityRef::deployment(&acme, &shop, &dev);
    let deploy = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
            app: "shop".into(),
            stage: "dev".into(),
            build_id: "shop_r1".into(),
            revision: 1,
            image_digest: digest(7),
            ..Default::default()
        })),
    };
    let first = accepted(platform.dispatch(&dep_dev, request("d1", deploy)).await);
    let dep_test = EntityRef::deployment(&acme, &shop, &test);
    let promote = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Promote(pb::Promote {
            app: "shop".into(),
            stage: "test".into(),
            ..Default::default()
        })),
    };
    accepted(platform.dispatch(&dep_test, request("p1", promote)).await);

    // The formatting function, on the ReleaseCreated event as stored.
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream(subjects::EVENTS_STREAM).await.unwrap();
    let stored = stream
        .direct_get_last_for_subject(subjects::event(&dep_dev, "ReleaseCreated"))
        .await
        .unwrap();
    assert_eq!(stored.sequence, first.last_sequence);
    let line = DeploymentLine::from_message(
        stored.subject.as_str(),
        Some(&stored.headers),
        &stored.payload,
        stored.sequence,
    )
    .unwrap();
    assert_eq!(
        (
            line.who.as_str(),
            line.event.as_str(),
            line.app.as_str(),
            line.stage.as_str(),
            line.release,
            line.origin.as_str(),
            line.image_digest.as_str(),
            line.rollout.as_str(),
            line.detail.as_str(),
        ),
        (
            "alice",
            "ReleaseCreated",
            "shop",
            "dev",
            1,
            "deploy",
            digest(7).as_str(),
            "pending",
            "build shop_r1",
        )
    );
    assert!(
        line.time.len() == 24 && line.time.ends_with('Z'),
        "{}",
        line.time
    );
    assert_eq!(
        line.text(),
        format!(
            "{} #{} alice shop/dev ReleaseCreated v1 deploy {} pending (build shop_r1)",
            line.time,
            stored.sequence,
            digest(7)
        )
    );
    let json: serde_json::Value = serde_json::from_str(&line.json()).unwrap();
    assert_eq!(json["release"], 1);
    assert_eq!(json["image_digest"], digest(7));
    assert_eq!(json["origin"], "deploy");

    // A tenant event is refused, not misread.
    let created = stream
        .direct_get_last_for_subject(subjects::entity_events(&tenant))
        .await
        .unwrap();
    assert!(
        DeploymentLine::from_message(
            created.subject.as_str(),
            Some(&created.headers),
            &created.payload,
            created.sequence,
        )
        .is_err()
    );

    // The whole program loop: history from sequence 1, deployment events of acme only.
    assert_eq!(filter_subject(&acme), "neo.evt.acme.deployment.*.*");
    let out = Captured::default();
    let args = Args {
        nats: nats.url(),
        nats_ca: None,
        nats_creds: None,
        tenant: "acme".into(),
        from_sequence: Some(1),
        json: false,
    };
    let watcher = {
        let (client, mut out) = (client.clone(), out.clone());
        tokio::spawn(async move { watch(client, &args, &mut out).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.lines().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    watcher.abort();
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert_eq!(lines[0], line.text());
    assert!(
        lines[1].contains(&format!(
            "alice shop/test ReleaseCreated v1 promotion {} pending (from dev v1)",
            digest(7)
        )),
        "{}",
        lines[1]
    );
}
