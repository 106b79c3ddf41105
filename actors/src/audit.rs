//! Tamper evidence: every event carries its entity-local version (`Neo-Version`) and the
//! entity's hash chain after it (`Neo-Hash`, see `neo_protocol::envelope::chain_link`); each
//! snapshot checkpoints the chain's head. [`verify`] walks events in stream order and reports
//! every modified, missing, reordered or duplicated event, and every checkpoint the log no
//! longer matches. [`read`] takes the events from the stream; [`Record`] is also the line
//! format of an export (JSON, payload in base64), so an exported copy can be verified too.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::push};
use bytes::Bytes;
use futures::StreamExt;
use neo_protocol::envelope::chain_link;
use neo_protocol::{pb, subjects};
use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::stored::{StoredError, StoredMessage};

/// One stored event, as read from the stream or an export line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its stream sequence.
    pub sequence: u64,
    /// Its subject, `neo.evt.{tenant}.{kind}.{id}.{EventType}`.
    pub subject: String,
    /// Its headers.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The payload, base64 in JSON.
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// Something wrong in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Problem {
    /// The event's content does not match its hash: it was changed.
    Modified {
        /// The entity, `{tenant}.{kind}.{id}`.
        entity: String,
        /// The event's sequence.
        sequence: u64,
        /// Its version.
        version: u64,
    },
    /// Versions are missing between two events of the entity.
    Missing {
        /// The entity.
        entity: String,
        /// The first missing version.
        from: u64,
        /// The last missing version.
        to: u64,
        /// The sequence of the event found after the gap.
        before_sequence: u64,
    },
    /// A version appears after a later one (out of order) or again (a copy).
    OutOfOrder {
        /// The entity.
        entity: String,
        /// The event's sequence.
        sequence: u64,
        /// Its version.
        version: u64,
        /// The version already seen.
        after_version: u64,
    },
    /// An event without chain headers after the entity's chain began, or unreadable headers.
    Unchained {
        /// The entity.
        entity: String,
        /// The event's sequence.
        sequence: u64,
        /// Why.
        reason: String,
    },
    /// The log does not hold the head a snapshot checkpointed.
    Checkpoint {
        /// The entity.
        entity: String,
        /// The checkpointed version.
        version: u64,
        /// What the log holds instead.
        found: String,
    },
}

/// What a verification found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Events read.
    pub events: u64,
    /// Entities seen.
    pub entities: u64,
    /// Events written before the hash chain (not verifiable).
    pub unchained: u64,
    /// Every problem, in stream order.
    pub problems: Vec<Problem>,
}

/// A checkpointed chain head: version and hash.
pub type Checkpoints = HashMap<String, (u64, String)>;

#[derive(Default)]
struct Head {
    version: u64,
    hash: String,
    checked: bool,
}

