//! Binding, serving until shutdown, and preparing the database in the background.

use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::bundle::{Bundle, BundleError};
use crate::config::{Config, ConfigError};
use crate::model::is_identifier;
use crate::state::{AppState, DbStatus};
use crate::{db, migrate};

/// Why the host cannot start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The bundle is missing or invalid.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

impl ServeError {
    /// Whether the failure is the bundle's or the configuration's (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Self::Bundle(_) | Self::Config(_))
    }
}

/// A host bound to its address, not yet serving.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

/// Loads the bundle, checks the configuration and binds the listen address.
///
/// # Errors
/// A bad bundle or configuration, or an address that cannot be bound.
pub async fn bind(config: Config) -> Result<Server, ServeError> {
    let bundle = Bundle::load(&config.bundle_dir)?;
    let schema = config
        .schema
        .clone()
        .unwrap_or_else(|| bundle.model.default_schema());
    if !is_identifier(&schema) {
        return Err(ConfigError::Schema(schema).into());
    }
    let pool = match &config.database_url {
        None => None,
        Some(url) => {
            let options = PgConnectOptions::from_str(url)
                .map_err(ConfigError::DatabaseUrl)?
                .options([("search_path", schema.as_str()), ("TimeZone", "UTC")])
                .application_name(&format!("neo-apphost {}", bundle.model.name));
            let pool = PgPoolOptions::new()
                .max_connections(config.max_connections)
                .acquire_timeout(db::ACQUIRE_TIMEOUT)
                .connect_lazy_with(options);
            Some(pool)
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
    info!(
        app = %bundle.model.name,
        schema,
        entities = bundle.model.entities.len(),
        migrations = bundle.migrations.len(),
        "bundle loaded"
    );
    Ok(Server {
        listener,
        state: AppState::new(bundle, &config, schema, pool),
    })
}

/// [`bind`] then [`Server::run`].
///
/// # Errors
/// As those.
pub async fn serve(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    bind(config).await?.run(shutdown).await
}

impl Server {
    /// The bound address (useful with port 0).
    ///
    /// # Errors
    /// If the socket cannot tell.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (for embedding and tests).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests
    /// finish and closes the pool. The database is prepared in the background meanwhile.
    ///
    /// # Errors
    /// An I/O failure of the server.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Self { listener, state } = self;
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening");
        }
        let preparing = state
            .pool
            .clone()
            .map(|pool| tokio::spawn(prepare(state.clone(), pool)));
        let app = crate::http::router(state.clone());
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(task) = preparing {
            task.abort();
        }
        if let Some(pool) = &state.pool {
            pool.close().await;
        }
        info!("stopped");
        result.map_err(ServeError::Serve)
    }
}

/// Applies the migrations, retrying with backoff until they are in.
async fn prepare(state: Arc<AppState>, pool: sqlx::PgPool) {
    let mut delay = Duration::from_millis(200);
    loop {
        match migrate::apply(&pool, &state.schema, &state.bundle.migrations).await {
            Ok(applied) => {
                info!(schema = %state.schema, applied, "database ready");
                state.set_db_status(DbStatus::Migrated);
                return;
            }
            Err(e) => {
                warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "database not ready");
                state.set_db_status(DbStatus::Preparing(Some(e.to_string())));
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}
