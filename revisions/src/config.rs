//! Where and how to reach S3, and the SDK client built from it (timeouts, retries, TLS).

use std::fmt;
use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, ResponseChecksumValidation};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

/// How long a TCP (and TLS) connection may take to establish.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the endpoint may stay silent while a response is read.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one attempt may take, transfer included (revisions are up to tens of MiB).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an operation may take, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(300);
/// Attempts per operation, the first included.
pub const MAX_ATTEMPTS: u32 = 3;

/// Where and how to reach S3. Its `Debug` output leaves the secret out.
#[derive(Clone)]
pub struct S3Config {
    /// The endpoint URL, e.g. `http://127.0.0.1:9000`; `None` for AWS's endpoint of the region.
    pub endpoint: Option<String>,
    /// The region, e.g. `us-east-1`.
    pub region: String,
    /// The bucket revisions are stored in.
    pub bucket: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// Address buckets in the path (`endpoint/bucket/key`) rather than the host name; needed
    /// for loopback and most S3-compatible stores.
    pub force_path_style: bool,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("force_path_style", &self.force_path_style)
            .finish()
    }
}

/// The SDK configuration for `config`: static credentials, rustls (ring) over hyper for
/// both `http` and `https` endpoints, bounded timeouts and a few quick retries.
///
/// Responses are not checked against S3's own checksums: the revision store checks every
/// blob it reads against its sha256 digest, which is stronger and gives one error for it.
pub(crate) fn sdk_config(config: &S3Config) -> aws_sdk_s3::Config {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let credentials = Credentials::new(
        config.access_key_id.clone(),
        config.secret_access_key.clone(),
        None,
        None,
        "neo-revisions",
    );
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build();
    let retries = RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(2));
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(config.force_path_style)
        .http_client(http_client)
        .timeout_config(timeouts)
        .retry_config(retries)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint);
    }
    builder.build()
}
