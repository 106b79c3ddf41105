//! The gateway over TLS from certificate files: a client trusting the CA gets answers; a
//! client without TLS or without the CA gets nothing. The CLI pointed at the wrong scheme or
//! port is told which to use.

#![allow(clippy::unwrap_used)] // a test fails loudly on the first unexpected error

use neo_actors::HostConfig;
use neo_gateway::api::{WhoAmIRequest, identity_client::IdentityClient};
use neo_gateway::{Gateway, GatewayConfig, TlsFiles};
use neo_tests::Core;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// A CA and a server certificate for localhost signed by it, written as PEM files by the same
/// code as `neo certs init`.
fn certificates(dir: &std::path::Path) -> (String, TlsFiles) {
    let files = neo_server::certs::init(dir, &[]).unwrap();
    let ca = std::fs::read_to_string(&files.ca).unwrap();
    (
        ca,
        TlsFiles {
            cert: files.cert,
            key: files.key,
        },
    )
}

#[tokio::test]
async fn the_gateway_serves_tls_to_clients_that_trust_its_ca() {
    let core = Core::start().await.unwrap();
    let _platform = core.platform(HostConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ca_pem, files) = certificates(dir.path());
    let config = GatewayConfig {
        tls: Some(files),
        ..GatewayConfig::loopback(vec![7u8; 32])
    };
    let s3 = neo_tests::storage::S3::start().await.unwrap();
    let backends = neo_gateway::Backends {
        revisions: s3.store.clone(),
        consumers: None,
        secrets: None,
    };
    let gateway = Gateway::start(core.connect().await.unwrap(), config, backends)
        .await
        .unwrap();
    assert!(gateway.endpoint().starts_with("https://"));
    let port = gateway.local_addr().port();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    // The call reaches the server over TLS: it answers (no token: unauthenticated).
    let status = IdentityClient::new(channel)
        .who_am_i(WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // Without TLS, or without trusting the CA, no answer comes back.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let e = IdentityClient::new(channel)
            .who_am_i(WhoAmIRequest {})
            .await
            .unwrap_err();
        assert_ne!(
            e.code(),
            tonic::Code::Unauthenticated,
            "a plaintext call was served"
        );
    }
    // Another local CA, which did not sign the gateway's certificate.
    let other_dir = tempfile::tempdir().unwrap();
    let (other_ca, _) = certificates(other_dir.path());
    let untrusting = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(other_ca))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await;
    assert!(
        untrusting.is_err(),
        "a client that does not trust the CA connected"
    );
    // The CLI with http:// for this TLS gateway is told to use https://.
    let e = cli_error(&format!("http://127.0.0.1:{port}")).await;
    assert!(
        e.to_string().starts_with(&format!(
            "http://127.0.0.1:{port} serves TLS: use https://127.0.0.1:{port}"
        )),
        "{e}"
    );
    assert_eq!(e.exit_code(), 2, "{e}");

    // With https:// for a plaintext gateway: use http://.
    let plain = Gateway::start(
        core.connect().await.unwrap(),
        GatewayConfig::loopback(vec![7u8; 32]),
        neo_gateway::Backends {
            revisions: s3.store.clone(),
            consumers: None,
            secrets: None,
        },
    )
    .await
    .unwrap();
    let plain_port = plain.local_addr().port();
    let e = cli_error(&format!("https://127.0.0.1:{plain_port}")).await;
    assert!(
        e.to_string().starts_with(&format!(
            "https://127.0.0.1:{plain_port} serves plaintext gRPC, not TLS: use http://127.0.0.1:{plain_port}"
        )),
        "{e}"
    );

    // A web server's port (the registry's) is not a gateway.
    let registry = neo_harness::RegistryServer::start().await.unwrap();
    let e = cli_error(&format!("http://127.0.0.1:{}", registry.port())).await;
    assert!(
        e.to_string()
            .contains("is an HTTP/1 web server, not a Neo gateway: is the port right?"),
        "{e}"
    );
    plain.shutdown().await;
    gateway.shutdown().await;
}

/// The error of `neo --endpoint ENDPOINT --token t whoami`.
async fn cli_error(endpoint: &str) -> neo_cli::CliError {
    neo_tests::cli::run_at(endpoint, 10, &["whoami"])
        .await
        .unwrap_err()
}
