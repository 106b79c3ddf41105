//! Processes' CPU time from `/proc/{pid}/stat`, for the benchmarks that say where the time
//! goes (`neo bench idle`, `neo bench gateway`, `neo bench scale`'s cold activations).

use std::time::Duration;

/// Clock ticks per second of `/proc/{pid}/stat` (`USER_HZ`: 100 on every Linux Neo runs on).
pub(crate) const USER_HZ: u64 = 100;

/// One line of `/proc/{pid}/stat`, the fields used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProcStat {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    /// `utime + stime`, in clock ticks.
    pub own: u64,
    /// `cutime + cstime`: children waited for, in clock ticks.
    pub waited: u64,
}

/// Parses `/proc/{pid}/stat` text (`comm` may hold spaces and parentheses).
pub(crate) fn parse_stat(text: &str) -> Option<ProcStat> {
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
pub(crate) fn processes() -> Vec<ProcStat> {
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

impl ProcStat {
    /// The CPU time (user + system) the process has used so far.
    pub(crate) fn cpu(&self) -> Duration {
        Duration::from_millis(self.own * 1000 / USER_HZ)
    }
}

/// The CPU time (user + system) this process has used so far.
pub(crate) fn own_cpu() -> Duration {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|text| parse_stat(&text))
        .map(|stat| stat.cpu())
        .unwrap_or_default()
}

/// The CPU time process `pid` has used so far, when it still runs.
pub(crate) fn cpu_of(pid: u32) -> Option<Duration> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|text| parse_stat(&text))
        .map(|stat| stat.cpu())
}

/// The pid of this process's child named `comm` (e.g. the nats-server a bench started).
pub(crate) fn child_named(comm: &str) -> Option<u32> {
    let me = std::process::id();
    processes()
        .into_iter()
        .find(|p| p.comm == comm && p.ppid == me)
        .map(|p| p.pid)
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
        assert!(cpu_of(me.pid).is_some());
        assert_eq!(cpu_of(u32::MAX), None, "no such process");
        assert_eq!(child_named("no-such-child"), None);
    }
}
