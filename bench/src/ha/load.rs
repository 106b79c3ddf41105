//! The steady load of `neo bench ha`: [`SENDERS`] senders of `CreateApp` over NATS
//! request/reply, each sending the next command as soon as the last one is answered. A call
//! is retried with the same command id (as the CLI does) until it is accepted or
//! [`CALL_BUDGET`] has passed; only then does it count as failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use neo_protocol::{AppName, EntityRef, TenantName};
use tokio::sync::watch;

use crate::recovery::create_app as create_app_over_nats;

/// Senders of the steady load.
pub const SENDERS: usize = 4;
/// How long one attempt of a call may wait for its reply.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a call is retried before it counts as failed.
pub const CALL_BUDGET: Duration = Duration::from_secs(10);
/// The pause between two attempts of a call.
const RETRY_AFTER: Duration = Duration::from_millis(50);

/// The calls made: the command ids accepted (with when the reply came) and failed (with when
/// the call began).
#[derive(Default)]
pub(super) struct Calls {
    /// Accepted calls.
    pub accepted: Vec<(String, Instant)>,
    /// Failed calls.
    pub failed: Vec<(String, Instant)>,
}

impl Calls {
    /// Calls accepted, and calls failed, between `from` and `to`.
    pub(super) fn between(&self, from: Instant, to: Instant) -> (usize, usize) {
        let count = |list: &[(String, Instant)]| {
            list.iter()
                .filter(|(_, at)| (from..to).contains(at))
                .count()
        };
        (count(&self.accepted), count(&self.failed))
    }
}

/// The running load.
pub(super) struct Load {
    calls: Arc<Mutex<Calls>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the senders on `client`, creating apps of `tenant`.
    pub(super) fn start(client: async_nats::Client, tenant: &str) -> Self {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let (stop, stopped) = watch::channel(false);
        let tasks = (0..SENDERS)
            .map(|sender| {
                let (client, calls, stopped) = (client.clone(), calls.clone(), stopped.clone());
                let tenant = TenantName::new(tenant);
                tokio::spawn(async move {
                    let Ok(tenant) = tenant else { return };
                    for n in 1u64.. {
                        if *stopped.borrow() {
                            return;
                        }
                        let id = format!("ha-{sender}-{n}");
                        let Ok(app) = AppName::new(&id) else { return };
                        let began = Instant::now();
                        let accepted = call(&client, &EntityRef::app(&tenant, &app), &id).await;
                        if !accepted && *stopped.borrow() {
                            return;
                        }
                        if let Ok(mut calls) = calls.lock() {
                            if accepted {
                                calls.accepted.push((id, Instant::now()));
                            } else {
                                calls.failed.push((id, began));
                            }
                        }
                    }
                })
            })
            .collect();
        Self { calls, stop, tasks }
    }

    /// When the first command after `after` was accepted, waiting up to `within`.
    pub(super) async fn accepted_after(&self, after: Instant, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let first = self.calls.lock().ok().and_then(|c| {
                c.accepted
                    .iter()
                    .map(|(_, at)| *at)
                    .filter(|at| *at > after)
                    .min()
            });
            if first.is_some() {
                return first;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    /// From the last command accepted before `fault` to `resumed`: the longest time without
    /// an accepted command around the fault.
    pub(super) fn gap_around(&self, fault: Instant, resumed: Instant) -> Duration {
        let before = self.calls.lock().ok().and_then(|c| {
            c.accepted
                .iter()
                .map(|(_, at)| *at)
                .filter(|at| *at <= fault)
                .max()
        });
        resumed - before.unwrap_or(fault)
    }

    /// Stops the senders; every call made.
    pub(super) async fn stop(self) -> Calls {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
        self.calls
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default()
    }
}

/// One call: `CreateApp` of `entity` with command id `id`, retried until accepted or
/// [`CALL_BUDGET`] has passed; whether it was accepted.
async fn call(client: &async_nats::Client, entity: &EntityRef, id: &str) -> bool {
    let started = Instant::now();
    loop {
        if create_app_over_nats(client, entity, id, "ha bench", COMMAND_TIMEOUT).await {
            return true;
        }
        if started.elapsed() >= CALL_BUDGET {
            return false;
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
}
