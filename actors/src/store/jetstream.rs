//! The JetStream event store: stream `NEO_EVENTS`, snapshots in KV bucket `neo_snapshots`.
//!
//! - Append sets `Nats-Expected-Last-Subject-Sequence` over the entity's subject filter and
//!   `Nats-Msg-Id` from the command id. Several events of one command are one atomic batch
//!   (ADR-50 atomic batch publish: all or nothing).
//! - Load asks the stream's subject index which subjects (event types) the entity has, then
//!   reads each with batched direct gets (`next_by_subj` on the literal subject, concurrently):
//!   no consumer to create, and the server jumps to the entity's messages instead of scanning
//!   every message against a wildcard. A catch-up (no upper bound) reads the entity's filter.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, kv, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use neo_protocol::envelope::EventMeta;
use neo_protocol::{EntityRef, headers, pb, subjects};
use prost::Message as _;

use super::{Appended, EventStore, NewEvent, StoreError, StoredEvent};

/// Events fetched per direct-get round trip while loading.
const LOAD_BATCH: usize = 4096;

/// An entity with more subjects (event types) than this is loaded through its wildcard filter.
const MAX_LITERAL_SUBJECTS: usize = 64;

/// How the event stream and the snapshot bucket are set up.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Replicas of the stream and bucket; `None`: the installation's
    /// ([`neo_client::streams::replicas`]: `NEO_JS_REPLICAS`, else 3 on a cluster, 1 alone).
    pub replicas: Option<usize>,
    /// How long a command id is remembered by JetStream's de-duplication.
    pub duplicate_window: Duration,
    /// The largest single event accepted, in bytes.
    pub max_event_bytes: i32,
    /// How long to wait for the server on each request.
    pub request_timeout: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            replicas: None,
            duplicate_window: Duration::from_secs(10 * 60),
            max_event_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// The event log on JetStream.
#[derive(Clone)]
pub struct JetStreamStore {
    client: async_nats::Client,
    js: jetstream::Context,
    stream: stream::Stream<()>,
    snapshots: kv::Store,
    timeout: Duration,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// The stream configuration Neo needs, merged into what exists.
///
/// # Guarantees
/// Existing subjects and limits are kept; Neo's required settings (append-only, direct get,
/// atomic batches, de-duplication window) are set, and replicas raised to `replicas` (never
/// lowered). Storage type cannot change in
/// place, so a mismatch is an error rather than a silent re-creation.
pub fn upgrade_stream_config(
    existing: Option<stream::Config>,
    config: &StoreConfig,
    replicas: usize,
) -> Result<stream::Config, StoreError> {
    let mut next = match existing {
        Some(existing) => {
            if existing.storage != stream::StorageType::File {
                return Err(StoreError::Other(format!(
                    "stream {} uses {:?} storage; Neo needs file storage and will not \
                     recreate it (that would lose events): migrate it by hand",
                    subjects::EVENTS_STREAM,
                    existing.storage
                )));
            }
            existing
        }
        None => stream::Config {
            name: subjects::EVENTS_STREAM.to_owned(),
            description: Some("Neo entity events: neo.evt.{tenant}.{kind}.{id}.{type}".into()),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            ..Default::default()
        },
    };
    if !next.subjects.iter().any(|s| s == subjects::EVENTS_ALL) {
        next.subjects.push(subjects::EVENTS_ALL.to_owned());
    }
    next.deny_delete = true;
    next.deny_purge = true;
    next.allow_direct = true;
    next.allow_atomic_publish = true;
    next.duplicate_window = config.duplicate_window;
    next.num_replicas = next.num_replicas.max(replicas);
    next.max_message_size = config.max_event_bytes;
    Ok(next)
}

impl JetStreamStore {
    /// Opens the store: creates the stream and bucket, or upgrades their configuration safely.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when NATS or JetStream does not answer;
    /// [`StoreError::Other`] when the existing stream cannot be upgraded in place.
    pub async fn open(client: async_nats::Client, config: StoreConfig) -> Result<Self, StoreError> {
        let js = jetstream::ContextBuilder::new()
            .timeout(config.request_timeout)
            .build(client.clone());
        let existing = match js.get_stream(subjects::EVENTS_STREAM).await {
            // `get_stream` read its info already.
            Ok(s) => Some(s.cached_info().config.clone()),
            Err(e)
                if matches!(&e.kind(), jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                None
            }
            Err(e) => return Err(unavailable(e)),
        };
        let replicas = config
            .replicas
            .unwrap_or_else(|| neo_client::streams::replicas(&client));
        let desired = upgrade_stream_config(existing.clone(), &config, replicas)?;
        match existing {
            None => {
                js.create_stream(desired).await.map_err(unavailable)?;
                tracing::info!(stream = subjects::EVENTS_STREAM, "created event stream");
            }
            Some(current) if current != desired => {
                js.update_stream(desired).await.map_err(unavailable)?;
                tracing::info!(
                    stream = subjects::EVENTS_STREAM,
                    "upgraded event stream config"
                );
            }
            Some(_) => {}
        }
        let stream = js
            .get_stream_no_info(subjects::EVENTS_STREAM)
            .await
            .map_err(unavailable)?;
        let snapshots = neo_client::streams::ensure_bucket_with(
            &js,
            kv::Config {
                bucket: subjects::SNAPSHOT_BUCKET.to_owned(),
                description: "Neo entity snapshots: key {tenant}.{kind}.{id}".into(),
                history: 1,
                storage: stream::StorageType::File,
                ..Default::default()
            },
            replicas,
        )
        .await
        .map_err(unavailable)?;
        Ok(Self {
            client,
            js,
            stream,
            snapshots,
            timeout: config.request_timeout,
        })
    }

