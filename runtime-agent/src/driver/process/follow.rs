//! A standing-by driver's routes: read from the active agent's state file.
//!
//! Two agents of a stage on one machine share a data directory and the load balancer's
//! address (both listen, `SO_REUSEPORT`). The standby supervises nothing; every
//! [`FOLLOW_EVERY`] it routes each app to the replicas the active agent's state file lists as
//! serving and whose processes still run, so the stage keeps answering through it, and keeps
//! answering while it takes over.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::Inner;
use super::replica::{Saved, process_start_ticks};

/// How often a standby reads the state file.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

impl Inner {
    /// Routes every app of the state file to its serving replicas that still run.
    pub(super) fn follow(&self) {
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
        let mut apps: BTreeMap<(String, String), Vec<SocketAddr>> = BTreeMap::new();
        for entry in &saved {
            let addrs = apps
                .entry((entry.tenant.clone(), entry.app.clone()))
                .or_default();
            let runs = entry.pid != 0 && process_start_ticks(entry.pid) == Some(entry.start_ticks);
            if entry.served && runs {
                addrs.push(SocketAddr::from((Ipv4Addr::LOCALHOST, entry.port)));
            }
        }
        let keep: BTreeSet<(String, String)> = apps.keys().cloned().collect();
        self.routes.retain(&keep);
        for ((tenant, app), addrs) in apps {
            self.routes.set(&tenant, &app, addrs);
        }
        self.routes.set_synced();
    }
}
