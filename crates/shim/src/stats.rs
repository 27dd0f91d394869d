//! `stats` for a task: the shim process's own CPU time and resident memory,
//! as cgroup v2 metrics (what `ctr task metrics` and the kubelet decode).
//!
//! A task has no process of its own: its guests run in the shim. With one
//! container per shim (`ctr run`) these are the container's figures; in a
//! pod they cover the pod's Wasm containers together.

use anyhow::{Context, Result};
use containerd_shim::protos::cgroups_v2::metrics::{CPUStat, MemoryStat, Metrics, PidsStat};
use containerd_shim::protos::protobuf::MessageField;

/// Metrics of this process from /proc/self.
pub fn metrics() -> Result<Metrics> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let statm = std::fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let rss_pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the line.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let ticks = |i: usize| f.get(i).copied().unwrap_or(0);
    let (user, system) = (ticks(11), ticks(12));
    let usec = |t: u64| t * 1_000_000 / tick;
    Ok(Metrics {
        pids: MessageField::some(PidsStat {
            current: 1,
            ..Default::default()
        }),
        cpu: MessageField::some(CPUStat {
            usage_usec: usec(user + system),
            user_usec: usec(user),
            system_usec: usec(system),
            ..Default::default()
        }),
        memory: MessageField::some(MemoryStat {
            usage: rss_pages * page,
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let m = super::metrics().unwrap();
        assert!(m.memory.usage > 1 << 20, "{}", m.memory.usage);
        assert_eq!(m.pids.current, 1);
    }
}
