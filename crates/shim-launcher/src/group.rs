//! Which containers share a shim process, and how a shared one ends.
//!
//! containerd execs `containerd-shim-wisp-v1 start` for every container and
//! connects to whatever socket it prints, so a shim decides itself which
//! containers one daemon serves (runc's shim groups a pod's containers).
//! Wisp's unit of sharing is the engine: a daemon holds the Wasmtime engine,
//! its pooling allocator, the epoch ticker and the modules it has mapped,
//! so grouping more containers means fewer processes and less set-up per
//! container. [`Group`] is chosen with `WISP_SHIM_GROUP` in containerd's
//! environment:
//!
//! - `node` (default): one daemon per containerd namespace serves every
//!   container. `start` finds it running and answers with its socket: no
//!   process is spawned, no engine is built, a module already mapped is not
//!   mapped again. Guests of all containers share one process, as under
//!   `wisp serve`: a guest can't reach another (Wasm isolation, per-instance
//!   limits), but a crash of the shim itself ends them all.
//! - `pod`: containers of one Kubernetes pod share a daemon (CRI sandbox id),
//!   others get their own: runc's grouping.
//! - `container`: a daemon per container.
//!
//! A container may choose for itself with the annotation `wisp.shim.group`
//! or `WISP_SHIM_GROUP` in its own env (e.g. a guest its operator wants in
//! a process of its own).
//!
//! A shared daemon outlives its last container by `WISP_SHIM_LINGER_MS`
//! (default 60 s), so a node running short containers back to back keeps
//! it warm, then exits. Ending it races with a `start` that has just found
//! it: both hold [`StartLock`] (a `flock` beside the socket) while they
//! decide, `start` stamps the lock file when it hands out the socket, and
//! the daemon leaves only if no `start` stamped it within [`START_WINDOW`]
//! and it still has no container. It unlinks its socket while holding the
//! lock, so the next `start` spawns a new daemon instead of finding a
//! closing one.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Env variable choosing the grouping: containerd's (the node's default),
/// or a container's own (`ctr run --env`, a pod's env) for that container.
pub const GROUP_ENV: &str = "WISP_SHIM_GROUP";
/// Annotation choosing the grouping of one container.
pub const GROUP_ANNOTATION: &str = "wisp.shim.group";
/// Env variable: how long a shared daemon outlives its last container, in ms.
pub const LINGER_ENV: &str = "WISP_SHIM_LINGER_MS";
/// Default linger.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(60);
/// How long after a `start` handed out a daemon's socket that daemon won't
/// exit: containerd connects and creates the task within milliseconds; this
/// bounds a stalled containerd.
pub const START_WINDOW: Duration = Duration::from_secs(10);
/// The grouping key of the node-wide daemon.
pub const NODE_KEY: &str = "wisp-node";

/// Which containers share a daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Every container of a containerd namespace.
    Node,
    /// The containers of one pod (else one each).
    Pod,
    /// One daemon per container.
    Container,
}

impl Group {
    /// From `WISP_SHIM_GROUP` (unset or empty: `node`).
    pub fn from_env() -> Result<Group, BadGroup> {
        Group::parse(std::env::var(GROUP_ENV).ok().as_deref())
    }

    /// Parse a setting.
    pub fn parse(v: Option<&str>) -> Result<Group, BadGroup> {
        Ok(match v.map(str::trim).unwrap_or("") {
            "" | "node" => Group::Node,
            "pod" => Group::Pod,
            "container" => Group::Container,
            other => {
                return Err(BadGroup(format!(
                    "{GROUP_ENV}={other:?}: expected node, pod or container"
                )));
            }
        })
    }

    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            Group::Node => "node",
            Group::Pod => "pod",
            Group::Container => "container",
        }
    }

    /// The grouping key of container `id` (the sandbox id a pod's
    /// containers carry, for `pod`).
    pub fn key(self, id: &str, sandbox: Option<&str>) -> String {
        match self {
            Group::Node => NODE_KEY.to_string(),
            Group::Pod => sandbox.unwrap_or(id).to_string(),
            Group::Container => id.to_string(),
        }
    }

    /// Whether a daemon of this grouping outlives its containers.
    pub fn lingers(self) -> bool {
        self == Group::Node
    }
}

