//! Event metadata (who, when, why) and its mapping to and from message headers, including the
//! CloudEvents (`ce-*`) attributes that let generic tooling read Neo's events.

use std::fmt::Write as _;

use crate::headers;
use crate::kind::{EntityKind, EntityRef};

/// Everything known about an event besides its payload and position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EventMeta {
    /// The event type, e.g. `ReleaseCreated`.
    pub event_type: String,
    /// The payload's schema version.
    pub schema_version: u32,
    /// The command that produced it.
    pub command_id: String,
    /// Shared by everything one user action caused.
    pub correlation_id: String,
    /// The event or command that caused the command (empty for a user's command).
    pub causation_id: String,
    /// The principal on whose behalf the command ran.
    pub who: String,
    /// When it was decided, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// W3C trace context, when the command carried one.
    pub traceparent: Option<String>,
    /// The event's number within its entity (1, 2, …; 0: written before the hash chain).
    pub version: u64,
    /// The entity's hash chain after this event (see [`chain_link`]; empty: not chained).
    pub hash: String,
}

/// The hash chain of an entity's events: `sha256(prev ‖ subject ‖ version ‖ command id ‖ who ‖
/// time ‖ payload)` in lowercase hex, where `prev` is the hash of the entity's previous event
/// (empty for version 1). Changing, removing or reordering an event breaks every later link.
pub fn chain_link(prev: &str, subject: &str, meta: &EventMeta, payload: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [
        prev.as_bytes(),
        subject.as_bytes(),
        meta.version.to_string().as_bytes(),
        meta.command_id.as_bytes(),
        meta.who.as_bytes(),
        meta.time_ms.to_string().as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(payload);
    hex::encode(h.finalize())
}

/// Why an event's headers could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    /// A required header is absent.
    #[error("header `{0}` is missing")]
    Missing(&'static str),
    /// A header's value is malformed.
    #[error("header `{name}` has invalid value `{value}`")]
    Invalid {
        /// The header name.
        name: &'static str,
        /// The value received (truncated).
        value: String,
    },
}

impl EventMeta {
    /// Neo's full set of headers for the event, in a fixed order (an empty causation id and an
    /// absent trace context are left out): how events were written before
    /// [`Self::stored_headers`], and what tools writing events by hand may still use.
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (headers::EVENT_TYPE, self.event_type.clone()),
            (headers::SCHEMA_VERSION, self.schema_version.to_string()),
            (headers::COMMAND_ID, self.command_id.clone()),
            (headers::CORRELATION_ID, self.correlation_id.clone()),
            (headers::WHO, self.who.clone()),
            (headers::TIME, self.time_ms.to_string()),
        ];
        self.push_optional(&mut out);
        out
    }

    /// The headers the event store writes for the event at `index` (0-based) among its
    /// command's events on `entity`: the CloudEvents attributes ([`cloudevents_headers`]), then
    /// Neo's own headers for what no attribute carries. The type, command id and time are read
    /// back from `ce-type`, `ce-id` and `ce-time`; the schema version is written only when it
    /// is not 1 and the correlation id only when it differs from the command id (every header
    /// costs the server a scan per lookup, and every byte is stored forever).
    /// [`Self::from_headers`] reads these and [`Self::to_headers`]' alike.
    pub fn stored_headers(&self, entity: &EntityRef, index: usize) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(13);
        out.extend(cloudevents_headers(entity, self, index));
        if self.schema_version != 1 {
            out.push((headers::SCHEMA_VERSION, self.schema_version.to_string()));
        }
        if self.correlation_id != self.command_id {
            out.push((headers::CORRELATION_ID, self.correlation_id.clone()));
        }
        out.push((headers::WHO, self.who.clone()));
        self.push_optional(&mut out);
        out
    }

    fn push_optional(&self, out: &mut Vec<(&'static str, String)>) {
        if !self.causation_id.is_empty() {
            out.push((headers::CAUSATION_ID, self.causation_id.clone()));
        }
        if let Some(tp) = &self.traceparent {
            out.push((headers::TRACEPARENT, tp.clone()));
        }
        if self.version > 0 {
            out.push((headers::VERSION, self.version.to_string()));
            out.push((headers::HASH, self.hash.clone()));
        }
    }

    /// Reads the metadata back from headers; `get` looks one header up by name. Reads both
    /// layouts: Neo's full set ([`Self::to_headers`], events written before
    /// [`Self::stored_headers`]) and the store's (type, command id and time from `ce-type`,
    /// `ce-id` and `ce-time`; schema version 1 and correlation = command id when absent).
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, MetaError> {
        let invalid = |name: &'static str, v: &str| MetaError::Invalid {
            name,
            value: v.chars().take(80).collect(),
        };
        let num = |name: &'static str, v: &str| -> Result<u64, MetaError> {
            v.parse().map_err(|_| invalid(name, v))
        };
        let schema_version = schema_version(get(headers::SCHEMA_VERSION))?;
        let event_type = match (get(headers::EVENT_TYPE), get(headers::CE_TYPE)) {
            (Some(t), _) => t.to_owned(),
            (None, Some(ce)) => ce
                .rsplit_once('.')
                .map(|(_, t)| t.to_owned())
                .ok_or_else(|| invalid(headers::CE_TYPE, ce))?,
            (None, None) => return Err(MetaError::Missing(headers::EVENT_TYPE)),
        };
        let command_id = match (get(headers::COMMAND_ID), get(headers::CE_ID)) {
            (Some(c), _) => c.to_owned(),
            (None, Some(ce)) => ce
                .rsplit_once(':')
                .map(|(c, _)| c.to_owned())
                .ok_or_else(|| invalid(headers::CE_ID, ce))?,
            (None, None) => return Err(MetaError::Missing(headers::COMMAND_ID)),
        };
        let time_ms = match (get(headers::TIME), get(headers::CE_TIME)) {
            (Some(t), _) => num(headers::TIME, t)?,
            (None, Some(ce)) => {
                parse_rfc3339_millis(ce).ok_or_else(|| invalid(headers::CE_TIME, ce))?
            }
            (None, None) => return Err(MetaError::Missing(headers::TIME)),
        };
        Ok(Self {
            event_type,
            schema_version,
            correlation_id: get(headers::CORRELATION_ID)
                .map_or_else(|| command_id.clone(), str::to_owned),
            command_id,
            causation_id: get(headers::CAUSATION_ID).unwrap_or_default().to_owned(),
            who: get(headers::WHO).unwrap_or_default().to_owned(),
            time_ms,
            traceparent: get(headers::TRACEPARENT).map(str::to_owned),
            version: match get(headers::VERSION) {
                Some(v) => num(headers::VERSION, v)?,
                None => 0,
            },
            hash: get(headers::HASH).unwrap_or_default().to_owned(),
        })
    }
}

