//! A private containerd for benchmarks and the shim's tests: its own config,
//! root, state and socket under one directory, the CRI plugin disabled, and
//! the Wisp shim on its `PATH` as `containerd-shim-wisp-v1`, so
//! `--runtime io.containerd.wisp.v1` finds it as on a node. Driven with
//! `ctr`, the client an operator would use.
//!
//! Leaves the host's own containerd (if any) alone: nothing here touches
//! `/run/containerd/containerd.sock` or `/var/lib/containerd`. Needs root.
//! [`unavailable`] says why it can't run here instead of failing.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Wisp shim's runtime name.
pub const WISP_RUNTIME: &str = "io.containerd.wisp.v1";
/// runc's runtime name (containerd's default shim).
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";

/// Whether a program is on `PATH`.
fn on_path(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Why a private containerd with both runtimes can't run here (`None` when
/// it can): root, `containerd`, `ctr`, `runc` and runc's shim are needed.
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (containerd, namespaces, mounts)".into());
    }
    for (bin, pkg) in [
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("containerd-shim-runc-v2", "containerd"),
        ("runc", "runc"),
    ] {
        if !on_path(bin) {
            return Some(format!("{bin} is not installed (apt-get install -y {pkg})"));
        }
    }
    None
}

/// A running private containerd; on drop its leftover tasks and containers
/// are removed, it is stopped, its mounts are undone and its directory removed.
pub struct Containerd {
    child: Child,
    dir: PathBuf,
    sock: PathBuf,
    ns: String,
}

impl Containerd {
    /// Start one under `dir` (created; removed on drop) with `shim` on its
    /// `PATH` as `containerd-shim-wisp-v1`, the daemon binary next to it
    /// ([`install_shim`]), and `env` added to its environment (the shim
    /// inherits it). Waits until `ctr version` answers.
    pub fn start(dir: &Path, shim: &Path, env: &[(&str, String)]) -> Result<Containerd> {
        Containerd::launch(dir, Some(shim), env)
    }

    /// Start one under `dir` with runc's shim only (no Wisp shim): the
    /// container baseline of `--scenario openwhisk`.
    pub fn start_runc_only(dir: &Path) -> Result<Containerd> {
        Containerd::launch(dir, None, &[])
    }

