//! Replay: reads a range of `NEO_EVENTS` in order with an ordered consumer and folds every
//! event into its entity's state, the way the entity host folds (upcast, decode, `apply`).
//!
//! - [`replay_entity`] rebuilds one entity's state from its log, optionally only up to a
//!   stream sequence: the state "as at" that point.
//! - [`replay_all`] reads every event of a sequence range, folding into one state per entity
//!   or (the baseline of `neo bench replay`) only reading.
//! - [`Replayer`] is the fold itself, fed message by message; [`read_range`] is the read.
//!
//! The fold does no allocation per event beyond the decoded event itself: states are keyed by
//! the `{tenant}.{kind}.{id}` slice of the subject (the entity is parsed and validated only the
//! first time it is seen), and the one header needed (`Neo-Schema-Version`) is looked up by a
//! name built once.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant};

use async_nats::header::HeaderName;
use async_nats::jetstream::{self, consumer, consumer::pull::OrderedConfig};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use futures::{FutureExt as _, StreamExt};
use neo_protocol::{EntityKind, EntityRef, envelope, headers, pb, subjects};
use prost::Message as _;

use crate::aggregate::Aggregate;

/// Why a replay stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// JetStream could not be reached, or refused the consumer or a pull.
    #[error("event stream unavailable: {0}")]
    Unavailable(String),
    /// No event arrived for the idle timeout while the server still counted some pending.
    #[error("no event arrived for {waited:?} after sequence {after} ({pending} still pending)")]
    Stalled {
        /// How long the read waited.
        waited: Duration,
        /// The last stream sequence read.
        after: u64,
        /// What the server said was still pending.
        pending: u64,
    },
    /// An event cannot be read: bad subject, missing or bad header, undecodable payload.
    #[error("event at sequence {sequence} (`{subject}`) is malformed: {reason}")]
    Malformed {
        /// Its stream sequence.
        sequence: u64,
        /// Its subject (truncated).
        subject: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// How the ordered consumer reads. Both phases of `neo bench replay` use the same settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadSettings {
    /// Cap on the messages asked for in one pull (async-nats asks for at most 500 per pull
    /// and asks again when half are consumed; 0 keeps that).
    pub max_batch: i64,
    /// The longest wait for the next event while the server still counts some pending.
    pub idle_timeout: Duration,
}

impl Default for ReadSettings {
    fn default() -> Self {
        Self {
            max_batch: 0,
            idle_timeout: Duration::from_secs(10),
        }
    }
}

/// The state of one entity of any kind.
#[derive(Debug, Clone, PartialEq)]
pub enum EntityState {
    /// A tenant.
    Tenant(pb::TenantState),
    /// An app.
    App(pb::AppState),
    /// A build.
    Build(pb::BuildState),
    /// A deployment.
    Deployment(pb::DeploymentState),
    /// A podgroup.
    Podgroup(pb::PodgroupState),
}

impl EntityState {
    /// The state of an entity of `kind` with no events.
    pub fn empty(kind: EntityKind) -> Self {
        match kind {
            EntityKind::Tenant => Self::Tenant(Default::default()),
            EntityKind::App => Self::App(Default::default()),
            EntityKind::Build => Self::Build(Default::default()),
            EntityKind::Deployment => Self::Deployment(Default::default()),
            EntityKind::Podgroup => Self::Podgroup(Default::default()),
        }
    }

    /// The entity's kind.
    pub fn kind(&self) -> EntityKind {
        match self {
            Self::Tenant(_) => EntityKind::Tenant,
            Self::App(_) => EntityKind::App,
            Self::Build(_) => EntityKind::Build,
            Self::Deployment(_) => EntityKind::Deployment,
            Self::Podgroup(_) => EntityKind::Podgroup,
        }
    }

    /// The state's protobuf encoding (`neo.v1.{Kind}State`), as a snapshot or a query holds it.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        match self {
            Self::Tenant(s) => s.encode_to_vec(),
            Self::App(s) => s.encode_to_vec(),
            Self::Build(s) => s.encode_to_vec(),
            Self::Deployment(s) => s.encode_to_vec(),
            Self::Podgroup(s) => s.encode_to_vec(),
        }
    }

    /// Upcasts, decodes and applies one stored payload, as the host's `fold_event` does.
    ///
    /// # Errors
    /// Why the payload cannot be folded (as text, for [`ReplayError::Malformed`]).
    pub fn fold(&mut self, event_type: &str, version: u32, payload: Bytes) -> Result<(), String> {
        match self {
            Self::Tenant(s) => fold_into(s, event_type, version, payload),
            Self::App(s) => fold_into(s, event_type, version, payload),
            Self::Build(s) => fold_into(s, event_type, version, payload),
            Self::Deployment(s) => fold_into(s, event_type, version, payload),
            Self::Podgroup(s) => fold_into(s, event_type, version, payload),
        }
    }
}

