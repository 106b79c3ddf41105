//! Streams and KV buckets as every component makes them: with the installation's replica count
//! ([`replicas`]: 1 on one server, 3 on a cluster), and raised to it in place when they have
//! fewer.
//!
//! A stream that exists keeps its configuration (limits an operator changed stay); only a
//! replica count below the installation's is raised, which JetStream does in place without
//! losing a message. Two processes starting at once may both try to create: the loser binds
//! what the winner made.

use async_nats::jetstream::context::{CreateStreamErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{self, ErrorCode, kv, stream};

/// The environment variable that sets the replica count (1 to 5) instead of the server's
/// shape.
pub const REPLICAS_ENV: &str = "NEO_JS_REPLICAS";

/// The replica count of every stream and bucket on `client`'s server: `NEO_JS_REPLICAS` when
/// set, else 3 on a cluster (fewer when it has fewer servers) and 1 on a lone server.
pub fn replicas(client: &async_nats::Client) -> usize {
    if let Some(set) = std::env::var(REPLICAS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=5).contains(n))
    {
        return set;
    }
    let info = client.server_info();
    match info.cluster {
        Some(_) => info.connect_urls.len().clamp(1, 3),
        None => 1,
    }
}

/// A stream or bucket could not be made or raised.
#[derive(Debug, thiserror::Error)]
#[error("stream {stream}: {reason}")]
pub struct StreamError {
    /// The stream (a bucket's is `KV_{bucket}`).
    pub stream: String,
    /// JetStream's message.
    pub reason: String,
}

impl StreamError {
    fn new(stream: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            stream: stream.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Binds stream `config.name`, creating it with the installation's [`replicas`], or raising
/// an existing one's replicas to that.
///
/// # Errors
///
/// When JetStream refuses (e.g. more than one replica on a server that is not clustered).
pub async fn ensure_stream(
    js: &jetstream::Context,
    mut config: stream::Config,
) -> Result<stream::Stream, StreamError> {
    let name = config.name.clone();
    let replicas = replicas(&js.client());
    match js.get_stream(&name).await {
        Ok(existing) => {
            // `get_stream` read its info already.
            raise(js, &name, existing.cached_info().config.clone(), replicas).await?;
            Ok(existing)
        }
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
        {
            config.num_replicas = replicas;
            match js.create_stream(config).await {
                Ok(created) => {
                    tracing::info!(stream = %name, replicas, "created");
                    Ok(created)
                }
                // Another process made it first.
                Err(e) if matches!(e.kind(), CreateStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NAME_EXIST) => {
                    js.get_stream(&name)
                        .await
                        .map_err(|e| StreamError::new(&name, e))
                }
                Err(e) => Err(StreamError::new(&name, e)),
            }
        }
        Err(e) => Err(StreamError::new(&name, e)),
    }
}

/// Binds bucket `config.bucket`, creating it with the installation's [`replicas`], or
/// raising an existing one's replicas to that.
///
/// # Errors
///
/// When JetStream refuses.
pub async fn ensure_bucket(
    js: &jetstream::Context,
    config: kv::Config,
) -> Result<kv::Store, StreamError> {
    ensure_bucket_with(js, config, replicas(&js.client())).await
}

/// [`ensure_bucket`] with `replicas` replicas.
///
/// # Errors
///
/// When JetStream refuses.
pub async fn ensure_bucket_with(
    js: &jetstream::Context,
    mut config: kv::Config,
    replicas: usize,
) -> Result<kv::Store, StreamError> {
    let replicas = replicas.max(1);
    let stream = format!("KV_{}", config.bucket);
    if let Ok(store) = js.get_key_value(&config.bucket).await {
        // The bound store carries its stream's info.
        let current = store.stream.cached_info().config.clone();
        raise(js, &stream, current, replicas).await?;
        return Ok(store);
    }
    config.num_replicas = replicas;
    let bucket = config.bucket.clone();
    match js.create_key_value(config).await {
        Ok(store) => {
            tracing::info!(bucket = %bucket, replicas, "created");
            Ok(store)
        }
        // Another process made it first (or the create failed: the bind says which).
        Err(e) => js
            .get_key_value(&bucket)
            .await
            .map_err(|bind| StreamError::new(&stream, format!("{e}; {bind}"))),
    }
}

/// Raises `current`'s replicas to `replicas` when it has fewer.
async fn raise(
    js: &jetstream::Context,
    name: &str,
    mut current: stream::Config,
    replicas: usize,
) -> Result<(), StreamError> {
    if current.num_replicas >= replicas {
        return Ok(());
    }
    let from = current.num_replicas;
    current.num_replicas = replicas;
    js.update_stream(current).await.map_err(|e| {
        StreamError::new(name, format!("raising replicas {from} → {replicas}: {e}"))
    })?;
    tracing::info!(
        stream = name,
        from,
        to = replicas,
        "raised replicas in place"
    );
    Ok(())
}
