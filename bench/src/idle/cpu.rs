//! The CPU of each kind of process of `neo bench idle`, from `/proc/{pid}/stat`.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::procstat::{USER_HZ, processes};

/// CPU per kind of process, in % of one core.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct KindCpu {
    /// This process: platform, gateway, build worker, agent, driver, load balancer.
    pub bench: f64,
    /// nats-server.
    pub nats: f64,
    /// The replicas (apphost processes).
    pub replicas: f64,
    /// Postgres: the postmasters and their children.
    pub postgres: f64,
    /// docker-registry.
    pub registry: f64,
}

impl KindCpu {
    /// The sum over every kind.
    pub(super) fn total(&self) -> f64 {
        self.bench + self.nats + self.replicas + self.postgres + self.registry
    }
}

/// Cumulative CPU clock ticks (user + system) per kind of process.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ticks {
    bench: u64,
    nats: u64,
    replicas: u64,
    postgres: u64,
    registry: u64,
}

impl Ticks {
    /// `self - before` as % of one core over `window`.
    pub(super) fn percent_since(&self, before: &Ticks, window: Duration) -> KindCpu {
        let pct = |now: u64, then: u64| {
            #[allow(clippy::cast_precision_loss)]
            let ticks = now.saturating_sub(then) as f64;
            round2(ticks / USER_HZ as f64 / window.as_secs_f64().max(f64::EPSILON) * 100.0)
        };
        KindCpu {
            bench: pct(self.bench, before.bench),
            nats: pct(self.nats, before.nats),
            replicas: pct(self.replicas, before.replicas),
            postgres: pct(self.postgres, before.postgres),
            registry: pct(self.registry, before.registry),
        }
    }
}

/// Whether `pid`'s command line has `-p {port}` (the postmaster of our cluster).
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let port = port.to_string();
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == b"-p" && w[1] == port.as_bytes())
}

/// The CPU ticks of each kind now: this process, its nats-server and registry children, the
/// replicas `replicas`, and the postmasters listening on `postgres_ports` with their children.
pub(super) fn ticks(replicas: &HashSet<u32>, postgres_ports: &[u16]) -> Ticks {
    let me = std::process::id();
    let all = processes();
    let postmasters: HashSet<u32> = all
        .iter()
        .filter(|p| {
            p.comm == "postgres" && postgres_ports.iter().any(|port| listens_on(p.pid, *port))
        })
        .map(|p| p.pid)
        .collect();
    let mut t = Ticks::default();
    for p in &all {
        if p.pid == me {
            t.bench += p.own;
        } else if replicas.contains(&p.pid) {
            t.replicas += p.own;
        } else if postmasters.contains(&p.pid) {
            t.postgres += p.own + p.waited;
        } else if postmasters.contains(&p.ppid) {
            t.postgres += p.own;
        } else if p.ppid == me && p.comm == "nats-server" {
            t.nats += p.own;
        } else if p.ppid == me && p.comm.contains("registry") {
            t.registry += p.own;
        }
    }
    t
}

/// `x` rounded to two decimals.
pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_become_percent_of_one_core() {
        let before = Ticks::default();
        let after = Ticks {
            bench: 150,
            nats: 30,
            ..Ticks::default()
        };
        let cpu = after.percent_since(&before, Duration::from_secs(30));
        assert!((cpu.bench - 5.0).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.nats - 1.0).abs() < 1e-9, "{cpu:?}");
        assert!((cpu.total() - 6.0).abs() < 1e-9, "{cpu:?}");
    }
}
