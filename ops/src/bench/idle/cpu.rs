//! The CPU of each kind of process of `neo bench idle`, from `/proc/{pid}/stat`.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

/// Clock ticks per second of `/proc/{pid}/stat` (`USER_HZ`: 100 on every Linux Neo runs on).
const USER_HZ: f64 = 100.0;

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
            round2(ticks / USER_HZ / window.as_secs_f64().max(f64::EPSILON) * 100.0)
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

/// One line of `/proc/{pid}/stat`, the fields used.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcStat {
    pid: u32,
    ppid: u32,
    comm: String,
    /// `utime + stime`.
    own: u64,
    /// `cutime + cstime`: children waited for.
    waited: u64,
}

/// Parses `/proc/{pid}/stat` text (`comm` may hold spaces and parentheses).
fn parse_stat(text: &str) -> Option<ProcStat> {
    let (head, rest) = text.rsplit_once(')')?;
    let (pid, comm) = head.split_once(" (")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // After ")": state, ppid (4th field of the line), …, utime (14th) … cstime (17th).
    Some(ProcStat {
        pid: pid.trim().parse().ok()?,
        ppid: u32::try_from(field(1)?).ok()?,
        comm: comm.to_owned(),
        own: field(11)? + field(12)?,
        waited: field(13)? + field(14)?,
    })
}

/// Every process's stat (those gone while reading are skipped).
fn processes() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter_map(|text| parse_stat(&text))
        .collect()
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
    fn stat_lines_parse_with_spaces_and_parentheses_in_the_name() {
        let line = "4242 (tokio (rt) w) S 17 4242 17 0 -1 4194560 500 0 0 0 \
                    120 35 7 3 20 0 9 0 12345 1000000 300 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                pid: 4242,
                ppid: 17,
                comm: "tokio (rt) w".into(),
                own: 155,
                waited: 10,
            }
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let me = processes()
            .into_iter()
            .find(|p| p.pid == std::process::id())
            .unwrap();
        assert!(me.ppid > 0);
    }

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