    /// The JetStream context this store uses.
    pub fn context(&self) -> &jetstream::Context {
        &self.js
    }

    fn publish_error(
        entity: &EntityRef,
        expected: u64,
        e: jetstream::context::PublishError,
    ) -> StoreError {
        if wrong_last_sequence(&e) {
            return StoreError::Conflict {
                entity: entity.to_string(),
                expected,
            };
        }
        match e.kind() {
            PublishErrorKind::MaxPayloadExceeded => StoreError::TooLarge(e.to_string()),
            PublishErrorKind::TimedOut
            | PublishErrorKind::BrokenPipe
            | PublishErrorKind::StreamNotFound => unavailable(e),
            _ => {
                let code = std::error::Error::source(&e)
                    .and_then(|s| s.downcast_ref::<jetstream::Error>())
                    .map(|j| j.error_code().0);
                match code {
                    Some(10054) => StoreError::TooLarge(e.to_string()),
                    _ => StoreError::Other(format!("{e}: {:?}", std::error::Error::source(&e))),
                }
            }
        }
    }
}

/// Whether a publish was refused because the expected last sequence no longer held: the kind
/// async-nats names, or JetStream's codes for it (10071; 10164, what a clustered stream's
/// leader answers).
pub fn wrong_last_sequence(e: &jetstream::context::PublishError) -> bool {
    e.kind() == PublishErrorKind::WrongLastSequence
        || std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|j| matches!(j.error_code().0, 10071 | 10164))
}

/// The headers of the event at `index` among its command's events (see
/// [`EventMeta::stored_headers`]).
fn event_headers(entity: &EntityRef, meta: &EventMeta, index: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in meta.stored_headers(entity, index) {
        h.insert(name, value);
    }
    h
}

fn expect_sequence(h: &mut HeaderMap, entity: &EntityRef, expected_last: u64) {
    h.insert(
        headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE,
        expected_last.to_string(),
    );
    h.insert(
        headers::NATS_EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT,
        subjects::entity_events(entity),
    );
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.as_str())
}

/// A reply's headers as (name, first value) pairs. An event has some 25 headers; finding one
/// by scanning these costs less than `HeaderMap::get`, which allocates the name and hashes it.
fn header_pairs(h: &HeaderMap) -> Vec<(&str, &str)> {
    h.iter()
        .filter_map(|(name, values)| values.first().map(|v| (name.as_ref(), v.as_str())))
        .collect()
}

fn find_header<'a>(pairs: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The part of a stream info reply a load needs.
#[derive(serde::Deserialize)]
struct SubjectsInfo {
    state: SubjectsState,
}

#[derive(serde::Deserialize)]
struct SubjectsState {
    /// Messages per subject matching the request's `subjects_filter`.
    #[serde(default)]
    subjects: std::collections::HashMap<String, u64>,
}

