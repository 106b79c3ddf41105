//! A standing-by driver's routes: read from the active agent's state file.
//!
//! Two agents of a stage on one machine share a data directory and the load balancer's
//! address (both listen, `SO_REUSEPORT`). The standby supervises nothing; it routes each app
//! to the replicas the active agent's state file lists as serving and whose processes still
//! run, so the stage keeps answering through it, and keeps answering while it takes over; an
//! app with a canary is split by its weight as the active agent splits it ([`routes`]). It
//! looks at the file every [`FOLLOW_EVERY`] (one `stat`) and reads it when it changed, or
//! [`REREAD_EVERY`] at the latest (a replica may die without a word from a dead agent).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use super::Inner;
use super::lb::Route;
use super::replica::{Saved, process_start_ticks};

/// How often a standby looks whether the state file changed.
pub const FOLLOW_EVERY: Duration = Duration::from_millis(250);
/// How often a standby reads the state file even when it did not change.
pub const REREAD_EVERY: Duration = Duration::from_secs(1);

/// What a standby last read: the state file's modification time and length, and when.
#[derive(Debug, Default)]
pub struct Followed {
    stamp: Option<(SystemTime, u64)>,
    at: Option<Instant>,
}

impl Inner {
    /// Routes every app of the state file to its serving replicas that still run, unless the
    /// file is as `followed` last read it less than [`REREAD_EVERY`] ago.
    pub(super) fn follow(&self, followed: &mut Followed) {
        let stamp = std::fs::metadata(self.state_path())
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        if stamp.is_some()
            && stamp == followed.stamp
            && followed.at.is_some_and(|at| at.elapsed() < REREAD_EVERY)
        {
            return;
        }
        let Ok(bytes) = std::fs::read(self.state_path()) else {
            // Nothing written yet: no agent has run here.
            return;
        };
        let saved: Vec<Saved> = match serde_json::from_slice(&bytes) {
            Ok(saved) => saved,
            Err(e) => {
                tracing::debug!(error = %e, "state file unreadable now (being written?)");
                return;
            }
        };
        let apps = routes(&saved, |entry| {
            entry.pid != 0 && process_start_ticks(entry.pid) == Some(entry.start_ticks)
        });
        let keep: BTreeSet<(String, String)> = apps.keys().cloned().collect();
        self.routes.retain(&keep);
        for ((tenant, app), route) in apps {
            self.routes.set_route(&tenant, &app, route);
        }
        self.routes.set_synced();
        *followed = Followed {
            stamp,
            at: Some(Instant::now()),
        };
    }
}

/// Each app's route from the state file's replicas: those that served and still `run`, the
/// canary's release at its weight when the file names a canary.
pub fn routes(saved: &[Saved], runs: impl Fn(&Saved) -> bool) -> BTreeMap<(String, String), Route> {
    let mut apps: BTreeMap<(String, String), Route> = BTreeMap::new();
    for entry in saved {
        let route = apps
            .entry((entry.tenant.clone(), entry.app.clone()))
            .or_default();
        if let (None, Some(canary)) = (&route.canary, &entry.canary) {
            route.canary = Some(canary.route(Vec::new()));
        }
        if !(entry.served && runs(entry)) {
            continue;
        }
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, entry.port));
        match route.canary.as_mut() {
            Some(canary) if canary.release == entry.spec.release => canary.addrs.push(addr),
            _ => route.addrs.push(addr),
        }
    }
    apps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::process::replica::SavedCanary;

    /// A replica of `app` running `release` on `port`, served or not.
    fn replica(app: &str, release: u32, port: u16, served: bool) -> Saved {
        serde_json::from_value(serde_json::json!({
            "tenant": "acme", "app": app, "stage": "dev", "id": format!("{app}-r{release}-{port}"),
            "spec": {"release": release, "image_digest": "sha256:00", "rootfs": "/x", "env": {},
                     "cpu_millis": 250, "memory_mib": 256},
            "pid": 1, "start_ticks": 1, "port": port, "started_ms": 0, "offsets": [0, 0],
            "served": served,
        }))
        .expect("a saved replica")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    #[test]
    fn a_standby_routes_a_canary_at_its_weight_and_skips_what_does_not_serve() {
        let canary = SavedCanary {
            release: 4,
            baseline: 3,
            weight: 20,
            sticky: true,
        };
        let with_canary = |mut saved: Saved| {
            saved.canary = Some(canary.clone());
            saved
        };
        let saved = [
            with_canary(replica("shop", 3, 9001, true)),
            with_canary(replica("shop", 3, 9002, true)),
            with_canary(replica("shop", 4, 9003, true)),
            with_canary(replica("shop", 4, 9004, false)),
            replica("cart", 7, 9005, true),
            replica("cart", 7, 9006, true),
        ];
        // The replica on 9002 has died.
        let routes = routes(&saved, |entry| entry.port != 9002);
        let shop = &routes[&("acme".to_owned(), "shop".to_owned())];
        assert_eq!(shop.addrs, [addr(9001)]);
        assert_eq!(shop.canary, Some(canary.route(vec![addr(9003)])));
        let cart = &routes[&("acme".to_owned(), "cart".to_owned())];
        assert_eq!(
            (cart.addrs.as_slice(), &cart.canary),
            (&[addr(9005), addr(9006)][..], &None)
        );
    }
}