    fn launch(dir: &Path, shim: Option<&Path>, env: &[(&str, String)]) -> Result<Containerd> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        // A unix socket path is at most 107 bytes; containerd adds ".ttrpc".
        let mut sock = dir.join("c.sock");
        if sock.as_os_str().len() > 90 {
            sock = PathBuf::from(format!("/tmp/wisp-bench-ctd-{}.sock", std::process::id()));
        }
        let base = Command::new("containerd")
            .args(["config", "default"])
            .output()
            .context("running `containerd config default`")?;
        anyhow::ensure!(
            base.status.success(),
            "`containerd config default` failed: {}",
            String::from_utf8_lossy(&base.stderr).trim()
        );
        let config = private_config(&String::from_utf8_lossy(&base.stdout), &dir, &sock)?;
        let cfg = dir.join("config.toml");
        std::fs::write(&cfg, config)?;

        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin)?;
        if let Some(shim) = shim {
            install_shim(shim, &bin)?;
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = std::fs::File::create(dir.join("containerd.log"))?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&cfg)
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().context("starting containerd")?;
        let mut c = Containerd {
            child,
            dir,
            sock,
            ns: "wisp-bench".into(),
        };
        let t0 = Instant::now();
        loop {
            if c.ctr(&["version"])?.status.success() {
                return Ok(c);
            }
            if let Ok(Some(st)) = c.child.try_wait() {
                bail!("containerd exited ({st}):\n{}", c.log_tail());
            }
            if t0.elapsed() > Duration::from_secs(20) {
                bail!("containerd did not answer in 20 s:\n{}", c.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Its directory (root, state, config, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `ctr -a SOCK -n NS ARGS`, not yet started.
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(&self.sock)
            .args(["-n", &self.ns])
            .args(args);
        c
    }

    /// The same as a Tokio command (for timed runs).
    pub fn ctr_async(&self, args: &[String]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ctr");
        c.arg("-a")
            .arg(&self.sock)
            .args(["-n", &self.ns])
            .args(args);
        c
    }

    /// Run `ctr ARGS` with no stdin and collect its output.
    pub fn ctr(&self, args: &[&str]) -> Result<Output> {
        self.ctr_cmd(args)
            .stdin(Stdio::null())
            .output()
            .context("running ctr")
    }

    /// Run `ctr ARGS`; fail with its stderr unless it succeeds.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String> {
        let o = self.ctr(args)?;
        anyhow::ensure!(
            o.status.success(),
            "ctr {} failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        );
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `ctr image import --all-platforms TAR` (an OCI image layout tarball).
    pub fn import(&self, tar: &Path) -> Result<()> {
        self.ctr_ok(&[
            "image",
            "import",
            "--all-platforms",
            tar.to_str().context("non-UTF-8 path")?,
        ])
        .map(|_| ())
    }

    /// `ctr image ls` as (name, SIZE column as printed, size in bytes).
    pub fn image_sizes(&self) -> Result<Vec<(String, String, f64)>> {
        let out = self.ctr_ok(&["image", "ls"])?;
        Ok(out.lines().skip(1).filter_map(parse_image_line).collect())
    }

    /// containerd's log (the shims log into it too).
    pub fn log(&self) -> String {
        let b = std::fs::read(self.dir.join("containerd.log")).unwrap_or_default();
        String::from_utf8_lossy(&b).into_owned()
    }

    /// The last 4 KiB of containerd's log.
    pub fn log_tail(&self) -> String {
        let b = std::fs::read(self.dir.join("containerd.log")).unwrap_or_default();
        String::from_utf8_lossy(&b[b.len().saturating_sub(4096)..]).into_owned()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Ok(o) = self.ctr(&["task", "ls", "-q"]) {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", id]);
                let _ = self.ctr(&["task", "delete", "-f", id]);
            }
        }
        if let Ok(o) = self.ctr(&["container", "ls", "-q"]) {
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.ctr(&["container", "rm", id]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let root = self.dir.to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in ours {
            let _ = Command::new("umount").args(["-l", m]).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        if !self.sock.starts_with(&self.dir) {
            let _ = std::fs::remove_file(&self.sock);
            let _ = std::fs::remove_file(self.sock.with_extension("sock.ttrpc"));
        }
    }
}

/// `containerd config default` with root, state and the gRPC socket moved
/// under `dir` and the CRI plugin disabled.
fn private_config(default: &str, dir: &Path, sock: &Path) -> Result<String> {
    let mut config = String::new();
    let (mut in_grpc, mut grpc_set) = (false, false);
    for line in default.lines() {
        let t = line.trim_start();
        let top = t.len() == line.len();
        if t.starts_with('[') {
            in_grpc = t == "[grpc]";
        }
        let l = if top && t.starts_with("root = ") {
            format!("root = {:?}", dir.join("root"))
        } else if top && t.starts_with("state = ") {
            format!("state = {:?}", dir.join("state"))
        } else if t.starts_with("disabled_plugins = ") {
            r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#.to_string()
        } else if in_grpc && t.starts_with("address = ") {
            grpc_set = true;
            format!("  address = {sock:?}")
        } else {
            line.to_string()
        };
        config.push_str(&l);
        config.push('\n');
    }
    anyhow::ensure!(
        grpc_set,
        "`containerd config default` has no [grpc] address to move"
    );
    Ok(config)
}

/// One `ctr image ls` row: REF TYPE DIGEST SIZE(number unit) PLATFORMS LABELS.
fn parse_image_line(line: &str) -> Option<(String, String, f64)> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let (name, n, unit) = (f.first()?, f.get(3)?, f.get(4)?);
    let n: f64 = n.parse().ok()?;
    let mult = match *unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((name.to_string(), format!("{n} {unit}"), n * mult))
}

/// The launcher's name: what containerd execs for `io.containerd.wisp.v1`.
pub const SHIM_LAUNCHER: &str = "containerd-shim-wisp-v1";
/// The daemon binary the launcher execs, from the launcher's own directory.
pub const SHIM_DAEMON: &str = "containerd-shim-wisp-v1-daemon";

/// Install the shim into `bin` as a node would: the launcher `shim` as
/// `containerd-shim-wisp-v1` (hard-linked, else copied: a symlink would
/// make the launcher look for its daemon next to the link's target) and
/// `containerd-shim-wisp-v1-daemon` from `shim`'s directory as a symlink.
/// A shim without a daemon next to it is installed alone: a single-binary
/// shim from before the launcher (a baseline) needs none; a launcher
/// without its daemon fails every `start` it can't answer, and says so in
/// containerd's log.
pub fn install_shim(shim: &Path, bin: &Path) -> Result<()> {
    let shim = shim
        .canonicalize()
        .with_context(|| format!("the shim {}", shim.display()))?;
    let dst = bin.join(SHIM_LAUNCHER);
    if std::fs::hard_link(&shim, &dst).is_err() {
        std::fs::copy(&shim, &dst)
            .with_context(|| format!("copying {} to {}", shim.display(), dst.display()))?;
    }
    let daemon = shim.with_file_name(SHIM_DAEMON);
    if daemon.is_file() {
        std::os::unix::fs::symlink(&daemon, bin.join(SHIM_DAEMON))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_moves_root_state_socket_and_disables_cri() {
        let default = "version = 2\nroot = \"/var/lib/containerd\"\nstate = \"/run/containerd\"\ndisabled_plugins = []\n\n[grpc]\n  address = \"/run/containerd/containerd.sock\"\n  uid = 0\n\n[ttrpc]\n  address = \"\"\n\n[plugins]\n  [plugins.\"x\"]\n    root = \"/keep\"\n";
        let c = private_config(default, Path::new("/w"), Path::new("/w/c.sock")).unwrap();
        assert!(c.contains("root = \"/w/root\"\n"), "{c}");
        assert!(c.contains("state = \"/w/state\"\n"), "{c}");
        assert!(c.contains("  address = \"/w/c.sock\"\n"), "{c}");
        assert!(c.contains("[ttrpc]\n  address = \"\"\n"), "{c}");
        assert!(
            c.contains("    root = \"/keep\"\n"),
            "nested keys stay: {c}"
        );
        assert!(c.contains(r#"disabled_plugins = ["io.containerd.grpc.v1.cri"]"#));
        assert!(private_config("root = \"/x\"\n", Path::new("/w"), Path::new("/s")).is_err());
    }

    #[test]
    fn image_ls_rows_parse() {
        let l = "docker.io/wisp-bench/hello:wasm application/vnd.oci.image.manifest.v1+json sha256:ab 49.6 KiB wasip1/wasm -";
        let (n, s, b) = parse_image_line(l).unwrap();
        assert_eq!(n, "docker.io/wisp-bench/hello:wasm");
        assert_eq!(s, "49.6 KiB");
        assert!((b - 49.6 * 1024.0).abs() < 1e-6);
        assert!(parse_image_line("REF TYPE DIGEST SIZE PLATFORMS LABELS").is_none());
    }
}
