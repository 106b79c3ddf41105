//! The read models' schema: SQL migrations under `actors/migrations`, embedded at compile time
//! and run by sqlx's migrator (tracked in `_sqlx_migrations`).
//!
//! sqlx's `migrate!` macro needs its `macros` feature (a proc-macro crate and compile-time
//! database checks this crate does not use), so the files are embedded with `include_str!`
//! and listed here: a new migration is a new file and a new line in [`MIGRATIONS`].

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// Every migration: version, description, SQL. Append only; never edit one that shipped
/// (its checksum is recorded).
pub const MIGRATIONS: &[(i64, &str, &str)] = &[(
    1,
    "read models",
    include_str!("../../migrations/0001_read_models.sql"),
)];

/// Every table the migrations create, dropped by a rebuild.
pub const TABLES: &[&str] = &[
    "projection_positions",
    "tenants",
    "tenant_members",
    "apps",
    "revisions",
    "builds",
    "dependency_edges",
    "exposed_fields",
    "releases",
    "deployments",
    "blocked_deploys",
];

/// [`MIGRATIONS`] as a sqlx migration source.
#[derive(Debug, Clone, Copy)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, sqlx::error::BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator of the embedded migrations.
///
/// # Errors
/// Never in practice (the source is in memory); sqlx's signature allows it.
pub async fn migrator() -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Embedded).await
}

/// The versions of [`MIGRATIONS`], for forgetting them on a rebuild.
pub fn versions() -> Vec<i64> {
    MIGRATIONS.iter().map(|&(version, _, _)| version).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_created_by_a_migration() {
        let sql: String = MIGRATIONS.iter().map(|m| m.2).collect();
        for table in TABLES {
            assert!(
                sql.contains(&format!("CREATE TABLE {table} (")),
                "{table} is not created by any migration"
            );
        }
        let created = sql.matches("CREATE TABLE ").count();
        assert_eq!(
            created,
            TABLES.len(),
            "a created table is missing from TABLES"
        );
    }

    #[test]
    fn versions_increase() {
        let v = versions();
        assert!(v.windows(2).all(|w| w[0] < w[1]), "{v:?}");
    }
}
