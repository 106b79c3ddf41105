//! `/live?after=SEQ`: the tenant's events that change the board (its deployments' and
//! podgroups', but the recorded observations) after `SEQ` (the newest the page showed) as
//! Server-Sent Events named `changed`, so a page re-fetches its live parts. A burst of changes
//! is one `changed`, sent when the burst ends: a page that re-fetched on its first event and
//! ignored the rest (htmx's `throttle` does) would show a state the burst went past. It follows
//! `Events.Watch` as the user; when that ends (the gateway restarts, the token expires) the
//! stream ends and the browser's `EventSource` reconnects, with the page's own `after`.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt as _};
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
            let mut stream = watch?;
            let mut last = loop {
                let event = stream.message().await.ok()??;
                if changes_the_board(&event) {
                    break event;
                }
            };
            let ended = gather(&mut stream, &mut last).await;
            let changed = Event::default()
                .event("changed")
                .id(last.sequence.to_string())
                .data(last.entity_id);
            Some((Ok(changed), (None, (!ended).then_some(stream))))
        },
    );
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// How long the stream waits for a burst of changes to end before it says `changed` once.
const QUIET: Duration = Duration::from_millis(150);
/// The longest it gathers a burst: a steady stream of changes still refreshes the page.
const GATHER_AT_MOST: Duration = Duration::from_secs(1);

/// Takes the board's changes that follow `last` within [`QUIET`] of each other (for at most
/// [`GATHER_AT_MOST`]) into `last`, so a burst (a release and its rollout) is one `changed`
/// and the page, which re-fetches on each, reads the state after the burst: never before its
/// last event. Whether the watch ended meanwhile.
async fn gather<S>(stream: &mut S, last: &mut api::Event) -> bool
where
    S: Stream<Item = Result<api::Event, tonic::Status>> + Unpin,
{
    let until = tokio::time::Instant::now() + GATHER_AT_MOST;
    loop {
        let wait = QUIET.min(until.saturating_duration_since(tokio::time::Instant::now()));
        match tokio::time::timeout(wait, stream.next()).await {
            Err(_quiet) => return false,
            Ok(Some(Ok(event))) => {
                if changes_the_board(&event) {
                    *last = event;
                }
            }
            Ok(None | Some(Err(_))) => return true,
        }
    }
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

    fn change(sequence: u64, event_type: &str) -> Result<api::Event, tonic::Status> {
        Ok(api::Event {
            sequence,
            kind: "deployment".into(),
            event_type: event_type.into(),
            ..Default::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_change_named_by_its_last_event() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        let mut last = change(1, "ReleaseCreated").expect("an event");
        let observation = Ok(api::Event {
            sequence: 3,
            kind: "podgroup".into(),
            event_type: "MetricsObserved".into(),
            ..Default::default()
        });
        for event in [change(2, "RolloutStarted"), observation] {
            tx.unbounded_send(event).expect("sent");
        }
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(QUIET / 2).await;
            later
                .unbounded_send(change(4, "RolloutCompleted"))
                .expect("sent");
        });
        let ended = gather(&mut rx, &mut last).await;
        assert!(!ended, "the watch goes on");
        assert_eq!(last.sequence, 4, "the burst's last change names it");

        tx.unbounded_send(change(5, "ReleaseCreated"))
            .expect("sent");
        drop(tx);
        let ended = gather(&mut rx, &mut last).await;
        assert!(ended, "the watch ended");
        assert_eq!(last.sequence, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_changes_still_says_changed_within_a_second() {
        let (tx, mut rx) = futures::channel::mpsc::unbounded();
        tokio::spawn(async move {
            for sequence in 2.. {
                tokio::time::sleep(QUIET / 3).await;
                if tx.unbounded_send(change(sequence, "ReplicaReady")).is_err() {
                    break;
                }
            }
        });
        let mut last = change(1, "ReleaseCreated").expect("an event");
        let started = tokio::time::Instant::now();
        assert!(!gather(&mut rx, &mut last).await);
        assert!(started.elapsed() <= GATHER_AT_MOST + QUIET);
        assert!(last.sequence > 2, "it took the changes that came meanwhile");
    }
}
