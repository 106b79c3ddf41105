//! One way to read a stored event, wherever it comes from (the store's load, a reactor's
//! consumer, the audit's replay, the projections, the what-if): its subject names the entity,
//! its headers the metadata ([`EventMeta::from_headers`]), and its payload decodes into the
//! aggregate's event: upcast to the current schema ([`Aggregate::upcast`]), decoded, and
//! checked against the event type the subject and headers name.

use bytes::Bytes;
use neo_protocol::envelope::EventMeta;
use neo_protocol::{EntityKind, EntityRef, subjects};
use prost::Message as _;

use crate::aggregate::{Aggregate, UNKNOWN_EVENT};

/// Why a stored event cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    /// The subject is not `neo.evt.{tenant}.{kind}.{id}.{event_type}`.
    #[error("{0}")]
    Subject(String),
    /// A header of an event of `entity` is missing or malformed.
    #[error("bad headers: {reason}")]
    Headers {
        /// The entity the subject names.
        entity: EntityRef,
        /// What is wrong.
        reason: String,
    },
    /// The payload cannot be upcast or decoded, or holds another event type than named.
    #[error("{0}")]
    Payload(String),
    /// The payload decodes but holds no event this version knows (a newer schema).
    #[error("{kind} event `{event_type}` is unknown to this version")]
    Unknown {
        /// The entity kind.
        kind: EntityKind,
        /// The event type the subject and headers name.
        event_type: String,
    },
}

/// A stored event as a message carries it (subject, headers, payload), its payload still
/// encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// The entity it belongs to.
    pub entity: EntityRef,
    /// Its stream sequence.
    pub sequence: u64,
    /// Its metadata.
    pub meta: EventMeta,
    /// The encoded `{Kind}Event`, as written (before any upcast).
    pub payload: Bytes,
}

impl StoredMessage {
    /// The event at `sequence` with this subject, header lookup and payload.
    ///
    /// # Errors
    /// [`StoredError::Subject`] or [`StoredError::Headers`], saying what is wrong.
    pub fn read<'a>(
        subject: &str,
        sequence: u64,
        header: impl Fn(&str) -> Option<&'a str>,
        payload: Bytes,
    ) -> Result<Self, StoredError> {
        let (entity, _) =
            subjects::parse_event(subject).map_err(|e| StoredError::Subject(e.to_string()))?;
        let meta = EventMeta::from_headers(header).map_err(|e| StoredError::Headers {
            entity: entity.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            entity,
            sequence,
            meta,
            payload,
        })
    }

    /// The event a JetStream consumer delivered.
    ///
    /// # Errors
    /// As for [`StoredMessage::read`]; [`StoredError::Subject`] also when the message carries
    /// no stream sequence.
    pub fn from_message(msg: &async_nats::jetstream::Message) -> Result<Self, StoredError> {
        let sequence = msg
            .info()
            .map_err(|e| StoredError::Subject(format!("no stream sequence: {e}")))?
            .stream_sequence;
        let headers = msg.headers.as_ref();
        Self::read(
            msg.subject.as_str(),
            sequence,
            |n| headers.and_then(|h| h.get(n)).map(|v| v.as_str()),
            msg.payload.clone(),
        )
    }

    /// The payload as `A`'s event, upcast to the current schema.
    ///
    /// # Errors
    /// [`StoredError::Payload`], as for [`decode`].
    pub fn decode<A: Aggregate>(&self) -> Result<A::Event, StoredError> {
        decode::<A>(
            &self.meta.event_type,
            self.meta.schema_version,
            self.payload.clone(),
        )
    }
}

/// Upcasts `payload`, written as `event_type` at `schema_version`, to `A`'s current schema,
/// decodes it and checks that it holds an `event_type`.
///
/// # Errors
/// [`StoredError::Payload`]: no upcast from that version, not an `A` event, or another
/// event type than `event_type`; [`StoredError::Unknown`]: an event this version does not know.
pub fn decode<A: Aggregate>(
    event_type: &str,
    schema_version: u32,
    payload: Bytes,
) -> Result<A::Event, StoredError> {
    let payload = A::upcast(event_type, schema_version, payload)
        .map_err(|e| StoredError::Payload(e.to_string()))?;
    let event = A::Event::decode(payload).map_err(|e| {
        StoredError::Payload(format!("payload is not a {} event: {e}", A::KIND.as_str()))
    })?;
    let decoded = A::event_type(&event);
    if decoded == UNKNOWN_EVENT {
        return Err(StoredError::Unknown {
            kind: A::KIND,
            event_type: event_type.chars().take(80).collect(),
        });
    }
    if decoded != event_type {
        return Err(StoredError::Payload(format!(
            "the event type is {event_type} but the payload holds {decoded}"
        )));
    }
    Ok(event)
}
