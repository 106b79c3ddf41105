//! The tails of the cold podgroups: the events a host would append for `ScaleTo` commands,
//! published back to back (pipelined) so the log's layout is chosen, not left to scheduling.
//!
//! Each event carries the headers the host's append puts on an event
//! ([`EventMeta::stored_headers`], continuing the entity's hash chain from its snapshot, and
//! `Nats-Msg-Id`), except the two expected-sequence headers, which pipelining cannot know.

use anyhow::Context as _;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use neo_actors::Aggregate;
use neo_actors::store::EventStore;
use neo_actors::store::jetstream::JetStreamStore;
use neo_protocol::envelope::{EventMeta, chain_link, now_ms};
use neo_protocol::{EntityRef, headers, pb, subjects};
use prost::Message as _;

/// Publish acknowledgements awaited at once.
const WINDOW: usize = 1_024;

/// The head of an entity's hash chain.
struct Head {
    version: u64,
    hash: String,
}

/// Desired replicas once the podgroup's event `n` is applied (create, then 2, 1, 2, …).
pub(super) fn desired_after(n: usize) -> u32 {
    if n % 2 == 1 { 2 } else { 1 }
}

/// The event a host appends for `ScaleTo` as the podgroup's event `n`, after `head`.
fn scaled(entity: &EntityRef, n: usize, head: &mut Head) -> (String, HeaderMap, Bytes) {
    let event = pb::PodgroupEvent {
        event: Some(pb::podgroup_event::Event::Scaled(pb::ScaledTo {
            from: desired_after(n - 1),
            to: desired_after(n),
            reason: "scale bench".into(),
        })),
    };
    let event_type = <pb::PodgroupState as Aggregate>::event_type(&event);
    let payload = Bytes::from(event.encode_to_vec());
    let command_id = uuid::Uuid::new_v4().to_string();
    let mut meta = EventMeta {
        event_type: event_type.to_owned(),
        schema_version: <pb::PodgroupState as Aggregate>::SCHEMA_VERSION,
        correlation_id: command_id.clone(),
        command_id,
        who: "bench".into(),
        time_ms: now_ms(),
        version: head.version + 1,
        ..EventMeta::default()
    };
    let subject = subjects::event(entity, event_type);
    meta.hash = chain_link(&head.hash, &subject, &meta, &payload);
    head.version = meta.version;
    head.hash.clone_from(&meta.hash);
    let mut h = HeaderMap::new();
    for (name, value) in meta.stored_headers(entity, 0) {
        h.insert(name, value);
    }
    h.insert(headers::NATS_MSG_ID, meta.command_id.as_str());
    (subject, h, payload)
}

/// Appends events `first..first + tail` to every entity, `interleave` entities at a time: the
/// events of a group alternate in the log (1: each tail is one unbroken run).
///
/// # Errors
/// When an entity has no snapshot to continue its chain from, or a publish fails.
pub(super) async fn write(
    store: &JetStreamStore,
    entities: &[EntityRef],
    first: usize,
    tail: usize,
    interleave: usize,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let js = store.context();
    for group in entities.chunks(interleave.max(1)) {
        let mut heads = Vec::with_capacity(group.len());
        for entity in group {
            let snapshot = store
                .read_snapshot(entity)
                .await?
                .with_context(|| format!("{entity} has no snapshot"))?;
            heads.push(Head {
                version: snapshot.version,
                hash: snapshot.hash,
            });
        }
        let mut pending = FuturesUnordered::new();
        for n in first..first + tail {
            for (entity, head) in group.iter().zip(heads.iter_mut()) {
                let (subject, h, payload) = scaled(entity, n, head);
                pending.push(
                    js.publish_with_headers(subject, h, payload)
                        .await?
                        .into_future(),
                );
                if pending.len() >= WINDOW
                    && let Some(ack) = pending.next().await
                {
                    ack?;
                    progress.inc(1);
                }
            }
        }
        while let Some(ack) = pending.next().await {
            ack?;
            progress.inc(1);
        }
    }
    Ok(())
}
