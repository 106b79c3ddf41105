//! What answers at a gateway endpoint that did not answer as one: after a call fails in its
//! transport (a TLS gateway asked in plaintext fails as `h2 protocol error` or `operation was
//! canceled`), one connection to the endpoint's address, opening as HTTP/2 does, tells a TLS
//! server (it answers with a TLS record) from a plaintext gRPC server (HTTP/2 `SETTINGS`) from
//! an HTTP/1 server, so the error can say which scheme or port to use in plain words.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// How long the probe may take in all.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// The HTTP/2 connection preface and an empty `SETTINGS` frame.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// What the endpoint's address answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A TLS record: a TLS server.
    Tls,
    /// An HTTP/2 `SETTINGS` frame: a plaintext HTTP/2 (gRPC) server.
    PlainHttp2,
    /// `HTTP/1.x …`: a web server, not a gRPC gateway.
    Http1,
    /// Something else, nothing, or no connection.
    Unknown,
}

/// Asks `host:port` once (see the module doc).
pub async fn probe(address: &str) -> Found {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
        stream.write_all(PREFACE).await.ok()?;
        let mut answer = [0u8; 16];
        let mut read = 0;
        while read < answer.len() {
            match stream.read(&mut answer[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
            if read >= 9 {
                break;
            }
        }
        Some(classify(&answer[..read]))
    };
    tokio::time::timeout(PROBE_TIMEOUT, ask)
        .await
        .ok()
        .flatten()
        .unwrap_or(Found::Unknown)
}

/// What the first bytes of an answer say.
fn classify(answer: &[u8]) -> Found {
    match answer {
        // A TLS record: handshake (22) or alert (21), version 3.x.
        [21 | 22, 3, ..] => Found::Tls,
        [_, _, _, 4, ..] if answer.len() >= 9 => Found::PlainHttp2,
        _ if answer.starts_with(b"HTTP/1") => Found::Http1,
        _ => Found::Unknown,
    }
}

/// What to tell a user whose call to `endpoint` (`http://…` or `https://…`) failed in its
/// transport, from what its address answers; `None` when it answers as the scheme expects.
pub async fn explain(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let address = rest.split('/').next()?;
    let tls = scheme == "https";
    match probe(address).await {
        Found::Tls if !tls => Some(format!(
            "{endpoint} serves TLS: use https://{address} (with --ca-cert for a private CA)"
        )),
        Found::PlainHttp2 if tls => Some(format!(
            "{endpoint} serves plaintext gRPC, not TLS: use http://{address}"
        )),
        Found::Http1 => Some(format!(
            "{address} is an HTTP/1 web server, not a Neo gateway: is the port right? \
             (the gateway listens on `neo serve --grpc-listen`, 50051 by default)"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_told_apart_by_their_first_bytes() {
        assert_eq!(classify(&[21, 3, 3, 0, 2, 2, 50]), Found::Tls);
        assert_eq!(classify(&[22, 3, 1, 0, 90]), Found::Tls);
        assert_eq!(
            classify(&[0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 3]),
            Found::PlainHttp2
        );
        assert_eq!(classify(b"HTTP/1.1 400 Bad Request\r\n"), Found::Http1);
        assert_eq!(classify(b""), Found::Unknown);
        assert_eq!(classify(b"SSH-2.0-OpenSSH"), Found::Unknown);
    }
}
