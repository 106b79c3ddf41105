//! `neo.gateway.v1.Events`: a tenant's events from JetStream, filtered, resumable by sequence.

use std::sync::Arc;

use std::pin::Pin;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use futures::{Stream, StreamExt};
use neo_protocol::{EntityKind, EntityRef, TenantName, subjects};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::{Ctx, history, tenant};
use crate::api::{self, events_server::Events};
use crate::auth::Action;
use crate::error::{bad_name, invalid, unavailable};

/// The events service.
pub struct EventsService(pub Arc<Ctx>);

/// The watched events.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<api::Event, Status>> + Send>>;

fn filter(r: &api::WatchRequest) -> Result<String, Status> {
    let kind = if r.kind.is_empty() {
        "*".to_owned()
    } else {
        EntityKind::parse(&r.kind)
            .map_err(|e| bad_name("kind", e))?
            .to_string()
    };
    let id = if r.entity_id.is_empty() {
        "*".to_owned()
    } else if r.kind.is_empty() {
        // Any kind whose ids can take this shape (e.g. `shop` is an app, `shop_dev` a
        // deployment or podgroup).
        EntityKind::ALL
            .iter()
            .find_map(|k| EntityRef::parse(&r.tenant, k.as_str(), &r.entity_id).ok())
            .map(|e| e.id.to_string())
            .ok_or_else(|| {
                invalid(
                    "entity_id",
                    format!("`{}` is not an entity id", r.entity_id),
                )
            })?
    } else {
        EntityRef::parse(&r.tenant, &kind, &r.entity_id)
            .map_err(|e| bad_name("entity_id", e))?
            .id
            .to_string()
    };
    let event_type = if r.event_type.is_empty() {
        "*".to_owned()
    } else if r.event_type.len() <= 64 && r.event_type.bytes().all(|b| b.is_ascii_alphanumeric()) {
        r.event_type.clone()
    } else {
        return Err(invalid(
            "event_type",
            "an event type name such as ReleaseCreated",
        ));
    };
    Ok(format!("neo.evt.{}.{kind}.{id}.{event_type}", r.tenant))
}

/// The entity a History or StateAt request names, a bad name refused naming its field.
fn named_entity(t: &TenantName, kind: &str, id: &str) -> Result<EntityRef, Status> {
    let kind = EntityKind::parse(kind).map_err(|e| bad_name("kind", e))?;
    EntityRef::parse(t.as_str(), kind.as_str(), id).map_err(|e| bad_name("entity_id", e))
}

fn to_event(msg: &async_nats::jetstream::Message) -> Option<api::Event> {
    let sequence = msg.info().ok()?.stream_sequence;
    history::event(
        msg.subject.as_str(),
        sequence,
        msg.headers.as_ref(),
        msg.payload.clone(),
    )
}

#[tonic::async_trait]
impl Events for EventsService {
    type WatchStream = EventStream;

    async fn history(
        &self,
        request: Request<api::HistoryRequest>,
    ) -> Result<Response<api::HistoryResponse>, Status> {
        let r = request.get_ref();
        let t = tenant("tenant", &r.tenant)?;
        let entity = named_entity(&t, &r.kind, &r.entity_id)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let (events, more) =
            history::history(&self.0.js, &entity, r.after_sequence, r.limit).await?;
        Ok(Response::new(api::HistoryResponse { events, more }))
    }

    async fn why(
        &self,
        request: Request<api::WhyRequest>,
    ) -> Result<Response<api::WhyResponse>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let sequence = request.get_ref().sequence;
        if sequence == 0 {
            return Err(invalid("sequence", "stream sequences start at 1"));
        }
        let (chain, root) = history::why(&self.0.js, &t, sequence).await?;
        Ok(Response::new(api::WhyResponse { chain, root }))
    }

    async fn verify(
        &self,
        request: Request<api::VerifyRequest>,
    ) -> Result<Response<api::VerifyResponse>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let filter = format!("neo.evt.{t}.>");
        let records = neo_actors::audit::read(&self.0.js, &filter)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let checkpoints = neo_actors::audit::checkpoints(&self.0.js, &records)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        let report = neo_actors::audit::verify(records, &checkpoints);
        let problems = report
            .problems
            .iter()
            .map(|p| serde_json::to_string(p).map_err(|e| Status::internal(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(api::VerifyResponse {
            events: report.events,
            entities: report.entities,
            unchained: report.unchained,
            checkpoints: checkpoints.len() as u64,
            problems,
        }))
    }

    async fn state_at(
        &self,
        request: Request<api::StateAtRequest>,
    ) -> Result<Response<api::StateAtResponse>, Status> {
        let r = request.get_ref();
        let t = tenant("tenant", &r.tenant)?;
        let entity = named_entity(&t, &r.kind, &r.entity_id)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let (sequence, time_ms) = (r.sequence, r.time_ms);
        let (state, sequence) = history::state_at(&self.0.js, &entity, sequence, time_ms).await?;
        Ok(Response::new(api::StateAtResponse {
            state: Some(state),
            sequence,
            kind: entity.kind.to_string(),
        }))
    }

    async fn watch(
        &self,
        request: Request<api::WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let t = tenant("tenant", &request.get_ref().tenant)?;
        self.0.allow(&request, Some(&t), Action::Read)?;
        let r = request.into_inner();
        let filter_subject = filter(&r)?;
        let stream = self
            .0
            .js
            .get_stream(subjects::EVENTS_STREAM)
            .await
            .map_err(|e| unavailable(format!("event stream unavailable: {e}")))?;
        let deliver_policy = match r.after_sequence {
            0 => DeliverPolicy::All,
            n => DeliverPolicy::ByStartSequence {
                start_sequence: n + 1,
            },
        };
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject,
                deliver_policy,
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(format!("cannot watch: {e}")))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| unavailable(format!("cannot watch: {e}")))?;
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(async move {
            while let Some(next) = messages.next().await {
                let item = match next {
                    Ok(msg) => match to_event(&msg) {
                        Some(event) => Ok(event),
                        None => continue,
                    },
                    Err(e) => Err(unavailable(format!("watch interrupted: {e}"))),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(kind: &str, id: &str, ty: &str) -> api::WatchRequest {
        api::WatchRequest {
            tenant: "acme".into(),
            kind: kind.into(),
            entity_id: id.into(),
            event_type: ty.into(),
            after_sequence: 0,
        }
    }

    #[test]
    fn filters_become_subjects_and_bad_ones_are_refused() {
        assert_eq!(filter(&req("", "", "")).unwrap(), "neo.evt.acme.*.*.*");
        assert_eq!(
            filter(&req("deployment", "shop_dev", "ReleaseCreated")).unwrap(),
            "neo.evt.acme.deployment.shop_dev.ReleaseCreated"
        );
        assert!(filter(&req("robot", "", "")).is_err());
        assert_eq!(
            filter(&req("", "shop", "")).unwrap(),
            "neo.evt.acme.*.shop.*"
        );
        assert!(filter(&req("", "a.b", "")).is_err());
        assert!(filter(&req("app", "a.b", "")).is_err());
        assert!(filter(&req("", "", ">")).is_err());
    }
}
