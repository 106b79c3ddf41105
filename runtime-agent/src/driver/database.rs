//! The stage database as the drivers hand it out: each app on the stage gets its own role,
//! owning only its own schema, and never the agent's credential (the process driver passes the
//! URL to its replicas like a secret; the kube driver puts it in the podgroup's Secret).
//!
//! The agent connects with the stage's admin URL (`--database-url`). For each podgroup it
//! makes sure of a login role `neo_<24 hex>` (a digest of tenant, app and stage: roles are
//! shared by every database of a Postgres cluster, so the stage is part of the name) that owns
//! the app's schema and nothing else, and gives the replicas a URL with that role. Its
//! password is an HMAC of the role name keyed by the admin URL: the same after an agent restart
//! (so running replicas keep working), never stored, and not derivable from what a replica sees.
//! Another role gets `permission denied for schema` on the schema. A deleted tenant's schemas
//! and roles are dropped ([`StageDatabase::drop_app`]).

use std::collections::HashMap;

use futures::future::BoxFuture;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::Executor as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::Mutex;

use crate::driver::{PodgroupKey, SecretEnv};

/// The environment variable replicas find their database URL in.
pub const URL_ENV: &str = "NEO_DATABASE_URL";

/// The stage database failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The admin URL is not a `postgres://` URL.
    #[error("the stage database URL is not a postgres:// URL: {0}")]
    Url(String),
    /// The app's schema belongs to another app's role (names such as `a-b`/`c` and `a`/`b-c`
    /// meet in `a_b_c`): it is not taken over.
    #[error("schema {schema} belongs to role {owner}, not to {role} of {podgroup}")]
    SchemaTaken {
        /// The schema.
        schema: String,
        /// Its owner.
        owner: String,
        /// The app's role.
        role: String,
        /// The podgroup.
        podgroup: String,
    },
    /// Postgres refused or failed (the statement's purpose, then Postgres' message).
    #[error("stage database, {action}: {source}")]
    Postgres {
        /// What the driver was doing.
        action: &'static str,
        /// Postgres' error.
        source: sqlx::Error,
    },
}

/// The stage database, with the roles made in this run.
pub struct StageDatabase {
    admin_url: url::Url,
    /// The base of the replicas' URLs: the admin URL, or its host and port as replicas reach
    /// them ([`StageDatabase::replicas_reach_at`]).
    replica_base: url::Url,
    pool: PgPool,
    /// The app URL of each podgroup provisioned in this run.
    provisioned: Mutex<HashMap<PodgroupKey, String>>,
}

impl std::fmt::Debug for StageDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageDatabase")
            .field("host", &self.admin_url.host_str())
            .field("database", &self.admin_url.path())
            .finish_non_exhaustive()
    }
}

/// The schema of an app on a stage database shared by tenants: `{tenant}_{app}`, `-` → `_`.
pub fn schema(key: &PodgroupKey) -> String {
    format!("{}_{}", key.tenant, key.app).replace('-', "_")
}

/// The role of an app on a stage: `neo_` and 24 hex digits of sha256 of `tenant/app/stage`.
pub fn role(key: &PodgroupKey) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", key.tenant, key.app, key.stage));
    format!("neo_{}", &hex::encode(digest)[..24])
}

/// A Postgres error while doing `action`.
fn pg(action: &'static str) -> impl FnOnce(sqlx::Error) -> DatabaseError {
    move |source| DatabaseError::Postgres { action, source }
}

/// Quotes an identifier for SQL.
fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Quotes a string literal for SQL.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

