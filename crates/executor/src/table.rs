//! The served table: one [`FunctionHandle`] per (namespace, name), and the
//! operations that change it (deploy, remove, rollback). The table always
//! agrees with the store: a deploy runs to its end (or fails as a whole)
//! in a task of its own, whatever its client does.

use crate::error::{Error, join_err, store_err};
use crate::metrics::FunctionMetrics;
use crate::template::compile_artifact;
use crate::{Executor, ExecutorOptions};
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;
use tokio::sync::{OnceCell, Semaphore};
use wisp_core::outbound::AllowList;
use wisp_core::{ErrorKind, FunctionConfig, FunctionVersion, OciSource};
use wisp_runtime::Loaded;
use wisp_store::NewVersion;

/// A deployed function version as the executor serves it.
pub struct FunctionHandle {
    pub(crate) version: FunctionVersion,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) args: Vec<String>,
    pub(crate) loaded: OnceCell<Loaded>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) allow: Arc<AllowList>,
    pub(crate) metrics: Arc<FunctionMetrics>,
    /// `x-forwarded-prefix` for components: `/fn/{name}` (`/ns/{ns}/fn/{name}`
    /// outside the default namespace), built once.
    pub(crate) prefix: Option<http::HeaderValue>,
    /// Why this version can't be served, if it can't.
    pub(crate) broken: Option<String>,
}

impl FunctionHandle {
    /// The version served.
    pub fn version(&self) -> &FunctionVersion {
        &self.version
    }
    /// The function's own environment (its config's `env`).
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }
    /// Whether the template is loaded (warm).
    pub fn is_warm(&self) -> bool {
        self.loaded.initialized()
    }
    /// Why the version can't be served (stored config unreadable, a grant
    /// no longer allowed), if so.
    pub fn broken(&self) -> Option<&str> {
        self.broken.as_deref()
    }
    /// Count a request to this function at `now_ms` (a monotonic
    /// millisecond clock); returns its recent rate, per second (see
    /// [`wisp_runtime::RateMeter`]). Shared by all versions of the name.
    pub fn hit(&self, now_ms: u64) -> u32 {
        self.metrics.rate.hit(now_ms)
    }
}

/// What a deploy did.
#[derive(Debug, Clone)]
pub struct Deployed {
    /// The active version.
    pub version: FunctionVersion,
    /// False if the same module and config were already active.
    pub created: bool,
    /// Whether Cranelift ran (false when an artifact for this digest existed).
    pub compiled: bool,
}

/// Check a directory grant against the operator's policy: the host path
/// must exist, lie under one of `roots` (after resolving symlinks), and
/// neither lie inside the Wisp home nor contain it.
pub(crate) fn check_grant(host: &str, roots: &[PathBuf], home: &Path) -> Result<(), String> {
    let real = Path::new(host)
        .canonicalize()
        .map_err(|e| format!("granted dir {host:?} is not usable on the host: {e}"))?;
    if !real.is_dir() {
        return Err(format!("granted dir {host:?} is not a directory"));
    }
    if real.starts_with(home) || home.starts_with(&real) {
        return Err(format!(
            "granted dir {host:?} would expose the Wisp home {}: grants may not contain it or lie inside it",
            home.display()
        ));
    }
    if roots.is_empty() {
        return Err(format!(
            "granted dir {host:?} is not allowed: this server allows no directory grants \
             (the operator lists the roots grants may come from with `wisp serve --allow-dir ROOT`)"
        ));
    }
    if !roots.iter().any(|r| real.starts_with(r)) {
        let list: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        return Err(format!(
            "granted dir {host:?} is outside the allowed roots ({})",
            list.join(", ")
        ));
    }
    Ok(())
}

impl ExecutorOptions {
    fn grant_problem(&self, config: &FunctionConfig, home: &Path) -> Option<String> {
        config
            .dirs
            .iter()
            .find_map(|d| check_grant(&d.host, &self.allow_dirs, home).err())
    }
}

