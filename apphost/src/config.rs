//! The host's configuration: flags and environment variables, settings and secrets.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

/// Why the configuration is unusable. The binary exits with code 2 on any of these.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `NEO_SCHEMA` (or the default derived from the app name) is not a plain identifier.
    #[error("schema {0:?} is not a valid identifier (lower-case letters, digits and underscores)")]
    Schema(String),
    /// `NEO_DATABASE_URL` does not parse.
    #[error("NEO_DATABASE_URL is not a valid Postgres URL: {0}")]
    DatabaseUrl(sqlx::Error),
}

/// Who this process is, for every log line.
#[derive(Debug, Clone, Default)]
pub struct Identity {
    /// `NEO_TENANT`.
    pub tenant: String,
    /// `NEO_APP`.
    pub app: String,
    /// `NEO_STAGE`.
    pub stage: String,
    /// `NEO_REPLICA`.
    pub replica: String,
}

/// Everything the host needs to run.
#[derive(Clone)]
pub struct Config {
    /// The unpacked bundle.
    pub bundle_dir: PathBuf,
    /// The address to listen on.
    pub listen: SocketAddr,
    /// The stage's Postgres database (`None`: only an app without entities can become ready).
    pub database_url: Option<String>,
    /// The schema for the app's tables (`None`: the app's name with `-` turned into `_`).
    pub schema: Option<String>,
    /// At most this many database connections.
    pub max_connections: u32,
    /// Who this process is.
    pub identity: Identity,
    /// Setting values by upper-case name (`NEO_SETTING_<NAME>`).
    pub settings: BTreeMap<String, String>,
    /// Secret values by upper-case name (`NEO_SECRET_<NAME>`); never logged nor served.
    pub secrets: BTreeMap<String, String>,
    /// Where the apps this one consumes answer on its stage: a URL with `{app}` standing for
    /// a producer's name (`NEO_PRODUCERS`, set by the agent); none: no producer is reachable.
    pub producers: Option<String>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bundle_dir", &self.bundle_dir)
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("schema", &self.schema)
            .field("max_connections", &self.max_connections)
            .field("identity", &self.identity)
            .field("settings", &self.settings)
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("producers", &self.producers)
            .finish()
    }
}

impl Config {
    /// A configuration for tests and embedding: the bundle, loopback on a free port, no database.
    pub fn new(bundle_dir: impl Into<PathBuf>) -> Self {
        Self {
            bundle_dir: bundle_dir.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: None,
            schema: None,
            max_connections: 5,
            identity: Identity::default(),
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
            producers: None,
        }
    }
}

/// The environment-variable key of a setting or secret name: `payment-api key` → `PAYMENT_API_KEY`.
pub fn env_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The command line; every flag also reads its environment variable.
#[derive(Debug, Parser)]
#[command(
    name = "neo-apphost",
    version,
    about = "Serves a Neo app bundle: REST API, screens, health"
)]
pub struct Cli {
    /// The unpacked bundle directory.
    #[arg(long, env = "NEO_BUNDLE_DIR", default_value = "/app/bundle")]
    pub bundle_dir: PathBuf,
    /// Where the consumed apps answer: a URL with `{app}` for the producer's name.
    #[arg(long, env = "NEO_PRODUCERS")]
    pub producers: Option<String>,
    /// The address to listen on (default 127.0.0.1:8080, or 127.0.0.1:$PORT).
    #[arg(long, env = "NEO_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// The port to listen on when --listen is not given.
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
    /// The stage's Postgres database URL.
    #[arg(long, env = "NEO_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The schema for the app's tables (default: the app's name, `-` → `_`).
    #[arg(long, env = "NEO_SCHEMA")]
    pub schema: Option<String>,
    /// The most database connections to open.
    #[arg(long, env = "NEO_DB_MAX_CONNECTIONS", default_value_t = 5)]
    pub max_connections: u32,
    /// The tenant, for logs.
    #[arg(long, env = "NEO_TENANT", default_value = "")]
    pub tenant: String,
    /// The app, for logs.
    #[arg(long, env = "NEO_APP", default_value = "")]
    pub app: String,
    /// The stage, for logs.
    #[arg(long, env = "NEO_STAGE", default_value = "")]
    pub stage: String,
    /// The replica, for logs.
    #[arg(long, env = "NEO_REPLICA", default_value = "")]
    pub replica: String,
    /// A setting value, `NAME=VALUE` (repeatable; overrides `NEO_SETTING_<NAME>`). Secrets are
    /// read from `NEO_SECRET_<NAME>` only, so they never show in a process listing.
    #[arg(long = "setting", value_name = "NAME=VALUE", value_parser = parse_assignment)]
    pub settings: Vec<(String, String)>,
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

impl Cli {
    /// Builds the configuration, reading `NEO_SETTING_*` and `NEO_SECRET_*` from `env`.
    pub fn into_config(self, env: impl IntoIterator<Item = (String, String)>) -> Config {
        let mut settings = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for (key, value) in env {
            if let Some(name) = key.strip_prefix("NEO_SETTING_") {
                settings.insert(name.to_owned(), value);
            } else if let Some(name) = key.strip_prefix("NEO_SECRET_") {
                secrets.insert(name.to_owned(), value);
            }
        }
        for (name, value) in self.settings {
            settings.insert(env_key(&name), value);
        }
        let listen = self
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], self.port.unwrap_or(8080))));
        Config {
            bundle_dir: self.bundle_dir,
            listen,
            database_url: self.database_url.filter(|u| !u.is_empty()),
            schema: self.schema.filter(|s| !s.is_empty()),
            max_connections: self.max_connections.max(1),
            identity: Identity {
                tenant: self.tenant,
                app: self.app,
                stage: self.stage,
                replica: self.replica,
            },
            settings,
            secrets,
            producers: self.producers.filter(|p| !p.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_secrets_come_from_prefixed_variables() {
        let cli = Cli::parse_from(["neo-apphost", "--port", "9000", "--setting", "tax-rate=0.2"]);
        let env = [
            ("NEO_SETTING_CURRENCY", "USD"),
            ("NEO_SECRET_PAYMENT_API_KEY", "s3cret"),
            ("HOME", "/root"),
        ];
        let config = cli.into_config(env.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(
            config.settings.get("CURRENCY").map(String::as_str),
            Some("USD")
        );
        assert_eq!(
            config.settings.get("TAX_RATE").map(String::as_str),
            Some("0.2")
        );
        assert_eq!(
            config.secrets.get("PAYMENT_API_KEY").map(String::as_str),
            Some("s3cret")
        );
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