impl StageDatabase {
    /// The stage database at `admin_url` (connected on first use).
    ///
    /// # Errors
    ///
    /// [`DatabaseError::Url`] when it is not a `postgres://` URL.
    pub fn new(admin_url: &str) -> Result<Self, DatabaseError> {
        let url = url::Url::parse(admin_url).map_err(|e| DatabaseError::Url(e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(DatabaseError::Url(format!("scheme `{}`", url.scheme())));
        }
        let options: PgConnectOptions = admin_url
            .parse()
            .map_err(|e: sqlx::Error| DatabaseError::Url(e.to_string()))?;
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .idle_timeout(std::time::Duration::from_secs(60))
            .connect_lazy_with(options);
        Ok(Self {
            replica_base: url.clone(),
            admin_url: url,
            pool,
            provisioned: Mutex::new(HashMap::new()),
        })
    }

    /// Replicas reach the database at `host_port` (`host` or `host:port`; e.g. a cluster
    /// Service's name) rather than at the admin URL's address.
    ///
    /// # Errors
    ///
    /// [`DatabaseError::Url`] when it is not a host with an optional port.
    pub fn replicas_reach_at(mut self, host_port: &str) -> Result<Self, DatabaseError> {
        let bad = |why: String| DatabaseError::Url(format!("replica address `{host_port}`: {why}"));
        let parsed =
            url::Url::parse(&format!("postgres://{host_port}")).map_err(|e| bad(e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?;
        if parsed.path() != "" || parsed.query().is_some() || !parsed.username().is_empty() {
            return Err(bad("only a host and a port".into()));
        }
        self.replica_base
            .set_host(Some(host))
            .map_err(|e| bad(e.to_string()))?;
        self.replica_base
            .set_port(parsed.port())
            .map_err(|()| bad("port".into()))?;
        Ok(self)
    }

    /// The password of `role`: hex HMAC-SHA256 of its name keyed by the admin URL.
    fn password(&self, role: &str) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.admin_url.as_str().as_bytes()) else {
            // HMAC takes keys of any length; this does not happen.
            return String::new();
        };
        mac.update(role.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// `secrets` and, as [`URL_ENV`], the URL the replicas of `key` connect with
    /// ([`StageDatabase::provision`]): how both drivers hand it over, like a secret.
    ///
    /// # Errors
    ///
    /// See [`StageDatabase::provision`].
    pub async fn with_url(
        &self,
        key: &PodgroupKey,
        secrets: &SecretEnv,
    ) -> Result<SecretEnv, DatabaseError> {
        let url = self.provision(key).await?;
        let mut secrets = secrets.clone();
        secrets.0.insert(URL_ENV.to_owned(), url);
        Ok(secrets)
    }

    /// The URL the replicas of `key` connect with: its role makes sure of, owning its schema.
    ///
    /// # Guarantees
    ///
    /// Idempotent; a schema made before roles existed (owned by the admin) is handed to the
    /// role with its tables, views and sequences.
    ///
    /// # Errors
    ///
    /// [`DatabaseError::SchemaTaken`] when another app's role owns the schema;
    /// [`DatabaseError::Postgres`] when Postgres fails.
    pub fn provision<'a>(
        &'a self,
        key: &'a PodgroupKey,
    ) -> BoxFuture<'a, Result<String, DatabaseError>> {
        // Boxed here, where its lifetimes are known: the driver's `async_trait` futures must be
        // `Send`, which the compiler cannot prove through sqlx's executors otherwise.
        Box::pin(self.provision_now(key))
    }

    async fn provision_now(&self, key: &PodgroupKey) -> Result<String, DatabaseError> {
        if let Some(url) = self.provisioned.lock().await.get(key) {
            return Ok(url.clone());
        }
        let role = role(key);
        let schema = schema(key);
        let password = self.password(&role);
        let mut tx = self.pool.begin().await.map_err(pg("connecting"))?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&role)
            .execute(&mut *tx)
            .await
            .map_err(pg("locking the role"))?;
        let exists = role_exists(&mut tx, &role).await?;
        let verb = if exists { "ALTER" } else { "CREATE" };
        let sql = format!(
            "{verb} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION \
             NOBYPASSRLS CONNECTION LIMIT 64 PASSWORD {}",
            quoted(&role),
            literal(&password)
        );
        (&mut *tx)
            .execute(sql.as_str())
            .await
            .map_err(pg("making the app's role"))?;
        let owner: Option<(String, bool)> = sqlx::query_as(
            "SELECT r.rolname::text, r.rolname LIKE 'neo\\_%' AND r.rolname <> current_user
             FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner WHERE n.nspname = $1",
        )
        .bind(&schema)
        .fetch_optional(&mut *tx)
        .await
        .map_err(pg("reading the schema's owner"))?;
        match owner {
            None => {
                let sql = format!(
                    "CREATE SCHEMA {} AUTHORIZATION {}",
                    quoted(&schema),
                    quoted(&role)
                );
                (&mut *tx)
                    .execute(sql.as_str())
                    .await
                    .map_err(pg("making the app's schema"))?;
            }
            Some((owner, _)) if owner == role => {}
            Some((owner, true)) => {
                return Err(DatabaseError::SchemaTaken {
                    schema,
                    owner,
                    role,
                    podgroup: key.to_string(),
                });
            }
            Some(_) => hand_over(&mut tx, &schema, &role).await?,
        }
        tx.commit().await.map_err(pg("committing"))?;
        let mut url = self.replica_base.clone();
        // A base URL (postgres://host/db) always takes a user and password.
        let _ = url.set_username(&role);
        let _ = url.set_password(Some(&password));
        let url = url.to_string();
        tracing::info!(podgroup = %key, %role, %schema, "app role ready");
        self.provisioned
            .lock()
            .await
            .insert(key.clone(), url.clone());
        Ok(url)
    }
}

/// Whether `role` exists.
async fn role_exists(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    role: &str,
) -> Result<bool, DatabaseError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(role)
        .fetch_one(&mut **tx)
        .await
        .map_err(pg("reading roles"))
}

