//! Every NATS connection of the `neo` command: the server URL, TLS (`--nats-ca`: trust this CA
//! and require TLS) and the component's own credential (`--nats-creds`: an nkey seed file
//! written by `neo nats-config`, or a `.creds` file), with the user's own inbox prefix so that
//! no user can subscribe to another's replies.
//!
//! Without `--nats-ca` and `--nats-creds` a connection is plain and anonymous, as an open
//! development server expects.

use std::path::PathBuf;

use anyhow::Context as _;

pub use neo_client::credentials::{CREDS_HEADER, Credential, inbox_prefix};

/// How to reach NATS: flattened into every command that connects.
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL; several, comma-separated, for the nodes of a cluster.
    #[arg(long, env = "NEO_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Trust this CA (PEM) for the NATS server's certificate, and require TLS.
    #[arg(long, env = "NEO_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// The NATS credential: an nkey seed file from `neo nats-config`, or a `.creds` file.
    #[arg(long, env = "NEO_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
}

impl NatsArgs {
    /// Plain, anonymous options for `url`.
    pub fn plain(url: impl Into<String>) -> Self {
        Self {
            nats: url.into(),
            nats_ca: None,
            nats_creds: None,
        }
    }

    /// The same server and CA with another credential.
    pub fn with_creds(&self, creds: Option<PathBuf>) -> Self {
        Self {
            nats_creds: creds,
            ..self.clone()
        }
    }

    /// The connect options (TLS, credential, name, inbox prefix), without an event callback.
    ///
    /// # Errors
    /// When the CA or the credential cannot be read.
    pub async fn options(&self, name: &str) -> anyhow::Result<async_nats::ConnectOptions> {
        let options = neo_client::credentials::with_tls_and_credential(
            async_nats::ConnectOptions::new().name(name),
            self.nats_ca.as_deref(),
            self.nats_creds.as_deref(),
        )
        .await?;
        Ok(options)
    }

    /// Connects as a service: retries until the server answers, and logs what the server
    /// reports (a permissions violation above all).
    ///
    /// # Errors
    /// When the credential cannot be read.
    pub async fn connect(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let options = self.options(name).await?.retry_on_initial_connect();
        self.finish(options, name).await
    }

    /// Connects once, as a tool: fails when the server does not answer.
    ///
    /// # Errors
    /// When the credential cannot be read or the server refuses or does not answer.
    pub async fn connect_once(&self, name: &str) -> anyhow::Result<async_nats::Client> {
        let options = self.options(name).await?;
        self.finish(options, name).await
    }

    /// Every server of `--nats` (comma-separated: the nodes of a cluster; the client moves
    /// to another when its node dies).
    ///
    /// # Errors
    /// A URL that does not parse, named.
    pub fn servers(&self) -> anyhow::Result<Vec<async_nats::ServerAddr>> {
        self.nats
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(|url| {
                url.parse::<async_nats::ServerAddr>()
                    .with_context(|| format!("--nats: `{url}` is not a NATS URL"))
            })
            .collect()
    }

    async fn finish(
        &self,
        options: async_nats::ConnectOptions,
        name: &str,
    ) -> anyhow::Result<async_nats::Client> {
        let who = name.to_owned();
        let servers = self.servers()?;
        options
            .event_callback(move |event| {
                let who = who.clone();
                async move { log_event(&who, &event) }
            })
            .connect(servers)
            .await
            .with_context(|| format!("connecting to NATS at {} as {name}", self.nats))
    }
}

fn log_event(who: &str, event: &async_nats::Event) {
    match event {
        async_nats::Event::Connected => tracing::debug!(client = who, "NATS connected"),
        async_nats::Event::ServerError(e) => {
            tracing::warn!(client = who, error = %e, "NATS server error");
        }
        other => tracing::info!(client = who, event = %other, "NATS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_seed_file_with_its_user() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("agent-dev.nk");
        let seed = nkeys::KeyPair::new_user().seed()?;
        std::fs::write(&path, format!("{CREDS_HEADER}agent-dev\n{seed}\n"))?;
        match Credential::read(&path)? {
            Credential::Nkey { seed: s, user } => {
                assert_eq!(s, seed);
                assert_eq!(user.as_deref(), Some("agent-dev"));
            }
            Credential::CredsFile(_) => anyhow::bail!("read as a creds file"),
        }
        assert_eq!(inbox_prefix("agent-dev"), "_INBOX_agent_dev");
        Ok(())
    }
}
