//! The command context (arguments plus config file) and the gateway connection: TLS, the
//! per-call deadline and the bearer token, and the API clients over it.

use std::path::PathBuf;
use std::time::Duration;

use neo_gateway::api::apps_client::AppsClient;
use neo_gateway::api::builds_client::BuildsClient;
use neo_gateway::api::deployments_client::DeploymentsClient;
use neo_gateway::api::events_client::EventsClient;
use neo_gateway::api::identity_client::IdentityClient;
use neo_gateway::api::runtime_client::RuntimeClient;
use neo_gateway::api::settings_client::SettingsClient;
use neo_gateway::api::tenants_client::TenantsClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::config::{self, Config};
use super::error::{CliError, ErrorChain};
use super::failover::Failover;
use super::output::Sink;
use super::{GlobalArgs, OutputFormat};

/// How long to wait for a TCP and TLS connection when `--timeout 0` sets no deadline.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often an idle HTTP/2 connection is pinged, so a watch notices a dead gateway.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);

/// What every command needs: its global arguments and the config file they point at.
#[derive(Debug)]
pub struct Context {
    /// The global arguments.
    pub global: GlobalArgs,
    /// Where the config file is (whether or not it exists).
    pub config_path: PathBuf,
    /// The config file's contents (empty when it does not exist).
    pub config: Config,
    /// Where results are printed (stdout).
    pub sink: Sink,
    /// This invocation's request id, sent with every call (metadata `neo-request-id`), so a
    /// call retried after `UNAVAILABLE` takes effect once (see [`super::retry`]).
    pub request_id: MetadataValue<Ascii>,
}

impl Context {
    /// Reads the config file named by the arguments (or the default one).
    ///
    /// # Errors
    ///
    /// [`CliError::Config`] when there is no usable path or the file cannot be read.
    pub fn load(global: GlobalArgs) -> Result<Self, CliError> {
        let config_path = match &global.config {
            Some(path) => path.clone(),
            None => config::default_path()?,
        };
        let config = Config::load(&config_path)?;
        Ok(Self {
            global,
            config_path,
            config,
            sink: Sink::Stdout,
            request_id: new_request_id(),
        })
    }

    /// How to print results.
    pub fn output(&self) -> OutputFormat {
        self.global.output
    }

    /// Prints a result in the chosen format (see [`Sink::print`]).
    ///
    /// # Errors
    ///
    /// [`CliError::Stdout`] when stdout cannot be written.
    pub fn print(
        &self,
        json: impl FnOnce() -> serde_json::Value,
        table: impl FnOnce() -> String,
    ) -> Result<(), CliError> {
        self.sink.print(self.global.output, json, table)
    }

    /// Prints one line.
    ///
    /// # Errors
    ///
    /// [`CliError::Stdout`] when stdout cannot be written.
    pub fn emit(&self, line: &str) -> Result<(), CliError> {
        self.sink.emit(line)
    }

    /// The tenant to act on: `--tenant`, else the saved one.
    ///
    /// # Errors
    ///
    /// [`CliError::NotLoggedIn`] when neither is set and there is no token either, else
    /// [`CliError::Usage`] when neither is set.
    pub fn tenant(&self) -> Result<String, CliError> {
        let tenant = self
            .global
            .tenant
            .clone()
            .or_else(|| self.config.tenant.clone())
            .filter(|t| !t.is_empty());
        match tenant {
            Some(tenant) => Ok(tenant),
            None if self.token().is_none() => Err(CliError::NotLoggedIn),
            None => Err(CliError::Usage(
                "no tenant: pass --tenant TENANT or run `neo login --tenant TENANT …`".into(),
            )),
        }
    }

    /// The token: `--token`, else the saved one.
    fn token(&self) -> Option<String> {
        self.global
            .token
            .clone()
            .or_else(|| self.config.token.clone())
            .filter(|t| !t.is_empty())
    }

    /// The gateway URL: `--endpoint`, else the saved one.
    pub fn endpoint(&self) -> Option<String> {
        self.global
            .endpoint
            .clone()
            .or_else(|| self.config.endpoint.clone())
            .filter(|e| !e.is_empty())
    }

    /// The CA file: `--ca-cert`, else the saved one.
    pub fn ca_cert(&self) -> Option<PathBuf> {
        self.global
            .ca_cert
            .clone()
            .or_else(|| self.config.ca_cert.clone())
    }

