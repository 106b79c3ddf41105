//! The projection runner: an ordered consumer on `NEO_EVENTS` from the stored position + 1,
//! batches of events applied in one transaction with the new position.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull};
use futures::StreamExt;
use neo_protocol::subjects;
use tokio::task::JoinHandle;

use super::apply::{apply, to_i64};
use super::decode::decode;
use super::{PROJECTION, ProjectionError, Projections, nats, position_from};

/// How long a batch waits for an event the server says is pending.
const BATCH_WAIT: Duration = Duration::from_millis(500);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

impl Projections {
    /// Follows the stream forever, applying each event; abort the returned task to stop.
    ///
    /// # Guarantees
    /// On a NATS or Postgres error it logs, backs off (100 ms doubling to 10 s) and resumes
    /// from the stored position, so no event is skipped or applied twice. An event that
    /// cannot be read is logged with its sequence, counted in [`skipped`](Self::skipped) and
    /// passed over.
    pub fn run(&self, js: jetstream::Context) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = MIN_BACKOFF;
            loop {
                let before = this.position().await.ok();
                if let Err(e) = this.follow(&js, None).await {
                    if this.position().await.ok() != before {
                        backoff = MIN_BACKOFF;
                    }
                    tracing::warn!(error = %e, retry_in = ?backoff,
                        "projection runner interrupted; resuming from the stored position");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        })
    }

    /// Applies every event up to the stream's last sequence at the time of the call, then
    /// returns the position reached (at least that sequence).
    ///
    /// # Errors
    /// [`ProjectionError::Nats`] when the stream cannot be read; [`ProjectionError::Database`]
    /// or [`ProjectionError::Apply`] when Postgres fails (what was committed stays applied).
    pub async fn catch_up(&self, js: &jetstream::Context) -> Result<u64, ProjectionError> {
        let stream = js.get_stream(subjects::EVENTS_STREAM).await.map_err(nats)?;
        let last = stream.cached_info().state.last_sequence;
        let position = self.position().await?;
        if position > last {
            tracing::warn!(
                position,
                last,
                "the read models are ahead of the event stream (was it replaced?); rebuild them"
            );
        }
        self.follow(js, Some(last)).await
    }

    /// Follows the stream from the stored position until `until` (or forever), restarting
    /// from the stored position whenever another writer moved it.
    async fn follow(
        &self,
        js: &jetstream::Context,
        until: Option<u64>,
    ) -> Result<u64, ProjectionError> {
        loop {
            let from = self.position().await?;
            if until.is_some_and(|t| from >= t) {
                return Ok(from);
            }
            match self.follow_from(js, from, until).await {
                Err(ProjectionError::Moved { expected, found }) => {
                    tracing::info!(
                        expected,
                        found,
                        "projection position moved; following from it"
                    );
                }
                other => return other,
            }
        }
    }

    async fn follow_from(
        &self,
        js: &jetstream::Context,
        from: u64,
        until: Option<u64>,
    ) -> Result<u64, ProjectionError> {
        let stream = js
            .get_stream_no_info(subjects::EVENTS_STREAM)
            .await
            .map_err(nats)?;
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subjects::EVENTS_ALL.to_owned(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from + 1,
                },
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let mut messages = consumer.messages().await.map_err(nats)?;
        let mut position = from;
        tracing::debug!(from, ?until, "projection following the event stream");
        loop {
            let first = messages
                .next()
                .await
                .ok_or_else(|| nats("the ordered consumer ended"))?
                .map_err(nats)?;
            let mut batch = vec![Event::of(first)?];
            while batch.len() < super::MAX_BATCH {
                let last = &batch[batch.len() - 1];
                if last.pending == 0 || until.is_some_and(|t| last.sequence >= t) {
                    break;
                }
                match tokio::time::timeout(BATCH_WAIT, messages.next()).await {
                    Ok(Some(message)) => batch.push(Event::of(message.map_err(nats)?)?),
                    Ok(None) | Err(_) => break,
                }
            }
            position = self.apply_batch(position, &batch).await?;
            if until.is_some_and(|t| position >= t) {
                return Ok(position);
            }
        }
    }

    /// Applies `batch` in one transaction, if the stored position is still `expected`, and
    /// stores the sequence of its last event. Returns the new position.
    async fn apply_batch(&self, expected: u64, batch: &[Event]) -> Result<u64, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT sequence FROM projection_positions WHERE projection = $1 FOR UPDATE",
        )
        .bind(PROJECTION)
        .fetch_optional(&mut *tx)
        .await?;
        let found = position_from(stored)?;
        if found != expected {
            return Err(ProjectionError::Moved { expected, found });
        }
        let mut position = expected;
        let mut skipped = 0;
        for event in batch {
            let sequence = event.sequence;
            if sequence <= position {
                continue; // delivered again: already applied
            }
            if sequence > position + 1 {
                tracing::warn!(
                    from = position + 1,
                    to = sequence - 1,
                    "events missing from the stream (removed by its limits?); not projected"
                );
            }
            let message = &event.message;
            let headers = message.headers.as_ref();
            let decoded = decode(
                sequence,
                message.subject.as_str(),
                |name| headers.and_then(|h| h.get(name)).map(|v| v.as_str()),
                &message.payload,
            );
            match decoded {
                Ok(decoded) => apply(&mut tx, &decoded)
                    .await
                    .map_err(|source| ProjectionError::Apply { sequence, source })?,
                Err(e) => {
                    tracing::error!(sequence, subject = %message.subject, error = %e,
                        "skipping an event the projections cannot read");
                    skipped += 1;
                }
            }
            position = sequence;
        }
        sqlx::query(
            "INSERT INTO projection_positions (projection, sequence) VALUES ($1, $2)
             ON CONFLICT (projection) DO UPDATE SET sequence = EXCLUDED.sequence",
        )
        .bind(PROJECTION)
        .bind(to_i64(position))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Counted once committed, so a batch retried after a failure is not counted twice.
        self.skipped.fetch_add(skipped, Ordering::Relaxed);
        tracing::debug!(position, events = batch.len(), "projection batch applied");
        Ok(position)
    }
}

/// A delivered message with its stream sequence and what the consumer still has pending.
struct Event {
    sequence: u64,
    pending: u64,
    message: jetstream::Message,
}

impl Event {
    fn of(message: jetstream::Message) -> Result<Event, ProjectionError> {
        let info = message.info().map_err(nats)?;
        Ok(Event {
            sequence: info.stream_sequence,
            pending: info.pending,
            message,
        })
    }
}
