//! The `wasmtime serve` baseline for `wasi:http` components: the reference
//! host of the same Wasmtime version, run as a child process with its
//! defaults plus `-Scli` (a fresh instance per request, pooling allocator).

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Wasmtime version Wisp embeds; a different CLI is reported, not refused.
pub const EXPECTED_VERSION: &str = "48.0.8";

/// A running `wasmtime serve`, killed on drop.
pub struct WasmtimeServe {
    child: Child,
    /// Base URL.
    pub url: String,
    /// `wasmtime --version`.
    pub version: String,
}

/// `wasmtime` on `PATH` or in `~/.cargo/bin`.
pub fn find() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(Path::new(&h).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("wasmtime"))
        .find(|p| p.is_file())
}

impl WasmtimeServe {
    /// Serve `component` on a free port. `Err` says why it can't run.
    pub fn start(component: &Path) -> Result<WasmtimeServe> {
        let bin = find().context(format!(
            "wasmtime is not installed (cargo install wasmtime-cli --locked --version {EXPECTED_VERSION})"
        ))?;
        let out = Command::new(&bin)
            .arg("--version")
            .output()
            .context("running wasmtime --version")?;
        let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(&bin)
            .args(["serve", "-Scli", "--addr", &addr])
            .arg(component)
            // The same environment Wisp is measured in: no backtrace capture
            // on library errors (see `wisp serve`).
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                break;
            }
            if let Ok(Some(st)) = child.try_wait() {
                bail!("wasmtime serve exited with {st} before listening");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("wasmtime serve did not listen on {addr} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(WasmtimeServe {
            child,
            url: format!("http://{addr}/"),
            version,
        })
    }
}

impl Drop for WasmtimeServe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
