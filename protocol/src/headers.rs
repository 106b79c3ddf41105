//! Header names carried by every event in `NEO_EVENTS`, and the JetStream headers Neo sets.

/// The event type, e.g. `ReleaseCreated` (also the last subject token).
pub const EVENT_TYPE: &str = "Neo-Event-Type";
/// The payload's schema version (an integer; starts at 1, bumped only with an upcaster).
pub const SCHEMA_VERSION: &str = "Neo-Schema-Version";
/// The id of the command that produced the event.
pub const COMMAND_ID: &str = "Neo-Command-Id";
/// The correlation id shared by everything one user action caused.
pub const CORRELATION_ID: &str = "Neo-Correlation-Id";
/// The id of the event or command that caused this command.
pub const CAUSATION_ID: &str = "Neo-Causation-Id";
/// The authenticated principal that caused the event.
pub const WHO: &str = "Neo-Who";
/// When the event was decided, in milliseconds since the Unix epoch.
pub const TIME: &str = "Neo-Time";
/// The event's index within its command's events, and their count: `1/2`.
pub const BATCH_INDEX: &str = "Neo-Batch-Index";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// The event's number within its entity (1, 2, …), part of the hash chain.
pub const VERSION: &str = "Neo-Version";
/// The entity's hash chain after this event (hex sha256).
pub const HASH: &str = "Neo-Hash";

/// JetStream: de-duplication id (Neo sets `{command_id}` or `{command_id}/{index}`).
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";
/// JetStream: the entity's expected last sequence (optimistic concurrency).
pub const NATS_EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "Nats-Expected-Last-Subject-Sequence";
/// JetStream: the subject filter the expected sequence applies to (`neo.evt.{t}.{k}.{id}.*`).
pub const NATS_EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT: &str =
    "Nats-Expected-Last-Subject-Sequence-Subject";
/// JetStream atomic batch: batch id.
pub const NATS_BATCH_ID: &str = "Nats-Batch-Id";
/// JetStream atomic batch: 1-based position in the batch.
pub const NATS_BATCH_SEQUENCE: &str = "Nats-Batch-Sequence";
/// JetStream atomic batch: set to `1` on the last message to commit the batch.
pub const NATS_BATCH_COMMIT: &str = "Nats-Batch-Commit";

/// CloudEvents (binary content mode): the spec version, always `1.0`.
pub const CE_SPECVERSION: &str = "ce-specversion";
/// CloudEvents: the event's id, `{command_id}:{index}` (0-based index of the event in its
/// command), so a retried command carries the same id. Unique per [`CE_SOURCE`].
pub const CE_ID: &str = "ce-id";
/// CloudEvents: `dev.neo.{kind}.{EventType}`, e.g. `dev.neo.deployment.ReleaseCreated`.
pub const CE_TYPE: &str = "ce-type";
/// CloudEvents: the entity, `/neo/{tenant}/{kind}/{id}`.
pub const CE_SOURCE: &str = "ce-source";
/// CloudEvents: when the event was decided, RFC 3339 UTC with milliseconds (the instant of
/// [`TIME`]).
pub const CE_TIME: &str = "ce-time";
/// CloudEvents: the payload's media type, always `application/protobuf`.
pub const CE_DATACONTENTTYPE: &str = "ce-datacontenttype";
/// CloudEvents: the payload's protobuf message as a type URL,
/// `type.googleapis.com/neo.v1.{Kind}Event`.
pub const CE_DATASCHEMA: &str = "ce-dataschema";
