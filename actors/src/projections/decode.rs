//! Reading one stored event for the projections: subject → entity, headers → metadata,
//! payload → the kind's `{Kind}Event` (pure: no I/O).

use bytes::Bytes;
use neo_protocol::envelope::EventMeta;
use neo_protocol::{EntityKind, EntityRef, pb};

use crate::stored::{StoredError, StoredMessage};

/// An event the projections can apply.
#[derive(Debug, Clone, PartialEq)]
pub struct ProjectedEvent {
    /// Its stream sequence.
    pub sequence: u64,
    /// The entity it belongs to.
    pub entity: EntityRef,
    /// Its metadata.
    pub meta: EventMeta,
    /// The decoded payload.
    pub event: KindEvent,
}

/// The payload of an event, decoded as its kind's event.
#[derive(Debug, Clone, PartialEq)]
pub enum KindEvent {
    /// A tenant's event.
    Tenant(pb::tenant_event::Event),
    /// An app's event.
    App(pb::app_event::Event),
    /// A build's event.
    Build(pb::build_event::Event),
    /// A deployment's event (boxed: a canary's carry its figures).
    Deployment(Box<pb::deployment_event::Event>),
    /// An event of a kind no read model follows (podgroups).
    Unprojected,
}

/// Decodes the event at `sequence` from its subject, header lookup and payload, as every
/// reader does ([`StoredMessage::read`], [`StoredMessage::decode`]).
///
/// # Errors
/// A [`StoredError`] naming the part that is wrong (the runner logs it with the sequence and
/// skips the event).
pub fn decode<'a>(
    sequence: u64,
    subject: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    payload: &[u8],
) -> Result<ProjectedEvent, StoredError> {
    let stored = StoredMessage::read(subject, sequence, header, Bytes::copy_from_slice(payload))?;
    let kind = stored.entity.kind;
    let event = match kind {
        EntityKind::Tenant => {
            KindEvent::Tenant(variant(stored.decode::<pb::TenantState>()?.event)?)
        }
        EntityKind::App => KindEvent::App(variant(stored.decode::<pb::AppState>()?.event)?),
        EntityKind::Build => KindEvent::Build(variant(stored.decode::<pb::BuildState>()?.event)?),
        EntityKind::Deployment => KindEvent::Deployment(Box::new(variant(
            stored.decode::<pb::DeploymentState>()?.event,
        )?)),
        EntityKind::Podgroup => KindEvent::Unprojected,
    };
    Ok(ProjectedEvent {
        sequence,
        entity: stored.entity,
        meta: stored.meta,
        event,
    })
}

/// The event's variant; [`StoredMessage::decode`] has refused an event without one.
fn variant<E>(event: Option<E>) -> Result<E, StoredError> {
    event.ok_or_else(|| StoredError::Payload("an event without a variant".into()))
}

/// The lowercase name of a protobuf enum value without its type prefix, e.g.
/// `ROLE_DEVOPS` → `devops`; `unknown(N)` for a value this version does not know.
pub(crate) fn enum_name(name: Option<&str>, prefix: &str, value: i32) -> String {
    match name {
        Some(name) => name
            .strip_prefix(prefix)
            .unwrap_or(name)
            .to_ascii_lowercase(),
        None => format!("unknown({value})"),
    }
}

/// `role` as stored: viewer, developer, devops, admin.
pub(crate) fn role_name(role: i32) -> String {
    let name = pb::Role::try_from(role).ok().map(|r| r.as_str_name());
    enum_name(name, "ROLE_", role)
}

/// `origin` as stored: deploy, promotion, rollback.
pub(crate) fn origin_name(origin: i32) -> String {
    let name = pb::ReleaseOrigin::try_from(origin)
        .ok()
        .map(|r| r.as_str_name());
    enum_name(name, "RELEASE_ORIGIN_", origin)
}

/// `rollout` as stored: pending, succeeded, failed.
pub(crate) fn rollout_name(status: i32) -> String {
    let name = pb::RolloutStatus::try_from(status)
        .ok()
        .map(|r| r.as_str_name());
    enum_name(name, "ROLLOUT_STATUS_", status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;
    use std::collections::HashMap;

    fn headers(event_type: &str) -> HashMap<&'static str, String> {
        EventMeta {
            event_type: event_type.into(),
            schema_version: 1,
            command_id: "c1".into(),
            time_ms: 1_700_000_000_000,
            ..Default::default()
        }
        .to_headers()
        .into_iter()
        .collect()
    }

    fn decode_with(
        subject: &str,
        h: &HashMap<&'static str, String>,
        payload: &[u8],
    ) -> Result<ProjectedEvent, StoredError> {
        decode(7, subject, |n| h.get(n).map(String::as_str), payload)
    }

    #[test]
    fn decodes_an_event_of_each_projected_kind() {
        let h = headers("AppCreated");
        let payload = pb::AppEvent {
            event: Some(pb::app_event::Event::Created(pb::AppCreated {
                description: "shop".into(),
            })),
        }
        .encode_to_vec();
        let event = decode_with("neo.evt.acme.app.shop.AppCreated", &h, &payload).unwrap();
        assert_eq!(event.sequence, 7);
        assert_eq!(event.entity.to_string(), "acme/app/shop");
        assert_eq!(event.meta.time_ms, 1_700_000_000_000);
        assert!(matches!(
            event.event,
            KindEvent::App(pb::app_event::Event::Created(_))
        ));

        let pod = decode_with("neo.evt.acme.podgroup.shop_dev.Scaled", &h, b"\x01junk").unwrap();
        assert_eq!(pod.event, KindEvent::Unprojected);
    }

    #[test]
    fn names_what_is_wrong() {
        let h = headers("AppCreated");
        assert!(matches!(
            decode_with("neo.evt.acme.app", &h, &[]),
            Err(StoredError::Subject(_))
        ));
        assert!(matches!(
            decode_with("neo.evt.acme.app.shop.AppCreated", &HashMap::new(), &[]),
            Err(StoredError::Headers { .. })
        ));
        assert!(matches!(
            decode_with("neo.evt.acme.app.shop.AppCreated", &h, b"\xff\xff"),
            Err(StoredError::Payload(_))
        ));
        // An empty payload is an event with no known variant: a newer schema.
        assert!(matches!(
            decode_with("neo.evt.acme.build.shop_r1.BuildSomething", &h, &[]),
            Err(StoredError::Unknown { .. })
        ));
    }

    #[test]
    fn enum_names_are_short_and_lowercase() {
        assert_eq!(role_name(pb::Role::Devops.into()), "devops");
        assert_eq!(origin_name(pb::ReleaseOrigin::Rollback.into()), "rollback");
        assert_eq!(rollout_name(pb::RolloutStatus::Pending.into()), "pending");
        assert_eq!(rollout_name(42), "unknown(42)");
    }
}
