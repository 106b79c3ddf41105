//! What the request handlers share: the bundle, the pool, settings, and readiness.

use std::sync::{Arc, Mutex};

use sqlx::PgPool;

use crate::bundle::Bundle;
use crate::config::{Config, env_key};
use crate::db;
use crate::producers::Producers;

/// Where the database stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbStatus {
    /// No database is configured.
    NotConfigured,
    /// Connecting or migrating; the last failure, if any.
    Preparing(Option<String>),
    /// The migrations are applied.
    Migrated,
}

/// The state shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The loaded bundle.
    pub bundle: Bundle,
    /// The schema of the app's tables.
    pub schema: String,
    /// The pool (connections are opened lazily), when a database is configured.
    pub pool: Option<PgPool>,
    /// Every declared setting with its value: the environment's, else the default.
    pub settings: Vec<(String, Option<String>)>,
    /// Declared secrets that have no value.
    pub missing_secrets: Vec<String>,
    /// The apps this one consumes.
    pub producers: Producers,
    /// The requests so far (`GET /activityz`).
    pub requests: crate::http::Requests,
    db_status: Mutex<DbStatus>,
}

impl AppState {
    /// Resolves settings and secrets from `config` against the bundle's declarations.
    pub fn new(bundle: Bundle, config: &Config, schema: String, pool: Option<PgPool>) -> Arc<Self> {
        let model = &bundle.model;
        let settings = model
            .settings
            .iter()
            .map(|s| {
                let value = config
                    .settings
                    .get(&env_key(&s.name))
                    .cloned()
                    .or_else(|| s.default.clone());
                (s.name.clone(), value)
            })
            .collect();
        let missing_secrets = model
            .secrets
            .iter()
            .filter(|name| {
                config
                    .secrets
                    .get(&env_key(name))
                    .is_none_or(|v| v.is_empty())
            })
            .cloned()
            .collect();
        let status = if pool.is_some() {
            DbStatus::Preparing(None)
        } else {
            DbStatus::NotConfigured
        };
        Arc::new(Self {
            bundle,
            schema,
            pool,
            settings,
            missing_secrets,
            producers: Producers::new(config.producers.clone()),
            requests: crate::http::Requests::default(),
            db_status: Mutex::new(status),
        })
    }

    /// Records the database's state.
    pub fn set_db_status(&self, status: DbStatus) {
        if let Ok(mut s) = self.db_status.lock() {
            *s = status;
        }
    }

    /// The database's state.
    pub fn db_status(&self) -> DbStatus {
        self.db_status
            .lock()
            .map(|s| s.clone())
            .unwrap_or(DbStatus::Preparing(None))
    }

    /// The pool, once the migrations are applied.
    pub fn ready_pool(&self) -> Option<&PgPool> {
        match self.db_status() {
            DbStatus::Migrated => self.pool.as_ref(),
            _ => None,
        }
    }

    /// Why the host is not ready; empty when it is.
    ///
    /// Ready means: the bundle is loaded (always, once the host runs), every declared secret
    /// has a value, the migrations are applied and the database answers `SELECT 1` within
    /// [`db::PING_TIMEOUT`]. Liveness (`/healthz`) does not depend on the database.
    /// Reasons name secrets, never their values.
    pub async fn unready_reasons(&self) -> Vec<String> {
        let mut reasons: Vec<String> = self
            .missing_secrets
            .iter()
            .map(|s| format!("secret {s} is not set"))
            .collect();
        let needs_db = !self.bundle.model.entities.is_empty() || !self.bundle.migrations.is_empty();
        match (self.db_status(), &self.pool) {
            (DbStatus::NotConfigured, _) | (_, None) => {
                if needs_db {
                    reasons.push("no database configured (NEO_DATABASE_URL)".into());
                }
            }
            (DbStatus::Preparing(None), _) => {
                reasons.push("database: migrations not applied yet".into())
            }
            (DbStatus::Preparing(Some(e)), _) => reasons.push(format!("database: {e}")),
            (DbStatus::Migrated, Some(pool)) => {
                if let Err(reason) = db::ping(pool).await {
                    reasons.push(reason);
                }
            }
        }
        reasons
    }
}
