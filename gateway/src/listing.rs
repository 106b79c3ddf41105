//! Listing entities of a tenant straight from the event stream's subjects (no read model
//! needed), and paging through them.

use async_nats::jetstream;
use base64::Engine as _;
use futures::TryStreamExt;
use neo_protocol::subjects;
use tonic::Status;

use crate::api::Page;
use crate::error::{invalid, unavailable};

/// Default page size.
pub const DEFAULT_PAGE: usize = 50;
/// Largest page size.
pub const MAX_PAGE: usize = 500;

/// A validated page request: size and the key to start after.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page.
    pub size: usize,
    /// Resume after this key (exclusive).
    pub after: Option<String>,
}

/// Validates a page request.
///
/// # Errors
/// `INVALID_ARGUMENT` for a size over [`MAX_PAGE`] or a token that is not one of ours.
pub fn page_request(page: Option<&Page>) -> Result<PageRequest, Status> {
    let Some(page) = page else {
        return Ok(PageRequest {
            size: DEFAULT_PAGE,
            after: None,
        });
    };
    let size = match page.page_size as usize {
        0 => DEFAULT_PAGE,
        n if n > MAX_PAGE => return Err(invalid("page.page_size", format!("at most {MAX_PAGE}"))),
        n => n,
    };
    let after = if page.page_token.is_empty() {
        None
    } else {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&page.page_token)
            .map_err(|_| invalid("page.page_token", "not a token this server issued"))?;
        Some(
            String::from_utf8(bytes)
                .map_err(|_| invalid("page.page_token", "not a token this server issued"))?,
        )
    };
    Ok(PageRequest { size, after })
}

/// The token that resumes after `key`.
pub fn token_after(key: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

/// One page of `items` (already sorted by `key`), and the token for the next page.
pub fn paginate<T: Clone>(
    items: &[T],
    key: impl Fn(&T) -> String,
    page: &PageRequest,
) -> (Vec<T>, String) {
    let start = match &page.after {
        Some(after) => items
            .iter()
            .position(|i| key(i) > *after)
            .unwrap_or(items.len()),
        None => 0,
    };
    let end = (start + page.size).min(items.len());
    let slice = items[start..end].to_vec();
    let next = if end < items.len() {
        slice
            .last()
            .map(|i| token_after(&key(i)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    (slice, next)
}

/// The event stream's subjects matching `filter`, with how many messages each holds.
///
/// # Errors
/// `UNAVAILABLE` when JetStream does not answer.
pub async fn subject_counts(
    js: &jetstream::Context,
    filter: &str,
) -> Result<Vec<(String, usize)>, Status> {
    let stream = js
        .get_stream(subjects::EVENTS_STREAM)
        .await
        .map_err(|e| unavailable(format!("event stream unavailable: {e}")))?;
    stream
        .info_with_subjects(filter)
        .await
        .map_err(unavailable)?
        .try_collect()
        .await
        .map_err(unavailable)
}

/// The distinct values of subject token `index` among the stream's subjects matching `filter`,
/// sorted.
///
/// # Errors
/// `UNAVAILABLE` when JetStream does not answer.
pub async fn subject_tokens(
    js: &jetstream::Context,
    filter: &str,
    index: usize,
) -> Result<Vec<String>, Status> {
    let mut tokens: Vec<String> = subject_counts(js, filter)
        .await?
        .into_iter()
        .filter_map(|(subject, _)| subjects::token(&subject, index).map(str::to_owned))
        .collect();
    tokens.sort();
    tokens.dedup();
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_walk_every_item_once() {
        let items: Vec<String> = (0..7).map(|i| format!("a{i}")).collect();
        let mut page = PageRequest {
            size: 3,
            after: None,
        };
        let mut seen = Vec::new();
        loop {
            let (slice, next) = paginate(&items, Clone::clone, &page);
            seen.extend(slice);
            if next.is_empty() {
                break;
            }
            page = page_request(Some(&Page {
                page_size: 3,
                page_token: next,
            }))
            .unwrap();
        }
        assert_eq!(seen, items);
        assert!(
            page_request(Some(&Page {
                page_size: 501,
                page_token: String::new()
            }))
            .is_err()
        );
        assert!(
            page_request(Some(&Page {
                page_size: 1,
                page_token: "%%%".into()
            }))
            .is_err()
        );
    }
}
