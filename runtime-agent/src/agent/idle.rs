//! Scale to zero: every [`IDLE_CHECK`], each podgroup whose policy lets it go to zero and that
//! runs replicas is weighed; once no request came for its idle window it is sent
//! `ScaleToZero` with the last request's time (the podgroup decides, and records it).
//!
//! The window runs from the last request the stage's load balancer routed to the app, or from
//! when this agent first saw the podgroup awake (a restarted agent, a podgroup just woken), so
//! an app is never put to sleep sooner than its window after the agent could see requests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use neo_protocol::envelope::now_ms;
use neo_protocol::{EntityRef, pb};

use super::Ctx;
use super::report::command_scope;
use crate::driver::PodgroupKey;

/// How often the podgroups that may sleep are weighed (a walk of the desired state in memory;
/// nothing is sent unless one goes to zero).
pub const IDLE_CHECK: Duration = Duration::from_secs(1);

/// What the loop remembers of one podgroup that may sleep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Awake {
    /// When this agent first saw it with replicas (Unix milliseconds).
    since_ms: u64,
    /// The desired state's sequence a `ScaleToZero` was sent at (sent once per state).
    asked_at: Option<u64>,
}

/// Weighs the podgroups that may sleep every [`IDLE_CHECK`] (see the module doc).
pub(crate) async fn idle_loop(ctx: Arc<Ctx>) {
    let Some(activity) = ctx.driver.activity() else {
        return;
    };
    let mut awake: HashMap<PodgroupKey, Awake> = HashMap::new();
    let mut tick = tokio::time::interval(IDLE_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = now_ms();
        let due = {
            let desired = ctx.desired.lock().await;
            let Some(desired) = desired.as_ref() else {
                continue;
            };
            awake.retain(|key, _| desired.get(key).is_some_and(|d| d.replicas > 0));
            desired
                .iter()
                .filter(|(key, d)| {
                    d.idle_to_zero_s > 0
                        && d.replicas > 0
                        && !d.removed
                        && ctx.config.serves(&key.tenant)
                })
                .filter_map(|(key, d)| {
                    let seen = awake.entry(key.clone()).or_insert(Awake {
                        since_ms: now,
                        asked_at: None,
                    });
                    let last = activity
                        .last_request_ms(&key.tenant, &key.app, now)
                        .max(seen.since_ms);
                    let idle = now.saturating_sub(last) >= u64::from(d.idle_to_zero_s) * 1000;
                    (idle && seen.asked_at != Some(d.sequence)).then(|| {
                        seen.asked_at = Some(d.sequence);
                        (key.clone(), d.sequence, last)
                    })
                })
                .collect::<Vec<_>>()
        };
        for (key, sequence, last) in due {
            let outcome = scale_to_zero(&ctx, &key, sequence, last, now).await;
            let Some(seen) = awake.get_mut(&key) else {
                continue;
            };
            match outcome {
                Asked::Done => {}
                // Asked again at the next check.
                Asked::Unreachable => seen.asked_at = None,
                // The podgroup saw it otherwise (a request or a wake this agent had not seen
                // yet): its window starts again, so it is asked again, never forgotten.
                Asked::Refused => {
                    seen.since_ms = now;
                    seen.asked_at = None;
                }
            }
        }
    }
}

/// How a `ScaleToZero` went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Asked {
    /// Recorded (or the podgroup cannot be named: nothing to ask).
    Done,
    /// The platform could not be reached: asked again at the next check.
    Unreachable,
    /// The podgroup refused it: asked again after another window.
    Refused,
}

/// Sends `ScaleToZero`.
async fn scale_to_zero(
    ctx: &Ctx,
    key: &PodgroupKey,
    sequence: u64,
    last_request_ms: u64,
    now: u64,
) -> Asked {
    let Some((tenant, app, stage)) = key.names() else {
        return Asked::Done;
    };
    let entity = EntityRef::podgroup(&tenant, &app, &stage);
    let command = pb::PodgroupCommand {
        command: Some(pb::podgroup_command::Command::ScaleToZero(
            pb::ScaleToZero {
                last_request_ms,
                at_ms: now,
            },
        )),
    };
    let id = format!("idle:{}:{now}", command_scope(&entity));
    let cause = format!("evt:{sequence}");
    match ctx
        .platform
        .command(&entity, &id, &cause, &ctx.principal(), &command)
        .await
    {
        Ok(_) => {
            tracing::info!(podgroup = %key, idle_ms = now.saturating_sub(last_request_ms),
                "no request for the idle window: scaled to zero");
            Asked::Done
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(podgroup = %key, error = %e, "cannot scale to zero; trying again");
            Asked::Unreachable
        }
        Err(e) => {
            tracing::info!(podgroup = %key, error = %e,
                "not scaled to zero; asking again after another idle window");
            Asked::Refused
        }
    }
}
