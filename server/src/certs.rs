//! `neo certs init`: a local certificate authority and the server certificate the gateway and
//! nats-server present, so that a single machine runs with TLS by default.
//!
//! Files in the directory: `ca.pem` (the CA certificate clients trust), `ca-key.pem` (its key,
//! mode 0600), `server.pem` and `server-key.pem` (0600): the server certificate for
//! `localhost`, `127.0.0.1`, `::1` and any extra names.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA certificate's file name.
pub const CA_CERT: &str = "ca.pem";
/// The CA key's file name.
pub const CA_KEY: &str = "ca-key.pem";
/// The server certificate's file name.
pub const SERVER_CERT: &str = "server.pem";
/// The server key's file name.
pub const SERVER_KEY: &str = "server-key.pem";
/// The names the server certificate was made for, one a line.
const SERVER_NAMES: &str = "server-names.txt";

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused (a bad name, an unreadable key).
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Options of `neo certs init`.
#[derive(Debug, Clone, clap::Args)]
pub struct CertsArgs {
    /// Where the CA and the server certificate are kept.
    #[arg(long)]
    pub dir: PathBuf,
    /// Another name (DNS name or IP address) the server certificate is valid for.
    #[arg(long = "name")]
    pub names: Vec<String>,
}

/// `neo certs …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum CertsCommand {
    /// Create the local CA (kept when present) and a server certificate for localhost,
    /// 127.0.0.1, ::1 and the given names.
    Init(CertsArgs),
}

/// Where the files are.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The CA certificate (PEM).
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server key (PEM).
    pub key: PathBuf,
}

/// The CA's fixed parameters: the same every time, so an issuer rebuilt from them and the
/// kept key signs certificates that chain to the kept CA certificate.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Neo local CA");
    dn.push(DnType::OrganizationName, "Neo");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    Ok(params)
}

/// Creates the CA in `dir` unless it is there, and the server certificate for localhost,
/// 127.0.0.1, ::1 and `names` (for server and client authentication: NATS routes use it both
/// ways) unless one for the same names and usages is there.
///
/// # Guarantees
/// Idempotent: the CA and its key are kept when both exist, so certificates issued before
/// stay trusted, and so is a server certificate for the same names; keys are written with
/// mode 0600.
///
/// # Errors
/// An unwritable directory, an unreadable CA key, an invalid name.
pub fn init(dir: &Path, names: &[String]) -> Result<CertFiles, CertsError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_cert, ca_key) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let ca_key_pair = if ca_cert.exists() && ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
        KeyPair::from_pem(&pem)?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_secret(&ca_key, &key.serialize_pem())?;
        std::fs::write(&ca_cert, cert.pem()).map_err(io(&ca_cert))?;
        key
    };
    let issuer = Issuer::new(ca_params()?, ca_key_pair);
    let mut sans = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    for name in names {
        if !sans.contains(name) {
            sans.push(name.clone());
        }
    }
    let files = CertFiles {
        ca: ca_cert,
        cert: dir.join(SERVER_CERT),
        key: dir.join(SERVER_KEY),
    };
    let names_file = dir.join(SERVER_NAMES);
    // The usages are part of what is kept: a certificate from before client authentication
    // was added (for NATS cluster routes, which authenticate each other) is made again.
    let wanted = format!("{}\n# usages: server, client", sans.join("\n"));
    let same_names = std::fs::read_to_string(&names_file).is_ok_and(|n| n == wanted);
    if same_names && files.cert.exists() && files.key.exists() {
        return Ok(files);
    }
    let mut params = CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Neo local server");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    // Client too: NATS cluster routes present it to their peers, which verify it.
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(825);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_secret(&files.key, &key.serialize_pem())?;
    std::fs::write(&files.cert, cert.pem()).map_err(io(&files.cert))?;
    std::fs::write(&names_file, wanted).map_err(io(&names_file))?;
    Ok(files)
}

/// Writes `text` to `path`, readable by its owner only.
pub(crate) fn write_secret(path: &Path, text: &str) -> Result<(), CertsError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    file.write_all(text.as_bytes()).map_err(io(path))
}

/// Runs `neo certs …`.
///
/// # Errors
/// See [`init`].
pub fn run(command: CertsCommand) -> anyhow::Result<()> {
    match command {
        CertsCommand::Init(args) => {
            let files = init(&args.dir, &args.names)?;
            println!("CA:          {}", files.ca.display());
            println!("certificate: {}", files.cert.display());
            println!("key:         {}", files.key.display());
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_ca_and_renews_the_server_certificate() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let first = init(dir.path(), &[])?;
        let ca = std::fs::read_to_string(&first.ca)?;
        let cert = std::fs::read_to_string(&first.cert)?;
        let same = init(dir.path(), &[])?;
        assert_eq!(
            std::fs::read_to_string(&same.cert)?,
            cert,
            "same names: kept"
        );
        let again = init(dir.path(), &["neo.internal".to_owned()])?;
        assert_eq!(std::fs::read_to_string(&again.ca)?, ca, "the CA is kept");
        assert_ne!(
            std::fs::read_to_string(&again.cert)?,
            cert,
            "new names: renewed"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            for key in [dir.path().join(CA_KEY), again.key] {
                assert_eq!(std::fs::metadata(key)?.permissions().mode() & 0o777, 0o600);
            }
        }
        Ok(())
    }
}
