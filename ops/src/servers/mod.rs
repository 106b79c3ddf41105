//! Real servers started on free loopback ports, for tests and `neo bench`.
//!
//! Each server runs as a child process with its data in a temporary directory; dropping the
//! handle kills the process and then removes the directory, so a failing test never leaks one.
//! The binaries come from `ops/install-deps`.

pub mod nats;
pub mod postgres;
pub mod registry;

pub use nats::NatsServer;
pub use postgres::PostgresServer;
pub use registry::RegistryServer;

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why a server could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The server binary is nowhere to be found.
    #[error("{binary} not found (looked in: {looked_in}); run ops/install-deps or set {env}")]
    BinaryNotFound {
        /// The binary's name, e.g. `nats-server`.
        binary: &'static str,
        /// The environment variable that names the binary directly.
        env: &'static str,
        /// Where it was looked for.
        looked_in: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server exited before it was ready.
    #[error("{binary} exited before it was ready ({status}); log {log}:\n{log_tail}")]
    Exited {
        /// The binary's name.
        binary: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// The server did not become ready in time (it has been killed).
    #[error("{binary} not ready after {waited:?}; log {log}:\n{log_tail}")]
    NotReady {
        /// The binary's name.
        binary: &'static str,
        /// How long it was waited for.
        waited: Duration,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
}

impl ServerError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
        let what = what.into();
        move |source| ServerError::Io { what, source }
    }
}
