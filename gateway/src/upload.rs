//! Client-streamed uploads (a header message, then chunks): read within the size limit,
//! stored content-addressed in S3.

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use neo_protocol::TenantName;
use neo_revisions::{RevisionStore, StorageError, StoredBlob};
use tonic::Status;

use crate::error::{invalid, unavailable};

/// One message of an upload: its header, a chunk, or neither (malformed).
pub enum Part<H> {
    /// The header (first message only).
    Header(H),
    /// Content bytes.
    Chunk(Bytes),
    /// A message with no part.
    Empty,
}

/// Reads the first message, which must be the header.
///
/// # Errors
/// `INVALID_ARGUMENT` when the stream is empty or starts with a chunk; the stream's own error.
pub async fn header<M, H>(
    stream: &mut (impl Stream<Item = Result<M, Status>> + Unpin),
    part: impl Fn(M) -> Part<H>,
) -> Result<H, Status> {
    match stream.next().await {
        Some(Ok(m)) => match part(m) {
            Part::Header(h) => Ok(h),
            _ => Err(invalid("header", "the first message must be the header")),
        },
        Some(Err(e)) => Err(e),
        None => Err(invalid("header", "empty upload")),
    }
}

/// Reads the chunks after the header, refusing more than `limit` bytes.
///
/// # Errors
/// `INVALID_ARGUMENT` for a second header or empty content, `RESOURCE_EXHAUSTED` over the
/// limit, the stream's own error if it fails.
pub async fn content<M, H>(
    stream: &mut (impl Stream<Item = Result<M, Status>> + Unpin),
    limit: usize,
    part: impl Fn(M) -> Part<H>,
) -> Result<Bytes, Status> {
    let mut content = BytesMut::new();
    while let Some(message) = stream.next().await {
        match part(message?) {
            Part::Chunk(chunk) => {
                if content.len() + chunk.len() > limit {
                    return Err(Status::resource_exhausted(format!(
                        "the upload exceeds the {limit}-byte limit"
                    )));
                }
                content.extend_from_slice(&chunk);
            }
            Part::Header(_) => {
                return Err(invalid("header", "only the first message may be a header"));
            }
            Part::Empty => {
                return Err(invalid("part", "a message must carry a header or a chunk"));
            }
        }
    }
    if content.is_empty() {
        return Err(invalid("chunk", "the upload has no content"));
    }
    Ok(content.freeze())
}

/// Stores `content` for `tenant` by its digest (once per content).
///
/// # Errors
/// `UNAVAILABLE` when S3 cannot be reached, `INTERNAL` when it refuses.
pub async fn store(
    revisions: &RevisionStore,
    tenant: &TenantName,
    content: Bytes,
) -> Result<StoredBlob, Status> {
    revisions
        .put(tenant.as_str(), content)
        .await
        .map_err(|e| match e {
            StorageError::Unavailable(_) => {
                unavailable(format!("cannot store the revision content: {e}"))
            }
            e => Status::internal(format!("cannot store the revision content: {e}")),
        })
}