/// The schema version an event's `Neo-Schema-Version` header says (`value`), 1 when it is
/// absent (the store writes it only for later versions).
///
/// # Errors
/// [`MetaError::Invalid`] when the value is not a version number.
pub fn schema_version(value: Option<&str>) -> Result<u32, MetaError> {
    value.map_or(Ok(1), |v| {
        v.parse().map_err(|_| MetaError::Invalid {
            name: headers::SCHEMA_VERSION,
            value: v.chars().take(80).collect(),
        })
    })
}

/// The CloudEvents spec version Neo's `ce-*` headers follow.
pub const CLOUDEVENTS_SPEC_VERSION: &str = "1.0";
/// The media type of every event payload (`ce-datacontenttype`).
pub const PROTOBUF_CONTENT_TYPE: &str = "application/protobuf";

/// The fully qualified protobuf message of a kind's event payloads, e.g.
/// `neo.v1.DeploymentEvent`.
pub const fn event_message(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Tenant => "neo.v1.TenantEvent",
        EntityKind::App => "neo.v1.AppEvent",
        EntityKind::Build => "neo.v1.BuildEvent",
        EntityKind::Deployment => "neo.v1.DeploymentEvent",
        EntityKind::Podgroup => "neo.v1.PodgroupEvent",
    }
}

/// Unix milliseconds now, as event times and every other Neo timestamp are kept (0 on a clock
/// before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The fully qualified protobuf message of a kind's state, e.g. `neo.v1.DeploymentState`.
pub const fn state_message(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Tenant => "neo.v1.TenantState",
        EntityKind::App => "neo.v1.AppState",
        EntityKind::Build => "neo.v1.BuildState",
        EntityKind::Deployment => "neo.v1.DeploymentState",
        EntityKind::Podgroup => "neo.v1.PodgroupState",
    }
}

/// The type URL of a protobuf `message` as `google.protobuf.Any` and CloudEvents'
/// `dataschema` carry it: `type.googleapis.com/{message}`.
pub fn type_url(message: &str) -> String {
    format!("type.googleapis.com/{message}")
}

