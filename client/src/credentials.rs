//! A NATS connection's TLS and credential, as every Neo process and tool reads them: a CA to trust (and TLS required), and an nkey seed file written by `neo nats-config` (or a JWT `.creds` file), with the user's own inbox prefix.

use std::path::{Path, PathBuf};

/// The first line of a credential file `neo nats-config` writes; the user follows.
pub const CREDS_HEADER: &str = "# neo NATS user ";

/// The TLS or credential files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The credential file holds no usable nkey seed.
    #[error("{}: {reason}", path.display())]
    Seed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A NATS credential read from its file.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An nkey seed (`SU…`) and the user's name from the file's header, if any.
    Nkey {
        /// The seed.
        seed: String,
        /// The user's name.
        user: Option<String>,
    },
    /// A JWT credentials file (decentralized auth), used as is.
    CredsFile(PathBuf),
}

impl Credential {
    /// Reads `path`.
    ///
    /// # Errors
    /// When the file cannot be read or holds no valid seed.
    pub fn read(path: &Path) -> Result<Self, CredentialError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
            path: path.to_owned(),
            source,
        })?;
        if text.contains("BEGIN NATS USER JWT") {
            return Ok(Self::CredsFile(path.to_owned()));
        }
        let user = text
            .lines()
            .find_map(|l| l.strip_prefix(CREDS_HEADER))
            .map(|u| u.trim().to_owned());
        let seed = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("SU"))
            .ok_or_else(|| CredentialError::Seed {
                path: path.to_owned(),
                reason: "no nkey user seed (SU…)".into(),
            })?;
        nkeys::KeyPair::from_seed(seed).map_err(|e| CredentialError::Seed {
            path: path.to_owned(),
            reason: format!("not an nkey seed: {e}"),
        })?;
        Ok(Self::Nkey {
            seed: seed.to_owned(),
            user,
        })
    }
}

/// `_INBOX_{user}` (`-` and `.` become `_`): the inbox prefix of a NATS user, the only
/// inboxes it may subscribe to.
pub fn inbox_prefix(user: &str) -> String {
    format!("_INBOX_{}", user.replace(['-', '.', '*', '>', ' '], "_"))
}

/// `options` with TLS required and `ca` trusted (when given), and the credential in
/// `creds` (when given) with its user's inbox prefix.
///
/// # Errors
/// When a file cannot be read or the credential is not usable.
pub async fn with_tls_and_credential(
    mut options: async_nats::ConnectOptions,
    ca: Option<&Path>,
    creds: Option<&Path>,
) -> Result<async_nats::ConnectOptions, CredentialError> {
    if let Some(ca) = ca {
        if !ca.is_file() {
            return Err(CredentialError::Read {
                path: ca.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        options = options
            .require_tls(true)
            .add_root_certificates(ca.to_owned());
    }
    if let Some(path) = creds {
        match Credential::read(path)? {
            Credential::Nkey { seed, user } => {
                options = options.nkey(seed);
                if let Some(user) = user {
                    options = options.custom_inbox_prefix(inbox_prefix(&user));
                }
            }
            Credential::CredsFile(path) => {
                options = options
                    .credentials_file(&path)
                    .await
                    .map_err(|source| CredentialError::Read { path, source })?;
            }
        }
    }
    Ok(options)
}