/// Verifies `records` (in stream order) against each other and against `checkpoints` (entity
/// `{tenant}.{kind}.{id}` → the head its snapshot recorded).
pub fn verify(records: impl IntoIterator<Item = Record>, checkpoints: &Checkpoints) -> Report {
    let mut report = Report::default();
    let mut heads: HashMap<String, Head> = HashMap::new();
    for record in records {
        report.events += 1;
        let (entity, meta) = match StoredMessage::read(
            &record.subject,
            record.sequence,
            |n| record.headers.get(n).map(String::as_str),
            Bytes::new(), // the chain covers the payload below, as exported
        ) {
            Ok(stored) => (subjects::snapshot_key(&stored.entity), stored.meta),
            Err(StoredError::Headers { entity, reason }) => {
                report.problems.push(Problem::Unchained {
                    entity: subjects::snapshot_key(&entity),
                    sequence: record.sequence,
                    reason,
                });
                continue;
            }
            Err(e) => {
                report.problems.push(Problem::Unchained {
                    entity: String::new(),
                    sequence: record.sequence,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let head = heads.entry(entity.clone()).or_default();
        if meta.version == 0 {
            if head.version > 0 {
                report.problems.push(Problem::Unchained {
                    entity,
                    sequence: record.sequence,
                    reason: "no chain headers after the chain began".into(),
                });
            } else {
                report.unchained += 1;
            }
            continue;
        }
        let expected = head.version + 1;
        if meta.version < expected {
            report.problems.push(Problem::OutOfOrder {
                entity,
                sequence: record.sequence,
                version: meta.version,
                after_version: head.version,
            });
            continue;
        }
        if meta.version > expected {
            report.problems.push(Problem::Missing {
                entity: entity.clone(),
                from: expected,
                to: meta.version - 1,
                before_sequence: record.sequence,
            });
        } else if chain_link(&head.hash, &record.subject, &meta, &record.payload) != meta.hash {
            report.problems.push(Problem::Modified {
                entity: entity.clone(),
                sequence: record.sequence,
                version: meta.version,
            });
        }
        head.version = meta.version;
        head.hash = meta.hash;
        if let Some((version, hash)) = checkpoints.get(&entity)
            && *version == head.version
        {
            head.checked = true;
            if *hash != head.hash {
                report.problems.push(Problem::Checkpoint {
                    entity,
                    version: *version,
                    found: format!("a different hash at sequence {}", record.sequence),
                });
            }
        }
    }
    report.entities = heads.len() as u64;
    for (entity, (version, _)) in checkpoints {
        match heads.get(entity) {
            Some(head) if head.checked => {}
            Some(head) if head.version < *version => report.problems.push(Problem::Checkpoint {
                entity: entity.clone(),
                version: *version,
                found: format!("the log ends at version {}", head.version),
            }),
            None if *version > 0 => report.problems.push(Problem::Checkpoint {
                entity: entity.clone(),
                version: *version,
                found: "no event of the entity".into(),
            }),
            _ => {}
        }
    }
    report
}

/// `{tenant}.{kind}.{id}` of an event subject.
fn entity_key(subject: &str) -> Option<String> {
    let (entity, _) = subjects::parse_event(subject).ok()?;
    Some(format!("{}.{}.{}", entity.tenant, entity.kind, entity.id))
}

/// Reading the stream failed.
#[derive(Debug, thiserror::Error)]
#[error("audit: {0}")]
pub struct AuditError(pub String);

fn err(e: impl std::fmt::Display) -> AuditError {
    AuditError(e.to_string())
}

/// Every event whose subject matches `filter` (e.g. `neo.evt.acme.>`), in stream order.
///
/// # Errors
/// When the stream cannot be read.
pub async fn read(js: &jetstream::Context, filter: &str) -> Result<Vec<Record>, AuditError> {
    // A named ordered push consumer delivered to this connection's inbox, on the tenant's copy
    // when connected as its tooling user (whose grant pins the filter to its tenant), else on
    // NEO_EVENTS.
    let inbox = js.client().new_inbox();
    let consumer = neo_client::tenant_events::ordered(
        js,
        push::OrderedConfig {
            // Named after its inbox's unique token.
            name: Some(format!("audit_{}", inbox.rsplit('.').next().unwrap_or("0"))),
            deliver_subject: inbox.clone(),
            filter_subject: filter.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        },
    )
    .await
    .map_err(err)?;
    let pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.map_err(err)?;
    let mut records = Vec::with_capacity(usize::try_from(pending).unwrap_or(0));
    while (records.len() as u64) < pending {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .map_err(|_| AuditError("the stream stopped delivering".into()))?;
        let Some(msg) = next else { break };
        let msg = msg.map_err(err)?;
        let sequence = msg.info().map_err(err)?.stream_sequence;
        let headers = msg
            .headers
            .iter()
            .flat_map(|h| h.iter())
            .filter_map(|(k, v)| Some((k.to_string(), v.first()?.as_str().to_owned())))
            .collect();
        records.push(Record {
            sequence,
            subject: msg.subject.to_string(),
            headers,
            payload: msg.payload.to_vec(),
        });
    }
    Ok(records)
}

/// The chain heads the snapshots of the entities in `records` checkpointed.
///
/// # Errors
/// When the snapshot bucket cannot be read.
pub async fn checkpoints(
    js: &jetstream::Context,
    records: &[Record],
) -> Result<Checkpoints, AuditError> {
    let mut out = Checkpoints::new();
    let Ok(bucket) = js.get_key_value(subjects::SNAPSHOT_BUCKET).await else {
        return Ok(out);
    };
    let mut seen = std::collections::HashSet::new();
    for record in records {
        let Some(entity) = entity_key(&record.subject) else {
            continue;
        };
        if !seen.insert(entity.clone()) {
            continue;
        }
        if let Some(value) = bucket.get(&entity).await.map_err(err)?
            && let Ok(snapshot) = pb::Snapshot::decode(Bytes::from(value.to_vec()))
            && snapshot.version > 0
        {
            out.insert(entity, (snapshot.version, snapshot.hash));
        }
    }
    Ok(out)
}

/// One export line.
///
/// # Errors
/// Never in practice (serialising plain data).
pub fn export_line(record: &Record) -> Result<String, serde_json::Error> {
    serde_json::to_string(record)
}

/// Reads an export line back.
///
/// # Errors
/// When the line is not a record.
pub fn parse_line(line: &str) -> Result<Record, serde_json::Error> {
    serde_json::from_str(line)
}
