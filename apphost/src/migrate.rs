//! Applying the bundle's migrations to the app's schema, safely from several replicas at once.

use sha2::{Digest, Sha256};
use sqlx::{Executor, PgPool};
use tracing::info;

use crate::bundle::Migration;
use crate::model::quote;

/// Why the migrations could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database refused or failed a statement.
    #[error("applying migrations to schema {schema}: {source}")]
    Database {
        /// The schema.
        schema: String,
        /// The database error.
        source: sqlx::Error,
    },
    /// A migration file failed.
    #[error("migration {name} failed: {source}")]
    Migration {
        /// The file name.
        name: String,
        /// The database error.
        source: sqlx::Error,
    },
}

/// The table, in the app's schema, recording which migration files were applied.
pub const MIGRATIONS_TABLE: &str = "_neo_migrations";

/// Creates `schema` if needed and applies every migration whose file is new or changed.
///
/// # Guarantees
/// Runs in one transaction holding `pg_advisory_xact_lock(hashtext(schema))`: replicas starting
/// together apply the migrations once, one after the other, and either all of a run's changes
/// are committed or none. Each applied file is recorded with its SHA-256 in
/// [`MIGRATIONS_TABLE`]; a file whose digest is recorded is skipped.
///
/// # Assumptions
/// The migrations are idempotent and additive (`IF NOT EXISTS`), so a changed file is simply
/// applied again; they use unqualified names (the transaction's `search_path` is `schema`).
///
/// # Errors
/// Any database error; nothing is committed then.
pub async fn apply(
    pool: &PgPool,
    schema: &str,
    migrations: &[Migration],
) -> Result<usize, MigrateError> {
    let db = |source| MigrateError::Database {
        schema: schema.to_owned(),
        source,
    };
    let mut tx = pool.begin().await.map_err(db)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    let q = quote(schema);
    // On a stage the agent made the schema for the app's own role, which may not create
    // schemas (Postgres checks that before `IF NOT EXISTS`): create it only when missing.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
    let create = if exists {
        String::new()
    } else {
        format!("CREATE SCHEMA IF NOT EXISTS {q};")
    };
    let setup = format!(
        "{create}
         SET LOCAL search_path TO {q};
         CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
             name TEXT PRIMARY KEY,
             sha256 TEXT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );"
    );
    tx.execute(setup.as_str()).await.map_err(db)?;
    let mut applied = 0;
    for m in migrations {
        let digest = hex::encode(Sha256::digest(m.sql.as_bytes()));
        let recorded: Option<String> = sqlx::query_scalar(&format!(
            "SELECT sha256 FROM {MIGRATIONS_TABLE} WHERE name = $1"
        ))
        .bind(&m.name)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        if recorded.as_deref() == Some(digest.as_str()) {
            continue;
        }
        tx.execute(m.sql.as_str())
            .await
            .map_err(|source| MigrateError::Migration {
                name: m.name.clone(),
                source,
            })?;
        sqlx::query(&format!(
            "INSERT INTO {MIGRATIONS_TABLE} (name, sha256) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, applied_at = now()"
        ))
        .bind(&m.name)
        .bind(&digest)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        info!(schema, migration = %m.name, sha256 = %digest, "migration applied");
        applied += 1;
    }
    tx.commit().await.map_err(db)?;
    Ok(applied)
}