/// The CloudEvents attributes of one event as `ce-*` headers (binary content mode), to publish
/// beside [`EventMeta::to_headers`]. `index` is the event's 0-based position among its
/// command's events.
///
/// | header | value |
/// | --- | --- |
/// | `ce-specversion` | `1.0` |
/// | `ce-id` | `{command_id}:{index}` |
/// | `ce-type` | `dev.neo.{kind}.{EventType}` |
/// | `ce-source` | `/neo/{tenant}/{kind}/{id}` |
/// | `ce-time` | RFC 3339 UTC with milliseconds, the instant of `Neo-Time` |
/// | `ce-datacontenttype` | `application/protobuf` |
/// | `ce-dataschema` | `type.googleapis.com/neo.v1.{Kind}Event` |
///
/// # Guarantees
/// Deterministic: the same command (a retry, or a replay of it) yields the same values,
/// `ce-id` included, so a consumer can de-duplicate on (`ce-source`, `ce-id`). Costs one
/// allocation per value and no other: the result is an array, not a vector.
pub fn cloudevents_headers(
    entity: &EntityRef,
    meta: &EventMeta,
    index: usize,
) -> [(&'static str, String); 7] {
    let kind = entity.kind.as_str();
    let mut id = String::with_capacity(meta.command_id.len() + 4);
    id.push_str(&meta.command_id);
    let _ = write!(id, ":{index}");
    let mut ty = String::with_capacity(9 + kind.len() + meta.event_type.len());
    ty.push_str("dev.neo.");
    ty.push_str(kind);
    ty.push('.');
    ty.push_str(&meta.event_type);
    let (tenant, entity_id) = (entity.tenant.as_str(), entity.id.as_str());
    let mut source = String::with_capacity(8 + tenant.len() + kind.len() + entity_id.len());
    source.push_str("/neo/");
    source.push_str(tenant);
    source.push('/');
    source.push_str(kind);
    source.push('/');
    source.push_str(entity_id);
    let schema = type_url(event_message(entity.kind));
    [
        (headers::CE_SPECVERSION, CLOUDEVENTS_SPEC_VERSION.to_owned()),
        (headers::CE_ID, id),
        (headers::CE_TYPE, ty),
        (headers::CE_SOURCE, source),
        (headers::CE_TIME, rfc3339_millis(meta.time_ms)),
        (
            headers::CE_DATACONTENTTYPE,
            PROTOBUF_CONTENT_TYPE.to_owned(),
        ),
        (headers::CE_DATASCHEMA, schema),
    ]
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds, e.g.
/// `2023-11-14T22:13:20.000Z`.
pub fn rfc3339_millis(time_ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time_ms);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Reads an RFC 3339 UTC time (as [`rfc3339_millis`] writes it) back as milliseconds since the
/// Unix epoch; `None` when it is not one or lies before the epoch.
pub fn parse_rfc3339_millis(text: &str) -> Option<u64> {
    let at = humantime::parse_rfc3339(text).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn headers_round_trip() {
        let meta = EventMeta {
            event_type: "AppCreated".into(),
            schema_version: 1,
            command_id: "c1".into(),
            correlation_id: "k1".into(),
            causation_id: String::new(),
            who: "alice".into(),
            time_ms: 1_700_000_000_000,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            ..Default::default()
        };
        let map: HashMap<_, _> = meta.to_headers().into_iter().collect();
        let back = EventMeta::from_headers(|k| map.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn stored_headers_round_trip_without_the_duplicates() {
        let mut meta = release_meta("c1");
        meta.version = 3;
        meta.hash = "ab".repeat(32);
        let stored = meta.stored_headers(&shop_dev(), 0);
        let names: Vec<&str> = stored.iter().map(|(k, _)| *k).collect();
        for absent in [
            headers::EVENT_TYPE,
            headers::COMMAND_ID,
            headers::TIME,
            headers::SCHEMA_VERSION,
        ] {
            assert!(
                !names.contains(&absent),
                "{absent} is carried by a ce-* attribute"
            );
        }
        let map: HashMap<_, _> = stored.into_iter().collect();
        let back = EventMeta::from_headers(|k| map.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, meta);

        // The correlation id is written only when it is not the command id.
        meta.correlation_id = "c1".into();
        meta.schema_version = 2;
        let stored = meta.stored_headers(&shop_dev(), 0);
        assert!(!stored.iter().any(|(k, _)| *k == headers::CORRELATION_ID));
        assert!(stored.contains(&(headers::SCHEMA_VERSION, "2".into())));
        let map: HashMap<_, _> = stored.into_iter().collect();
        let back = EventMeta::from_headers(|k| map.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn a_multi_event_command_reads_its_own_command_id() {
        let meta = release_meta("req:7:abc");
        let map: HashMap<_, _> = meta.stored_headers(&shop_dev(), 2).into_iter().collect();
        assert_eq!(map["ce-id"], "req:7:abc:2");
        let back = EventMeta::from_headers(|k| map.get(k).map(String::as_str)).unwrap();
        assert_eq!(back.command_id, "req:7:abc");
    }

    #[test]
    fn missing_or_bad_headers_are_named() {
        let err = EventMeta::from_headers(|_| None).unwrap_err();
        assert_eq!(err, MetaError::Missing(headers::EVENT_TYPE));
        let err = EventMeta::from_headers(|k| match k {
            headers::CE_TIME => Some("yesterday"),
            headers::CE_TYPE => Some("dev.neo.app.AppCreated"),
            headers::CE_ID => Some("c1:0"),
            _ => None,
        })
        .unwrap_err();
        assert!(matches!(err, MetaError::Invalid { name, .. } if name == headers::CE_TIME));
        let err = EventMeta::from_headers(|k| match k {
            headers::SCHEMA_VERSION => Some("one"),
            _ => Some("x"),
        })
        .unwrap_err();
        assert!(matches!(err, MetaError::Invalid { name, .. } if name == headers::SCHEMA_VERSION));
    }

    fn release_meta(command_id: &str) -> EventMeta {
        EventMeta {
            event_type: "ReleaseCreated".into(),
            schema_version: 1,
            command_id: command_id.into(),
            correlation_id: "k1".into(),
            causation_id: "publish-deploy:41:0".into(),
            who: "alice".into(),
            time_ms: 1_700_000_000_123,
            traceparent: None,
            ..Default::default()
        }
    }

    fn shop_dev() -> EntityRef {
        EntityRef::deployment(
            &crate::TenantName::new("acme").unwrap(),
            &crate::AppName::new("shop").unwrap(),
            &crate::StageName::new("dev").unwrap(),
        )
    }

    #[test]
    fn cloudevents_headers_of_a_sample_event() {
        let h = cloudevents_headers(&shop_dev(), &release_meta("c1"), 1);
        let expected = [
            ("ce-specversion", "1.0"),
            ("ce-id", "c1:1"),
            ("ce-type", "dev.neo.deployment.ReleaseCreated"),
            ("ce-source", "/neo/acme/deployment/shop_dev"),
            ("ce-time", "2023-11-14T22:13:20.123Z"),
            ("ce-datacontenttype", "application/protobuf"),
            (
                "ce-dataschema",
                "type.googleapis.com/neo.v1.DeploymentEvent",
            ),
        ];
        let got: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn cloudevents_id_is_stable_across_a_retry() {
        let first = cloudevents_headers(&shop_dev(), &release_meta("c1"), 0);
        let retry = cloudevents_headers(&shop_dev(), &release_meta("c1"), 0);
        assert_eq!(first, retry);
        let next = cloudevents_headers(&shop_dev(), &release_meta("c1"), 1);
        let other = cloudevents_headers(&shop_dev(), &release_meta("c2"), 0);
        assert_ne!(first[1], next[1], "each event of a command has its own id");
        assert_ne!(first[1], other[1], "each command has its own ids");
    }

    #[test]
    fn from_headers_ignores_cloudevents_headers() {
        let meta = release_meta("c1");
        let mut map: HashMap<&str, String> = meta.to_headers().into_iter().collect();
        map.extend(cloudevents_headers(&shop_dev(), &meta, 0));
        let back = EventMeta::from_headers(|k| map.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn rfc3339_covers_epoch_leap_days_and_year_ends() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (1_709_251_199_999, "2024-02-29T23:59:59.999Z"),
            (1_735_689_599_001, "2024-12-31T23:59:59.001Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(rfc3339_millis(ms), text, "{ms}");
            assert_eq!(parse_rfc3339_millis(text), Some(ms), "{text}");
        }
    }

    #[test]
    fn every_kind_names_its_event_message() {
        for kind in EntityKind::ALL {
            let message = event_message(kind);
            assert!(message.starts_with("neo.v1.") && message.ends_with("Event"));
            assert!(message.to_lowercase().contains(kind.as_str()));
        }
    }
}
