//! An edge-sized node on this machine: a cgroup that holds a process to one
//! CPU and a memory limit (the workflow scenario's "edge" arm: 1 core,
//! 512 MiB), created before the process starts and joined by it before it
//! execs, so every thread it makes (and `available_parallelism`, which
//! sizes its runtimes) sees the one CPU.
//!
//! Works with cgroup v1 (`cpuset` and `memory` hierarchies, as on this
//! machine) and cgroup v2 (the unified hierarchy with the `cpuset` and
//! `memory` controllers). Needs root. `systemd-run` needs a running systemd,
//! and `taskset`/`prlimit` alone cap neither memory (RLIMIT_AS would also
//! break Wasmtime's address-space reservations) nor threads made before
//! they apply.

use std::ffi::CString;
use std::path::{Path, PathBuf};

/// A cgroup (one per hierarchy) holding a process to `cpus` and `memory_bytes`.
#[derive(Debug)]
pub struct EdgeNode {
    groups: Vec<PathBuf>,
    procs: Vec<CString>,
    /// The CPUs, cgroup list syntax (`0`).
    pub cpus: String,
    /// The memory limit.
    pub memory_bytes: u64,
}

/// What a process in the node actually gets.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EdgeCheck {
    /// `Cpus_allowed_list` of the process.
    pub cpus_allowed: String,
    /// The memory limit its cgroup enforces.
    pub memory_limit: u64,
    /// Its cgroup lines.
    pub cgroups: Vec<String>,
}

const V1: &str = "/sys/fs/cgroup";

fn write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("writing {value:?} to {}: {e}", path.display()))
}

impl EdgeNode {
    /// Create the node `name` (cgroups named `wisp-edge-<name>`).
    pub fn create(name: &str, cpus: &str, memory_bytes: u64) -> Result<EdgeNode, String> {
        if unsafe { libc::geteuid() } != 0 {
            return Err("an edge node (a cgroup limiting CPUs and memory) needs root".into());
        }
        let group = format!("wisp-edge-{name}");
        let v1_cpuset = Path::new(V1).join("cpuset");
        let v1_memory = Path::new(V1).join("memory");
        let mut node = EdgeNode {
            groups: Vec::new(),
            procs: Vec::new(),
            cpus: cpus.into(),
            memory_bytes,
        };
        if v1_cpuset.join("cgroup.procs").exists() && v1_memory.join("cgroup.procs").exists() {
            let cs = v1_cpuset.join(&group);
            let mem = v1_memory.join(&group);
            for d in [&cs, &mem] {
                let _ = std::fs::remove_dir(d);
                std::fs::create_dir(d).map_err(|e| format!("creating {}: {e}", d.display()))?;
                node.groups.push(d.clone());
            }
            let mems = std::fs::read_to_string(v1_cpuset.join("cpuset.mems"))
                .map_err(|e| format!("reading the root cpuset.mems: {e}"))?;
            write(&cs.join("cpuset.cpus"), cpus)?;
            write(&cs.join("cpuset.mems"), mems.trim())?;
            write(
                &mem.join("memory.limit_in_bytes"),
                &memory_bytes.to_string(),
            )?;
        } else if Path::new(V1).join("cgroup.controllers").exists() {
            let root = Path::new(V1);
            let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
            for c in ["cpuset", "memory"] {
                if !have.split_whitespace().any(|x| x == c) {
                    return Err(format!("cgroup v2 here has no {c} controller"));
                }
            }
            write(&root.join("cgroup.subtree_control"), "+cpuset +memory")?;
            let d = root.join(&group);
            let _ = std::fs::remove_dir(&d);
            std::fs::create_dir(&d).map_err(|e| format!("creating {}: {e}", d.display()))?;
            node.groups.push(d.clone());
            write(&d.join("cpuset.cpus"), cpus)?;
            write(&d.join("memory.max"), &memory_bytes.to_string())?;
        } else {
            return Err(
                "neither cgroup v1 (cpuset + memory) nor cgroup v2 is mounted at /sys/fs/cgroup"
                    .into(),
            );
        }
        node.procs = node
            .groups
            .iter()
            .map(|g| {
                CString::new(g.join("cgroup.procs").to_string_lossy().as_bytes()).expect("no NUL")
            })
            .collect();
        Ok(node)
    }