    /// The deadline of each call (`--timeout`, none when 0).
    pub fn deadline(&self) -> Option<Duration> {
        (self.global.timeout > 0).then(|| Duration::from_secs(self.global.timeout))
    }

    /// Connects to the gateway with the token of `--token` or the last login.
    ///
    /// # Errors
    ///
    /// [`CliError::NotLoggedIn`] with no endpoint or token, [`CliError::Usage`] for a malformed
    /// endpoint or token, [`CliError::Read`] for an unreadable CA file, [`CliError::Connect`]
    /// when the gateway cannot be reached.
    pub async fn connect(&self) -> Result<Gateway, CliError> {
        let endpoint = self.endpoint().ok_or(CliError::NotLoggedIn)?;
        let token = self.token().ok_or(CliError::NotLoggedIn)?;
        self.connect_to(&endpoint, Some(&token)).await
    }

    /// Connects to `endpoint`, presenting `token` when given (not for `Identity.Login`).
    ///
    /// # Errors
    ///
    /// As [`Context::connect`], without [`CliError::NotLoggedIn`].
    pub async fn connect_to(
        &self,
        endpoint: &str,
        token: Option<&str>,
    ) -> Result<Gateway, CliError> {
        let bearer = token.map(bearer_value).transpose()?;
        let endpoints = endpoint
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| self.endpoint_of(e))
            .collect::<Result<Vec<_>, _>>()?;
        // Connected now, so a wrong address or scheme is said at once. With several gateways
        // (of one platform) the first that answers is used, and the next one once it stops
        // answering (see [`Failover`]).
        let mut refused = None;
        let mut channel = None;
        for (index, endpoint) in endpoints.iter().enumerate() {
            match endpoint.connect().await {
                Ok(connected) => {
                    channel = Some((index, connected));
                    break;
                }
                Err(e) => {
                    tracing::debug!(endpoint = %endpoint.uri(), error = %e, "gateway not reached");
                    refused = Some(CliError::Connect {
                        endpoint: endpoint.uri().to_string(),
                        source: ErrorChain::of(&e),
                    });
                }
            }
        }
        let channel = match (channel, refused) {
            (Some((index, channel)), _) => Failover::new(endpoints, index, channel),
            (None, Some(last)) => return Err(last),
            (None, None) => return Err(CliError::Usage("no endpoint given".into())),
        };
        Ok(Gateway {
            channel,
            auth: Auth {
                bearer,
                deadline: self.deadline(),
                request_id: self.request_id.clone(),
            },
        })
    }
}

impl Context {
    /// The connection settings of one gateway `endpoint`: TLS (with `--ca-cert`) for
    /// `https://`, the connect timeout and keep-alive.
    fn endpoint_of(&self, endpoint: &str) -> Result<Endpoint, CliError> {
        let url = normalize_endpoint(endpoint);
        let mut builder = Endpoint::from_shared(url.clone())
            .map_err(|e| CliError::Usage(format!("invalid endpoint {url}: {e}")))?
            .connect_timeout(self.deadline().unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_while_idle(true);
        if url.starts_with("https://") {
            let mut tls = ClientTlsConfig::new();
            tls = match self.ca_cert() {
                Some(path) => {
                    let pem =
                        std::fs::read(&path).map_err(|source| CliError::Read { path, source })?;
                    tls.ca_certificate(Certificate::from_pem(pem))
                }
                None => tls.with_enabled_roots(),
            };
            builder = builder.tls_config(tls).map_err(|e| CliError::Connect {
                endpoint: url.clone(),
                source: ErrorChain::of(&e),
            })?;
        }
        Ok(builder)
    }
}

/// A fresh request id: a UUID, which is always valid metadata.
pub fn new_request_id() -> MetadataValue<Ascii> {
    let id = uuid::Uuid::new_v4().to_string();
    MetadataValue::try_from(id.as_str()).unwrap_or_else(|_| MetadataValue::from_static("neo-cli"))
}

/// Adds `http://` to an endpoint given without a scheme.
pub fn normalize_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("http://{endpoint}")
    }
}

/// The `authorization` metadata value for `token`.
fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, CliError> {
    format!("Bearer {token}")
        .parse()
        .map_err(|_| CliError::Usage("the token is not printable ASCII".into()))
}

