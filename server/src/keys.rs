//! The platform's keys: the key-encryption key options of `neo serve`, the reactor that destroys
//! a deleted tenant's data key, and `neo keys` (generate a key, re-seal every data key under a
//! new key-encryption key, rotate a tenant's data key), which an operator runs against NATS.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use neo_actors::reactor::{Reaction, Reactor, ReactorError};
use neo_actors::stored::StoredMessage;
use neo_protocol::{EntityKind, TenantName, subjects};
use neo_secrets::{Keyring, SecretStore};

use crate::nats_connect::NatsArgs;

/// The environment variable that may hold the key-encryption key itself (base64 or hex).
pub const KEK_ENV: &str = "NEO_KEK";

/// Where the key-encryption key comes from.
#[derive(Debug, Clone, clap::Args)]
pub struct KekArgs {
    /// File holding the key-encryption key (32 bytes, base64 or hex; `neo keys generate` makes
    /// one) that seals every tenant's data key. Else `NEO_KEK` holds the key itself; with
    /// neither, the platform runs without a secrets store.
    #[arg(long, env = "NEO_KEK_FILE")]
    pub kek_file: Option<PathBuf>,
    /// A previous key-encryption key, still accepted for opening data keys while
    /// `neo keys rekey` re-seals them under the current one.
    #[arg(long, env = "NEO_PREVIOUS_KEK_FILE")]
    pub previous_kek_file: Option<PathBuf>,
}

impl KekArgs {
    /// The keyring: the current key first, then the previous one; `None` when no key is given.
    ///
    /// # Errors
    /// When a key file cannot be read or holds no 32-byte key (the message never shows it).
    pub fn keyring(&self) -> anyhow::Result<Option<Keyring>> {
        let keyring = match &self.kek_file {
            Some(file) => Keyring::from_file(file)?,
            None if std::env::var_os(KEK_ENV).is_some() => Keyring::from_env(KEK_ENV)?,
            None => return Ok(None),
        };
        Ok(Some(match &self.previous_kek_file {
            Some(file) => keyring.with_previous(neo_secrets::Kek::from_file(file)?),
            None => keyring,
        }))
    }
}

/// Destroys the data key of a deleted tenant (crypto-shredding), once per `TenantDeleted`.
/// The gateway does it too when it deletes; this reactor covers a gateway that died first. The
/// store must be opened on a connection allowed to write the secrets buckets (the gateway's).
pub struct ShredOnTenantDeleted(pub Arc<SecretStore>);

#[async_trait::async_trait]
impl Reactor for ShredOnTenantDeleted {
    fn name(&self) -> &'static str {
        "secrets-shred-on-tenant-deleted"
    }

    fn filter(&self) -> String {
        subjects::kind_event_type(EntityKind::Tenant, "TenantDeleted")
    }

    async fn react(&self, event: &StoredMessage) -> Result<Vec<Reaction>, ReactorError> {
        let tenant: &TenantName = &event.entity.tenant;
        let report = self
            .0
            .shred_tenant(tenant)
            .await
            .map_err(|e| ReactorError {
                reactor: "secrets-shred-on-tenant-deleted",
                sequence: event.sequence,
                reason: e.to_string(),
                transient: true,
            })?;
        tracing::info!(tenant = %tenant, had_data_key = report.had_data_key,
            secrets_purged = report.secrets_purged, "deleted tenant's data key destroyed");
        Ok(Vec::new())
    }
}

/// `neo keys …`.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Write a new random key-encryption key to a file (mode 0600; never overwrites).
    Generate {
        /// The file to create.
        file: PathBuf,
    },
    /// Re-seal every tenant's data key under the current key-encryption key (`--kek-file`),
    /// opening them with it or with `--previous-kek-file`. Nothing is written unless every
    /// data key opens. Run it after restarting the platform with both keys; then drop the old.
    Rekey {
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
    /// Give a tenant a new data key and re-seal each of its secrets under it; the old data
    /// key is then destroyed. Readers keep working throughout.
    RotateTenant {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        kek: KekArgs,
    },
}

async fn open_store(nats: &NatsArgs, kek: &KekArgs) -> anyhow::Result<SecretStore> {
    let keyring = kek
        .keyring()?
        .context("no key-encryption key: give --kek-file or NEO_KEK")?;
    let client = nats.connect("neo-keys").await?;
    Ok(SecretStore::open(async_nats::jetstream::new(client), keyring).await?)
}

/// Runs `neo keys …`.
///
/// # Errors
/// When a key cannot be read or written, NATS cannot be reached, or a data key does not open.
pub async fn run(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Generate { file } => {
            let keyring = Keyring::generate_file(&file)?;
            println!(
                "wrote key-encryption key {} to {}",
                keyring.primary_id().as_str(),
                file.display()
            );
        }
        KeysCommand::Rekey { nats, kek } => {
            let store = open_store(&nats, &kek).await?;
            let report = store.rekey().await?;
            println!("{report:?}");
        }
        KeysCommand::RotateTenant { tenant, nats, kek } => {
            let tenant = TenantName::new(&tenant).context("--tenant")?;
            let store = open_store(&nats, &kek).await?;
            let report = store.rotate_tenant_key(&tenant).await?;
            println!("{report:?}");
        }
    }
    Ok(())
}