    /// A `pre_exec` hook that moves the forked child into the node: only
    /// `open`/`write`/`close` of paths prepared before the fork (async-signal
    /// safe; `0` means "the writing process").
    pub fn join_hook(&self) -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
        let procs = self.procs.clone();
        move || {
            for p in &procs {
                // SAFETY: plain syscalls on a valid NUL-terminated path and a
                // static buffer, in the forked child before exec.
                unsafe {
                    let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if n != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
            }
            Ok(())
        }
    }

    /// What process `pid` gets: its allowed CPUs, its cgroups and the memory
    /// limit of the node.
    pub fn check(&self, pid: u32) -> Result<EdgeCheck, String> {
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| e.to_string())?;
        let cpus_allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(|v| v.trim().to_string())
            .ok_or("no Cpus_allowed_list")?;
        let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .map_err(|e| e.to_string())?
            .lines()
            .map(str::to_string)
            .collect();
        let limit_file = self
            .groups
            .iter()
            .map(|g| g.join("memory.limit_in_bytes"))
            .chain(self.groups.iter().map(|g| g.join("memory.max")))
            .find(|p| p.exists())
            .ok_or("no memory limit file")?;
        let memory_limit = std::fs::read_to_string(&limit_file)
            .map_err(|e| e.to_string())?
            .trim()
            .parse()
            .map_err(|e| format!("{}: {e}", limit_file.display()))?;
        Ok(EdgeCheck {
            cpus_allowed,
            memory_limit,
            cgroups,
        })
    }

    /// Peak memory use of the node, if the kernel reports it.
    pub fn peak_memory(&self) -> Option<u64> {
        self.groups.iter().find_map(|g| {
            ["memory.max_usage_in_bytes", "memory.peak"]
                .iter()
                .find_map(|f| std::fs::read_to_string(g.join(f)).ok())
                .and_then(|s| s.trim().parse().ok())
        })
    }
}

impl Drop for EdgeNode {
    /// Remove the cgroups (their processes must have exited; a cgroup that
    /// still has one is left, and said so).
    fn drop(&mut self) {
        for g in &self.groups {
            let mut ok = false;
            for _ in 0..50 {
                if std::fs::remove_dir(g).is_ok() {
                    ok = true;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if !ok {
                eprintln!(
                    "[bench] could not remove the cgroup {} (a process is still in it?)",
                    g.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A real child in a real edge node gets one CPU and the limit. Skips
    /// loudly without root or cgroups, fails under WISP_TEST_STRICT.
    #[test]
    fn a_child_in_an_edge_node_gets_one_cpu_and_the_memory_limit() {
        let node = match EdgeNode::create(&format!("test-{}", std::process::id()), "0", 256 << 20) {
            Ok(n) => n,
            Err(why) => {
                if std::env::var_os("WISP_TEST_STRICT").is_some() {
                    panic!("edge node unavailable under WISP_TEST_STRICT: {why}");
                }
                eprintln!("SKIPPED: {why}");
                return;
            }
        };
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("5");
        // SAFETY: the hook only makes async-signal-safe syscalls.
        unsafe {
            cmd.pre_exec(node.join_hook());
        }
        let mut child = cmd.spawn().unwrap();
        let c = node.check(child.id()).unwrap();
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(c.cpus_allowed, "0");
        assert_eq!(c.memory_limit, 256 << 20);
        assert!(
            c.cgroups
                .iter()
                .any(|l| l.contains(&format!("wisp-edge-test-{}", std::process::id()))),
            "{:?}",
            c.cgroups
        );
    }
}
