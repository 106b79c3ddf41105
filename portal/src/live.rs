//! `/live?after=SEQ`: the tenant's events that change the board (its deployments' and
//! podgroups', but the recorded observations) after `SEQ` (the newest the page showed) as
//! Server-Sent Events named `changed`, so a page re-fetches its live parts. It follows
//! `Events.Watch` as the user; when that ends (the gateway restarts, the token expires) the
//! stream ends and the browser's `EventSource` reconnects, with the page's own `after`.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use neo_gateway::api;

use crate::gateway::AsUser;

/// The stream of `changed` events, kept alive every 15 s.
pub fn changes(
    user: AsUser,
    tenant: String,
    after: u64,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let request = api::WatchRequest {
        tenant,
        after_sequence: after,
        ..Default::default()
    };
    let events = futures::stream::unfold(
        (Some((user, request)), None::<tonic::Streaming<api::Event>>),
        |(start, mut watch)| async move {
            if let Some((user, request)) = start {
                match user.events().watch(request).await {
                    Ok(stream) => watch = Some(stream.into_inner()),
                    Err(status) => {
                        tracing::debug!(%status, "portal: the event watch was refused");
                        return None;
                    }
                }
            }
            let event = loop {
                let event = watch.as_mut()?.message().await.ok()??;
                if changes_the_board(&event) {
                    break event;
                }
            };
            let changed = Event::default()
                .event("changed")
                .id(event.sequence.to_string())
                .data(event.entity_id);
            Some((Ok(changed), (None, watch)))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// Whether `event` changes what the board shows: a deployment's, or a podgroup's but a
/// recorded observation (the agents record those every sampling interval).
fn changes_the_board(event: &api::Event) -> bool {
    match event.kind.as_str() {
        "deployment" => true,
        "podgroup" => event.event_type != "MetricsObserved",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_board_follows_releases_and_scaling_not_observations() {
        let event = |kind: &str, event_type: &str| api::Event {
            kind: kind.into(),
            event_type: event_type.into(),
            ..Default::default()
        };
        assert!(changes_the_board(&event("deployment", "ReleaseCreated")));
        assert!(changes_the_board(&event("podgroup", "Autoscaled")));
        assert!(!changes_the_board(&event("podgroup", "MetricsObserved")));
        assert!(!changes_the_board(&event("build", "BuildStarted")));
    }
}
