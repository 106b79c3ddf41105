//! An S3 endpoint on loopback (s3s + s3s-fs over hyper), for running without an S3 service.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use hyper_util::server::graceful::GracefulShutdown;
use s3s::auth::SimpleAuth;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s_fs::FileSystem;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::S3Config;
use crate::error::StorageError;

/// The access key id of the embedded endpoint.
pub const EMBEDDED_ACCESS_KEY: &str = "neo";
/// The region the embedded endpoint is addressed with.
pub const EMBEDDED_REGION: &str = "us-east-1";
/// How long open connections get to finish when the endpoint shuts down.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// An S3 endpoint on `127.0.0.1`, serving a directory, that only answers requests signed
/// with its credentials (access key [`EMBEDDED_ACCESS_KEY`] and its secret).
///
/// It serves on a tokio task until [`EmbeddedS3::shutdown`] or until it is dropped.
pub struct EmbeddedS3 {
    addr: SocketAddr,
    secret: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl EmbeddedS3 {
    /// Binds `127.0.0.1:port` (0: any free port) and serves `dir` (created if missing) with
    /// a secret key generated now.
    ///
    /// # Errors
    /// [`StorageError::Embedded`] when the directory, the randomness or the port fails.
    pub async fn start(dir: &Path, port: u16) -> Result<EmbeddedS3, StorageError> {
        Self::start_with_secret(dir, port, &generate_secret()?).await
    }

    /// Like [`EmbeddedS3::start`], with a given secret key (e.g. one kept across restarts).
    ///
    /// # Errors
    /// [`StorageError::Embedded`] when the secret is empty, or the directory or port fails.
    pub async fn start_with_secret(
        dir: &Path,
        port: u16,
        secret: &str,
    ) -> Result<EmbeddedS3, StorageError> {
        if secret.is_empty() {
            return Err(StorageError::Embedded("the secret key is empty".to_owned()));
        }
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|err| StorageError::Embedded(format!("creating {}: {err}", dir.display())))?;
        let fs = FileSystem::new(dir)
            .map_err(|err| StorageError::Embedded(format!("serving {}: {err:?}", dir.display())))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(EMBEDDED_ACCESS_KEY, secret));
        let service = builder.build();

        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|err| StorageError::Embedded(format!("binding 127.0.0.1:{port}: {err}")))?;
        let addr = listener
            .local_addr()
            .map_err(|err| StorageError::Embedded(format!("reading the bound address: {err}")))?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(serve(listener, service, stopped));
        info!(%addr, dir = %dir.display(), "embedded S3 endpoint started");
        Ok(EmbeddedS3 {
            addr,
            secret: secret.to_owned(),
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A configuration for [`crate::RevisionStore::connect`]: this endpoint, path style,
    /// region `us-east-1` and its credentials.
    pub fn config(&self, bucket: &str) -> S3Config {
        S3Config {
            endpoint: Some(self.endpoint()),
            region: EMBEDDED_REGION.to_owned(),
            bucket: bucket.to_owned(),
            access_key_id: EMBEDDED_ACCESS_KEY.to_owned(),
            secret_access_key: self.secret.clone(),
            force_path_style: true,
        }
    }

    /// Stops accepting connections, lets open ones finish (a few seconds at most) and
    /// returns once the port is released.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            // The task may already be gone; then there is nothing to stop.
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            warn!(error = %err, "embedded S3 endpoint task failed");
        }
    }
}

impl fmt::Debug for EmbeddedS3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedS3")
            .field("addr", &self.addr)
            .field("running", &self.stop.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        // Dropping the sender wakes the server task, which stops on its own.
        self.stop.take();
    }
}

/// Accepts connections until `stopped` fires (or its sender is dropped), then shuts the
/// open connections down gracefully.
async fn serve(listener: TcpListener, service: S3Service, mut stopped: oneshot::Receiver<()>) {
    let http = ConnBuilder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    loop {
        let socket = tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    debug!(%peer, "embedded S3 connection");
                    socket
                }
                Err(err) => {
                    warn!(error = %err, "embedded S3 endpoint could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let connection = http.serve_connection(TokioIo::new(socket), service.clone());
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(error = %err, "embedded S3 connection ended with an error");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => debug!("embedded S3 connections closed"),
        () = tokio::time::sleep(SHUTDOWN_GRACE) => warn!("embedded S3 connections still open after the grace period"),
    }
    info!("embedded S3 endpoint stopped");
}

/// 32 random bytes from the operating system, hex.
fn generate_secret() -> Result<String, StorageError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|err| StorageError::Embedded(format!("generating a secret key: {err}")))?;
    Ok(hex::encode(bytes))
}