/// A grouping setting that is none of `node`, `pod`, `container`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadGroup(String);

impl std::fmt::Display for BadGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadGroup {}

/// The linger from `WISP_SHIM_LINGER_MS`.
pub fn linger() -> Duration {
    std::env::var(LINGER_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(DEFAULT_LINGER)
}

/// The filesystem path of a `unix://` socket address.
pub fn socket_path(address: &str) -> &Path {
    Path::new(address.strip_prefix("unix://").unwrap_or(address))
}

/// Whether something accepts connections on the socket.
pub fn alive(address: &str) -> bool {
    std::os::unix::net::UnixStream::connect(socket_path(address)).is_ok()
}

/// An exclusive `flock` on `<socket>.lock`, held while a `start` or a
/// lingering daemon decides whether the daemon lives on. Released on drop
/// (or when the process exits).
pub struct StartLock {
    file: std::fs::File,
    path: PathBuf,
}

impl StartLock {
    /// Take the lock of the daemon at `address` (blocking). The file is
    /// opened close-on-exec, so a process that execs lets go of it.
    pub fn acquire(address: &str) -> io::Result<StartLock> {
        let mut path = socket_path(address).as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| context(e, "creating", dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| context(e, "opening", &path))?;
        loop {
            // SAFETY: a valid fd; flock has no other preconditions.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(context(e, "locking", &path));
            }
        }
        Ok(StartLock { file, path })
    }

    /// Record that a `start` handed out the socket now.
    pub fn stamp(&self) -> io::Result<()> {
        self.file
            .set_modified(SystemTime::now())
            .map_err(|e| context(e, "stamping", &self.path))
    }

    /// Unlink the lock file (the daemon is leaving; still held). A `start`
    /// already waiting on it then finds no socket and starts a daemon; two
    /// such daemons settle on one socket (the second finds it bound).
    pub fn remove(&self) {
        let _ = std::fs::remove_file(&self.path);
    }

    /// How long ago the last `start` handed out the socket.
    pub fn since_stamp(&self) -> Duration {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or(Duration::ZERO)
    }
}

/// `e` with what was being done to which path, as anyhow's context would.
pub(crate) fn context(e: io::Error, doing: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{doing} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groupings_parse_and_key() {
        assert_eq!(Group::parse(None).unwrap(), Group::Node);
        assert_eq!(Group::parse(Some(" pod ")).unwrap(), Group::Pod);
        assert_eq!(Group::parse(Some("container")).unwrap(), Group::Container);
        let e = Group::parse(Some("pods")).unwrap_err().to_string();
        assert!(
            e.contains("WISP_SHIM_GROUP") && e.contains("node, pod or container"),
            "{e}"
        );
        assert_eq!(Group::Node.key("c1", Some("sb")), NODE_KEY);
        assert_eq!(Group::Pod.key("c1", Some("sb")), "sb");
        assert_eq!(Group::Pod.key("c1", None), "c1");
        assert_eq!(Group::Container.key("c1", Some("sb")), "c1");
    }

    #[test]
    fn the_lock_is_exclusive_and_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("unix://{}/s/abc", dir.path().display());
        let lock = StartLock::acquire(&addr).unwrap();
        lock.file
            .set_modified(SystemTime::now() - Duration::from_secs(30))
            .unwrap();
        assert!(lock.since_stamp() >= Duration::from_secs(29));
        lock.stamp().unwrap();
        assert!(lock.since_stamp() < Duration::from_secs(5));
        // A second taker waits until the first lets go.
        let (tx, rx) = std::sync::mpsc::channel();
        let a = addr.clone();
        let t = std::thread::spawn(move || {
            let _l = StartLock::acquire(&a).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        drop(lock);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
        assert!(!alive(&addr));
    }
}
