//! The small half of `containerd-shim-wisp-v1`.
//!
//! containerd execs its shim binary twice per container: `start` (which
//! prints the socket of the daemon that will serve the container) and
//! `delete` (after every disconnect). With the default grouping one daemon
//! serves the whole node, so `start` usually only hands out the socket of a
//! daemon that is already alive, and `delete` only unmounts the rootfs. The
//! daemon binary, though, carries Wasmtime and Tokio (~240 MB): loading it
//! for those two answers cost several milliseconds per exec.
//!
//! So the binary containerd runs, `containerd-shim-wisp-v1`, is a launcher
//! built from this crate alone (std, libc, sha2, serde_json and
//! containerd-shim-protos: no runtime). It answers
//!
//! - `start`, when the container's grouping shares a daemon and that daemon
//!   is alive: the same [`start::Plan`], socket address, [`group::StartLock`]
//!   and stamp as the daemon binary's own `start`;
//! - `delete`: [`delete::delete`], the daemon binary's own code;
//! - `-v`: the version;
//!
//! and `execve`s the daemon binary, [`DAEMON_NAME`] in its own directory,
//! for everything else (a `start` that must spawn a daemon, the daemon,
//! any flag it does not know), with the same arguments, environment and
//! working directory, so containerd sees no difference. It falls back to
//! the daemon also when its own `start` fails (an unreadable bundle, a bad
//! grouping setting): the daemon then fails the same way and says why.

pub mod args;
pub mod delete;
pub mod group;
pub mod shimlog;
pub mod start;

use containerd_shim_protos::protobuf::Message as _;
use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

/// The runtime name containerd resolves to the launcher's name.
pub const RUNTIME_ID: &str = "io.containerd.wisp.v1";
/// The binary containerd execs (`io.containerd.wisp.v1` resolves to it).
pub const LAUNCHER_NAME: &str = "containerd-shim-wisp-v1";
/// The daemon binary, installed in the launcher's directory.
pub const DAEMON_NAME: &str = "containerd-shim-wisp-v1-daemon";

/// The version lines `-v` prints, as other shims do (`containerd-shim-runc-v2 -v`).
pub fn version(binary: &str) -> String {
    format!(
        "{binary}:\n  Runtime: {RUNTIME_ID}\n  Version: {}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The daemon binary: [`DAEMON_NAME`] next to this executable (the
/// directory of `/proc/self/exe`, so a symlink to the launcher finds the
/// daemon next to the launcher's real file).
pub fn daemon_path() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(DAEMON_NAME))
}

/// The launcher's `main`: answer `start` and `delete` here when possible,
/// else become the daemon binary.
pub fn main() -> ! {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let Ok(flags) = args::parse(argv.get(1..).unwrap_or_default()) else {
        exec_daemon(&argv)
    };
    if flags.version {
        print!("{}", version(LAUNCHER_NAME));
        match daemon_path() {
            Ok(d) if d.is_file() => println!("  Daemon: {}", d.display()),
            Ok(d) => {
                println!("  Daemon: {} (missing)", d.display());
                std::process::exit(1);
            }
            Err(e) => {
                println!("  Daemon: not found ({e})");
                std::process::exit(1);
            }
        }
        std::process::exit(0);
    }
    match flags.action.as_str() {
        "start" => match start_shared(&flags) {
            Some(address) => {
                let mut out = std::io::stdout().lock();
                if let Err(e) = out.write_all(address.as_bytes()).and_then(|()| out.flush()) {
                    fail(&format!("write stdout: {e}"));
                }
                std::process::exit(0)
            }
            None => exec_daemon(&argv),
        },
        "delete" => {
            let bundle = match std::env::current_dir() {
                Ok(b) => b,
                Err(e) => fail(&format!("bundle: {e}")),
            };
            let bytes = match delete::delete(&bundle).write_to_bytes() {
                Ok(b) => b,
                Err(e) => fail(&format!("encoding the delete response: {e}")),
            };
            let mut out = std::io::stdout().lock();
            if let Err(e) = out.write_all(&bytes).and_then(|()| out.flush()) {
                fail(&format!("failed to write response: {e}"));
            }
            std::process::exit(0)
        }
        _ => exec_daemon(&argv),
    }
}

/// `start` for a container whose shared daemon is alive: its address,
/// stamped under the lock and written to the bundle, as the daemon binary's
/// `start` would. `None` when the daemon binary has to answer: the grouping
/// spawns a daemon per `start`, the shared daemon is not alive, or
/// something failed (the daemon binary then reports it).
fn start_shared(flags: &args::Flags) -> Option<String> {
    let bundle = Path::new(".");
    let spec = start::StartSpec::load(bundle);
    let plan = start::Plan::new(&flags.id, spec.as_ref(), group::Group::from_env()).ok()?;
    let address = plan.shared_address(&flags.address, &flags.namespace)?;
    let lock = group::StartLock::acquire(&address).ok()?;
    if !group::alive(&address) {
        // Let go before the daemon binary takes the lock itself.
        drop(lock);
        return None;
    }
    lock.stamp().ok()?;
    drop(lock);
    start::write_address(bundle, &address).ok()?;
    Some(address)
}

/// Become the daemon binary with the same arguments (argv\[0\] naming the
/// daemon), environment and working directory. Returns only by exiting,
/// with the reason on stderr, which containerd puts in its error and log.
fn exec_daemon(argv: &[OsString]) -> ! {
    let daemon = match daemon_path() {
        Ok(d) => d,
        Err(e) => fail(&format!(
            "can't find the shim daemon {DAEMON_NAME}: /proc/self/exe: {e}"
        )),
    };
    let e = std::process::Command::new(&daemon)
        .arg0(&daemon)
        .args(argv.get(1..).unwrap_or_default())
        .exec();
    if e.kind() == std::io::ErrorKind::NotFound {
        fail(&format!(
            "the shim daemon {} is missing: install {DAEMON_NAME} next to {LAUNCHER_NAME} \
             (both come from `cargo build -p wisp-shim`; docs/containerd.md)",
            daemon.display()
        ))
    }
    fail(&format!("exec {}: {e}", daemon.display()))
}

/// Exit 1 with `msg` on stderr, prefixed as containerd-shim's errors are
/// (containerd puts it in the error `ctr` or the kubelet gets), and in
/// containerd's own log through the bundle's `log` FIFO.
fn fail(msg: &str) -> ! {
    let msg = format!("{RUNTIME_ID}: {msg}");
    eprintln!("{msg}");
    shimlog::to_bundle(Path::new("."), "error", &msg);
    std::process::exit(1)
}
