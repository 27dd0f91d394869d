//! The node's ahead-of-time compile cache: one precompiled artifact per
//! module SHA-256 and engine fingerprint, shared by every shim process.
//!
//! Layout: `<dir>/<engine fingerprint>/<module sha256>.cwasm`. Artifacts are
//! written to a temporary file, fsynced and renamed, so a reader sees a
//! whole artifact or none; two shims compiling the same module at once both
//! write and the last rename wins, with identical bytes. The directory is
//! created 0700: an artifact is native code the shim maps and runs, so only
//! root may write there. An artifact that fails to load (truncated by a
//! full disk, another engine's) is recompiled and replaced.

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wisp_runtime::{Loaded, Runtime};

/// Env variable naming the cache directory.
pub const CACHE_DIR_ENV: &str = "WISP_SHIM_CACHE_DIR";
/// Default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/wisp-shim/cache";

/// The cache directory from the environment, or the default. A relative
/// path is refused: containerd starts the shim in each container's bundle
/// directory, so it would mean a new, empty cache for every container (and
/// a compile on every start).
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    cache_dir_from(std::env::var_os(CACHE_DIR_ENV))
}

fn cache_dir_from(value: Option<std::ffi::OsString>) -> anyhow::Result<PathBuf> {
    let dir = value
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE_DIR));
    anyhow::ensure!(
        dir.is_absolute(),
        "{CACHE_DIR_ENV} must be an absolute path (the shim runs in each container's bundle \
         directory), got {}",
        dir.display()
    );
    Ok(dir)
}

/// Whether a load came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Already mapped by this process for an earlier container.
    Memory,
    /// A cached artifact was mapped: no compile.
    Cached,
    /// Compiled now (and cached for next time).
    Compiled,
}

/// Modules a daemon keeps mapped, by SHA-256, for its later containers.
const MAX_MAPPED: usize = 256;

/// The modules one shim process has mapped: a container of a module an
/// earlier container of this daemon ran takes the same [`Loaded`] (no
/// hash of the artifact, no map, no link). Two containers of one new
/// module at once compile it once: the second waits for the first.
#[derive(Default)]
pub struct Mapped {
    by_digest: std::sync::Mutex<HashMap<String, Arc<std::sync::Mutex<Option<Loaded>>>>>,
}

impl Mapped {
    /// [`load`] through this process's mapped modules. Blocking.
    pub fn load(&self, runtime: &Runtime, dir: &Path, wasm: &[u8]) -> Result<(Loaded, Source)> {
        let digest = hex::encode(Sha256::digest(wasm));
        let slot = {
            let mut m = self.by_digest.lock().unwrap();
            if m.len() >= MAX_MAPPED && !m.contains_key(&digest) {
                // Forget one that no load is using; containers keep theirs.
                if let Some(k) = m
                    .iter()
                    .find(|(_, v)| Arc::strong_count(v) == 1)
                    .map(|(k, _)| k.clone())
                {
                    m.remove(&k);
                }
            }
            m.entry(digest.clone()).or_default().clone()
        };
        let mut slot = slot.lock().unwrap();
        if let Some(l) = slot.as_ref() {
            return Ok((l.clone(), Source::Memory));
        }
        let (l, source) = load_digest(runtime, dir, wasm, &digest)?;
        *slot = Some(l.clone());
        Ok((l, source))
    }
}

/// Load `wasm` through the cache in `dir`: map its artifact if there is
/// one, else validate, compile, store and map. Blocking and CPU-heavy on a
/// miss: call from a blocking thread.
///
/// Errors: an invalid module (the message says why, safe to show) or an
/// I/O failure of the cache directory.
pub fn load(runtime: &Runtime, dir: &Path, wasm: &[u8]) -> Result<(Loaded, Source)> {
    load_digest(runtime, dir, wasm, &hex::encode(Sha256::digest(wasm)))
}

