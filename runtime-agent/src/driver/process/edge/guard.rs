//! What a request must be before it is routed: an allowed method, a path without traversal or control characters, headers within their count and size.

use hyper::http::request::Parts;
use hyper::{Method, StatusCode};

use super::refusal::Refusal;

/// Methods an app may be sent (not `CONNECT`, `TRACE` or anything unknown).
const METHODS: [Method; 7] = [
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// Checks `head` against the edge's rules.
///
/// # Errors
///
/// A [`Refusal`]: `method` (405), `path` (400) or `header_size` (431).
pub fn check(head: &Parts, max_headers: usize, max_header_bytes: usize) -> Result<(), Refusal> {
    if !METHODS.contains(&head.method) {
        return Err(Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method",
            format!("method {} is not served", head.method),
        ));
    }
    check_path(head.uri.path())?;
    if head.headers.len() > max_headers {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_size",
            format!(
                "{} header fields; at most {max_headers} are accepted",
                head.headers.len()
            ),
        )
        .closing());
    }
    let bytes: usize = head
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if bytes > max_header_bytes {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_size",
            format!("{bytes} bytes of headers; at most {max_header_bytes} are accepted"),
        )
        .closing());
    }
    Ok(())
}

/// Refuses a path that climbs (`..`, also percent-encoded), hides a separator (`%2f`, `%5c`,
/// `\`), or carries a NUL or control character (also encoded).
///
/// # Errors
///
/// A `path` [`Refusal`] (400) naming what was found.
pub fn check_path(path: &str) -> Result<(), Refusal> {
    let refuse = |what: &str| {
        Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "path",
            format!("the path {what}"),
        ))
    };
    if !path.starts_with('/') {
        return refuse("does not start with /");
    }
    let lower = path.to_ascii_lowercase();
    for encoded in ["%2f", "%5c"] {
        if lower.contains(encoded) {
            return refuse("holds an encoded / or \\");
        }
    }
    if path.contains('\\') {
        return refuse("holds a \\");
    }
    if path.bytes().any(|b| b.is_ascii_control()) || control_escape(&lower) {
        return refuse("holds a control character");
    }
    let decoded_dots = lower.replace("%2e", ".");
    if decoded_dots
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return refuse("climbs with . or .. segments");
    }
    Ok(())
}

/// Whether `path` (lower case) holds a percent-encoded control character (`%00`–`%1f`, `%7f`).
fn control_escape(path: &str) -> bool {
    let bytes = path.as_bytes();
    bytes.windows(3).any(|w| {
        w[0] == b'%'
            && ((matches!(w[1], b'0' | b'1') && w[2].is_ascii_hexdigit())
                || (w[1] == b'7' && w[2] == b'f'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_or_hide_separators_are_refused() {
        for bad in [
            "/acme/shop/../../etc/passwd",
            "/acme/shop/%2e%2e/%2E%2E/etc",
            "/acme/shop/.%2e/x",
            "/acme/shop/./x",
            "/acme/shop/a%2fb",
            "/acme/shop/a%5Cb",
            "/acme/shop/a\\b",
            "/acme/shop/a%00b",
            "/acme/shop/a%0d%0aSet-Cookie:x",
            "acme/shop",
        ] {
            let refused = check_path(bad).expect_err(bad);
            assert_eq!(refused.reason, "path", "{bad}");
            assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        }
        for good in [
            "/acme/shop/",
            "/acme/shop/api/product",
            "/acme/shop/file.v2..final",
            "/acme/shop/%20space",
            "/acme/shop/a.b/c",
        ] {
            assert_eq!(check_path(good), Ok(()), "{good}");
        }
    }
}