/// The path a function is invoked under.
pub fn invoke_path(namespace: &str, name: &str) -> String {
    if namespace == wisp_core::DEFAULT_NAMESPACE {
        format!("/fn/{name}")
    } else {
        format!("/ns/{namespace}/fn/{name}")
    }
}

impl Executor {
    pub(crate) fn metrics_for(&self, namespace: &str, name: &str) -> Arc<FunctionMetrics> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(m) = self.fn_metrics.read().unwrap().get(&key) {
            return m.clone();
        }
        self.fn_metrics
            .write()
            .unwrap()
            .entry(key)
            .or_default()
            .clone()
    }

    /// Put `version` in the table, pre-warmed with `loaded` if given.
    pub(crate) fn install(
        &self,
        version: FunctionVersion,
        loaded: Option<Loaded>,
    ) -> Arc<FunctionHandle> {
        let handle = self.make_handle(version, loaded);
        self.table
            .write()
            .unwrap()
            .entry(handle.version.namespace.clone())
            .or_default()
            .insert(handle.version.name.clone(), handle.clone());
        handle
    }

    /// A handle for `version`, not put in the table (the active one is
    /// [`Executor::install`]ed; pinned versions are kept by the resolver).
    pub(crate) fn make_handle(
        &self,
        version: FunctionVersion,
        loaded: Option<Loaded>,
    ) -> Arc<FunctionHandle> {
        let env = version
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let cell = OnceCell::new();
        if let Some(l) = loaded {
            let _ = cell.set(l);
        }
        let allow = AllowList::parse(&version.config.allowed_outbound_hosts);
        let broken = version
            .broken
            .clone()
            .or_else(|| allow.as_ref().err().cloned())
            .or_else(|| self.opts.grant_problem(&version.config, self.store.home()));
        if let Some(why) = &broken {
            tracing::error!(function = %version.name, version = version.version, reason = %why,
                "function version is broken and will answer 503 until redeployed or rolled back");
        }
        Arc::new(FunctionHandle {
            env,
            args: vec![version.name.clone()],
            loaded: cell,
            permits: Arc::new(Semaphore::new(
                version.config.limits.max_concurrency as usize,
            )),
            allow: Arc::new(allow.unwrap_or_default()),
            metrics: self.metrics_for(&version.namespace, &version.name),
            prefix: http::HeaderValue::try_from(invoke_path(&version.namespace, &version.name))
                .ok(),
            broken,
            version,
        })
    }

    /// The function currently served as `name` in `namespace`: the one
    /// lookup every way of invoking goes through (the invoke routes, the
    /// OpenWhisk API, sequences, workflows).
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<FunctionHandle>> {
        self.table
            .read()
            .unwrap()
            .get(namespace)
            .and_then(|fns| fns.get(name))
            .cloned()
    }

    /// Drop a function's handle and metrics (the store already forgot it).
    pub(crate) fn uninstall(&self, namespace: &str, name: &str) {
        let mut t = self.table.write().unwrap();
        if let Some(fns) = t.get_mut(namespace) {
            fns.remove(name);
            if fns.is_empty() {
                t.remove(namespace);
            }
        }
        drop(t);
        self.forget_pinned(namespace, name);
        // Its series go too: /metrics lists deployed functions only.
        self.fn_metrics
            .write()
            .unwrap()
            .remove(&(namespace.to_string(), name.to_string()));
    }

    /// Deploy `wasm` as the new version of `name`.
    ///
    /// Cancel-safe: the work runs in a task of its own, so a client that
    /// disconnects mid-compile neither leaves a half-done deploy nor frees
    /// the deploy slot early. Deploys run one at a time (compiling is the
    /// CPU-heavy part), at most `max_pending_deploys` wait, and a compile
    /// that runs past `compile_timeout` fails the deploy.
    pub async fn deploy(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        wasm: Bytes,
        config: FunctionConfig,
    ) -> Result<Deployed, Error> {
        self.deploy_from(namespace, name, wasm, config, Source::default())
            .await
    }

    /// [`Executor::deploy`], recording where the module came from and what
    /// the deploying API keeps with the version.
    pub async fn deploy_from(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        wasm: Bytes,
        config: FunctionConfig,
        source: Source,
    ) -> Result<Deployed, Error> {
        wisp_core::validate_namespace(namespace)
            .map_err(|m| Error::new(ErrorKind::BadRequest, m))?;
        wisp_core::validate_name(name).map_err(|m| Error::new(ErrorKind::BadRequest, m))?;
        config
            .validate()
            .map_err(|m| Error::new(ErrorKind::BadRequest, m))?;
        if wasm.len() > self.opts.max_module_bytes {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "module is {} bytes; the limit is {} (wisp serve --max-module)",
                    wasm.len(),
                    self.opts.max_module_bytes
                ),
            ));
        }
        if let Some(why) = self.opts.grant_problem(&config, self.store.home()) {
            return Err(Error::new(ErrorKind::BadRequest, why));
        }
        let Ok(pending) = self.pending_deploys.clone().try_acquire_owned() else {
            return Err(Error::retry(
                ErrorKind::Unavailable,
                format!(
                    "{} deploys are already waiting; retry shortly",
                    self.opts.max_pending_deploys
                ),
            ));
        };
        let exec = self.clone();
        let (namespace, name) = (namespace.to_string(), name.to_string());
        tokio::spawn(async move {
            let _pending = pending;
            exec.deploy_now(namespace, name, wasm, config, source).await
        })
        .await
        .map_err(join_err)?
    }

    async fn deploy_now(
        &self,
        namespace: String,
        name: String,
        wasm: Bytes,
        config: FunctionConfig,
        source: Source,
    ) -> Result<Deployed, Error> {
        let guard = self.deploy_lock.clone().lock_owned().await;
        let runtime = self.runtime.clone();
        let store = self.store.clone();
        let digest = wisp_store::sha256_hex(&wasm);
        let (ns2, name2) = (namespace.clone(), name.clone());
        let t0 = Instant::now();
        let work = tokio::task::spawn_blocking(move || -> Result<_, Error> {
            let fp = runtime.fingerprint();
            // Same bytes compiled before (any name, this engine) and intact: reuse.
            let reused = match store.verify_artifact(fp, &digest) {
                Ok(path) => match runtime.load(&path) {
                    Ok(loaded) => Some((loaded, path)),
                    Err(wisp_runtime::Error::Invalid(m)) => {
                        return Err(Error::new(ErrorKind::BadRequest, m));
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            };
            let (abi, compiled_size, compile_ms, compiled, loaded) = match reused {
                Some((loaded, path)) => {
                    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    (loaded.abi(), size, 0.0, false, loaded)
                }
                None => {
                    let (c, loaded) = compile_artifact(&runtime, &store, &wasm, &digest)?;
                    (
                        c.abi,
                        c.artifact.len() as u64,
                        c.compile_time.as_secs_f64() * 1e3,
                        true,
                        loaded,
                    )
                }
            };
            // Only a servable module is kept; its version row comes last.
            store.put_blob_as(&digest, &wasm).map_err(store_err)?;
            let d = store
                .create_version(NewVersion {
                    namespace: &ns2,
                    name: &name2,
                    digest_hex: &digest,
                    abi,
                    config: &config,
                    wasm_size: wasm.len() as u64,
                    compiled_size,
                    compile_ms,
                    oci: source.oci.as_ref(),
                    meta: source.meta.as_ref(),
                })
                .map_err(store_err)?;
            Ok((d, loaded, compiled))
        });
        let mut work = work;
        let (deployed, loaded, compiled) = match tokio::time::timeout(
            self.opts.compile_timeout,
            &mut work,
        )
        .await
        {
            Ok(r) => r.map_err(join_err)??,
            Err(_) => {
                // Cranelift can't be interrupted: keep the deploy slot
                // until the blocking compile ends, so compiles stay bounded.
                tokio::spawn(async move {
                    let _ = work.await;
                    drop(guard);
                });
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!(
                        "compiling the module took longer than {:?} (wisp serve --compile-timeout); \
                             the deploy was abandoned and nothing was stored",
                        self.opts.compile_timeout
                    ),
                ));
            }
        };
        let same = self
            .get(&namespace, &name)
            .is_some_and(|h| h.version.version == deployed.version.version && h.broken.is_none());
        if !same {
            self.install(deployed.version.clone(), Some(loaded));
        }
        if deployed.created {
            self.metrics.deploys.fetch_add(1, Relaxed);
            tracing::info!(%namespace, function = %name, version = deployed.version.version, compiled,
                ms = t0.elapsed().as_millis() as u64, "deployed");
        }
        drop(guard);
        Ok(Deployed {
            version: deployed.version,
            created: deployed.created,
            compiled,
        })
    }

    /// Remove a function; in-flight requests finish on the old handle.
    pub async fn remove(self: &Arc<Self>, namespace: &str, name: &str) -> Result<bool, Error> {
        let (ns, n) = (namespace.to_string(), name.to_string());
        let (namespace, name) = (ns.clone(), n.clone());
        self.store_change(
            move |store| store.delete_function(&ns, &n),
            move |exec, existed| {
                exec.uninstall(&namespace, &name);
                existed
            },
        )
        .await
    }

    /// Run a store change that may delete functions (an OpenWhisk sequence
    /// put over an action, a namespace removed) under the deploy lock, then
    /// drop the handles of the functions the store no longer has in
    /// `namespace`.
    pub async fn forget_after<T: Send + 'static>(
        self: &Arc<Self>,
        namespace: &str,
        change: impl FnOnce(&wisp_store::Store) -> Result<T, wisp_store::Error> + Send + 'static,
    ) -> Result<T, Error> {
        let ns = namespace.to_string();
        let namespace = namespace.to_string();
        self.store_change(
            move |store| {
                let out = change(store)?;
                let kept: std::collections::HashSet<String> = store
                    .list_functions(Some(&ns))?
                    .into_iter()
                    .map(|f| f.name)
                    .collect();
                Ok((out, kept))
            },
            move |exec, (out, kept)| {
                let served: Vec<String> = exec
                    .table
                    .read()
                    .unwrap()
                    .get(&namespace)
                    .map(|fns| fns.keys().cloned().collect())
                    .unwrap_or_default();
                for name in served.iter().filter(|n| !kept.contains(*n)) {
                    exec.uninstall(&namespace, name);
                }
                out
            },
        )
        .await
    }

    /// Make an earlier version active.
    pub async fn rollback(
        self: &Arc<Self>,
        namespace: &str,
        name: &str,
        to: Option<u32>,
    ) -> Result<FunctionVersion, Error> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.store_change(
            move |store| store.rollback(&namespace, &name, to),
            |exec, v: FunctionVersion| {
                exec.install(v.clone(), None);
                v
            },
        )
        .await
    }

    /// The shape every change to what is deployed shares: `change` the
    /// store (on a blocking thread), then `apply` its result to the served
    /// tables, both under the deploy lock and in a task of their own, so a
    /// client that goes away between the two can't leave the store and the
    /// tables apart.
    pub(crate) async fn store_change<T, U>(
        self: &Arc<Self>,
        change: impl FnOnce(&wisp_store::Store) -> Result<T, wisp_store::Error> + Send + 'static,
        apply: impl FnOnce(&Executor, T) -> U + Send + 'static,
    ) -> Result<U, Error>
    where
        T: Send + 'static,
        U: Send + 'static,
    {
        let exec = self.clone();
        tokio::spawn(async move {
            let _guard = exec.deploy_lock.lock().await;
            let store = exec.store.clone();
            let t = tokio::task::spawn_blocking(move || change(&store))
                .await
                .map_err(join_err)?
                .map_err(store_err)?;
            Ok(apply(&exec, t))
        })
        .await
        .map_err(join_err)?
    }
}

/// Where a deployed module came from and what the deploying API keeps with
/// its version.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The registry reference and manifest digest of an `oci://` deploy.
    pub oci: Option<OciSource>,
    /// Metadata versioned with the module (OpenWhisk's action fields).
    pub meta: Option<serde_json::Value>,
}