fn fold_into<A: Aggregate>(
    state: &mut A,
    event_type: &str,
    version: u32,
    payload: Bytes,
) -> Result<(), String> {
    let event =
        crate::stored::decode::<A>(event_type, version, payload).map_err(|e| e.to_string())?;
    state.apply(&event);
    Ok(())
}

/// One entity's folded state.
#[derive(Debug, Clone, PartialEq)]
pub struct Folded {
    /// The entity.
    pub entity: EntityRef,
    /// Its state after the events read.
    pub state: EntityState,
    /// The stream sequence of its last event read.
    pub last_sequence: u64,
}

/// Folds events, fed in stream order, into one state per entity.
#[derive(Debug)]
pub struct Replayer {
    /// Keyed by `{tenant}.{kind}.{id}` (the snapshot key, a slice of the event subject).
    states: HashMap<Box<str>, Folded, BuildHasherDefault<KeyHasher>>,
    schema_version: HeaderName,
    events: u64,
}

impl Default for Replayer {
    fn default() -> Self {
        Self::new()
    }
}

impl Replayer {
    /// A replayer holding no state.
    pub fn new() -> Self {
        Self {
            states: HashMap::default(),
            schema_version: HeaderName::from_static(headers::SCHEMA_VERSION),
            events: 0,
        }
    }

    /// Folds the event at stream `sequence` on `subject` into its entity's state.
    ///
    /// # Errors
    /// [`ReplayError::Malformed`] naming the sequence when the subject is not an event subject,
    /// it has no headers, `Neo-Schema-Version` is not a number, or the payload does not decode
    /// for the kind. The state is then unchanged.
    pub fn apply(
        &mut self,
        sequence: u64,
        subject: &str,
        headers: Option<&HeaderMap>,
        payload: Bytes,
    ) -> Result<(), ReplayError> {
        let malformed = |reason: String| ReplayError::Malformed {
            sequence,
            subject: subject.chars().take(200).collect(),
            reason,
        };
        let (key, event_type) = subjects::split_event(subject).ok_or_else(|| {
            malformed("not an event subject (neo.evt.{tenant}.{kind}.{id}.{event_type})".into())
        })?;
        // Every event has headers; the version's is absent for version 1.
        let headers = headers.ok_or_else(|| malformed("no headers: not an event".into()))?;
        let version = envelope::schema_version(
            headers
                .get(self.schema_version.clone())
                .map(async_nats::HeaderValue::as_str),
        )
        .map_err(|e| malformed(e.to_string()))?;
        let folded = match self.states.get_mut(key) {
            Some(folded) => folded,
            None => {
                let entity =
                    subjects::parse_snapshot_key(key).ok_or_else(
                        || match subjects::parse_event(subject) {
                            Err(e) => malformed(e.to_string()),
                            Ok(_) => malformed("not an entity subject".into()),
                        },
                    )?;
                let state = EntityState::empty(entity.kind);
                self.states.entry(Box::from(key)).or_insert(Folded {
                    entity,
                    state,
                    last_sequence: 0,
                })
            }
        };
        folded
            .state
            .fold(event_type, version, payload)
            .map_err(malformed)?;
        folded.last_sequence = sequence;
        self.events += 1;
        Ok(())
    }

    /// Events folded so far.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// Entities seen so far.
    pub fn entities(&self) -> usize {
        self.states.len()
    }

    /// The folded state of `entity`, if any of its events was read.
    pub fn get(&self, entity: &EntityRef) -> Option<&Folded> {
        self.states.get(subjects::snapshot_key(entity).as_str())
    }

    /// Every folded state.
    pub fn into_states(self) -> impl Iterator<Item = Folded> {
        self.states.into_values()
    }
}

