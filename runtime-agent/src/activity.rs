//! What the stage's load balancer tells its agent about requests, for scale to zero: when each
//! app was last asked for (its idle window runs from then), and which apps at zero replicas a
//! request is waiting for (a wake, asked once however many requests wait).
//!
//! The driver that routes the stage's traffic keeps one [`Activity`] and gives it to the agent
//! ([`crate::driver::Driver::activity`]); the agent's [`crate::agent::idle`] task reads it
//! and its [`crate::agent::wake`] task takes the wakes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::{Mutex, mpsc};

/// How long a request for an app at zero replicas waits for one to be ready.
pub const WAKE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// The most requests held for one app while it wakes; the next get 503 at once.
pub const MAX_HELD: usize = 1024;

/// A request is waiting for an app at zero replicas: the agent asks the platform to wake it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeCall {
    /// The tenant.
    pub tenant: String,
    /// The app.
    pub app: String,
    /// What woke it (`request GET /path`).
    pub cause: String,
    /// When the request came (Unix milliseconds).
    pub at_ms: u64,
}

/// The requests of one app on the stage.
#[derive(Debug, Default)]
pub struct AppActivity {
    /// The last request routed to it (Unix milliseconds; 0: none yet).
    last_request_ms: AtomicU64,
    /// Its policy's idle window (0: it never goes to zero).
    idle_to_zero_s: AtomicU32,
    /// Requests held now, waiting for a replica.
    held: AtomicUsize,
    /// Requests being answered now (a long one keeps the app awake while it runs).
    in_flight: AtomicUsize,
    /// A wake was asked and is not answered yet.
    waking: AtomicBool,
}

impl AppActivity {
    /// Notes a request at `now_ms`.
    pub fn request(&self, now_ms: u64) {
        self.last_request_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    /// The last request's time (0: none since the agent started); `now_ms` while one is
    /// being answered.
    pub fn last_request_ms(&self, now_ms: u64) -> u64 {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return now_ms;
        }
        self.last_request_ms.load(Ordering::Relaxed)
    }

