//! Wakes apps at zero replicas: the stage's load balancer holds a request for one and asks
//! ([`crate::activity::Activity::wake`]); this task sends the podgroup `Wake` with the request
//! as its cause. The platform's answer (woken, or already awake) ends the wake; an unreachable
//! platform is tried again with backoff for as long as the request may wait.

use std::sync::Arc;
use std::time::Duration;

use neo_protocol::{AppName, EntityRef, TenantName, pb};
use tokio::task::JoinSet;

use super::Ctx;
use super::report::command_scope;
use crate::activity::{Activity, WakeCall};
use crate::driver::process::lb::WAKE_WAIT;

/// The first wait before a wake is sent again; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Takes the wakes the load balancer asks for, each in a task of its own (they end with this
/// loop when the agent stops acting).
pub(crate) async fn wake_loop(ctx: Arc<Ctx>) {
    let Some(activity) = ctx.driver.activity() else {
        return;
    };
    let mut calls = activity.calls.lock().await;
    let mut waking = JoinSet::new();
    loop {
        tokio::select! {
            call = calls.recv() => {
                let Some(call) = call else { return };
                waking.spawn(wake(ctx.clone(), activity.clone(), call));
            }
            Some(_) = waking.join_next(), if !waking.is_empty() => {}
        }
    }
}

async fn wake(ctx: Arc<Ctx>, activity: Arc<Activity>, call: WakeCall) {
    let (Ok(tenant), Ok(app)) = (TenantName::new(&call.tenant), AppName::new(&call.app)) else {
        activity.answered(&call.tenant, &call.app);
        return;
    };
    let entity = EntityRef::podgroup(&tenant, &app, &ctx.config.stage);
    let command = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::Wake(pb::Wake {
            cause: call.cause.clone(),
            at_ms: call.at_ms,
        })),
    };
    // One id for every try: a wake that took effect and is sent again is not a second one.
    let id = format!("wake:{}:{}", command_scope(&entity), call.at_ms);
    let give_up = tokio::time::Instant::now() + WAKE_WAIT;
    let mut waits = neo_client::retry::doubling(FIRST_BACKOFF, MAX_BACKOFF);
    loop {
        let backoff = waits.next().unwrap_or(MAX_BACKOFF);
        match ctx
            .platform
            .command(&entity, &id, &id, &ctx.principal(), &command)
            .await
        {
            Ok(_) => {
                tracing::info!(%entity, cause = %call.cause, "woken from zero replicas");
                break;
            }
            Err(e) if e.is_transient() && tokio::time::Instant::now() + backoff < give_up => {
                tracing::warn!(%entity, error = %e, "cannot wake yet; trying again");
                tokio::time::sleep(backoff).await;
            }
            Err(e) => {
                // Awake already (another request's wake, a manual scale), or given up.
                tracing::debug!(%entity, error = %e, "wake not recorded");
                break;
            }
        }
    }
    activity.answered(&call.tenant, &call.app);
}