/// A multiply-rotate hash (FxHash's) for the state map: keys are short, come from Neo's own
/// log, and are hashed once per event, where SipHash's flood resistance buys nothing.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word));
        }
    }

    fn write_u8(&mut self, byte: u8) {
        self.add(u64::from(byte));
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What [`replay_all`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayStats {
    /// Events read.
    pub events: u64,
    /// Distinct entities folded (0 when not folding).
    pub entities: usize,
    /// Stream sequence of the last event read (0 when none).
    pub last_sequence: u64,
    /// Wall time of the read, from creating the consumer to the last event.
    pub seconds: f64,
}

/// Reads the events on `filter` with stream sequence in `from ..= up_to`, in order, with an
/// ordered consumer, calling `each` with every message and its stream sequence. Returns how
/// many were read and the last sequence.
///
/// Stops after `up_to`, or at the end of the stream as the server counted it when the message
/// was delivered (its `pending` is 0): events appended meanwhile may or may not be read.
///
/// # Errors
/// [`ReplayError::Unavailable`] when the consumer cannot be created or the read fails;
/// [`ReplayError::Stalled`] when nothing arrives for the idle timeout; what `each` returns.
pub async fn read_range(
    js: &jetstream::Context,
    filter: &str,
    from: u64,
    up_to: u64,
    settings: ReadSettings,
    mut each: impl FnMut(u64, Message) -> Result<(), ReplayError>,
) -> Result<(u64, u64), ReplayError> {
    let unavailable = |e: &dyn std::fmt::Display| ReplayError::Unavailable(e.to_string());
    let from = from.max(1);
    if from > up_to {
        return Ok((0, 0));
    }
    let stream = js
        .get_stream_no_info(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable(&e))?;
    let deliver_policy = if from == 1 {
        consumer::DeliverPolicy::All
    } else {
        consumer::DeliverPolicy::ByStartSequence {
            start_sequence: from,
        }
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: filter.to_owned(),
            deliver_policy,
            max_batch: settings.max_batch,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable(&e))?;
    let mut pending = consumer.cached_info().num_pending;
    if pending == 0 {
        return Ok((0, 0));
    }
    let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
    let (mut count, mut last) = (0u64, 0u64);
    loop {
        // A message already buffered is taken without arming the idle timer.
        let next = match messages.next().now_or_never() {
            Some(next) => next,
            None => tokio::time::timeout(settings.idle_timeout, messages.next())
                .await
                .map_err(|_| ReplayError::Stalled {
                    waited: settings.idle_timeout,
                    after: last,
                    pending,
                })?,
        };
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(unavailable(&e)),
            None => return Err(unavailable(&"the ordered consumer ended")),
        };
        let (sequence, left) = {
            let info = message.info().map_err(|e| unavailable(&e))?;
            (info.stream_sequence, info.pending)
        };
        if sequence > up_to {
            break;
        }
        each(sequence, message.message)?;
        count += 1;
        last = sequence;
        pending = left;
        if left == 0 || sequence == up_to {
            break;
        }
    }
    Ok((count, last))
}

/// Rebuilds `entity`'s state from its events with stream sequence up to `up_to` (all when
/// `None`): the state as at that sequence. Returns the state and the sequence of the last
/// event folded (0 and the empty state when it had none).
///
/// # Errors
/// [`ReplayError::Malformed`] for an event that cannot be folded; the read's errors.
pub async fn replay_entity(
    js: &jetstream::Context,
    entity: &EntityRef,
    up_to: Option<u64>,
) -> Result<(EntityState, u64), ReplayError> {
    let mut replayer = Replayer::new();
    read_range(
        js,
        &subjects::entity_events(entity),
        1,
        up_to.unwrap_or(u64::MAX),
        ReadSettings::default(),
        |sequence, m| replayer.apply(sequence, &m.subject, m.headers.as_ref(), m.payload),
    )
    .await?;
    Ok(replayer
        .into_states()
        .next()
        .map(|f| (f.state, f.last_sequence))
        .unwrap_or_else(|| (EntityState::empty(entity.kind), 0)))
}

/// Reads every event with stream sequence in `from ..= up_to`: folding each into its entity's
/// state when `fold`, only reading otherwise (the baseline the fold is measured against).
///
/// # Errors
/// [`ReplayError::Malformed`] (with the sequence) for an event that cannot be folded; the
/// read's errors.
pub async fn replay_all(
    js: &jetstream::Context,
    from: u64,
    up_to: u64,
    fold: bool,
) -> Result<ReplayStats, ReplayError> {
    replay_all_with(js, from, up_to, fold, ReadSettings::default())
        .await
        .map(|(stats, _)| stats)
}

/// [`replay_all`] with explicit read settings; also returns the replayer (empty when not
/// folding), whose states can then be inspected.
///
/// # Errors
/// As [`replay_all`].
pub async fn replay_all_with(
    js: &jetstream::Context,
    from: u64,
    up_to: u64,
    fold: bool,
    settings: ReadSettings,
) -> Result<(ReplayStats, Replayer), ReplayError> {
    let start = Instant::now();
    let mut replayer = Replayer::new();
    let mut bytes = 0usize;
    let (events, last_sequence) = if fold {
        read_range(js, subjects::EVENTS_ALL, from, up_to, settings, |seq, m| {
            replayer.apply(seq, &m.subject, m.headers.as_ref(), m.payload)
        })
        .await?
    } else {
        read_range(js, subjects::EVENTS_ALL, from, up_to, settings, |_, m| {
            bytes += m.payload.len();
            Ok(())
        })
        .await?
    };
    let seconds = start.elapsed().as_secs_f64();
    tracing::debug!(events, bytes, fold, seconds, "replayed");
    Ok((
        ReplayStats {
            events,
            entities: replayer.entities(),
            last_sequence,
            seconds,
        },
        replayer,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use neo_protocol::envelope::EventMeta;
    use neo_protocol::pb::app_event::Event;

    const SUBJECT: &str = "neo.evt.acme.app.shop.AppCreated";

    fn created() -> pb::AppEvent {
        pb::AppEvent {
            event: Some(Event::Created(pb::AppCreated {
                description: "shop".into(),
            })),
        }
    }

    fn revision(n: u32) -> pb::AppEvent {
        pb::AppEvent {
            event: Some(Event::RevisionCreated(pb::RevisionCreated {
                revision: Some(pb::Revision {
                    number: n,
                    digest: format!("sha256:{n:064x}"),
                    ..Default::default()
                }),
            })),
        }
    }

    fn headers(version: u32) -> HeaderMap {
        let meta = EventMeta {
            event_type: "AppCreated".into(),
            schema_version: version,
            command_id: "c1".into(),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        for (k, v) in meta.to_headers() {
            h.insert(k, v);
        }
        h
    }

    fn feed(
        r: &mut Replayer,
        seq: u64,
        subject: &str,
        e: &pb::AppEvent,
    ) -> Result<(), ReplayError> {
        r.apply(
            seq,
            subject,
            Some(&headers(1)),
            Bytes::from(e.encode_to_vec()),
        )
    }

    #[test]
    fn folds_each_entity_as_the_aggregate_does() {
        let mut r = Replayer::new();
        feed(&mut r, 1, SUBJECT, &created()).unwrap();
        feed(&mut r, 2, "neo.evt.acme.app.blog.AppCreated", &created()).unwrap();
        feed(
            &mut r,
            3,
            "neo.evt.acme.app.shop.RevisionCreated",
            &revision(1),
        )
        .unwrap();
        let mut expected = pb::AppState::default();
        expected.apply(&created());
        expected.apply(&revision(1));
        let shop = EntityRef::parse("acme", "app", "shop").unwrap();
        let folded = r.get(&shop).unwrap();
        assert_eq!(folded.state, EntityState::App(expected.clone()));
        assert_eq!(folded.last_sequence, 3);
        assert_eq!(folded.state.encode_to_vec(), expected.encode_to_vec());
        assert_eq!((r.events(), r.entities()), (3, 2));
    }

    #[test]
    fn malformed_events_name_their_sequence_and_change_nothing() {
        let mut r = Replayer::new();
        feed(&mut r, 1, SUBJECT, &created()).unwrap();
        let before = r
            .get(&EntityRef::parse("acme", "app", "shop").unwrap())
            .cloned();
        let cases: Vec<(u64, &str, Option<HeaderMap>, Bytes)> = vec![
            (
                7,
                SUBJECT,
                Some(headers(1)),
                Bytes::from_static(&[0xff, 0xff, 0xff]),
            ),
            (8, SUBJECT, None, Bytes::from(created().encode_to_vec())),
            (
                9,
                SUBJECT,
                Some(headers(99)),
                Bytes::from(created().encode_to_vec()),
            ),
            (
                10,
                "neo.evt.acme.app.shop.RevisionCreated",
                Some(headers(1)),
                Bytes::from(created().encode_to_vec()),
            ),
            (
                11,
                "neo.evt.ACME.app.shop.AppCreated",
                Some(headers(1)),
                Bytes::from(created().encode_to_vec()),
            ),
            (
                12,
                "neo.evt.acme.app.AppCreated",
                Some(headers(1)),
                Bytes::from(created().encode_to_vec()),
            ),
        ];
        for (seq, subject, h, payload) in cases {
            match r.apply(seq, subject, h.as_ref(), payload) {
                Err(ReplayError::Malformed { sequence, .. }) => assert_eq!(sequence, seq),
                other => panic!("sequence {seq}: expected malformed, got {other:?}"),
            }
        }
        let after = r
            .get(&EntityRef::parse("acme", "app", "shop").unwrap())
            .cloned();
        assert_eq!(before, after);
        assert_eq!((r.events(), r.entities()), (1, 1));
    }
}
