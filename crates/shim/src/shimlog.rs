//! The daemon's own log, to containerd.
//!
//! containerd reads a shim's log from the FIFO `log` in each container's
//! bundle and copies it into its own log. A daemon that serves several
//! containers (see [`group`](crate::group)) outlives the bundle it was
//! started in, and a FIFO whose reader is gone takes no more lines. So this
//! logger knows every live container's bundle and writes to one of their
//! FIFOs, moving to another when the one in use is closed. Lines have the
//! logrus shape containerd's own shims write (`time=… level=… msg=…`).
//!
//! Writes never block: a FIFO is opened and written non-blocking, and a
//! line that doesn't fit (containerd not reading) is dropped.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Env variable with the log level (as containerd's Rust shims).
const LEVEL_ENV: &str = "RUST_LOG";

static LOGGER: OnceLock<ShimLog> = OnceLock::new();

struct ShimLog {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The FIFO written to, and the bundle it belongs to.
    current: Option<(PathBuf, std::fs::File)>,
    /// Bundles of live containers, oldest first.
    bundles: Vec<PathBuf>,
}

impl State {
    fn write(&mut self, line: &[u8]) {
        for _ in 0..=self.bundles.len() {
            if self.current.is_none() {
                self.current = self
                    .bundles
                    .iter()
                    .find_map(|b| open_fifo(&b.join("log")).map(|f| (b.clone(), f)));
            }
            let Some((_, f)) = self.current.as_mut() else {
                return;
            };
            match f.write(line) {
                Ok(_) => return,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    // EPIPE: containerd closed this bundle's log (the
                    // container is gone); try the next.
                    let (b, _) = self.current.take().expect("checked");
                    self.bundles.retain(|x| *x != b);
                }
            }
        }
    }
}

/// A FIFO's write end without blocking; `None` when nobody reads it.
fn open_fifo(path: &Path) -> Option<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()
}

/// Install the logger for a daemon started in `bundle` (its working
/// directory), at `RUST_LOG`'s level (default info; debug with `-debug`).
pub fn init(bundle: &Path, debug: bool) {
    let level = std::env::var(LEVEL_ENV)
        .ok()
        .and_then(|v| v.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    let level = if debug {
        level.max(log::LevelFilter::Debug)
    } else {
        level
    };
    let logger = LOGGER.get_or_init(|| ShimLog {
        state: Mutex::new(State::default()),
    });
    add_bundle(bundle);
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// A container's bundle: its log FIFO may carry the daemon's lines.
pub fn add_bundle(bundle: &Path) {
    if let Some(l) = LOGGER.get() {
        let mut st = l.state.lock().unwrap();
        if !st.bundles.iter().any(|b| b == bundle) {
            st.bundles.push(bundle.to_owned());
        }
    }
}

/// The container of `bundle` is gone: stop writing to its FIFO.
pub fn remove_bundle(bundle: &Path) {
    if let Some(l) = LOGGER.get() {
        let mut st = l.state.lock().unwrap();
        st.bundles.retain(|b| b != bundle);
        if st.current.as_ref().is_some_and(|(b, _)| b == bundle) {
            st.current = None;
        }
    }
}

/// Targets whose lines below WARN are dropped: wasmtime-wasi traces every
/// WASI call of a guest at INFO (through `tracing`'s `log` bridge), which
/// put a formatted line per `fd_write` into containerd's log.
const ENGINE_TARGETS: [&str; 4] = ["wasmtime", "cranelift", "wiggle", "wasi"];

fn wanted(metadata: &log::Metadata) -> bool {
    metadata.level() <= log::max_level()
        && (metadata.level() <= log::Level::Warn
            || !ENGINE_TARGETS
                .iter()
                .any(|t| metadata.target().starts_with(t)))
}

impl log::Log for ShimLog {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        wanted(metadata)
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = wisp_shim_launcher::shimlog::line(
            &record.level().as_str().to_lowercase(),
            &record.args().to_string(),
        );
        self.state.lock().unwrap().write(line.as_bytes());
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn fifo(dir: &Path) -> PathBuf {
        let p = dir.join("log");
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        p
    }

    fn reader(p: &Path) -> std::fs::File {
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(p)
            .unwrap()
    }

    fn drain(f: &mut std::fs::File) -> String {
        let mut s = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = f.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        s
    }

    #[test]
    fn engine_chatter_below_warn_is_dropped() {
        log::set_max_level(log::LevelFilter::Debug);
        let m = |target: &'static str, level| {
            log::Metadata::builder().target(target).level(level).build()
        };
        assert!(!wanted(&m("wasmtime_wasi::p1", log::Level::Info)));
        assert!(!wanted(&m("cranelift_codegen", log::Level::Debug)));
        assert!(wanted(&m("wasmtime_wasi::p1", log::Level::Warn)));
        assert!(wanted(&m("wisp_shim::service", log::Level::Info)));
        assert!(wanted(&m("wisp_shim::service", log::Level::Debug)));
        assert!(!wanted(&m("wisp_shim::service", log::Level::Trace)));
    }

    #[test]
    fn lines_move_to_a_live_bundle_when_the_first_is_gone() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (fa, fb) = (fifo(a.path()), fifo(b.path()));
        let mut ra = reader(&fa);
        let mut rb = reader(&fb);
        let mut st = State {
            bundles: vec![a.path().into(), b.path().into()],
            ..Default::default()
        };
        st.write(b"one\n");
        assert_eq!(drain(&mut ra), "one\n");
        // containerd stops reading the first bundle's log.
        drop(ra);
        st.write(b"two\n");
        assert_eq!(drain(&mut rb), "two\n");
        assert_eq!(st.bundles.len(), 1, "the closed bundle is forgotten");
        // Nobody reads at all: the line is dropped, nothing blocks.
        drop(rb);
        st.write(b"three\n");
        assert!(st.current.is_none() && st.bundles.is_empty());
    }
}
