//! Users and their passwords: KV bucket `neo_users` (key: user name; value: JSON with an
//! argon2 password hash, the platform-admin flag, and when the user's sessions last ended:
//! logout or deletion, which [`crate::revocation`] follows). A deleted user stays as a
//! tombstone, so their tokens stay refused; the name may be created again. Roles live in the
//! tenant entity.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// The KV bucket holding users.
pub const USERS_BUCKET: &str = "neo_users";
/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;
/// Longest password accepted.
pub const MAX_PASSWORD: usize = 1024;

/// Identity failures.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// The user name is not valid.
    #[error("user: {0}")]
    BadName(neo_protocol::NameError),
    /// The password is too short or too long.
    #[error("password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")]
    BadPassword,
    /// The user exists already.
    #[error("user `{0}` already exists")]
    Exists(String),
    /// No such user.
    #[error("user `{0}` does not exist")]
    NotFound(String),
    /// The user store cannot be reached.
    #[error("user store unavailable: {0}")]
    Unavailable(String),
    /// A stored record cannot be read.
    #[error("user record of `{0}` is corrupt")]
    Corrupt(String),
}

/// A user's record in the bucket.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct UserRecord {
    password_hash: String,
    platform_admin: bool,
    /// Tokens of this user issued at or before this (Unix ms) are refused.
    #[serde(default)]
    pub(crate) revoked_before_ms: i64,
    /// Deleted: cannot log in; kept so their tokens stay refused.
    #[serde(default)]
    deleted: bool,
}

/// A user known to Neo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name.
    pub name: String,
    /// Administers the whole platform.
    pub platform_admin: bool,
}

/// The user store.
#[derive(Clone)]
pub struct Users {
    kv: kv::Store,
}

fn encode(record: &UserRecord) -> Result<Bytes, IdentityError> {
    serde_json::to_vec(record)
        .map(Bytes::from)
        .map_err(|e| IdentityError::Unavailable(e.to_string()))
}

fn unavailable(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Unavailable(e.to_string())
}

fn check(user: &str, password: &str) -> Result<(), IdentityError> {
    neo_protocol::names::validate_name("user", user).map_err(IdentityError::BadName)?;
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&password.chars().count()) {
        return Err(IdentityError::BadPassword);
    }
    Ok(())
}

impl Users {
    /// Opens (or creates) the user bucket.
    ///
    /// # Errors
    /// [`IdentityError::Unavailable`] when JetStream does not answer.
    pub async fn open(client: &async_nats::Client) -> Result<Self, IdentityError> {
        let js = jetstream::new(client.clone());
        let kv = neo_client::streams::ensure_bucket(
            &js,
            kv::Config {
                bucket: USERS_BUCKET.into(),
                description: "Neo users: argon2 password hashes".into(),
                history: 1,
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            },
        )
        .await
        .map_err(unavailable)?;
        Ok(Self { kv })
    }

    /// Creates a user; fails if the name is taken.
    ///
    /// # Errors
    /// Bad name or password, [`IdentityError::Exists`], or the store is unavailable.
    pub async fn create(
        &self,
        user: &str,
        password: &str,
        platform_admin: bool,
    ) -> Result<User, IdentityError> {
        check(user, password)?;
        let salt = SaltString::encode_b64(&uuid::Uuid::new_v4().into_bytes())
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?;
        let password_hash = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| IdentityError::Unavailable(e.to_string()))?
            .to_string();
        let mut record = UserRecord {
            password_hash,
            platform_admin,
            ..UserRecord::default()
        };
        let created = User {
            name: user.into(),
            platform_admin,
        };
        // A deleted user's name is taken again over its tombstone, keeping the end of its
        // sessions (the old tokens stay refused).
        if let Some((old, revision)) = self.record(user).await? {
            if !old.deleted {
                return Err(IdentityError::Exists(user.into()));
            }
            record.revoked_before_ms = old.revoked_before_ms;
            self.kv
                .update(user, encode(&record)?, revision)
                .await
                .map_err(|_| IdentityError::Exists(user.into()))?;
            return Ok(created);
        }
        match self.kv.create(user, encode(&record)?).await {
            Ok(_) => Ok(created),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                Err(IdentityError::Exists(user.into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The record of `user` and its revision, if there is one (deleted or not).
    async fn record(&self, user: &str) -> Result<Option<(UserRecord, u64)>, IdentityError> {
        let Some(entry) = self.kv.entry(user).await.map_err(unavailable)? else {
            return Ok(None);
        };
        if entry.operation != kv::Operation::Put {
            return Ok(None);
        }
        let record = serde_json::from_slice(&entry.value)
            .map_err(|_| IdentityError::Corrupt(user.into()))?;
        Ok(Some((record, entry.revision)))
    }

    /// Ends every session of `user` now: their tokens are refused from the next call on;
    /// with `delete`, the user is deleted too (a tombstone: no login, the name free again).
    ///
    /// # Errors
    /// [`IdentityError::NotFound`] for no such (or a deleted) user; the store is unavailable.
    pub async fn end_sessions(&self, user: &str, delete: bool) -> Result<(), IdentityError> {
        // Compare-and-set: a concurrent change of the record is retried.
        for _ in 0..5 {
            let Some((mut record, revision)) = self.record(user).await? else {
                return Err(IdentityError::NotFound(user.into()));
            };
            if record.deleted {
                return Err(IdentityError::NotFound(user.into()));
            }
            record.revoked_before_ms =
                crate::revocation::now_ms().max(record.revoked_before_ms + 1);
            if delete {
                record.deleted = true;
                record.password_hash.clear();
            }
            match self.kv.update(user, encode(&record)?, revision).await {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(unavailable(e)),
            }
        }
        Err(IdentityError::Unavailable(format!(
            "the record of `{user}` keeps changing"
        )))
    }

    /// The bucket, for following the ends of sessions ([`crate::revocation`]).
    pub(crate) fn store(&self) -> &kv::Store {
        &self.kv
    }

    /// The user if `password` is theirs; `None` for an unknown user or a wrong password alike.
    ///
    /// # Errors
    /// The store is unavailable or the record is corrupt.
    pub async fn authenticate(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Option<User>, IdentityError> {
        if neo_protocol::names::validate_name("user", user).is_err() {
            return Ok(None);
        }
        let Some((record, _)) = self.record(user).await? else {
            return Ok(None);
        };
        if record.deleted {
            return Ok(None);
        }
        let hash = PasswordHash::new(&record.password_hash)
            .map_err(|_| IdentityError::Corrupt(user.into()))?;
        if Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_err()
        {
            return Ok(None);
        }
        Ok(Some(User {
            name: user.into(),
            platform_admin: record.platform_admin,
        }))
    }

    /// Whether a user of this name exists.
    ///
    /// # Errors
    /// The store is unavailable.
    pub async fn exists(&self, user: &str) -> Result<bool, IdentityError> {
        Ok(self.record(user).await?.is_some_and(|(r, _)| !r.deleted))
    }
}

/// Creates platform admin `user` unless a user of that name exists; true when created.
///
/// # Errors
/// Bad name or password, or the store is unavailable.
pub async fn bootstrap_admin(
    client: &async_nats::Client,
    user: &str,
    password: &str,
) -> Result<bool, IdentityError> {
    let users = Users::open(client).await?;
    match users.create(user, password, true).await {
        Ok(_) => Ok(true),
        Err(IdentityError::Exists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}
