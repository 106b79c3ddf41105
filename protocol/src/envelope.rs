//! Event metadata (who, when, why) and its mapping to and from message headers.

use crate::headers;

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
    /// The headers to publish with the event, in a fixed order. An empty causation id and an
    /// absent trace context are left out (every header costs the server a scan per lookup).
    pub fn to_headers(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (headers::EVENT_TYPE, self.event_type.clone()),
            (headers::SCHEMA_VERSION, self.schema_version.to_string()),
            (headers::COMMAND_ID, self.command_id.clone()),
            (headers::CORRELATION_ID, self.correlation_id.clone()),
            (headers::WHO, self.who.clone()),
            (headers::TIME, self.time_ms.to_string()),
        ];
        if !self.causation_id.is_empty() {
            out.push((headers::CAUSATION_ID, self.causation_id.clone()));
        }
        if let Some(tp) = &self.traceparent {
            out.push((headers::TRACEPARENT, tp.clone()));
        }
        out
    }

    /// Reads the metadata back from headers; `get` looks one header up by name.
    pub fn from_headers<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Result<Self, MetaError> {
        let req = |name: &'static str| get(name).ok_or(MetaError::Missing(name));
        let num = |name: &'static str| -> Result<u64, MetaError> {
            let v = req(name)?;
            v.parse().map_err(|_| MetaError::Invalid {
                name,
                value: v.chars().take(80).collect(),
            })
        };
        let schema_version =
            u32::try_from(num(headers::SCHEMA_VERSION)?).map_err(|_| MetaError::Invalid {
                name: headers::SCHEMA_VERSION,
                value: "out of range".into(),
            })?;
        Ok(Self {
            event_type: req(headers::EVENT_TYPE)?.to_owned(),
            schema_version,
            command_id: req(headers::COMMAND_ID)?.to_owned(),
            correlation_id: get(headers::CORRELATION_ID).unwrap_or_default().to_owned(),
            causation_id: get(headers::CAUSATION_ID).unwrap_or_default().to_owned(),
            who: get(headers::WHO).unwrap_or_default().to_owned(),
            time_ms: num(headers::TIME)?,
            traceparent: get(headers::TRACEPARENT).map(str::to_owned),
        })
    }
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
        };
        let map: HashMap<_, _> = meta.to_headers().into_iter().collect();
        let back = EventMeta::from_headers(|k| map.get(k).map(String::as_str)).unwrap();
        assert_eq!(back, meta);
    }

    #[test]
    fn missing_or_bad_headers_are_named() {
        let err = EventMeta::from_headers(|_| None).unwrap_err();
        assert_eq!(err, MetaError::Missing(headers::SCHEMA_VERSION));
        let err = EventMeta::from_headers(|k| match k {
            headers::SCHEMA_VERSION => Some("one"),
            _ => Some("x"),
        })
        .unwrap_err();
        assert!(matches!(err, MetaError::Invalid { name, .. } if name == headers::SCHEMA_VERSION));
    }
}