fn load_digest(
    runtime: &Runtime,
    dir: &Path,
    wasm: &[u8],
    digest: &str,
) -> Result<(Loaded, Source)> {
    let sub = dir.join(runtime.fingerprint());
    let artifact = sub.join(format!("{digest}.cwasm"));
    if artifact.exists() {
        match runtime.load(&artifact) {
            Ok(l) => return Ok((l, Source::Cached)),
            Err(e) => log::warn!(
                "cached artifact {} is unusable ({e}); recompiling",
                artifact.display()
            ),
        }
    }
    let compiled = runtime.compile(wasm).map_err(anyhow::Error::msg)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&sub)
        .with_context(|| format!("creating the compile cache {}", sub.display()))?;
    atomic_write(&artifact, &compiled.artifact)?;
    log::info!(
        "compiled module sha256:{digest} in {:.1} ms, cached at {}",
        compiled.compile_time.as_secs_f64() * 1e3,
        artifact.display()
    );
    let loaded = runtime.load(&artifact).map_err(anyhow::Error::msg)?;
    Ok((loaded, Source::Compiled))
}

/// Write `bytes` to `path` atomically: a temp file of its own in the same
/// directory (unique per write: a daemon may write from several threads,
/// several shims at once), fsync, rename, fsync the directory.
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().context("artifact path has no parent")?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_dir_must_be_absolute() {
        assert_eq!(cache_dir_from(None).unwrap(), Path::new(DEFAULT_CACHE_DIR));
        assert_eq!(
            cache_dir_from(Some("".into())).unwrap(),
            Path::new(DEFAULT_CACHE_DIR)
        );
        assert_eq!(cache_dir_from(Some("/c".into())).unwrap(), Path::new("/c"));
        let e = cache_dir_from(Some("rel/cache".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute") && e.contains("rel/cache"), "{e}");
    }

    #[test]
    fn compiles_once_then_maps_and_survives_a_torn_artifact() {
        let rt = Runtime::new(wisp_runtime::EngineOptions {
            pooling: false,
            ..Default::default()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let wasm = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        let (_, s) = load(&rt, dir.path(), &wasm).unwrap();
        assert_eq!(s, Source::Compiled);
        let (_, s) = load(&rt, dir.path(), &wasm).unwrap();
        assert_eq!(s, Source::Cached);
        assert_eq!(rt.compilations(), 1);

        let art = dir
            .path()
            .join(rt.fingerprint())
            .join(format!("{}.cwasm", hex::encode(Sha256::digest(&wasm))));
        std::fs::write(&art, b"\x7fELF torn").unwrap();
        let (_, s) = load(&rt, dir.path(), &wasm).unwrap();
        assert_eq!(s, Source::Compiled, "a bad artifact is replaced");

        let e = load(&rt, dir.path(), b"not wasm").err().unwrap();
        assert!(e.to_string().contains("not a WebAssembly binary"), "{e}");
    }

    #[test]
    fn a_daemon_maps_a_module_once_and_compiles_it_once_for_parallel_containers() {
        let rt = Arc::new(
            Runtime::new(wisp_runtime::EngineOptions {
                pooling: false,
                ..Default::default()
            })
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let wasm = Arc::new(wat::parse_str(r#"(module (func (export "_start")))"#).unwrap());
        let mapped = Arc::new(Mapped::default());
        let sources: Vec<Source> = (0..4)
            .map(|_| {
                let (rt, wasm, mapped, dir) = (
                    rt.clone(),
                    wasm.clone(),
                    mapped.clone(),
                    dir.path().to_owned(),
                );
                std::thread::spawn(move || mapped.load(&rt, &dir, &wasm).unwrap().1)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(rt.compilations(), 1, "{sources:?}");
        assert_eq!(
            sources.iter().filter(|s| **s == Source::Compiled).count(),
            1
        );
        assert_eq!(sources.iter().filter(|s| **s == Source::Memory).count(), 3);
        // No temp file is left beside the artifact.
        let left: Vec<_> = std::fs::read_dir(dir.path().join(rt.fingerprint()))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "{left:?}");
        // A bad module is not remembered as loaded.
        assert!(mapped.load(&rt, dir.path(), b"junk").is_err());
        assert!(mapped.load(&rt, dir.path(), b"junk").is_err());
    }
}
