//! Access that ends when it should. Tokens stay stateless signed JWTs; what ends them early is
//! kept here: *when* a user logged out or was deleted, when a member's place in a tenant was
//! removed or changed, and when a tenant was suspended or deleted. A token issued at or before
//! such a time for its user, membership or tenant is refused on its next call
//! ([`Revocations::check`], three hash lookups per call).
//!
//! Each gateway learns those times by push, nothing polls: a watch on the users bucket
//! (`revoked_before_ms` of each record) and an ordered consumer of the tenants' `MemberSet`,
//! `MemberRemoved`, `TenantSuspended` and `TenantDeleted` events, read from one token lifetime
//! back at start-up, so a restarted gateway refuses what it refused before. Both re-attach
//! after a NATS outage. A revocation older than the token lifetime can concern no live token
//! and is forgotten.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig, kv};
use futures::StreamExt;
use neo_protocol::envelope::EventMeta;
use neo_protocol::pb::{self, tenant_event::Event};
use neo_protocol::{EntityKind, subjects};
use prost::Message;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use crate::auth::Claims;
use crate::identity::UserRecord;

/// The tenant events that end tokens.
const ENDING_EVENTS: [&str; 4] = [
    "MemberSet",
    "MemberRemoved",
    "TenantSuspended",
    "TenantDeleted",
];

/// How long the start of a gateway waits for the revocations of the last token lifetime.
const CATCH_UP: Duration = Duration::from_secs(10);

#[derive(Debug, Default)]
struct Times {
    /// User → tokens issued at or before this (Unix ms) are refused.
    users: HashMap<String, i64>,
    /// Tenant → user → the same, for tokens scoped to that tenant (nested, so a call looks up
    /// by its claims' strings without building a key).
    members: HashMap<String, HashMap<String, i64>>,
    /// Tenant → the same, for every token scoped to it.
    tenants: HashMap<String, i64>,
}

/// When access ended, per user, membership and tenant.
#[derive(Debug, Default)]
pub struct Revocations {
    times: RwLock<Times>,
    /// Revocations older than this are forgotten (the token lifetime, in ms).
    horizon_ms: i64,
}

