//! A standing-by driver's routes: read from the active agent's state file.
//!
//! Two agents of a stage on one machine share a data directory and the load balancer's
//! address (both listen, `SO_REUSEPORT`). The standby supervises nothing; it routes each app
//! to the replicas the active agent's state file lists as serving and whose processes still
//! run, so the stage keeps answering through it, and keeps answering while it takes over. It
//! looks at the file every [`FOLLOW_EVERY`] (one `stat`) and reads it when it changed, or
//! [`REREAD_EVERY`] at the latest (a replica may die without a word from a dead agent).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime};

use super::Inner;
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
        *followed = Followed {
            stamp,
            at: Some(Instant::now()),
        };
    }
}
