//! Headers at the edge: hop-by-hop headers stripped both ways, `X-Forwarded-*` set from what the edge saw, a `traceparent` kept or started, security headers on every answer.

use std::net::IpAddr;

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

/// The hop-by-hop headers of RFC 9110 §7.6.1 (and the old `Keep-Alive`, `Proxy-Connection`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers and every header `Connection` names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Adds the client's address to `X-Forwarded-For` (after any the client sent itself).
pub fn forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let chain = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|earlier| format!("{earlier}, {client}"))
        .unwrap_or_else(|| client.to_string());
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert("x-forwarded-for", value);
    }
}

/// Sets what the app is told about the request: `X-Forwarded-For` (the client's address,
/// after any the client sent itself), `X-Forwarded-Proto`, `X-Forwarded-Host` (the `Host`
/// the client asked for) and a `traceparent` (the client's, when well-formed, else a new one).
pub fn forwarded(headers: &mut HeaderMap, client: IpAddr, tls: bool, host: Option<&str>) {
    forwarded_for(headers, client);
    headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_static(if tls { "https" } else { "http" }),
    );
    match host.and_then(|h| HeaderValue::from_str(h).ok()) {
        Some(host) => {
            headers.insert("x-forwarded-host", host);
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    let valid = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .is_some_and(is_traceparent);
    if !valid && let Ok(value) = HeaderValue::from_str(&new_traceparent()) {
        headers.insert("traceparent", value);
    }
}

/// Whether `value` is a W3C `traceparent` of version 00 with non-zero ids.
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    matches!(parts.as_slice(), [version, trace, span, flags]
        if *version == "00" && hex(trace, 32) && hex(span, 16) && hex(flags, 2)
            && nonzero(trace) && nonzero(span))
}

/// A new sampled `traceparent`.
fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// Adds the security headers every answer carries (an app's own values stay), and
/// `Strict-Transport-Security` when served over TLS.
pub fn secure_response(headers: &mut HeaderMap, tls: bool) {
    let defaults: [(&str, &str); 4] = [
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "SAMEORIGIN"),
        ("referrer-policy", "strict-origin-when-cross-origin"),
        ("cross-origin-opener-policy", "same-origin"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    if tls && !headers.contains_key(header::STRICT_TRANSPORT_SECURITY) {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("upgrade", "websocket"),
            ("te", "trailers"),
            ("proxy-authorization", "Basic Zm9v"),
            ("accept", "text/html"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn forwarded_headers_say_what_the_edge_saw() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("evil.example"));
        headers.insert("traceparent", HeaderValue::from_static("00-zz-bad-01"));
        forwarded(
            &mut headers,
            "192.0.2.7".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            true,
            Some("shop.example"),
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert_eq!(headers["x-forwarded-host"], "shop.example");
        let started = headers["traceparent"]
            .to_str()
            .unwrap_or_default()
            .to_owned();
        assert!(is_traceparent(&started), "{started}");

        // A well-formed one is kept.
        let mut headers = HeaderMap::new();
        let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", HeaderValue::from_static(theirs));
        forwarded(&mut headers, IpAddr::from([127, 0, 0, 1]), false, None);
        assert_eq!(headers["traceparent"], theirs);
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
    }

    #[test]
    fn answers_carry_security_headers_without_overriding_the_app() {
        let mut headers = HeaderMap::new();
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
        secure_response(&mut headers, true);
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["strict-transport-security"], "max-age=31536000");
        let mut plain = HeaderMap::new();
        secure_response(&mut plain, false);
        assert!(!plain.contains_key("strict-transport-security"));
    }
}