/// The read path of [`JetStreamStore::load`].
///
/// Why per subject: an entity's events are spread over blocks shared with every other entity.
/// For a wildcard filter nats-server scans each block message by message, matching every
/// subject against the filter; for a literal subject it jumps to the subject's first message in
/// each block from its per-block subject index, and skips blocks without it.
impl JetStreamStore {
    /// The entity's subjects (one per event type it has) and how many messages each holds, from
    /// the stream's subject index (no message is read); `None` when there are too many to read
    /// one by one.
    async fn entity_subjects(
        &self,
        filter: &str,
    ) -> Result<Option<Vec<(String, u64)>>, StoreError> {
        let request = serde_json::json!({ "subjects_filter": filter });
        let info: jetstream::response::Response<SubjectsInfo> = self
            .js
            .request(format!("STREAM.INFO.{}", subjects::EVENTS_STREAM), &request)
            .await
            .map_err(unavailable)?;
        let info = match info {
            jetstream::response::Response::Ok(info) => info,
            jetstream::response::Response::Err { error } => return Err(unavailable(error)),
        };
        let subjects = info.state.subjects;
        if subjects.len() > MAX_LITERAL_SUBJECTS {
            return Ok(None);
        }
        Ok(Some(subjects.into_iter().collect()))
    }

    /// Messages of `filter` with sequence in `after+1 ..= until`, by batched direct gets
    /// (`next_by_subj`), the first batch of `first_batch` messages.
    ///
    /// Stops as soon as it holds the message at `until`, or when a batch's end says nothing
    /// more matches (`Nats-Num-Pending: 0`): no request is spent learning there is nothing
    /// more (each costs the server a count and a scan of the filter's blocks).
    async fn read_subject(
        &self,
        entity: &EntityRef,
        filter: &str,
        after: u64,
        until: u64,
        first_batch: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::new();
        let mut next = after + 1;
        let mut batch = first_batch;
        let inbox = self.client.new_inbox();
        let mut sub = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(unavailable)?;
        let api = format!("$JS.API.DIRECT.GET.{}", subjects::EVENTS_STREAM);
        'batches: while next <= until {
            let request = serde_json::json!({
                "seq": next, "next_by_subj": filter, "batch": batch,
            });
            self.client
                .publish_with_reply(api.clone(), inbox.clone(), request.to_string().into())
                .await
                .map_err(unavailable)?;
            let mut got = 0usize;
            loop {
                let msg = tokio::time::timeout(self.timeout, sub.next())
                    .await
                    .map_err(|_| unavailable("timed out loading events"))?
                    .ok_or_else(|| unavailable("subscription closed while loading"))?;
                if let Some(status) = msg.status {
                    match status.as_u16() {
                        204 => {
                            let pending = msg
                                .headers
                                .as_ref()
                                .and_then(|h| header(h, "Nats-Num-Pending"))
                                .and_then(|p| p.parse::<u64>().ok());
                            if pending == Some(0) {
                                break 'batches;
                            }
                            break;
                        }
                        404 => break 'batches,
                        code => {
                            return Err(unavailable(format!(
                                "direct get answered {code} {}",
                                msg.description.unwrap_or_default()
                            )));
                        }
                    }
                }
                got += 1;
                let h = msg.headers.unwrap_or_default();
                let pairs = header_pairs(&h);
                let sequence: u64 = find_header(&pairs, "Nats-Sequence")
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| {
                        StoreError::Other("direct get reply lacks Nats-Sequence".into())
                    })?;
                if sequence > until {
                    break 'batches;
                }
                next = sequence + 1;
                let meta =
                    EventMeta::from_headers(|name| find_header(&pairs, name)).map_err(|e| {
                        StoreError::Malformed {
                            entity: entity.to_string(),
                            sequence,
                            reason: e.to_string(),
                        }
                    })?;
                out.push(StoredEvent {
                    sequence,
                    meta,
                    payload: msg.payload,
                });
                if sequence == until {
                    break 'batches;
                }
            }
            if got == 0 {
                break;
            }
            batch = LOAD_BATCH;
        }
        let _ = sub.unsubscribe().await;
        Ok(out)
    }
}