/// Hands a schema the admin made (before roles existed) to `role`, with what is in it.
async fn hand_over(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    schema: &str,
    role: &str,
) -> Result<(), DatabaseError> {
    let sql = format!(
        "ALTER SCHEMA {s} OWNER TO {r};
             DO $$ DECLARE o record; BEGIN
               FOR o IN SELECT c.relname, c.relkind FROM pg_class c
                        JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = {ls} AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               LOOP
                 EXECUTE format('ALTER %s %I.%I OWNER TO %I',
                   CASE o.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                  WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,
                   {ls}, o.relname, {lr});
               END LOOP;
             END $$;",
        s = quoted(schema),
        r = quoted(role),
        ls = literal(schema),
        lr = literal(role),
    );
    (&mut **tx)
        .execute(sql.as_str())
        .await
        .map_err(pg("handing the schema to the app's role"))?;
    tracing::info!(%schema, %role, "schema handed to the app's role");
    Ok(())
}

impl StageDatabase {
    /// Drops the schema of `key` with everything in it (when its role owns it) and the role:
    /// its tenant was deleted. Sessions of the role are ended first.
    ///
    /// # Guarantees
    ///
    /// Idempotent: what is gone already is fine.
    ///
    /// # Errors
    ///
    /// [`DatabaseError::Postgres`] when Postgres fails.
    pub fn drop_app<'a>(
        &'a self,
        key: &'a PodgroupKey,
    ) -> BoxFuture<'a, Result<(), DatabaseError>> {
        Box::pin(self.drop_now(key))
    }

    async fn drop_now(&self, key: &PodgroupKey) -> Result<(), DatabaseError> {
        let role = role(key);
        let schema = schema(key);
        self.provisioned.lock().await.remove(key);
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1")
            .bind(&role)
            .execute(&self.pool)
            .await
            .map_err(pg("ending the role's sessions"))?;
        let mut tx = self.pool.begin().await.map_err(pg("connecting"))?;
        let owned: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner
             WHERE n.nspname = $1 AND r.rolname = $2)",
        )
        .bind(&schema)
        .bind(&role)
        .fetch_one(&mut *tx)
        .await
        .map_err(pg("reading the schema's owner"))?;
        if owned {
            let sql = format!("DROP SCHEMA {} CASCADE", quoted(&schema));
            (&mut *tx)
                .execute(sql.as_str())
                .await
                .map_err(pg("dropping the app's schema"))?;
        }
        let exists = role_exists(&mut tx, &role).await?;
        if exists {
            let sql = format!("DROP OWNED BY {r}; DROP ROLE {r}", r = quoted(&role));
            (&mut *tx)
                .execute(sql.as_str())
                .await
                .map_err(pg("dropping the app's role"))?;
        }
        tx.commit().await.map_err(pg("committing"))?;
        tracing::info!(podgroup = %key, %role, %schema, dropped_schema = owned, "app data dropped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tenant: &str, app: &str, stage: &str) -> PodgroupKey {
        PodgroupKey {
            tenant: tenant.into(),
            app: app.into(),
            stage: stage.into(),
        }
    }

    #[test]
    fn roles_differ_where_schemas_meet_and_by_stage() {
        let (a, b) = (key("a-b", "c", "dev"), key("a", "b-c", "dev"));
        assert_eq!(schema(&a), schema(&b));
        assert_ne!(role(&a), role(&b));
        assert_ne!(role(&a), role(&key("a-b", "c", "test")));
        assert_eq!(role(&a).len(), 28);
        assert!(role(&a).starts_with("neo_"));
    }

    #[tokio::test]
    async fn passwords_are_keyed_by_the_admin_url() {
        let one = StageDatabase::new("postgres://postgres@127.0.0.1:5432/stage_dev");
        let two = StageDatabase::new("postgres://postgres@127.0.0.1:5432/stage_test");
        let (Ok(one), Ok(two)) = (one, two) else {
            panic!("valid URLs");
        };
        let r = role(&key("acme", "shop", "dev"));
        assert_eq!(one.password(&r), one.password(&r));
        assert_ne!(one.password(&r), two.password(&r));
        assert_eq!(one.password(&r).len(), 64);
        assert!(matches!(
            StageDatabase::new("host=/tmp dbname=x"),
            Err(DatabaseError::Url(_))
        ));
    }

    #[tokio::test]
    async fn replicas_reach_a_host_and_port_and_nothing_else_is_taken() {
        let admin = "postgres://postgres@127.0.0.1:5432/stage_dev";
        let base = |host: &str| {
            StageDatabase::new(admin)
                .and_then(|db| db.replicas_reach_at(host))
                .map(|db| db.replica_base.to_string())
        };
        assert_eq!(
            base("pg.neo.svc:6432").ok().as_deref(),
            Some("postgres://postgres@pg.neo.svc:6432/stage_dev")
        );
        assert_eq!(
            base("pg.neo.svc").ok().as_deref(),
            Some("postgres://postgres@pg.neo.svc/stage_dev")
        );
        for bad in [
            "",
            "pg/other_db",
            "user@pg",
            "pg:port",
            "pg?sslmode=disable",
        ] {
            assert!(matches!(base(bad), Err(DatabaseError::Url(_))), "{bad}");
        }
    }
}
