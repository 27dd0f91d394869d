//! Warm templates: a function's `Loaded` (`InstancePre`) is made once per
//! version and process. The first request maps the precompiled artifact
//! after checking its recorded SHA-256 (a *cold* start, no compile); an
//! artifact that is missing, stale or fails the check is recompiled from the
//! stored module.

use crate::Executor;
use crate::error::{Error, join_err, rt_err, store_err};
use crate::table::FunctionHandle;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use wisp_runtime::{Loaded, Runtime};
use wisp_store::Store;

/// Compile `wasm`, write its artifact atomically (recording its hash) and
/// map it. Blocking. An artifact that cannot be linked is removed again.
pub(crate) fn compile_artifact(
    runtime: &Runtime,
    store: &Store,
    wasm: &[u8],
    digest: &str,
) -> Result<(wisp_runtime::Compiled, Loaded), Error> {
    let c = runtime.compile(wasm).map_err(rt_err)?;
    let path = store
        .put_artifact(runtime.fingerprint(), digest, &c.artifact)
        .map_err(store_err)?;
    match runtime.load(&path) {
        Ok(loaded) => Ok((c, loaded)),
        Err(e) => {
            let _ = store.remove_artifact(runtime.fingerprint(), digest);
            let _ = path;
            Err(rt_err(e))
        }
    }
}

impl Executor {
    /// The warm template of `h`, loading it if this is the first request
    /// (`cold`). Concurrent first requests share one load.
    pub(crate) async fn template<'h>(
        &self,
        h: &'h FunctionHandle,
    ) -> Result<(&'h Loaded, bool, Duration), Error> {
        if let Some(l) = h.loaded.get() {
            return Ok((l, false, Duration::ZERO));
        }
        let t = Instant::now();
        let mut cold = false;
        let l = h
            .loaded
            .get_or_try_init(|| {
                cold = true;
                self.load(h)
            })
            .await?;
        if cold {
            h.metrics.cold_starts.fetch_add(1, Relaxed);
            Ok((l, true, t.elapsed()))
        } else {
            Ok((l, false, Duration::ZERO))
        }
    }

    /// Verify and map the artifact, or recompile from the stored module.
    async fn load(&self, h: &FunctionHandle) -> Result<Loaded, Error> {
        let runtime = self.runtime.clone();
        let store = self.store.clone();
        let digest = h.version.digest.trim_start_matches("sha256:").to_string();
        self.metrics.loads.fetch_add(1, Relaxed);
        tokio::task::spawn_blocking(move || {
            let fp = runtime.fingerprint();
            let reason = match store.verify_artifact(fp, &digest) {
                Ok(path) => match runtime.load(&path) {
                    Ok(l) => return Ok(l),
                    Err(e) => e.to_string(),
                },
                Err(e) => e.to_string(),
            };
            tracing::warn!(digest = %digest, %reason, "artifact unusable; recompiling from the stored module");
            let wasm = store.read_blob(&digest).map_err(store_err)?;
            compile_artifact(&runtime, &store, &wasm, &digest).map(|(_, loaded)| loaded)
        })
        .await
        .map_err(join_err)?
    }
}
