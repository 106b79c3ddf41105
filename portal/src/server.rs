//! The portal's HTTP(S) server: TLS, the security headers of every answer, and the routes
//! ([`crate::routes`]).
//!
//! Every answer carries a Content-Security-Policy without inline script or style,
//! `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and `Referrer-Policy:
//! no-referrer`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::gateway::Gateway;
use crate::routes::{self, Shared};

/// The Content-Security-Policy of every answer.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// How the portal serves.
#[derive(Clone)]
pub struct PortalConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Serve TLS with this configuration; `None`: plain HTTP (loopback tests only: the session
    /// cookie is `Secure`, so a browser keeps it only over HTTPS or on localhost).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for PortalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortalConfig")
            .field("listen", &self.listen)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why the portal could not start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The address could not be bound.
    #[error("portal: binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running portal.
pub struct Portal {
    addr: SocketAddr,
    tls: bool,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Portal {
    /// Binds and serves the portal over `gateway`.
    ///
    /// # Errors
    /// [`PortalError::Bind`] when the address cannot be bound.
    pub async fn start(config: PortalConfig, gateway: Gateway) -> Result<Self, PortalError> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| PortalError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| PortalError::Bind {
            addr: config.listen,
            source,
        })?;
        let app = routes::router(Arc::new(Shared { gateway }))
            .layer(axum::middleware::map_response(secure));
        let (stop, stopped) = oneshot::channel();
        let tls = config.tls.clone();
        let task = tokio::spawn(serve(listener, app, tls, stopped));
        tracing::info!(%addr, tls = config.tls.is_some(), "portal serving");
        Ok(Self {
            addr,
            tls: config.tls.is_some(),
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The portal's URL (`https://…` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting and ends the server.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until `stopped`, each served on its own task (its TLS handshake within
/// 10 s).
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "portal: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stopped => return,
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper_util::service::TowerToHyperService::new(app);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let served = match acceptor {
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await;
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(%peer, "portal: TLS handshake failed");
                        return;
                    };
                    builder
                        .serve_connection_with_upgrades(
                            hyper_util::rt::TokioIo::new(stream),
                            service,
                        )
                        .await
                }
                None => {
                    builder
                        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service)
                        .await
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "portal: connection ended with an error");
            }
        });
    }
}

/// The security headers of every answer.
async fn secure(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
