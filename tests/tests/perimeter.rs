//! The security perimeter on a real nats-server configured by `neo_server::nats_config`: TLS is
//! required; each component is its own NATS user with only the subjects it needs. An agent
//! of one stage cannot write events or read another stage; a tooling user of one tenant sees
//! nothing of another; and the whole platform works over TLS with every component on its own
//! credential, with no permission violation reported to any of them.
//!
//! (The gateway refusing plaintext gRPC is tests/tests/tls.rs.)
#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use bytes::Bytes;
use futures::StreamExt as _;
use neo_gateway::api::PublishStep;
use neo_protocol::{AppName, EntityRef, StageName, TenantName, pb, subjects};
use neo_tests::Core;
use neo_tests::build_stack::{example, step};
use neo_tests::eventually;
use neo_tests::gateway::req;
use neo_tests::runtime_stack::RuntimeStack;
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const SHORT: Duration = Duration::from_secs(2);

/// A JetStream context that gives up after [`SHORT`] (a refused request gets no answer).
fn js(client: &async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(SHORT)
        .build(client.clone())
}

/// Waits until the server has reported an error to a client whose text has `needle`.
async fn reported(core: &Core, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let errors = core.server_errors();
        if errors.iter().any(|e| e.contains(needle)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no server error with `{needle}`; got {errors:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether nothing arrives on `sub` within `within`.
async fn nothing_within(sub: &mut async_nats::Subscriber, within: Duration) -> bool {
    tokio::time::timeout(within, sub.next()).await.is_err()
}

async fn last_sequence(admin: &jetstream::Context, stream: &str) -> u64 {
    admin
        .get_stream(stream)
        .await
        .unwrap()
        .cached_info()
        .state
        .last_sequence
}

fn names(tenant: &str, app: &str, stage: &str) -> (TenantName, AppName, StageName) {
    (
        TenantName::new(tenant).unwrap(),
        AppName::new(app).unwrap(),
        StageName::new(stage).unwrap(),
    )
}

/// A secured core with the platform's streams, agents' consumers for dev and prod, desired
/// states for `a/shop` on both stages, and one event of tenant `a` and one of `b`.
async fn secured() -> (Core, neo_tests::PlatformProcess, jetstream::Context) {
    let core = Core::start_secured(&["dev", "prod"], &["a", "b"])
        .await
        .unwrap();
    let platform = core
        .platform(neo_actors::HostConfig::default())
        .await
        .unwrap();
    let admin = js(&core.connect().await.unwrap());
    let stages = [
        StageName::new("dev").unwrap(),
        StageName::new("prod").unwrap(),
    ];
    let tool_tenants = [TenantName::new("a").unwrap(), TenantName::new("b").unwrap()];
    neo_server::nats_config::provision(&admin, &stages, &tool_tenants)
        .await
        .unwrap();
    for stage in ["dev", "prod"] {
        let (t, a, s) = names("a", "shop", stage);
        let desired = pb::DesiredPodgroup {
            tenant: "a".into(),
            app: "shop".into(),
            stage: stage.into(),
            replicas: 1,
            ..Default::default()
        };
        admin
            .publish(
                subjects::desired(&s, &t, &a),
                desired.encode_to_vec().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    for tenant in ["a", "b"] {
        let (t, a, _) = names(tenant, "shop", "dev");
        let subject = subjects::event(&EntityRef::app(&t, &a), "AppCreated");
        admin
            .publish(subject, Bytes::from_static(b"event"))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    (core, platform, admin)
}

#[tokio::test]
async fn a_client_without_tls_or_without_the_ca_or_without_a_credential_is_refused() {
    let core = Core::start_secured(&["dev"], &[]).await.unwrap();

    // Plaintext: the server answers a CONNECT without TLS with an error, never a PONG.
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", core.nats.port()))
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tcp.read(&mut buf).await.unwrap();
    let info = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(info.contains("\"tls_required\":true"), "{info}");
    tcp.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    while let Ok(Ok(n)) = tokio::time::timeout(SHORT, tcp.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        answer.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!answer.contains("PONG"), "plaintext was served: {answer}");

    // TLS without trusting the CA: the handshake fails.
    let mut no_ca = core.nats_args("agent-dev").unwrap();
    no_ca.nats_ca = None;
    let refused = no_ca
        .options("no-ca")
        .await
        .unwrap()
        .require_tls(true)
        .connection_timeout(SHORT)
        .connect(core.nats.url())
        .await;
    assert!(refused.is_err(), "a client not trusting the CA connected");

    // TLS with the CA but no credential: not authorized.
    let mut anonymous = core.nats_args("agent-dev").unwrap();
    anonymous.nats_creds = None;
    let refused = anonymous
        .options("anonymous")
        .await
        .unwrap()
        .connection_timeout(SHORT)
        .connect(core.nats.url())
        .await;
    assert!(refused.is_err(), "an anonymous client connected");

    // With both: connected over TLS.
    let client = core.connect_as("agent-dev").await.unwrap();
    assert!(client.server_info().tls_required);
}

#[tokio::test]
async fn an_agent_reads_only_its_stage_and_cannot_write_events() {
    let (core, _platform, admin) = secured().await;
    let client = core.connect_as("agent-dev").await.unwrap();
    let agent = js(&client);

    // Publishing into the event stream: refused by the server, nothing stored.
    let before = last_sequence(&admin, subjects::EVENTS_STREAM).await;
    let (t, a, dev) = names("a", "shop", "dev");
    let forged = subjects::event(&EntityRef::app(&t, &a), "AppCreated");
    client
        .publish(forged.clone(), "forged".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    reported(&core, &format!("Publish to \"{forged}\"")).await;
    assert!(
        agent
            .publish(forged, "forged".into())
            .await
            .unwrap()
            .await
            .is_err()
    );
    assert_eq!(last_sequence(&admin, subjects::EVENTS_STREAM).await, before);

    // Its stage's desired states read fine: its durable consumer, and direct gets.
    let desired = agent
        .get_stream_no_info(subjects::DESIRED_STREAM)
        .await
        .unwrap();
    let durable: consumer::PullConsumer = desired.get_consumer("agent-dev-dev").await.unwrap();
    let mut batch = durable.fetch().max_messages(10).messages().await.unwrap();
    let first = batch.next().await.unwrap().unwrap();
    assert_eq!(first.subject.as_str(), "neo.desired.dev.a.shop");
    first.ack().await.unwrap();
    let dev_subject = subjects::desired(&dev, &t, &a);
    desired
        .direct_get_last_for_subject(dev_subject)
        .await
        .unwrap();

    // Another stage's: no consumer, no direct get, no subscription, not its consumer.
    let prod = StageName::new("prod").unwrap();
    let prod_subject = subjects::desired(&prod, &t, &a);
    assert!(
        desired
            .direct_get_last_for_subject(prod_subject.clone())
            .await
            .is_err()
    );
    reported(&core, "DIRECT.GET.NEO_DESIRED.neo.desired.prod").await;
    let created = desired
        .create_consumer(consumer::pull::Config {
            name: Some("peek".into()),
            filter_subject: subjects::desired_stage(&prod),
            ..Default::default()
        })
        .await;
    assert!(created.is_err(), "a consumer on prod's desired states");
    reported(&core, "CONSUMER.CREATE.NEO_DESIRED.peek.neo.desired.prod").await;
    assert!(
        desired
            .get_consumer::<consumer::pull::Config>("agent-prod-prod")
            .await
            .is_err()
    );
    let mut sub = client
        .subscribe(subjects::desired_stage(&prod))
        .await
        .unwrap();
    client.flush().await.unwrap();
    reported(&core, "Subscription to \"neo.desired.prod.>\"").await;
    admin
        .publish(prod_subject, "changed".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        nothing_within(&mut sub, Duration::from_millis(500)).await,
        "prod's desired state reached agent-dev"
    );

    // Commands: only on its stage's subject, and there only its own kind of command to its
    // own stage's entities (the intake checks).
    let (_, _, prod) = names("a", "shop", "prod");
    let observe = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::Observe(
            pb::Observe::default(),
        )),
    };
    let request = |id: &str| pb::CommandRequest {
        command_id: id.into(),
        correlation_id: id.into(),
        principal: "agent:dev:agent-dev".into(),
        command: observe.encode_to_vec().into(),
        ..Default::default()
    };
    let prod_podgroup = EntityRef::podgroup(&t, &a, &prod);
    let reply = client
        .request(
            subjects::stage_command(&dev, &prod_podgroup),
            request("c1").encode_to_vec().into(),
        )
        .await
        .unwrap();
    let error = neo_tests::expect_error(pb::CommandReply::decode(reply.payload).unwrap());
    assert_eq!(error.rule, neo_actors::intake::AGENT_RULE, "{error:?}");
    assert_eq!(error.code, pb::ErrorCode::FailedPrecondition as i32);
    let dev_deployment = EntityRef::deployment(&t, &a, &dev);
    let deploy = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Rollback(
            pb::Rollback::default(),
        )),
    };
    let reply = client
        .request(
            subjects::stage_command(&dev, &dev_deployment),
            pb::CommandRequest {
                command: deploy.encode_to_vec().into(),
                ..request("c2")
            }
            .encode_to_vec()
            .into(),
        )
        .await
        .unwrap();
    let error = neo_tests::expect_error(pb::CommandReply::decode(reply.payload).unwrap());
    assert_eq!(error.rule, neo_actors::intake::AGENT_RULE, "{error:?}");
    for subject in [
        subjects::stage_command(&prod, &prod_podgroup),
        subjects::command(&EntityRef::podgroup(&t, &a, &dev)),
    ] {
        let sent = tokio::time::timeout(
            SHORT,
            client.request(subject.clone(), request("c3").encode_to_vec().into()),
        )
        .await;
        assert!(!matches!(sent, Ok(Ok(_))), "{subject} answered");
        reported(&core, &format!("Publish to \"{subject}\"")).await;
    }

    // Secrets: its own stage's answer; another stage's request never leaves the client.
    let platform = core.connect_as("platform").await.unwrap();
    let mut secrets = platform.subscribe("neo.secrets.>").await.unwrap();
    platform.flush().await.unwrap();
    tokio::spawn(async move {
        while let Some(msg) = secrets.next().await {
            if let Some(reply) = msg.reply {
                let _ = platform.publish(reply, "sealed".into()).await;
            }
        }
    });
    // The responder's interest can reach the server a moment after its flush under load.
    let own = eventually(Duration::from_secs(10), "the platform's answer", || async {
        client
            .request("neo.secrets.dev.a.shop", Bytes::new())
            .await
            .ok()
    })
    .await;
    assert_eq!(own.payload.as_ref(), b"sealed");
    let other = tokio::time::timeout(
        SHORT,
        client.request("neo.secrets.prod.a.shop", Bytes::new()),
    )
    .await;
    assert!(
        !matches!(other, Ok(Ok(_))),
        "prod's secrets reached agent-dev"
    );
    reported(&core, "Publish to \"neo.secrets.prod.a.shop\"").await;
}

#[tokio::test]
async fn a_tooling_user_reads_its_tenant_and_nothing_of_another() {
    let (core, _platform, admin) = secured().await;
    let client = core.connect_as("tool-a").await.unwrap();
    let tool = js(&client);

    // Its tenant's events, from its account's copy, through an ordered consumer filtered to
    // `neo.evt.a.>` (the copy is sourced from NEO_EVENTS a moment after provisioning).
    let records = eventually(Duration::from_secs(10), "tenant a's copy", || async {
        let records = neo_actors::audit::read(&tool, "neo.evt.a.>").await.ok()?;
        (!records.is_empty()).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].subject, "neo.evt.a.app.shop.AppCreated");
    assert_eq!(
        last_sequence(&tool, subjects::TENANT_EVENTS_STREAM).await,
        1,
        "the copy holds tenant a's events only"
    );

    // Another tenant's, or every tenant's: refused.
    for filter in ["neo.evt.b.>", "neo.evt.>"] {
        assert!(
            neo_actors::audit::read(&tool, filter).await.is_err(),
            "{filter} was read"
        );
    }
    reported(&core, ".neo.evt.b.>\"").await;
    let events = tool
        .get_stream_no_info(subjects::EVENTS_STREAM)
        .await
        .unwrap();
    assert!(
        events
            .direct_get_last_for_subject("neo.evt.b.app.shop.AppCreated")
            .await
            .is_err()
    );
    assert!(events.direct_get(1).await.is_err());
    reported(&core, "DIRECT.GET.NEO_EVENTS").await;
    assert!(tool.get_stream(subjects::EVENTS_STREAM).await.is_err());
    reported(&core, "STREAM.INFO.NEO_EVENTS").await;

    // A consumer of its own delivers within its own account: pointed at a platform subject
    // (here the desired state of a stage), nothing reaches the platform.
    let mut watched = core
        .connect()
        .await
        .unwrap()
        .subscribe("neo.desired.dev.a.evil")
        .await
        .unwrap();
    let desired_before = last_sequence(&admin, subjects::DESIRED_STREAM).await;
    tool.get_stream_no_info(subjects::TENANT_EVENTS_STREAM)
        .await
        .unwrap()
        .create_consumer(consumer::push::Config {
            name: Some("redirect".into()),
            deliver_subject: "neo.desired.dev.a.evil".into(),
            filter_subject: "neo.evt.a.>".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        nothing_within(&mut watched, Duration::from_secs(1)).await,
        "a tool's delivery reached the platform's account"
    );
    assert_eq!(
        last_sequence(&admin, subjects::DESIRED_STREAM).await,
        desired_before
    );
    // Nor may it use the platform's consumer API its copy is sourced through.
    let smuggled = client
        .request(
            "$JS.NEO.API.CONSUMER.CREATE.NEO_EVENTS.x.neo.evt.a.>",
            Bytes::from_static(br#"{"stream_name":"NEO_EVENTS","config":{"name":"x","deliver_subject":"neo.desired.dev.a.evil","filter_subject":"neo.evt.a.>"}}"#),
        )
        .await;
    assert!(smuggled.is_err(), "{smuggled:?}");
    reported(&core, "$JS.NEO.API.CONSUMER.CREATE").await;

    // Another's durable consumer: no pulling from it.
    admin
        .create_consumer_on_stream(
            consumer::pull::Config {
                durable_name: Some("reactor-like".into()),
                ..Default::default()
            },
            subjects::EVENTS_STREAM,
        )
        .await
        .unwrap();
    let pulled = client
        .request(
            "$JS.API.CONSUMER.MSG.NEXT.NEO_EVENTS.reactor-like",
            Bytes::from_static(b"{\"batch\":1}"),
        )
        .await;
    assert!(pulled.is_err(), "pulled from another consumer");
    reported(&core, "MSG.NEXT.NEO_EVENTS.reactor-like").await;

    // A live subscription to another tenant: refused, nothing arrives.
    let mut sub = client.subscribe("neo.evt.b.>").await.unwrap();
    client.flush().await.unwrap();
    reported(&core, "Subscription to \"neo.evt.b.>\"").await;
    admin
        .publish("neo.evt.b.app.shop.AppUpdated", "b".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(nothing_within(&mut sub, Duration::from_millis(500)).await);

    // Publishing anything: refused, nothing stored.
    let before = last_sequence(&admin, subjects::EVENTS_STREAM).await;
    for subject in [
        "neo.evt.a.app.shop.AppCreated",
        "neo.cmd.a.app.shop",
        "anything",
    ] {
        client.publish(subject, "x".into()).await.unwrap();
        client.flush().await.unwrap();
        reported(&core, &format!("Publish to \"{subject}\"")).await;
    }
    assert_eq!(last_sequence(&admin, subjects::EVENTS_STREAM).await, before);
}

async fn status(url: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .ok()?;
    Some(client.get(url).send().await.ok()?.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_platform_runs_with_every_component_on_its_own_credential_over_tls() {
    let stack = RuntimeStack::start_secured(&["dev", "test"]).await.unwrap();
    let core = &stack.build.stack.core;
    let people = stack.build.stack.people().await.unwrap();

    // Publish over the TLS gateway: built by the worker, deployed by the reactors, run by
    // dev's agent; then promoted and run by test's agent.
    let progress = stack
        .build
        .publish(&people.dave, "acme", &example("catalog"))
        .await
        .unwrap();
    assert!(
        step(&progress, PublishStep::Deployed).is_some(),
        "not deployed: {progress:#?}"
    );
    for stage in ["dev", "test"] {
        if stage == "test" {
            stack
                .build
                .stack
                .deployments(&people.otto)
                .promote(req::promote("acme", "catalog", "test"))
                .await
                .unwrap();
        }
        let url = stack.url(stage, "acme", "catalog").unwrap();
        eventually(Duration::from_secs(90), stage, || async {
            (status(&format!("{url}/healthz")).await == Some(200)).then_some(())
        })
        .await;
    }
    // The agents' rollout records went through their stage command subjects.
    let (t, a, dev) = names("acme", "catalog", "dev");
    let admin = js(&core.connect().await.unwrap());
    let stream = admin.get_stream(subjects::EVENTS_STREAM).await.unwrap();
    let entity = EntityRef::deployment(&t, &a, &dev);
    eventually(
        Duration::from_secs(30),
        "the dev rollout recorded",
        || async {
            let subject = subjects::event(&entity, "RolloutRecorded");
            stream.direct_get_last_for_subject(subject).await.ok()
        },
    )
    .await;
    let errors = core.server_errors();
    assert!(errors.is_empty(), "permission violations: {errors:#?}");
}

/// The watch-deployments example as a tooling user would run it.
#[derive(Clone, Default)]
struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut lines) = self.0.lock() {
            lines.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Lines {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|l| String::from_utf8_lossy(&l).into_owned())
            .unwrap_or_default()
    }
}

#[tokio::test]
async fn watch_deployments_runs_over_tls_with_the_tooling_credential_and_only_for_its_tenant() {
    let (core, platform, _admin) = secured().await;
    let (t, a, s) = names("a", "shop", "dev");
    let request = |id: &str, command: Vec<u8>| pb::CommandRequest {
        command_id: id.into(),
        principal: "alice".into(),
        command: Bytes::from(command),
        ..Default::default()
    };
    let create = pb::TenantCommand {
        command: Some(pb::tenant_command::Command::Create(pb::CreateTenant {
            display_name: "A".into(),
            stages: vec![],
            admin: "alice".into(),
        })),
    };
    let _ = platform
        .platform
        .dispatch(
            &EntityRef::tenant(&t),
            request("t1", create.encode_to_vec()),
        )
        .await;
    let deploy = pb::DeploymentCommand {
        command: Some(pb::deployment_command::Command::Deploy(pb::Deploy {
            app: "shop".into(),
            stage: "dev".into(),
            build_id: "shop_r1".into(),
            revision: 1,
            image_digest: format!("sha256:{:064x}", 7),
            ..Default::default()
        })),
    };
    let reply = platform
        .platform
        .dispatch(
            &EntityRef::deployment(&t, &a, &s),
            request("d1", deploy.encode_to_vec()),
        )
        .await;
    assert!(
        matches!(reply.result, Some(pb::command_reply::Result::Accepted(_))),
        "{reply:?}"
    );

    let security = core.security.as_ref().unwrap();
    let args = |tenant: &str, ca: bool, creds: Option<&str>| neo_watch_deployments::Args {
        nats: core.nats.url(),
        nats_ca: ca.then(|| security.certs.ca.clone()),
        nats_creds: creds.map(|user| security.creds[user].clone()),
        tenant: tenant.into(),
        from_sequence: Some(1),
        json: false,
    };
    // Without the CA (so without TLS), or without a credential: refused.
    for refused in [args("a", false, Some("tool-a")), args("a", true, None)] {
        assert!(neo_watch_deployments::connect(&refused).await.is_err());
    }

    // With both: its tenant's deployment events, from the start.
    let watching = args("a", true, Some("tool-a"));
    let client = neo_watch_deployments::connect(&watching).await.unwrap();
    let out = Lines::default();
    let task = {
        let mut out = out.clone();
        tokio::spawn(async move { neo_watch_deployments::watch(client, &watching, &mut out).await })
    };
    eventually(Duration::from_secs(10), "the deployment line", || async {
        out.text()
            .contains("shop/dev ReleaseCreated v1 deploy")
            .then_some(())
    })
    .await;
    task.abort();

    // Another tenant's: the server refuses the consumer, and the tool says so.
    let other = args("b", true, Some("tool-a"));
    let client = neo_watch_deployments::connect(&other).await.unwrap();
    let ended = tokio::time::timeout(
        Duration::from_secs(20),
        neo_watch_deployments::watch(client, &other, &mut Lines::default()),
    )
    .await;
    assert!(matches!(ended, Ok(Err(_))), "{ended:?}");
}