    /// Notes a request at `now_ms` that is answered until the returned guard is dropped.
    pub fn begin(self: &Arc<Self>, now_ms: u64) -> InFlight {
        self.request(now_ms);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Whether its policy lets it go to zero (so a request finding no replica is held).
    pub fn may_sleep(&self) -> bool {
        self.idle_to_zero_s.load(Ordering::Relaxed) > 0
    }

    /// Holds one more request unless `most` are held already; the hold ends when the
    /// returned guard is dropped.
    pub fn hold(self: &Arc<Self>, most: usize) -> Option<Held> {
        let held = self.held.fetch_add(1, Ordering::AcqRel);
        let guard = Held(self.clone());
        (held < most).then_some(guard)
    }
}

/// One request being answered ([`AppActivity::begin`]).
#[derive(Debug)]
pub struct InFlight(Arc<AppActivity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request held for an app ([`AppActivity::hold`]).
#[derive(Debug)]
pub struct Held(Arc<AppActivity>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The stage's requests by app, and the wakes asked.
#[derive(Debug)]
pub struct Activity {
    apps: RwLock<HashMap<(String, String), Arc<AppActivity>>>,
    wakes: mpsc::UnboundedSender<WakeCall>,
    /// The wakes asked, for the agent's wake task (one at a time holds it).
    pub(crate) calls: Mutex<mpsc::UnboundedReceiver<WakeCall>>,
}

impl Default for Activity {
    fn default() -> Self {
        let (wakes, calls) = mpsc::unbounded_channel();
        Self {
            apps: RwLock::default(),
            wakes,
            calls: Mutex::new(calls),
        }
    }
}

impl Activity {
    /// The activity of `tenant`'s `app` (created on first use: call it for routed apps only).
    pub fn app(&self, tenant: &str, app: &str) -> Arc<AppActivity> {
        let key = (tenant.to_owned(), app.to_owned());
        if let Some(found) = self.apps.read().ok().and_then(|a| a.get(&key).cloned()) {
            return found;
        }
        match self.apps.write() {
            Ok(mut apps) => apps.entry(key).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// Sets an app's idle window from its desired state (0: it never goes to zero).
    pub fn set_idle_to_zero(&self, tenant: &str, app: &str, idle_to_zero_s: u32) {
        self.app(tenant, app)
            .idle_to_zero_s
            .store(idle_to_zero_s, Ordering::Relaxed);
    }

    /// The last request to an app (0: none since the agent started; `now_ms` while one is
    /// being answered).
    pub fn last_request_ms(&self, tenant: &str, app: &str, now_ms: u64) -> u64 {
        let key = (tenant.to_owned(), app.to_owned());
        self.apps
            .read()
            .ok()
            .and_then(|a| a.get(&key).map(|a| a.last_request_ms(now_ms)))
            .unwrap_or(0)
    }

    /// Asks the agent to wake an app, unless a wake of it is asked already and unanswered.
    pub fn wake(&self, app: &AppActivity, call: WakeCall) {
        if !app.waking.swap(true, Ordering::AcqRel) && self.wakes.send(call).is_err() {
            app.waking.store(false, Ordering::Release);
        }
    }

    /// The next wake asked, if one is asked within `within` (the agent's wake task takes
    /// them otherwise: for tools and tests that stand in for it).
    pub async fn next_wake(&self, within: std::time::Duration) -> Option<WakeCall> {
        let mut calls = self.calls.lock().await;
        tokio::time::timeout(within, calls.recv())
            .await
            .ok()
            .flatten()
    }

    /// Holds a request for `app` while it wakes (the stage's load balancer and the kube
    /// driver's activator both): at most [`MAX_HELD`] at once, asking its wake once however
    /// many wait ([`Activity::wake`]), until `ready` gives its first ready replica (`ready`
    /// ends with `None` after [`WAKE_WAIT`]). `Err` is the text of the 503 the request gets
    /// when too many wait or the app did not wake in time.
    pub async fn hold_until_awake<T>(
        &self,
        app: &Arc<AppActivity>,
        call: WakeCall,
        ready: impl std::future::Future<Output = Option<T>>,
    ) -> Result<T, String> {
        let name = call.app.clone();
        let Some(_held) = app.hold(MAX_HELD) else {
            return Err(format!(
                "{name} is waking up and {MAX_HELD} requests wait for it already"
            ));
        };
        self.wake(app, call);
        ready.await.ok_or_else(|| {
            format!(
                "{name} did not wake within {} s: try again in a moment",
                WAKE_WAIT.as_secs()
            )
        })
    }

    /// The wake of an app was answered (or given up): the next request may ask again.
    pub fn answered(&self, tenant: &str, app: &str) {
        self.app(tenant, app).waking.store(false, Ordering::Release);
    }

    /// Forgets one app (no longer routed).
    pub fn forget(&self, tenant: &str, app: &str) {
        if let Ok(mut apps) = self.apps.write() {
            apps.remove(&(tenant.to_owned(), app.to_owned()));
        }
    }

    /// Forgets apps no longer routed.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        if let Ok(mut apps) = self.apps.write() {
            apps.retain(|(tenant, app), _| keep(tenant, app));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(app: &str) -> WakeCall {
        WakeCall {
            tenant: "acme".into(),
            app: app.into(),
            cause: "request GET /".into(),
            at_ms: 1,
        }
    }

    #[tokio::test]
    async fn many_waiting_requests_ask_one_wake_until_it_is_answered() {
        let activity = Activity::default();
        let shop = activity.app("acme", "shop");
        for _ in 0..10 {
            activity.wake(&shop, call("shop"));
        }
        let mut calls = activity.calls.lock().await;
        assert_eq!(calls.try_recv().ok(), Some(call("shop")));
        assert!(calls.try_recv().is_err(), "one wake for ten requests");
        activity.answered("acme", "shop");
        activity.wake(&shop, call("shop"));
        assert_eq!(calls.try_recv().ok(), Some(call("shop")), "asked again");
    }

    #[test]
    fn requests_are_held_up_to_the_most_and_released_when_answered() {
        let activity = Activity::default();
        let shop = activity.app("acme", "shop");
        let first = shop.hold(2).expect("held");
        let second = shop.hold(2).expect("held");
        assert!(shop.hold(2).is_none(), "a third is refused");
        drop(first);
        let third = shop.hold(2).expect("room again");
        drop((second, third));
        assert_eq!(shop.held.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn the_last_request_and_the_idle_window_are_per_app() {
        let activity = Activity::default();
        assert_eq!(activity.last_request_ms("acme", "shop", 100), 0);
        activity.app("acme", "shop").request(5);
        activity.app("acme", "shop").request(3);
        assert_eq!(activity.last_request_ms("acme", "shop", 100), 5);
        let answering = activity.app("acme", "shop").begin(7);
        assert_eq!(
            activity.last_request_ms("acme", "shop", 100),
            100,
            "a request being answered keeps it awake"
        );
        drop(answering);
        assert_eq!(activity.last_request_ms("acme", "shop", 100), 7);
        assert!(!activity.app("acme", "shop").may_sleep());
        activity.set_idle_to_zero("acme", "shop", 60);
        assert!(activity.app("acme", "shop").may_sleep());
        assert!(!activity.app("acme", "cart").may_sleep());
        activity.retain(|_, app| app == "cart");
        assert_eq!(activity.last_request_ms("acme", "shop", 100), 0);
    }
}
