//! An entity's history, its state at a point in time, and the causes of an event, read from
//! the event stream.
//!
//! Every event records its causation: `evt:{sequence}` when a reactor or a build worker acted
//! on an earlier event, empty when a user's command (or an outside decision) started it. Walking
//! those links back gives the chain of causes across entities.

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::StreamExt;
use neo_protocol::envelope::{self, EventMeta};
use neo_protocol::{EntityRef, TenantName, subjects};
use tonic::Status;

use crate::api;
use crate::error::unavailable;

/// The most events one history call returns.
pub const MAX_HISTORY: u32 = 1000;
/// The longest chain of causes followed (a guard against a cycle in tampered data).
pub const MAX_CHAIN: usize = 64;

/// Up to `limit` events of `entity` after `after`, oldest first, and whether more follow.
///
/// # Errors
/// `UNAVAILABLE` when the stream cannot be read.
pub async fn history(
    js: &async_nats::jetstream::Context,
    entity: &EntityRef,
    after: u64,
    limit: u32,
) -> Result<(Vec<api::Event>, bool), Status> {
    let limit = if limit == 0 {
        MAX_HISTORY
    } else {
        limit.min(MAX_HISTORY)
    } as usize;
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable(format!("event stream unavailable: {e}")))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: subjects::entity_events(entity),
            deliver_policy: match after {
                0 => DeliverPolicy::All,
                n => DeliverPolicy::ByStartSequence {
                    start_sequence: n + 1,
                },
            },
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(format!("cannot read the history: {e}")))?;
    let pending = consumer.cached_info().num_pending as usize;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable(format!("cannot read the history: {e}")))?;
    let mut events = Vec::with_capacity(pending.min(limit));
    while events.len() < pending.min(limit) {
        match messages.next().await {
            Some(Ok(msg)) => {
                let sequence = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
                if let Some(event) = event(
                    msg.subject.as_str(),
                    sequence,
                    msg.headers.as_ref(),
                    msg.payload.clone(),
                ) {
                    events.push(event);
                }
            }
            Some(Err(e)) => return Err(unavailable(format!("history interrupted: {e}"))),
            None => break,
        }
    }
    Ok((events, pending > limit))
}

/// An event as the API shows it, from its subject, sequence, headers and payload.
pub fn event(
    subject: &str,
    sequence: u64,
    headers: Option<&async_nats::HeaderMap>,
    payload: bytes::Bytes,
) -> Option<api::Event> {
    let (entity, event_type) = subjects::parse_event(subject).ok()?;
    let meta = EventMeta::from_headers(|n| headers?.get(n).map(|v| v.as_str())).unwrap_or_default();
    Some(api::Event {
        sequence,
        tenant: entity.tenant.to_string(),
        kind: entity.kind.to_string(),
        entity_id: entity.id.to_string(),
        event_type,
        schema_version: meta.schema_version,
        time_ms: meta.time_ms,
        who: meta.who,
        command_id: meta.command_id,
        correlation_id: meta.correlation_id,
        causation_id: meta.causation_id,
        payload: Some(prost_types::Any {
            type_url: envelope::type_url(envelope::event_message(entity.kind)),
            value: payload.to_vec(),
        }),
    })
}

/// The chain of causes of event `sequence` of `tenant`: the event, its cause, …, the root; and
/// who started it.
///
/// # Errors
/// `NOT_FOUND` when the event does not exist or is not the tenant's; `UNAVAILABLE`.
pub async fn why(
    js: &async_nats::jetstream::Context,
    tenant: &TenantName,
    sequence: u64,
) -> Result<(Vec<api::Event>, String), Status> {
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable(format!("event stream unavailable: {e}")))?;
    let mut chain = Vec::new();
    let mut next = Some(sequence);
    while let Some(seq) = next.take() {
        if chain.len() >= MAX_CHAIN {
            break;
        }
        let not_found = || Status::not_found(format!("tenant `{tenant}` has no event {seq}"));
        let msg = match stream.get_raw_message(seq).await {
            Ok(m) => m,
            Err(e)
                if matches!(
                    e.kind(),
                    async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound
                ) =>
            {
                return Err(not_found());
            }
            Err(e) => return Err(unavailable(format!("cannot read event {seq}: {e}"))),
        };
        let Some(event) = event(
            msg.subject.as_str(),
            seq,
            Some(&msg.headers),
            msg.payload.clone(),
        ) else {
            return Err(not_found());
        };
        if event.tenant != tenant.as_str() {
            return Err(not_found());
        }
        next = event
            .causation_id
            .strip_prefix("evt:")
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|cause| *cause < seq);
        chain.push(event);
    }
    let root = chain.last().map(root_of).unwrap_or_default();
    Ok((chain, root))
}

/// Who started a chain, from its root event's principal.
fn root_of(event: &api::Event) -> String {
    match event.who.split_once(':') {
        Some(("reactor", name)) => format!("reactor {name}"),
        Some(("worker", name)) => format!("build worker {name}"),
        Some((kind, name)) => format!("{kind} {name}"),
        None if event.who.is_empty() => "unknown".into(),
        None => format!("user {}", event.who),
    }
}

/// The state of `entity` (typed: `neo.v1.{Kind}State`) after its last event at or before
/// `sequence` (or, with `sequence` 0, at or before `time_ms`; both 0: now), and that event's
/// sequence.
///
/// # Errors
/// `UNAVAILABLE` when the stream cannot be read; `DATA_LOSS` when a stored event cannot be
/// folded.
pub async fn state_at(
    js: &async_nats::jetstream::Context,
    entity: &EntityRef,
    sequence: u64,
    time_ms: u64,
) -> Result<(prost_types::Any, u64), Status> {
    let typed = |value: Vec<u8>| prost_types::Any {
        type_url: envelope::type_url(envelope::state_message(entity.kind)),
        value,
    };
    let up_to = match (sequence, time_ms) {
        (0, 0) => None,
        (0, t) => {
            // The entity's last event at or before the time.
            let mut last = 0;
            let mut after = 0;
            loop {
                let (events, more) = history(js, entity, after, MAX_HISTORY).await?;
                for e in &events {
                    if e.time_ms <= t {
                        last = e.sequence;
                    }
                }
                match events.last() {
                    Some(e) if more && e.time_ms <= t => after = e.sequence,
                    _ => break,
                }
            }
            Some(last)
        }
        (s, _) => Some(s),
    };
    if up_to == Some(0) {
        return Ok((typed(empty_state(entity)), 0));
    }
    let (state, last) = neo_actors::replay::replay_entity(js, entity, up_to)
        .await
        .map_err(|e| match e {
            neo_actors::replay::ReplayError::Malformed { .. } => Status::data_loss(e.to_string()),
            e => unavailable(e.to_string()),
        })?;
    Ok((typed(state.encode_to_vec()), last))
}

fn empty_state(entity: &EntityRef) -> Vec<u8> {
    neo_actors::replay::EntityState::empty(entity.kind).encode_to_vec()
}
