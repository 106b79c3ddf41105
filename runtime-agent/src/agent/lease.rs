//! The agent's lease: only the stage's active agent acts; the others stand by.
//!
//! [`run`] takes the lease when nobody holds it (a standby retries every
//! [`lease::RENEW_EVERY`]), activates the driver (the process driver adopts what runs), starts
//! the agent's work and renews the lease. When a renewal finds the lease taken, or none has
//! succeeded for [`lease::TTL`] (NATS unreachable: a successor may hold it by now), the agent
//! stops its work, the driver stands by, and the agent tries to take the lease again. Every
//! command carries the term it acts under ([`lease::Fence`]), so one sent by an agent that lost
//! its lease is refused by the intake.

use std::future::Future;
use std::sync::Arc;

use async_nats::jetstream::kv;
use neo_client::lease::{self, Held, LeaseError};
use neo_protocol::subjects;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Ctx;

/// The state of an agent's lease, for those who wait on it.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// The lease held now (`None`: standing by).
    pub held: Option<Held>,
}

/// Holds the lease for `ctx`'s agent and runs `work` (the agent's tasks) while it does; runs
/// until aborted.
pub(crate) async fn run<W, F>(ctx: Arc<Ctx>, kv: kv::Store, status: watch::Sender<Status>, work: W)
where
    W: Fn(Arc<Ctx>) -> F,
    F: Future<Output = Vec<JoinHandle<()>>>,
{
    let key = subjects::agent_lease_key(&ctx.config.stage, &ctx.config.lease_group);
    loop {
        let held = acquire(&ctx, &kv, &key).await;
        tracing::info!(lease = %key, term = held.term, agent = %ctx.config.name,
            "lease taken: this agent is active");
        ctx.fence.set(held.term);
        ctx.driver.activate().await;
        let tasks = work(ctx.clone()).await;
        status.send_replace(Status {
            held: Some(held.clone()),
        });
        keep(&kv, held, &status).await;
        tracing::warn!(lease = %key, agent = %ctx.config.name,
            "lease lost: this agent stops acting and stands by");
        ctx.fence.set(0);
        for task in &tasks {
            task.abort();
        }
        status.send_replace(Status::default());
        *ctx.desired.lock().await = None;
        ctx.driver.stand_by().await;
    }
}

/// Takes the lease, retrying until it is free.
async fn acquire(ctx: &Ctx, kv: &kv::Store, key: &str) -> Held {
    let mut standing_by = false;
    loop {
        match lease::try_acquire(kv, key, &ctx.config.lease_group, &ctx.config.name).await {
            Ok(Some(held)) => return held,
            Ok(None) => {
                if !standing_by {
                    standing_by = true;
                    let holder = lease::current(kv, key).await.ok().flatten();
                    tracing::info!(lease = %key, agent = %ctx.config.name,
                        holder = holder.map(|h| h.holder).unwrap_or_default(),
                        "another agent is active: standing by");
                }
            }
            Err(e) => tracing::warn!(lease = %key, error = %e, "cannot take the lease; retrying"),
        }
        tokio::time::sleep(lease::RENEW_EVERY).await;
    }
}

/// Renews `held` until it is lost: taken by another, or not renewed for [`lease::TTL`].
async fn keep(kv: &kv::Store, mut held: Held, status: &watch::Sender<Status>) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(lease::RENEW_EVERY).await;
        match tokio::time::timeout(lease::RENEW_EVERY, lease::renew(kv, held.clone())).await {
            Ok(Ok(next)) => {
                held = next;
                renewed = tokio::time::Instant::now();
                status.send_replace(Status {
                    held: Some(held.clone()),
                });
            }
            Ok(Err(LeaseError::Lost)) => return,
            Ok(Err(e)) => tracing::warn!(lease = %held.key, error = %e, "lease not renewed"),
            Err(_) => tracing::warn!(lease = %held.key, "lease not renewed in time"),
        }
        if renewed.elapsed() >= lease::TTL {
            return;
        }
    }
}

/// Gives the lease up (a graceful stop), so a standby need not wait out the TTL.
pub(crate) async fn release(kv: &kv::Store, status: &watch::Receiver<Status>) {
    let held = status.borrow().held.clone();
    if let Some(held) = held {
        lease::release(kv, &held).await;
        tracing::info!(lease = %held.key, term = held.term, "lease released");
    }
}

/// Waits until the agent holds its lease.
pub(crate) async fn active(status: &mut watch::Receiver<Status>) {
    let _ = status.wait_for(|s| s.held.is_some()).await;
}