impl Revocations {
    /// Revocations kept for `token_ttl` (no token lives longer).
    pub fn new(token_ttl: Duration) -> Self {
        Self {
            times: RwLock::default(),
            horizon_ms: i64::try_from(token_ttl.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Refuses a token issued at or before the end of its user's, membership's or tenant's
    /// access.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` saying what ended it, so the caller logs in again.
    pub fn check(&self, claims: &Claims) -> Result<(), Status> {
        let issued = claims.issued_ms();
        let Ok(times) = self.times.read() else {
            return Ok(());
        };
        let ended = |at: Option<&i64>| at.is_some_and(|&at| issued <= at);
        if ended(times.users.get(&claims.sub)) {
            return Err(Status::unauthenticated(format!(
                "the session of `{}` has ended (logged out, or the user was deleted): log in again",
                claims.sub
            )));
        }
        if claims.tenant.is_empty() {
            return Ok(());
        }
        if ended(times.tenants.get(&claims.tenant)) {
            return Err(Status::unauthenticated(format!(
                "tenant `{}` was suspended or deleted after this token was issued",
                claims.tenant
            )));
        }
        if ended(
            times
                .members
                .get(&claims.tenant)
                .and_then(|users| users.get(&claims.sub)),
        ) {
            return Err(Status::unauthenticated(format!(
                "the membership of `{}` in tenant `{}` changed after this token was issued: \
                 log in again",
                claims.sub, claims.tenant
            )));
        }
        Ok(())
    }

    /// Ends the tokens of `user` issued at or before `at_ms`.
    pub fn end_user(&self, user: &str, at_ms: i64) {
        self.record(at_ms, |t| &mut t.users, user.to_owned());
    }

    /// Ends the tokens of `user` in `tenant` issued at or before `at_ms`.
    pub fn end_member(&self, tenant: &str, user: &str, at_ms: i64) {
        self.record(
            at_ms,
            |t| t.members.entry(tenant.to_owned()).or_default(),
            user.to_owned(),
        );
    }

    /// Ends every token of `tenant` issued at or before `at_ms`.
    pub fn end_tenant(&self, tenant: &str, at_ms: i64) {
        self.record(at_ms, |t| &mut t.tenants, tenant.to_owned());
    }

    fn record<K: std::hash::Hash + Eq>(
        &self,
        at_ms: i64,
        map: impl FnOnce(&mut Times) -> &mut HashMap<K, i64>,
        key: K,
    ) {
        if at_ms <= 0 {
            return;
        }
        let Ok(mut times) = self.times.write() else {
            return;
        };
        let map = map(&mut times);
        let at = map.entry(key).or_insert(at_ms);
        *at = (*at).max(at_ms);
        if map.len() > 10_000 {
            let forget_before = now_ms().saturating_sub(self.horizon_ms);
            map.retain(|_, at| *at >= forget_before);
        }
    }

    /// Follows the users bucket and the tenants' events into `self` until the returned tasks
    /// are aborted; returns once what happened in the last token lifetime is known (or after
    /// 10 s, logging why).
    pub async fn follow(
        self: &Arc<Self>,
        js: jetstream::Context,
        users: kv::Store,
    ) -> Vec<JoinHandle<()>> {
        let (users_ready, mut users_seen) = watch::channel(false);
        let (events_ready, mut events_seen) = watch::channel(false);
        let tasks = vec![
            tokio::spawn(follow_users(self.clone(), users, users_ready)),
            tokio::spawn(follow_events(self.clone(), js, events_ready)),
        ];
        let caught_up = async {
            let _ = users_seen.wait_for(|ready| *ready).await;
            let _ = events_seen.wait_for(|ready| *ready).await;
        };
        if tokio::time::timeout(CATCH_UP, caught_up).await.is_err() {
            tracing::warn!("revocations not caught up in 10 s; following on in the background");
        }
        tasks
    }

    fn apply_user(&self, user: &str, value: &[u8]) {
        match serde_json::from_slice::<UserRecord>(value) {
            Ok(record) => self.end_user(user, record.revoked_before_ms),
            Err(e) => tracing::warn!(user, error = %e, "unreadable user record"),
        }
    }

    fn apply_event(&self, message: &jetstream::Message) {
        let Ok((entity, event_type)) = subjects::parse_event(&message.subject) else {
            return;
        };
        if entity.kind != EntityKind::Tenant {
            return;
        }
        let meta =
            EventMeta::from_headers(|n| message.headers.as_ref()?.get(n).map(|v| v.as_str()))
                .unwrap_or_default();
        let at = i64::try_from(meta.time_ms).unwrap_or(i64::MAX);
        let tenant = entity.tenant.as_str();
        match pb::TenantEvent::decode(message.payload.clone()).map(|e| e.event) {
            Ok(Some(Event::MemberSet(set))) => self.end_member(tenant, &set.user, at),
            Ok(Some(Event::MemberRemoved(removed))) => self.end_member(tenant, &removed.user, at),
            Ok(Some(Event::Suspended(_) | Event::Deleted(_))) => self.end_tenant(tenant, at),
            Ok(_) => {}
            Err(e) => tracing::warn!(%entity, event_type, error = %e, "unreadable tenant event"),
        }
    }
}

/// Unix milliseconds now, signed as tokens carry their times.
pub fn now_ms() -> i64 {
    i64::try_from(neo_protocol::envelope::now_ms()).unwrap_or(i64::MAX)
}

async fn follow_users(revocations: Arc<Revocations>, users: kv::Store, ready: watch::Sender<bool>) {
    loop {
        match watch_users(&revocations, &users, &ready).await {
            Ok(()) => tracing::debug!("users watch ended; watching again"),
            Err(e) => tracing::warn!(error = %e, "users watch failed; watching again in 1 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn watch_users(
    revocations: &Revocations,
    users: &kv::Store,
    ready: &watch::Sender<bool>,
) -> Result<(), async_nats::Error> {
    // Watch first, then read what is there: nothing slips between the two.
    let mut updates = users.watch_all().await?;
    let mut keys = users.keys().await?;
    while let Some(key) = keys.next().await {
        let key = key?;
        if let Some(value) = users.get(&key).await? {
            revocations.apply_user(&key, &value);
        }
    }
    ready.send_replace(true);
    while let Some(entry) = updates.next().await {
        let entry = entry?;
        if entry.operation == kv::Operation::Put {
            revocations.apply_user(&entry.key, &entry.value);
        }
    }
    Ok(())
}

async fn follow_events(
    revocations: Arc<Revocations>,
    js: jetstream::Context,
    ready: watch::Sender<bool>,
) {
    loop {
        match consume_events(&revocations, &js, &ready).await {
            Ok(()) => tracing::debug!("tenant events ended; following again"),
            Err(e) => tracing::warn!(error = %e, "tenant events failed; following again in 1 s"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume_events(
    revocations: &Revocations,
    js: &jetstream::Context,
    ready: &watch::Sender<bool>,
) -> Result<(), async_nats::Error> {
    let since = now_ms().saturating_sub(revocations.horizon_ms);
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(since) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stream = js.get_stream_no_info(subjects::EVENTS_STREAM).await?;
    let mut consumer = stream
        .create_consumer(OrderedConfig {
            filter_subjects: ENDING_EVENTS
                .iter()
                .map(|t| subjects::kind_event_type(EntityKind::Tenant, t))
                .collect(),
            deliver_policy: DeliverPolicy::ByStartTime { start_time },
            ..Default::default()
        })
        .await?;
    let mut pending = consumer.info().await?.num_pending;
    if pending == 0 {
        ready.send_replace(true);
    }
    let mut messages = consumer.messages().await?;
    while let Some(message) = messages.next().await {
        let message = message?;
        revocations.apply_event(&message);
        pending = pending.saturating_sub(1);
        if pending == 0 || message.info().is_ok_and(|i| i.pending == 0) {
            ready.send_replace(true);
        }
    }
    Ok(())
}
