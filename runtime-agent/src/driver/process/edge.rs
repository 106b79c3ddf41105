//! The stage's edge: what stands between the internet and the load balancer's routing, as a CDN and WAF would.
//!
//! Every request to the stage address passes, in order:
//!
//! 1. the connection: TLS when configured ([`EdgeConfig::tls`]), request headers within
//!    [`EdgeConfig::header_timeout`] (a slowloris client is cut off, others are served) and
//!    [`EdgeConfig::max_header_bytes`];
//! 2. [`guard`]: the method, the path (no `..`, encoded or not, no encoded `/` or `\`, no control
//!    characters) and the header count and size;
//! 3. [`rate`]: a token bucket per client address, then one per app (429 with `Retry-After`);
//! 4. the body: at most the app's limit (stage setting `edge_max_body_kib`, else
//!    [`EdgeConfig::max_body_bytes`]), read within [`EdgeConfig::body_timeout`];
//! 5. [`headers`]: hop-by-hop headers stripped both ways, `X-Forwarded-For`/`-Proto`/`-Host`
//!    set, a `traceparent` kept or started; responses get security headers.
//!
//! Each refusal ([`refusal::Refusal`]) answers with its status and reason, is counted in
//! `neo_edge_refusals{stage, reason}` and logged with its reason and the client's address.

pub mod guard;
pub mod headers;
pub mod rate;
pub mod refusal;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use self::rate::{Rate, RateLimits};

/// The stage setting that limits an app's request bodies, in KiB.
pub const MAX_BODY_SETTING: &str = "NEO_SETTING_EDGE_MAX_BODY_KIB";
/// The stage setting that limits an app's requests per second (burst: twice that).
pub const RATE_SETTING: &str = "NEO_SETTING_EDGE_RATE_PER_S";

/// The edge could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The certificate or key could not be read or used.
    #[error("edge TLS: {0}")]
    Tls(String),
}

/// How the edge treats requests.
#[derive(Clone)]
pub struct EdgeConfig {
    /// The stage's name (metrics and logs).
    pub stage: String,
    /// Serve TLS with this configuration (HTTP/2 and HTTP/1.1 by ALPN); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// How long a client may take to send a request's headers (and a TLS handshake).
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// The most header bytes a request may carry (431 beyond).
    pub max_header_bytes: usize,
    /// The most header fields a request may carry (431 beyond).
    pub max_headers: usize,
    /// The body limit of an app without its own (413 beyond).
    pub max_body_bytes: usize,
    /// Requests per client address.
    pub per_client: Rate,
    /// Requests per app without its own rate.
    pub per_app: Rate,
}

impl std::fmt::Debug for EdgeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeConfig")
            .field("stage", &self.stage)
            .field("tls", &self.tls.is_some())
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("per_client", &self.per_client)
            .field("per_app", &self.per_app)
            .finish_non_exhaustive()
    }
}

impl EdgeConfig {
    /// Defaults for `stage`: plain HTTP, 10 s for headers, 30 s for a body, 16 KiB and 100
    /// header fields, 8 MiB bodies, 100 requests/s per client (burst 200), 1,000/s per app
    /// (burst 2,000).
    pub fn new(stage: impl Into<String>) -> Self {
        Self {
            stage: stage.into(),
            tls: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_header_bytes: 16 << 10,
            max_headers: 100,
            max_body_bytes: 8 << 20,
            per_client: Rate::per_second(100),
            per_app: Rate::per_second(1000),
        }
    }

    /// Without rate limits (a million requests a second): for benchmarks and tests that load
    /// an app from one address.
    #[must_use]
    pub fn without_rate_limits(mut self) -> Self {
        self.per_client = Rate::per_second(1_000_000);
        self.per_app = Rate::per_second(1_000_000);
        self
    }

    /// Serves TLS with the certificate chain and key in these PEM files.
    ///
    /// # Errors
    ///
    /// [`EdgeError::Tls`] when a file cannot be read or the pair is not usable.
    pub fn with_tls(mut self, cert: &Path, key: &Path) -> Result<Self, EdgeError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| EdgeError::Tls(format!("{}: {e}", cert.display())))?;
        let key = PrivateKeyDer::from_pem_file(key)
            .map_err(|e| EdgeError::Tls(format!("{}: {e}", key.display())))?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| EdgeError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self.tls = Some(Arc::new(config));
        Ok(self)
    }
}

/// The edge's state: its configuration and rate buckets.
pub struct Edge {
    /// How it treats requests.
    pub config: EdgeConfig,
    /// The token buckets.
    pub rates: RateLimits,
}

impl Edge {
    /// An edge with `config`.
    pub fn new(config: EdgeConfig) -> Arc<Self> {
        Arc::new(Self {
            rates: RateLimits::default(),
            config,
        })
    }
}

/// The limits of one app, from its stage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AppLimits {
    /// Its body limit (`None`: the edge's).
    pub max_body_bytes: Option<usize>,
    /// Its rate (`None`: the edge's).
    pub rate: Option<Rate>,
}

impl AppLimits {
    /// The limits in an app's environment (`NEO_SETTING_EDGE_*`); a value that is not a
    /// positive number is ignored, with a warning.
    pub fn from_env<'a>(env: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        let mut limits = Self::default();
        for (name, value) in env {
            let parsed = value.trim().parse::<u32>().ok().filter(|v| *v > 0);
            match (name.as_str(), parsed) {
                (MAX_BODY_SETTING, Some(kib)) => {
                    limits.max_body_bytes = Some(kib as usize * 1024);
                }
                (RATE_SETTING, Some(per_s)) => limits.rate = Some(Rate::per_second(per_s)),
                (MAX_BODY_SETTING | RATE_SETTING, None) => {
                    tracing::warn!(setting = %name, %value, "not a positive number: the edge's default applies");
                }
                _ => {}
            }
        }
        limits
    }
}
