//! `neo serve`'s portal: the web console on `--portal-listen`, served over TLS with the
//! gateway's certificate (`--tls-cert`, `--tls-key`), and speaking to this process's own
//! gateway as each signed-in user (trusting `--portal-gateway-ca` for the gateway's
//! certificate).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use neo_gateway::Gateway;
use neo_portal::{Portal, PortalConfig};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

/// The portal's options of `neo serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct PortalArgs {
    /// Where the portal listens (`off` to run without it); TLS with --tls-cert and --tls-key.
    #[arg(long, env = "NEO_PORTAL_LISTEN", default_value = "off")]
    pub portal_listen: String,
    /// The CA the portal trusts for this process's gateway certificate (needed with TLS).
    #[arg(long)]
    pub portal_gateway_ca: Option<PathBuf>,
}

/// Starts the portal over `gateway` unless it is `off`.
///
/// # Errors
/// A bad address, TLS files that cannot be read, or a gateway with TLS and no CA to trust.
pub async fn start(
    args: &PortalArgs,
    tls: Option<(&Path, &Path)>,
    gateway: &Gateway,
) -> anyhow::Result<Option<Portal>> {
    if args.portal_listen == "off" {
        return Ok(None);
    }
    let listen: SocketAddr = args.portal_listen.parse().context("--portal-listen")?;
    let mut at = gateway.local_addr();
    if at.ip().is_unspecified() {
        at.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let server_tls = match tls {
        Some((cert, key)) => Some(Arc::new(server_config(cert, key)?)),
        None => None,
    };
    let endpoint = if gateway.endpoint().starts_with("https") {
        let ca = args
            .portal_gateway_ca
            .as_deref()
            .context("--portal-gateway-ca is needed to reach a gateway that serves TLS")?;
        let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
        Endpoint::from_shared(format!("https://{at}"))?
            .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?
    } else {
        Endpoint::from_shared(format!("http://{at}"))?
    };
    let channel = endpoint.connect_lazy();
    let config = PortalConfig {
        listen,
        tls: server_tls,
    };
    let portal = Portal::start(config, neo_portal::gateway::Gateway::new(channel)).await?;
    println!("portal: {}", portal.url());
    Ok(Some(portal))
}

/// The portal's TLS configuration from PEM files (HTTP/2 and HTTP/1.1 by ALPN).
///
/// # Errors
/// An unreadable file, or a key that does not fit the certificate.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("reading {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading {}", key.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the portal's certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
