//! The container-per-request baseline: a native build run in a fresh
//! `runc` container for every request, from the smallest rootfs that runs
//! it (the binary plus the shared libraries `ldd` lists, read-only).
//!
//! Needs the `runc` binary and root (namespaces, cgroups). When either is
//! missing, [`Runc::setup`] says why and the report marks the column
//! "not measured".

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A prepared rootfs and config template.
#[derive(Debug)]
pub struct Runc {
    runc: PathBuf,
    base: PathBuf,
    rootfs: PathBuf,
    template: serde_json::Value,
    counter: AtomicU64,
}

/// `runc`'s path if it is on PATH (or in /usr/sbin, /usr/bin).
pub fn find_runc() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("runc"))
        .find(|p| p.is_file())
}

/// Shared libraries `ldd` says `exe` loads (absolute paths).
pub fn ldd_libs(exe: &Path) -> Vec<PathBuf> {
    let Ok(out) = std::process::Command::new("ldd").arg(exe).output() else {
        return vec![];
    };
    let mut libs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .filter(|p| p.exists())
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

impl Runc {
    /// Prepare a rootfs under `base` holding `exes` (as `/bin/<file name>`)
    /// and their libraries. Fails with the reason when runc can't be used.
    pub fn setup(base: &Path, exes: &[PathBuf]) -> Result<Runc> {
        let runc = find_runc().context("runc is not installed (apt-get install runc)")?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("runc needs root here (rootless containers are not set up)");
        }
        let rootfs = base.join("rootfs");
        std::fs::create_dir_all(rootfs.join("bin"))?;
        for d in ["proc", "dev", "tmp"] {
            std::fs::create_dir_all(rootfs.join(d))?;
        }
        for exe in exes {
            let name = exe.file_name().context("executable without a file name")?;
            std::fs::copy(exe, rootfs.join("bin").join(name))
                .with_context(|| format!("copying {}", exe.display()))?;
            for lib in ldd_libs(exe) {
                let dest = rootfs.join(lib.strip_prefix("/").unwrap());
                if !dest.exists() {
                    std::fs::create_dir_all(dest.parent().unwrap())?;
                    std::fs::copy(std::fs::canonicalize(&lib)?, &dest)
                        .with_context(|| format!("copying {}", lib.display()))?;
                }
            }
        }
        // The default spec of this runc version, adapted.
        let spec_dir = base.join("spec");
        std::fs::create_dir_all(&spec_dir)?;
        let st = std::process::Command::new(&runc)
            .arg("spec")
            .current_dir(&spec_dir)
            .status()?;
        anyhow::ensure!(st.success(), "`runc spec` failed");
        let mut template: serde_json::Value =
            serde_json::from_slice(&std::fs::read(spec_dir.join("config.json"))?)?;
        template["process"]["terminal"] = false.into();
        template["root"] = serde_json::json!({"path": rootfs, "readonly": true});
        template["hostname"] = "bench".into();
        let r = Runc {
            runc,
            base: base.to_path_buf(),
            rootfs,
            template,
            counter: AtomicU64::new(0),
        };
        // Smoke test: one run of the first executable.
        if let Some(exe) = exes.first() {
            let env = crate::baseline::cgi_env("GET", "", 0, "f");
            let (args, bundle) = r.prepare(exe, &env)?;
            let out = std::process::Command::new(&r.runc)
                .args(&args)
                .stdin(std::process::Stdio::null())
                .output()?;
            let _ = std::fs::remove_dir_all(bundle);
            anyhow::ensure!(
                out.status.success(),
                "a test container did not run: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(r)
    }

    /// Write a bundle for one run; returns runc's arguments and the bundle dir.
    fn prepare(&self, exe: &Path, env: &[(String, String)]) -> Result<(Vec<String>, PathBuf)> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let id = format!("wisp-bench-{}-{n}", std::process::id());
        let bundle = self.base.join("bundles").join(&id);
        std::fs::create_dir_all(&bundle)?;
        let mut cfg = self.template.clone();
        let name = exe.file_name().unwrap().to_string_lossy();
        cfg["process"]["args"] = serde_json::json!([format!("/bin/{name}")]);
        cfg["process"]["env"] = env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .into();
        std::fs::write(bundle.join("config.json"), serde_json::to_vec(&cfg)?)?;
        Ok((
            vec![
                "run".into(),
                "--bundle".into(),
                bundle.to_string_lossy().into_owned(),
                id,
            ],
            bundle,
        ))
    }

    /// A command that runs `exe` once in a fresh container with `env`
    /// (stdin/stdout pass through). The bundle stays until [`Runc`] is dropped.
    pub fn command(&self, exe: &Path, env: &[(String, String)]) -> Result<tokio::process::Command> {
        let (args, _bundle) = self.prepare(exe, env)?;
        let mut c = tokio::process::Command::new(&self.runc);
        c.args(args);
        Ok(c)
    }

    /// Size of the rootfs in bytes.
    pub fn rootfs_bytes(&self) -> u64 {
        dir_size(&self.rootfs)
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
