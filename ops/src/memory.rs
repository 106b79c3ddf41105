//! How `neo` asks the kernel for memory: without transparent huge pages.
//!
//! A platform process grows in small steps (about 8 KiB per live entity actor, per gRPC
//! stream, per pending publish). With THP on ("always", as on this machine), each first touch
//! of a 2 MiB region makes the kernel zero all of it at once, and on a virtual machine whose
//! memory the host backs lazily that zeroing is what the process spends most on while it
//! grows: it was 38 % of the gateway's samples while creating apps, and turning THP off for
//! the process raised `neo bench core`'s entity host from 0.56 to 0.76 of the same events
//! published raw. Redis and MongoDB ask the same of their hosts. The setting is the process's
//! own (`prctl(PR_SET_THP_DISABLE)`), kept by the processes it starts (a bench's nats-server,
//! an agent's replicas); `NEO_ALLOW_THP=1` keeps the system's choice.

/// Turns transparent huge pages off for this process and its children, unless
/// `NEO_ALLOW_THP=1`. A kernel that refuses is only noted: it changes speed, not behaviour.
pub fn no_transparent_huge_pages() {
    if std::env::var("NEO_ALLOW_THP").is_ok_and(|v| v == "1") {
        return;
    }
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("note: transparent huge pages stay on for this process: {e}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_process_and_its_children_run_without_transparent_huge_pages() {
        super::no_transparent_huge_pages();
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().ok(),
            Some(true)
        );
        // What a server the process starts inherits (its own /proc line says so).
        let status = std::process::Command::new("grep")
            .args(["THP_enabled", "/proc/self/status"])
            .output()
            .expect("grep runs");
        assert_eq!(
            String::from_utf8_lossy(&status.stdout)
                .split_whitespace()
                .last(),
            Some("0")
        );
    }
}
