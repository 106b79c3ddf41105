//! A tenant's events as a tool reads them: from the tenant's copy
//! ([`subjects::TENANT_EVENTS_STREAM`]) when the tool connects as a tooling user (whose own NATS
//! account holds only that copy), else from [`subjects::EVENTS_STREAM`] itself (an operator, or
//! an open development server).

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{Consumer, push};
use async_nats::jetstream::stream::{ConsumerError, ConsumerErrorKind};
use async_nats::jetstream::{self};
use neo_protocol::subjects;

/// Creates the ordered push consumer `config` on the tenant's copy, or on the whole event log
/// when this account has no copy.
///
/// # Errors
/// What JetStream answers (a filter outside the tooling user's tenant is refused, and the
/// request then times out).
pub async fn ordered(
    js: &jetstream::Context,
    config: push::OrderedConfig,
) -> Result<Consumer<push::OrderedConfig>, ConsumerError> {
    let copy = js
        .get_stream_no_info(subjects::TENANT_EVENTS_STREAM)
        .await
        .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::Other, e))?;
    match copy.create_consumer(config.clone()).await {
        Err(e) if is_missing_stream(&e) => {
            let events = js
                .get_stream_no_info(subjects::EVENTS_STREAM)
                .await
                .map_err(|e| ConsumerError::with_source(ConsumerErrorKind::Other, e))?;
            events.create_consumer(config).await
        }
        other => other,
    }
}

fn is_missing_stream(error: &ConsumerError) -> bool {
    matches!(error.kind(), ConsumerErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}
