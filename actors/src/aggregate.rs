//! The aggregate: one entity kind's pure decision logic (`handle`) and state fold (`apply`).
//!
//! An aggregate is the kind's protobuf state message itself (e.g. [`pb::TenantState`]), so a
//! snapshot is just its encoding. Every domain rule of a kind lives in its `handle`; `apply`
//! holds no logic and cannot fail. Nothing here touches NATS or tokio.
//!
//! [`pb::TenantState`]: neo_protocol::pb::TenantState

use std::fmt;

use bytes::Bytes;
use neo_protocol::EntityKind;

/// The domain refused a command. Carries the rule that refused, for the caller to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (rule `{rule}`)")]
pub struct Rejection {
    /// The class of refusal (maps to a gRPC code at the gateway).
    pub code: RejectionCode,
    /// A stable, dotted name of the rule, e.g. `stage.unique`.
    pub rule: &'static str,
    /// A human explanation naming the values involved.
    pub message: String,
    /// For [`RejectionCode::InvalidArgument`]: the offending field of the command.
    pub field: Option<String>,
}

/// The classes of domain refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    /// A field of the command is malformed or missing.
    InvalidArgument,
    /// The entity (or something the command names inside it) does not exist.
    NotFound,
    /// The entity (or something the command names inside it) already exists.
    AlreadyExists,
    /// The entity's current state does not allow the command.
    FailedPrecondition,
}

impl Rejection {
    /// A malformed or missing field.
    pub fn invalid(
        rule: &'static str,
        field: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        Self {
            code: RejectionCode::InvalidArgument,
            rule,
            message: message.to_string(),
            field: Some(field.into()),
        }
    }

    /// Something named by the command does not exist.
    pub fn not_found(rule: &'static str, message: impl fmt::Display) -> Self {
        Self::with(RejectionCode::NotFound, rule, message)
    }

    /// Something the command would create already exists.
    pub fn already_exists(rule: &'static str, message: impl fmt::Display) -> Self {
        Self::with(RejectionCode::AlreadyExists, rule, message)
    }

    /// The state does not allow the command.
    pub fn precondition(rule: &'static str, message: impl fmt::Display) -> Self {
        Self::with(RejectionCode::FailedPrecondition, rule, message)
    }

    fn with(code: RejectionCode, rule: &'static str, message: impl fmt::Display) -> Self {
        Self {
            code,
            rule,
            message: message.to_string(),
            field: None,
        }
    }
}

/// A stored event's payload could not be made current.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot read {event_type} v{version}: {reason}")]
pub struct UpcastError {
    /// The stored event type.
    pub event_type: String,
    /// The stored schema version.
    pub version: u32,
    /// Why it cannot be read.
    pub reason: String,
}

/// The type name [`Aggregate::event_type`] gives an event whose variant this version does not
/// know (written by a newer one).
pub const UNKNOWN_EVENT: &str = "Unknown";

/// One entity kind's decisions and state.
///
/// Implemented by the kind's protobuf state message; `Default` is the state of an entity with
/// no events.
pub trait Aggregate:
    prost::Message + Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static
{
    /// The kind this aggregate decides for.
    const KIND: EntityKind;
    /// The schema version of the events this code writes.
    const SCHEMA_VERSION: u32 = 1;

    /// The kind's command message (a `oneof`).
    type Command: prost::Message + Default + Clone + fmt::Debug + Send + 'static;
    /// The kind's event message (a `oneof`).
    type Event: prost::Message + Default + Clone + PartialEq + fmt::Debug + Send + Sync + 'static;

    /// Decides what happens: the events to append, or why not. All domain rules live here.
    fn handle(&self, command: Self::Command) -> Result<Vec<Self::Event>, Rejection>;

    /// Folds one event into the state. Holds no logic and cannot fail; an event it does not
    /// know (written by newer code) leaves the state unchanged.
    fn apply(&mut self, event: &Self::Event);

    /// The event's type name, used in its subject and headers (e.g. `ReleaseCreated`).
    /// [`UNKNOWN_EVENT`] for an event whose variant this version does not know.
    fn event_type(event: &Self::Event) -> &'static str;

    /// The upcasting hook: turns a stored payload of `version` into one of
    /// [`Self::SCHEMA_VERSION`]. Schema evolution is additive, so the default passes older
    /// versions through and refuses versions newer than this code.
    fn upcast(event_type: &str, version: u32, payload: Bytes) -> Result<Bytes, UpcastError> {
        if version == 0 || version > Self::SCHEMA_VERSION {
            return Err(UpcastError {
                event_type: event_type.to_owned(),
                version,
                reason: format!(
                    "this build reads schema versions 1 to {}",
                    Self::SCHEMA_VERSION
                ),
            });
        }
        Ok(payload)
    }
}

/// Given/when/then helpers for aggregate unit tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Aggregate, Rejection};

    /// The state after folding `events` into the empty state.
    pub fn given<A: Aggregate>(events: impl IntoIterator<Item = A::Event>) -> A {
        let mut state = A::default();
        for e in events {
            state.apply(&e);
        }
        state
    }

    /// Handles `command` against the state folded from `events`; on success also checks
    /// that applying the new events works.
    pub fn when<A: Aggregate>(
        events: impl IntoIterator<Item = A::Event>,
        command: A::Command,
    ) -> Result<Vec<A::Event>, Rejection> {
        given::<A>(events).handle(command)
    }

    /// Asserts that a result is a rejection by `rule`.
    #[track_caller]
    pub fn assert_refused<E: std::fmt::Debug>(result: Result<E, Rejection>, rule: &str) {
        match result {
            Err(r) => assert_eq!(r.rule, rule, "refused by another rule: {r}"),
            Ok(events) => panic!("expected refusal by `{rule}`, got events {events:?}"),
        }
    }
}
