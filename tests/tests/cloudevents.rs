//! Stored events carry CloudEvents attributes (binary mode) next to Neo's own headers, so
//! generic tooling can read them.
#![allow(clippy::unwrap_used)]

use neo_actors::HostConfig;
use neo_protocol::{EntityRef, TenantName, subjects};
use neo_tests::commands::{create_tenant, request_with_id};
use neo_tests::{Core, expect_accepted, send};

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_event_carries_cloudevents_headers() {
    let core = Core::start().await.unwrap();
    let platform = core.platform(HostConfig::default()).await.unwrap();
    let client = core.connect().await.unwrap();
    let acme = EntityRef::tenant(&TenantName::new("acme").unwrap());
    let accepted = expect_accepted(
        send(
            &client,
            &acme,
            &request_with_id("cmd-1", create_tenant("alice")),
        )
        .await
        .unwrap(),
    );
    let sequence = accepted.events[0].sequence;
    let stream = platform
        .store
        .context()
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .unwrap();
    let msg = stream.get_raw_message(sequence).await.unwrap();
    let header = |name: &str| {
        msg.headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {:?}", msg.headers))
    };
    assert_eq!(header("ce-specversion"), "1.0");
    assert_eq!(header("ce-id"), "cmd-1:0");
    assert_eq!(header("ce-type"), "dev.neo.tenant.TenantCreated");
    assert_eq!(header("ce-source"), "/neo/acme/tenant/acme");
    assert_eq!(header("ce-datacontenttype"), "application/protobuf");
    assert!(header("ce-time").ends_with('Z'), "{}", header("ce-time"));
}