#[async_trait]
impl EventStore for JetStreamStore {
    async fn append(
        &self,
        entity: &EntityRef,
        expected_last: u64,
        events: Vec<NewEvent>,
    ) -> Result<Appended, StoreError> {
        let count = events.len() as u64;
        if count == 0 {
            return Err(StoreError::Other("append of no events".into()));
        }
        let batch_id = if count > 1 {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            String::new()
        };
        let mut ack = None;
        for (i, event) in events.into_iter().enumerate() {
            let position = i as u64 + 1;
            let subject = subjects::event(entity, &event.meta.event_type);
            let mut h = event_headers(entity, &event.meta, i);
            if count == 1 {
                h.insert(headers::NATS_MSG_ID, event.meta.command_id.as_str());
                expect_sequence(&mut h, entity, expected_last);
            } else {
                h.insert(headers::BATCH_INDEX, format!("{position}/{count}"));
                h.insert(headers::NATS_BATCH_ID, batch_id.as_str());
                h.insert(headers::NATS_BATCH_SEQUENCE, position.to_string());
                if position == 1 {
                    h.insert(headers::NATS_MSG_ID, event.meta.command_id.as_str());
                    expect_sequence(&mut h, entity, expected_last);
                }
                if position < count {
                    self.client
                        .publish_with_headers(subject, h, event.payload)
                        .await
                        .map_err(unavailable)?;
                    continue;
                }
                h.insert(headers::NATS_BATCH_COMMIT, "1");
            }
            let pending = self
                .js
                .publish_with_headers(subject, h, event.payload)
                .await
                .map_err(|e| Self::publish_error(entity, expected_last, e))?;
            ack = Some(
                pending
                    .await
                    .map_err(|e| Self::publish_error(entity, expected_last, e))?,
            );
        }
        let ack = ack.ok_or_else(|| StoreError::Other("no acknowledgement".into()))?;
        let written = ack.batch_size.unwrap_or(count).max(1);
        Ok(Appended {
            first_sequence: ack.sequence + 1 - written,
            last_sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn last_sequence(&self, entity: &EntityRef) -> Result<u64, StoreError> {
        match self
            .stream
            .direct_get_last_for_subject(subjects::entity_events(entity))
            .await
        {
            Ok(m) => Ok(m.sequence),
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(0),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn load(
        &self,
        entity: &EntityRef,
        after: u64,
        until: u64,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        if after >= until {
            return Ok(Vec::new());
        }
        let filter = subjects::entity_events(entity);
        // A catch-up (no upper bound) reads whatever is there through the entity's filter, as
        // does an entity with too many subjects to read one by one.
        let counts = if until == u64::MAX {
            None
        } else {
            self.entity_subjects(&filter).await?
        };
        let Some(counts) = counts else {
            return self
                .read_subject(entity, &filter, after, until, LOAD_BATCH)
                .await;
        };
        let reads = counts.iter().map(|(subject, count)| {
            let batch = usize::try_from(*count).unwrap_or(LOAD_BATCH);
            self.read_subject(entity, subject, after, until, batch.clamp(1, LOAD_BATCH))
        });
        let mut out: Vec<StoredEvent> = futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .flatten()
            .collect();
        out.sort_unstable_by_key(|e| e.sequence);
        Ok(out)
    }

    async fn read_snapshot(&self, entity: &EntityRef) -> Result<Option<pb::Snapshot>, StoreError> {
        let key = subjects::snapshot_key(entity);
        match self.snapshots.get(key).await.map_err(unavailable)? {
            None => Ok(None),
            Some(bytes) => match pb::Snapshot::decode(bytes) {
                Ok(s) => Ok(Some(s)),
                Err(e) => {
                    // A snapshot only speeds recovery: a bad one is ignored, not fatal.
                    tracing::warn!(%entity, error = %e, "ignoring undecodable snapshot");
                    Ok(None)
                }
            },
        }
    }

    async fn write_snapshot(
        &self,
        entity: &EntityRef,
        snapshot: &pb::Snapshot,
    ) -> Result<(), StoreError> {
        let key = subjects::snapshot_key(entity);
        self.snapshots
            .put(key, Bytes::from(snapshot.encode_to_vec()))
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}