/// Adds the bearer token, the deadline and the invocation's request id to every request.
#[derive(Debug, Clone)]
pub struct Auth {
    bearer: Option<MetadataValue<Ascii>>,
    deadline: Option<Duration>,
    request_id: MetadataValue<Ascii>,
}

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(bearer) = &self.bearer {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
        }
        if let Some(deadline) = self.deadline {
            request.set_timeout(deadline);
        }
        request
            .metadata_mut()
            .insert(neo_gateway::request_id::METADATA, self.request_id.clone());
        Ok(request)
    }
}

/// A channel whose requests carry the token and deadline.
pub type AuthChannel = InterceptedService<Failover, Auth>;

/// A connection to the gateway; each method returns a client of one service over it.
#[derive(Debug, Clone)]
pub struct Gateway {
    channel: Failover,
    auth: Auth,
}

impl Gateway {
    fn with_auth(&self) -> AuthChannel {
        InterceptedService::new(self.channel.clone(), self.auth.clone())
    }

    /// The Identity service.
    pub fn identity(&self) -> IdentityClient<AuthChannel> {
        IdentityClient::new(self.with_auth())
    }

    /// The Tenants service.
    pub fn tenants(&self) -> TenantsClient<AuthChannel> {
        TenantsClient::new(self.with_auth())
    }

    /// The Apps service.
    pub fn apps(&self) -> AppsClient<AuthChannel> {
        AppsClient::new(self.with_auth())
    }

    /// The Builds service.
    pub fn builds(&self) -> BuildsClient<AuthChannel> {
        BuildsClient::new(self.with_auth())
    }

    /// The Deployments service.
    pub fn deployments(&self) -> DeploymentsClient<AuthChannel> {
        DeploymentsClient::new(self.with_auth())
    }

    /// The Runtime service (logs, status, scale).
    pub fn runtime(&self) -> RuntimeClient<AuthChannel> {
        RuntimeClient::new(self.with_auth())
    }

    /// The Settings service (settings and secrets of an app on a stage).
    pub fn settings(&self) -> SettingsClient<AuthChannel> {
        SettingsClient::new(self.with_auth())
    }

    /// The Events service, with no deadline: a watch lasts until stopped.
    pub fn events(&self) -> EventsClient<AuthChannel> {
        EventsClient::new(self.without_deadline().with_auth())
    }

    /// The same connection with no per-call deadline, for streams that last as long as what
    /// they follow (a publish, a followed build log).
    pub fn without_deadline(&self) -> Gateway {
        Gateway {
            channel: self.channel.clone(),
            auth: Auth {
                deadline: None,
                ..self.auth.clone()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_without_a_scheme_is_plain_http() {
        assert_eq!(
            normalize_endpoint("localhost:50051"),
            "http://localhost:50051"
        );
        assert_eq!(
            normalize_endpoint("https://neo.example.com"),
            "https://neo.example.com"
        );
    }

    #[test]
    fn the_interceptor_adds_the_token_the_deadline_and_the_request_id() {
        let id = new_request_id();
        let mut auth = Auth {
            bearer: Some(bearer_value("abc").unwrap()),
            deadline: Some(Duration::from_secs(30)),
            request_id: id.clone(),
        };
        let request = auth.call(tonic::Request::new(())).unwrap();
        let meta = request.metadata();
        assert_eq!(meta.get("authorization").unwrap(), "Bearer abc");
        assert!(meta.get("grpc-timeout").is_some());
        assert_eq!(meta.get("neo-request-id").unwrap(), &id);
        let again = auth.call(tonic::Request::new(())).unwrap();
        assert_eq!(again.metadata().get("neo-request-id").unwrap(), &id);
        assert_ne!(new_request_id(), id);
        assert!(bearer_value("bad\ntoken").is_err());
    }

    #[test]
    fn the_tenant_flag_overrides_the_saved_one() {
        let mut cx = Context {
            global: GlobalArgs::default(),
            config_path: PathBuf::from("/nonexistent"),
            config: Config {
                tenant: Some("saved".into()),
                ..Config::default()
            },
            sink: Sink::Stdout,
            request_id: new_request_id(),
        };
        assert_eq!(cx.tenant().unwrap(), "saved");
        cx.global.tenant = Some("flag".into());
        assert_eq!(cx.tenant().unwrap(), "flag");
        cx.global.tenant = None;
        cx.config.tenant = None;
        assert!(matches!(cx.tenant(), Err(CliError::NotLoggedIn)));
        cx.config.token = Some("t".into());
        assert!(matches!(cx.tenant(), Err(CliError::Usage(_))));
    }
}
