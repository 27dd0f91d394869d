//! Wisp's executor: the warm function table, per-function concurrency
//! limits with a bounded wait queue, deadlines, activation records and
//! metrics. It sits between the HTTP layer and the runtime and parses no
//! HTTP itself.
//!
//! Lifecycle:
//! - **deploy** (slow path, on purpose): validate, store the module
//!   content-addressed, compile ahead of time once, link, commit the version,
//!   and install a pre-warmed slot;
//! - **startup**: every stored function gets a slot that points at its
//!   artifact; the first request maps it (a *cold* start, no compile);
//! - **request**: look up the slot, take a concurrency permit (or wait in a
//!   bounded queue), instantiate the cached template in a fresh store, run,
//!   record the activation off the hot path.

mod metrics;

pub use metrics::{FunctionMetrics, Metrics};

use bytes::Bytes;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use wisp_core::outbound::AllowList;
use wisp_core::{
    Activation, ActivationStatus, ErrorKind, FunctionConfig, FunctionInfo, FunctionVersion,
};
use wisp_runtime::{CgiRequest, GuestBody, HttpInvocation, Invocation, Loaded, RunError, Runtime};
use wisp_store::{NewVersion, Store};

/// Executor settings.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// Activation records kept in the store (oldest pruned).
    pub activation_retention: u64,
    /// Capacity of the activation channel; records past it are dropped and counted.
    pub activation_queue: usize,
    /// Largest module accepted at deploy.
    pub max_module_bytes: usize,
    /// Runtime that runs guest code. Keeping guests off the runtime that
    /// does HTTP I/O means a CPU-bound guest can delay other guests by at
    /// most one epoch tick, and never delays accepting or answering
    /// requests: the OS schedules the I/O threads. `None` runs guests
    /// inline on the caller's runtime (fine for tools and tests).
    pub guest_runtime: Option<tokio::runtime::Handle>,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            activation_retention: 100_000,
            activation_queue: 8192,
            max_module_bytes: 64 << 20,
            guest_runtime: None,
        }
    }
}

/// An error with the kind that decides its HTTP status.
#[derive(Debug, Clone)]
pub struct Error {
    /// What went wrong, for status and code.
    pub kind: ErrorKind,
    /// Human message, safe to show.
    pub message: String,
    /// Activation id when the request got that far.
    pub activation_id: Option<String>,
    /// Seconds after which a retry may succeed (429/503).
    pub retry_after: Option<u32>,
}

impl Error {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            activation_id: None,
            retry_after: None,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Error {}

fn store_err(e: wisp_store::Error) -> Error {
    match e {
        wisp_store::Error::NotFound(m) => Error::new(ErrorKind::NotFound, m),
        wisp_store::Error::Conflict(m) => Error::new(ErrorKind::BadRequest, m),
        other => Error::new(ErrorKind::Internal, other.to_string()),
    }
}

fn join_err(e: tokio::task::JoinError) -> Error {
    Error::new(ErrorKind::Internal, format!("background task failed: {e}"))
}

/// One HTTP request, reduced to what the command ABI needs.
#[derive(Debug, Default)]
pub struct Request {
    /// Method.
    pub method: http::Method,
    /// Sub-path after `/fn/{name}` ("" or starting with `/`).
    pub path_info: String,
    /// Raw query string.
    pub query: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body: collected (command ABI, already size-checked by the caller
    /// against `max_body_bytes`) or streaming (`http` ABI, limited by the
    /// caller).
    pub body: RequestBody,
    /// Client address.
    pub remote_addr: String,
    /// Host name the server answers as.
    pub server_name: String,
    /// Port the server answers on.
    pub server_port: u16,
}

/// A request body.
pub enum RequestBody {
    /// Fully read.
    Full(Bytes),
    /// Streamed into the guest as it arrives.
    Stream(GuestBody),
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Full(Bytes::new())
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            RequestBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A response body.
pub enum ResponseBody {
    /// Complete (command ABI).
    Full(Bytes),
    /// Streams while the component keeps running (`http` ABI).
    Stream(wisp_runtime::ResponseBody),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A guest's answer plus what the platform measured.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers from the guest (CGI header lines that are not valid HTTP are
    /// dropped).
    pub headers: http::HeaderMap,
    /// Body.
    pub body: ResponseBody,
    /// Activation id.
    pub activation_id: String,
    /// Whether this request loaded the function.
    pub cold: bool,
    /// Queue wait.
    pub wait: Duration,
    /// Load time (zero when warm).
    pub init: Duration,
    /// Instantiate + run time.
    pub run: Duration,
}

/// A deployed function version as the executor serves it.
pub struct FunctionHandle {
    version: FunctionVersion,
    env: Vec<(String, String)>,
    args: Vec<String>,
    artifact: PathBuf,
    loaded: OnceCell<Loaded>,
    permits: Arc<Semaphore>,
    allow: Arc<AllowList>,
    metrics: Arc<FunctionMetrics>,
    /// `x-forwarded-prefix` for components: `/fn/{name}`, built once.
    prefix: Option<http::HeaderValue>,
}

impl FunctionHandle {
    /// The version served.
    pub fn version(&self) -> &FunctionVersion {
        &self.version
    }
    /// Whether the template is loaded (warm).
    pub fn is_warm(&self) -> bool {
        self.loaded.initialized()
    }
}

enum Msg {
    Record(Activation),
    Flush(oneshot::Sender<()>),
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

/// The executor. Share it behind an `Arc`.
pub struct Executor {
    runtime: Arc<Runtime>,
    store: Arc<Store>,
    table: RwLock<HashMap<String, Arc<FunctionHandle>>>,
    fn_metrics: RwLock<HashMap<String, Arc<FunctionMetrics>>>,
    metrics: Arc<Metrics>,
    records: mpsc::Sender<Msg>,
    deploy_lock: tokio::sync::Mutex<()>,
    opts: ExecutorOptions,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 32 hex digits: 48 bits of Unix milliseconds, then 80 random bits (the
/// layout of a UUIDv7 without the version nibbles). Time-ordered ids make the
/// activation log's unique index append-mostly instead of a random B-tree
/// insert per request, and sort the way people read logs.
fn new_activation_id() -> String {
    let ms = now_ms() as u128 & ((1 << 48) - 1);
    let rnd = rand::random::<u128>() & ((1 << 80) - 1);
    format!("{:032x}", (ms << 80) | rnd)
}

impl Executor {
    /// Build the executor over a runtime and store, serve every stored
    /// function (lazily loaded), and start the activation writer. Must be
    /// called inside a Tokio runtime.
    pub fn start(
        runtime: Arc<Runtime>,
        store: Arc<Store>,
        opts: ExecutorOptions,
    ) -> Result<Arc<Executor>, Error> {
        let (tx, rx) = mpsc::channel(opts.activation_queue);
        let exec = Arc::new(Executor {
            runtime,
            store: store.clone(),
            table: RwLock::new(HashMap::new()),
            fn_metrics: RwLock::new(HashMap::new()),
            metrics: Arc::new(Metrics::default()),
            records: tx,
            deploy_lock: tokio::sync::Mutex::new(()),
            opts,
        });
        let removed = store.gc(exec.runtime.fingerprint()).map_err(store_err)?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed unreferenced blobs, stale artifacts and temp files"
            );
        }
        for f in store.list_functions().map_err(store_err)? {
            exec.install(f.active, None);
        }
        tokio::spawn(writer(Arc::downgrade(&exec), store, rx));
        Ok(exec)
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Process-wide metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Options.
    pub fn options(&self) -> &ExecutorOptions {
        &self.opts
    }

    fn metrics_for(&self, name: &str) -> Arc<FunctionMetrics> {
        if let Some(m) = self.fn_metrics.read().unwrap().get(name) {
            return m.clone();
        }
        self.fn_metrics
            .write()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .clone()
    }

    fn install(&self, version: FunctionVersion, loaded: Option<Loaded>) -> Arc<FunctionHandle> {
        let digest_hex = version.digest.trim_start_matches("sha256:").to_string();
        let artifact = self
            .store
            .artifact_path(self.runtime.fingerprint(), &digest_hex);
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
        let handle = Arc::new(FunctionHandle {
            env,
            args: vec![version.name.clone()],
            artifact,
            loaded: cell,
            permits: Arc::new(Semaphore::new(
                version.config.limits.max_concurrency as usize,
            )),
            allow: Arc::new(
                AllowList::parse(&version.config.allowed_outbound_hosts).unwrap_or_default(),
            ),
            metrics: self.metrics_for(&version.name),
            prefix: http::HeaderValue::try_from(format!("/fn/{}", version.name)).ok(),
            version,
        });
        self.table
            .write()
            .unwrap()
            .insert(handle.version.name.clone(), handle.clone());
        handle
    }

    /// The function currently served under `name`.
    pub fn get(&self, name: &str) -> Option<Arc<FunctionHandle>> {
        self.table.read().unwrap().get(name).cloned()
    }

    /// Deploy `wasm` as the new version of `name`.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: Bytes,
        config: FunctionConfig,
    ) -> Result<Deployed, Error> {
        wisp_core::validate_name(name).map_err(|m| Error::new(ErrorKind::BadRequest, m))?;
        config
            .validate()
            .map_err(|m| Error::new(ErrorKind::BadRequest, m))?;
        if wasm.len() > self.opts.max_module_bytes {
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!(
                    "module is {} bytes; the limit is {}",
                    wasm.len(),
                    self.opts.max_module_bytes
                ),
            ));
        }
        for d in &config.dirs {
            if !std::path::Path::new(&d.host).is_dir() {
                return Err(Error::new(
                    ErrorKind::BadRequest,
                    format!("granted dir {:?} does not exist on the host", d.host),
                ));
            }
        }
        let _guard = self.deploy_lock.lock().await;
        let runtime = self.runtime.clone();
        let store = self.store.clone();
        let name_owned = name.to_string();
        let (deployed, loaded, compiled) =
            tokio::task::spawn_blocking(move || -> Result<_, Error> {
                let digest = wisp_store::sha256_hex(&wasm);
                let artifact_path = store.artifact_path(runtime.fingerprint(), &digest);
                // Same bytes compiled before (any name, this engine): reuse.
                let reused = match artifact_path.exists().then(|| runtime.load(&artifact_path)) {
                    Some(Ok(loaded)) => Some(loaded),
                    Some(Err(wisp_runtime::Error::Invalid(m))) => {
                        return Err(Error::new(ErrorKind::BadRequest, m));
                    }
                    Some(Err(_)) | None => None,
                };
                let (abi, compiled_size, compile_ms, compiled, loaded) = match reused {
                    Some(loaded) => {
                        let size = std::fs::metadata(&artifact_path)
                            .map(|m| m.len())
                            .unwrap_or(0);
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
                        name: &name_owned,
                        digest_hex: &digest,
                        abi,
                        config: &config,
                        wasm_size: wasm.len() as u64,
                        compiled_size,
                        compile_ms,
                    })
                    .map_err(store_err)?;
                Ok((d, loaded, compiled))
            })
            .await
            .map_err(join_err)??;

        let current = self.get(name);
        let same = current
            .as_ref()
            .is_some_and(|h| h.version.version == deployed.version.version);
        if !same {
            self.install(deployed.version.clone(), Some(loaded));
        }
        if deployed.created {
            self.metrics.deploys.fetch_add(1, Relaxed);
        }
        Ok(Deployed {
            version: deployed.version,
            created: deployed.created,
            compiled,
        })
    }

    /// Remove a function; in-flight requests finish on the old handle.
    pub async fn remove(&self, name: &str) -> Result<bool, Error> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let n = name.to_string();
        let existed = tokio::task::spawn_blocking(move || store.delete_function(&n))
            .await
            .map_err(join_err)?
            .map_err(store_err)?;
        self.table.write().unwrap().remove(name);
        Ok(existed)
    }

    /// Make an earlier version active.
    pub async fn rollback(&self, name: &str, to: Option<u32>) -> Result<FunctionVersion, Error> {
        let _guard = self.deploy_lock.lock().await;
        let store = self.store.clone();
        let n = name.to_string();
        let v = tokio::task::spawn_blocking(move || store.rollback(&n, to))
            .await
            .map_err(join_err)?
            .map_err(store_err)?;
        self.install(v.clone(), None);
        Ok(v)
    }

    /// A function as stored.
    pub async fn info(&self, name: &str) -> Result<Option<FunctionInfo>, Error> {
        let store = self.store.clone();
        let n = name.to_string();
        tokio::task::spawn_blocking(move || store.get_function(&n))
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// All functions as stored.
    pub async fn list(&self) -> Result<Vec<FunctionInfo>, Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.list_functions())
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// Recent activations.
    pub async fn activations(
        &self,
        function: Option<String>,
        limit: u32,
    ) -> Result<Vec<Activation>, Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.list_activations(function.as_deref(), limit))
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// One activation with its log.
    pub async fn activation(&self, id: String) -> Result<Option<Activation>, Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.get_activation(&id))
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// Wait until every activation recorded so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.records.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Map the artifact (recompiling from the stored module if the engine
    /// changed or the artifact is missing) and link it.
    async fn load(&self, h: &FunctionHandle) -> Result<Loaded, Error> {
        let runtime = self.runtime.clone();
        let store = self.store.clone();
        let path = h.artifact.clone();
        let digest = h.version.digest.trim_start_matches("sha256:").to_string();
        self.metrics.loads.fetch_add(1, Relaxed);
        tokio::task::spawn_blocking(move || match runtime.load(&path) {
            Ok(l) => Ok(l),
            Err(e) => {
                tracing::info!(artifact = %path.display(), reason = %e, "artifact unusable; recompiling from the stored module");
                let wasm = store.read_blob(&digest).map_err(store_err)?;
                compile_artifact(&runtime, &store, &wasm, &digest).map(|(_, loaded)| loaded)
            }
        })
        .await
        .map_err(join_err)?
    }

    /// Invoke `h` with `req`. Never panics on guest behaviour; every failure
    /// is an [`Error`] with a kind.
    pub async fn invoke(&self, h: &Arc<FunctionHandle>, req: Request) -> Result<Response, Error> {
        let t0 = Instant::now();
        let start_ms = now_ms();
        let id = new_activation_id();
        let limits = &h.version.config.limits;
        let m = &h.metrics;
        let bytes_in = match &req.body {
            RequestBody::Full(b) => b.len() as u64,
            RequestBody::Stream(_) => 0,
        };

        let mut rec = Activation {
            id: id.clone(),
            function: h.version.name.clone(),
            version: h.version.version,
            start_ms,
            wait_us: 0,
            init_us: 0,
            run_us: 0,
            status: ActivationStatus::Rejected,
            http_status: 0,
            cold: false,
            bytes_in,
            bytes_out: 0,
            error: None,
            log: None,
        };

        // 1. A concurrency permit, or a bounded wait for one.
        let permit = match h.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let depth = m.queue_depth.fetch_add(1, Relaxed);
                if depth >= limits.max_queue as u64 {
                    m.queue_depth.fetch_sub(1, Relaxed);
                    let mut e = Error::new(
                        ErrorKind::TooManyRequests,
                        format!(
                            "function {:?} is at its concurrency limit ({}) and its queue is full",
                            h.version.name, limits.max_concurrency
                        ),
                    );
                    e.retry_after = Some(1);
                    return Err(self.fail(&h.metrics, rec, e, t0));
                }
                let waited = tokio::time::timeout(
                    Duration::from_millis(limits.queue_timeout_ms),
                    h.permits.clone().acquire_owned(),
                )
                .await;
                m.queue_depth.fetch_sub(1, Relaxed);
                match waited {
                    Ok(Ok(p)) => p,
                    _ => {
                        let mut e = Error::new(
                            ErrorKind::Unavailable,
                            format!(
                                "no instance of {:?} became free within {} ms",
                                h.version.name, limits.queue_timeout_ms
                            ),
                        );
                        e.retry_after = Some(1);
                        return Err(self.fail(&h.metrics, rec, e, t0));
                    }
                }
            }
        };
        let wait = t0.elapsed();
        rec.wait_us = wait.as_micros() as u64;

        // 2. The warm template, loading it if this is a cold start.
        let t_init = Instant::now();
        let mut cold = false;
        let loaded = if let Some(l) = h.loaded.get() {
            l
        } else {
            let r = h
                .loaded
                .get_or_try_init(|| {
                    cold = true;
                    self.load(h)
                })
                .await;
            match r {
                Ok(l) => l,
                Err(e) => {
                    drop(permit);
                    return Err(self.fail(&h.metrics, rec, e, t0));
                }
            }
        };
        let init = if cold {
            t_init.elapsed()
        } else {
            Duration::ZERO
        };
        rec.cold = cold;
        rec.init_us = init.as_micros() as u64;
        if cold {
            m.cold_starts.fetch_add(1, Relaxed);
        }

        // 3. A fresh instance.
        if let Loaded::Http(_) = loaded {
            return self
                .invoke_http(h, loaded.clone(), req, permit, rec, t0, wait, init)
                .await;
        }
        let body = match req.body {
            RequestBody::Full(b) => b,
            RequestBody::Stream(_) => {
                return Err(self.fail(
                    &h.metrics,
                    rec,
                    Error::new(ErrorKind::Internal, "command modules need a collected body"),
                    t0,
                ));
            }
        };
        let cgi = CgiRequest {
            method: req.method.as_str(),
            path_info: &req.path_info,
            query: &req.query,
            headers: &req.headers,
            content_length: body.len(),
            function: &h.version.name,
            server_name: &req.server_name,
            server_port: req.server_port,
            remote_addr: &req.remote_addr,
        };
        let env = wisp_runtime::build_cgi_env(&cgi, &h.env);
        m.running.fetch_add(1, Relaxed);
        let t_run = Instant::now();
        let result = match &self.opts.guest_runtime {
            None => {
                self.runtime
                    .invoke(
                        loaded,
                        Invocation {
                            args: &h.args,
                            env: &env,
                            stdin: body,
                            dirs: &h.version.config.dirs,
                            limits,
                        },
                    )
                    .await
            }
            Some(rt) => {
                let (runtime, loaded, h2) = (self.runtime.clone(), loaded.clone(), h.clone());
                let task = rt.spawn(async move {
                    let c = &h2.version.config;
                    runtime
                        .invoke(
                            &loaded,
                            Invocation {
                                args: &h2.args,
                                env: &env,
                                stdin: body,
                                dirs: &c.dirs,
                                limits: &c.limits,
                            },
                        )
                        .await
                });
                // If the client goes away, stop the guest too.
                let _abort = AbortOnDrop(task.abort_handle());
                task.await.unwrap_or_else(|e| {
                    Err(RunError::Internal(format!(
                        "guest task ended abnormally: {e}"
                    )))
                })
            }
        };
        let run = t_run.elapsed();
        m.running.fetch_sub(1, Relaxed);
        drop(permit);
        rec.run_us = run.as_micros() as u64;

        match result {
            Ok(out) => {
                rec.log = log_text(&out.stderr, out.stderr_truncated);
                let resp = wisp_runtime::parse_cgi_response(out.stdout);
                rec.status = ActivationStatus::Success;
                rec.http_status = resp.status;
                rec.bytes_out = resp.body.len() as u64;
                m.count(ActivationStatus::Success);
                m.latency.observe_us(t0.elapsed().as_micros() as u64);
                self.record(rec);
                Ok(Response {
                    status: resp.status,
                    headers: header_map(resp.headers),
                    body: ResponseBody::Full(resp.body),
                    activation_id: id,
                    cold,
                    wait,
                    init,
                    run,
                })
            }
            Err(e) => {
                if let Some(o) = e.output() {
                    rec.log = log_text(&o.stderr, o.stderr_truncated);
                }
                let err = self.run_error(e);
                Err(self.fail(&h.metrics, rec, err, t0))
            }
        }
    }

    /// The `http` ABI: stream the request into a fresh component instance;
    /// the activation is recorded when the instance finishes, which may be
    /// after the response head was sent (the body streams).
    #[allow(clippy::too_many_arguments)]
    async fn invoke_http(
        &self,
        h: &Arc<FunctionHandle>,
        loaded: Loaded,
        req: Request,
        permit: OwnedSemaphorePermit,
        mut rec: Activation,
        t0: Instant,
        wait: Duration,
        init: Duration,
    ) -> Result<Response, Error> {
        let Loaded::Http(pre) = loaded else {
            unreachable!("checked by the caller")
        };
        let m = h.metrics.clone();
        let mut path = if req.path_info.is_empty() {
            "/".to_string()
        } else {
            req.path_info.clone()
        };
        if !req.query.is_empty() {
            path.push('?');
            path.push_str(&req.query);
        }
        let mut b = http::Request::builder().method(req.method).uri(path);
        if let Some(hs) = b.headers_mut() {
            *hs = req.headers;
        }
        if let (Some(hs), Some(p)) = (b.headers_mut(), &h.prefix) {
            hs.insert("x-forwarded-prefix", p.clone());
        }
        let body = match req.body {
            RequestBody::Stream(s) => s,
            RequestBody::Full(bytes) => {
                use http_body_util::BodyExt;
                http_body_util::Full::new(bytes)
                    .map_err(|never| match never {})
                    .boxed_unsync()
            }
        };
        let hreq = match b.body(body) {
            Ok(r) => r,
            Err(e) => {
                return Err(self.fail(
                    &h.metrics,
                    rec,
                    Error::new(ErrorKind::BadRequest, format!("invalid request: {e}")),
                    t0,
                ));
            }
        };
        m.running.fetch_add(1, Relaxed);
        let t_run = Instant::now();
        let c = &h.version.config;
        let inv = HttpInvocation {
            env: &h.env,
            dirs: &c.dirs,
            limits: &c.limits,
            allow: h.allow.clone(),
        };
        let result = self
            .runtime
            .invoke_http(&pre, hreq, inv, self.opts.guest_runtime.as_ref())
            .await;
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                m.running.fetch_sub(1, Relaxed);
                drop(permit);
                rec.run_us = t_run.elapsed().as_micros() as u64;
                if let Some(o) = e.output() {
                    rec.log = log_text(&o.stderr, o.stderr_truncated);
                }
                let err = self.run_error(e);
                return Err(self.fail(&h.metrics, rec, err, t0));
            }
        };
        let (parts, body) = out.response.into_parts();
        rec.http_status = parts.status.as_u16();
        let id = rec.id.clone();
        let cold = rec.cold;
        // The record is written when the last of its two holders lets go:
        // the instance's completion (outcome, log) and the response body
        // (bytes sent). The body ends only after the instance has, so a
        // client holding the whole response can read its record.
        let pending = Arc::new(PendingRecord {
            rec: std::sync::Mutex::new(Some(rec)),
            bytes_out: std::sync::atomic::AtomicU64::new(0),
            records: self.records.clone(),
            metrics: self.metrics_handle(),
            fm: m.clone(),
            t0,
        });
        let (ended_tx, ended_rx) = oneshot::channel();
        let body = http_body_util::BodyExt::boxed_unsync(Counted {
            inner: Some(body),
            pending: Some(pending.clone()),
            instance_ended: ended_rx,
        });
        let headers = parts.headers;
        out.done.on_complete(move |d| {
            drop(permit);
            pending.fm.running.fetch_sub(1, Relaxed);
            if let Some(rec) = pending.rec.lock().unwrap().as_mut() {
                rec.run_us = t_run.elapsed().as_micros() as u64;
                rec.log = log_text(&d.log, d.log_truncated);
                match d.result {
                    Ok(()) => rec.status = ActivationStatus::Success,
                    Err(e) => {
                        rec.status = if matches!(e, RunError::Timeout(..)) {
                            ActivationStatus::Timeout
                        } else {
                            ActivationStatus::Error
                        };
                        rec.error = Some(format!("after the response head was sent: {e}"));
                        pending
                            .metrics
                            .error(if rec.status == ActivationStatus::Timeout {
                                ErrorKind::Timeout
                            } else {
                                ErrorKind::Trap
                            });
                    }
                }
            }
            // Let go first, then tell the body: its drop is then the last.
            drop(pending);
            let _ = ended_tx.send(());
        });
        let run = out.instantiate;
        Ok(Response {
            status: parts.status.as_u16(),
            headers,
            body: ResponseBody::Stream(body),
            activation_id: id,
            cold,
            wait,
            init,
            run,
        })
    }

    fn run_error(&self, e: RunError) -> Error {
        let (kind, msg) = match &e {
            RunError::Timeout(..) => (ErrorKind::Timeout, e.to_string()),
            RunError::Trap(..) => (ErrorKind::Trap, e.to_string()),
            RunError::Exit(..) => (ErrorKind::Exit, e.to_string()),
            RunError::ResponseTooLarge(..) => (ErrorKind::ResponseTooLarge, e.to_string()),
            RunError::PoolExhausted(_) => (
                ErrorKind::Unavailable,
                "the node is at its instance limit; retry shortly".to_string(),
            ),
            RunError::Internal(_) => (ErrorKind::Internal, e.to_string()),
        };
        let mut err = Error::new(kind, msg);
        if kind == ErrorKind::Unavailable {
            err.retry_after = Some(1);
        }
        err
    }

    /// Record a failed activation and hand back the error with its id.
    fn fail(&self, m: &FunctionMetrics, mut rec: Activation, mut e: Error, t0: Instant) -> Error {
        rec.status = match e.kind {
            ErrorKind::Timeout => ActivationStatus::Timeout,
            ErrorKind::TooManyRequests | ErrorKind::Unavailable => ActivationStatus::Rejected,
            _ => ActivationStatus::Error,
        };
        rec.http_status = e.kind.http_status();
        rec.error = Some(e.message.clone());
        m.count(rec.status);
        m.latency.observe_us(t0.elapsed().as_micros() as u64);
        self.metrics.error(e.kind);
        e.activation_id = Some(rec.id.clone());
        self.record(rec);
        e
    }

    fn record(&self, rec: Activation) {
        if self.records.try_send(Msg::Record(rec)).is_err() {
            self.metrics.activations_dropped.fetch_add(1, Relaxed);
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(4096);
        let fns: Vec<(String, Arc<FunctionMetrics>)> = self
            .fn_metrics
            .read()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let table: Vec<Arc<FunctionHandle>> =
            self.table.read().unwrap().values().cloned().collect();
        let sections = [
            (
                "invocations",
                "wisp_invocations_total",
                "counter",
                "Invocations by function and outcome.",
            ),
            (
                "cold",
                "wisp_cold_starts_total",
                "counter",
                "Requests that had to load their function.",
            ),
            (
                "queue",
                "wisp_queue_depth",
                "gauge",
                "Requests waiting for a concurrency slot.",
            ),
            (
                "running",
                "wisp_instances_running",
                "gauge",
                "Instances running now.",
            ),
            (
                "latency",
                "wisp_request_duration_seconds",
                "histogram",
                "End-to-end invocation latency (wait + init + run).",
            ),
        ];
        for (sec, name, ty, help) in sections {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}");
            for (f, m) in &fns {
                metrics::render_function(&mut out, f, m, sec);
            }
        }
        let warm = table.iter().filter(|h| h.is_warm()).count();
        let scalars: [(&str, &str, &str, u64); 8] = [
            (
                "wisp_functions",
                "gauge",
                "Functions deployed.",
                table.len() as u64,
            ),
            (
                "wisp_warm_functions",
                "gauge",
                "Functions with a loaded, ready-to-instantiate template.",
                warm as u64,
            ),
            (
                "wisp_compilations_total",
                "counter",
                "Cranelift compilations by this process.",
                self.runtime.compilations(),
            ),
            (
                "wisp_artifact_loads_total",
                "counter",
                "Precompiled artifacts mapped (cold loads).",
                self.metrics.loads.load(Relaxed),
            ),
            (
                "wisp_deploys_total",
                "counter",
                "Deploys that created a version.",
                self.metrics.deploys.load(Relaxed),
            ),
            (
                "wisp_activations_written_total",
                "counter",
                "Activation records written.",
                self.metrics.activations_written.load(Relaxed),
            ),
            (
                "wisp_activations_dropped_total",
                "counter",
                "Activation records dropped (writer behind).",
                self.metrics.activations_dropped.load(Relaxed),
            ),
            (
                "wisp_pooling_allocator",
                "gauge",
                "1 if the pooling instance allocator is active.",
                self.runtime.pooling() as u64,
            ),
        ];
        for (name, ty, help, v) in scalars {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {ty}\n{name} {v}");
        }
        self.metrics.render_errors(&mut out);
        out
    }
}

/// Compile `wasm`, write its artifact atomically and map it. Blocking.
/// An artifact that cannot be linked is removed again.
fn compile_artifact(
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
            let _ = std::fs::remove_file(&path);
            Err(rt_err(e))
        }
    }
}

/// A streamed activation awaiting its end: written to the log when the last
/// of its holders (the instance's completion, the response body) lets go.
struct PendingRecord {
    rec: std::sync::Mutex<Option<Activation>>,
    bytes_out: std::sync::atomic::AtomicU64,
    records: mpsc::Sender<Msg>,
    metrics: Arc<Metrics>,
    fm: Arc<FunctionMetrics>,
    t0: Instant,
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        let Some(mut rec) = self.rec.get_mut().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        rec.bytes_out = *self.bytes_out.get_mut();
        self.fm.count(rec.status);
        self.fm
            .latency
            .observe_us(self.t0.elapsed().as_micros() as u64);
        if self.records.try_send(Msg::Record(rec)).is_err() {
            self.metrics.activations_dropped.fetch_add(1, Relaxed);
        }
    }
}

/// A streamed response body that counts the bytes sent and ends only once
/// the instance has too: as with a CGI process, the response is complete
/// when the function is, and its record is queued before the last bytes go
/// out.
struct Counted {
    /// `None` once the guest's body has ended.
    inner: Option<wisp_runtime::ResponseBody>,
    pending: Option<Arc<PendingRecord>>,
    instance_ended: oneshot::Receiver<()>,
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = wisp_runtime::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(inner) = &mut this.inner {
            match std::pin::Pin::new(inner).poll_frame(cx) {
                Poll::Ready(None) => this.inner = None,
                Poll::Ready(Some(Ok(f))) => {
                    if let (Some(d), Some(p)) = (f.data_ref(), &this.pending) {
                        p.bytes_out.fetch_add(d.len() as u64, Relaxed);
                    }
                    return Poll::Ready(Some(Ok(f)));
                }
                other => return other,
            }
        }
        // The guest's body is done; end the response with the instance.
        // (A dropped sender also means the instance is gone.)
        if std::pin::Pin::new(&mut this.instance_ended)
            .poll(cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        this.pending = None;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

/// CGI header lines as an HTTP header map; lines that are not valid HTTP
/// names or values are dropped.
fn header_map(lines: Vec<(String, String)>) -> http::HeaderMap {
    let mut hs = http::HeaderMap::with_capacity(lines.len());
    for (k, v) in lines {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::try_from(v),
        ) {
            hs.append(k, v);
        }
    }
    hs
}

struct AbortOnDrop(tokio::task::AbortHandle);
impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn rt_err(e: wisp_runtime::Error) -> Error {
    match e {
        wisp_runtime::Error::Invalid(m) => Error::new(ErrorKind::BadRequest, m),
        wisp_runtime::Error::Internal(m) => Error::new(ErrorKind::Internal, m),
    }
}

fn log_text(stderr: &[u8], truncated: bool) -> Option<String> {
    if stderr.is_empty() {
        return None;
    }
    let mut s = String::from_utf8_lossy(stderr).into_owned();
    if truncated {
        s.push_str("\n[log truncated]");
    }
    Some(s)
}

/// Batches activation records into SQLite off the hot path.
async fn writer(exec: std::sync::Weak<Executor>, store: Arc<Store>, mut rx: mpsc::Receiver<Msg>) {
    const BATCH: usize = 512;
    let mut since_prune = 0usize;
    let mut buf: Vec<Msg> = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut buf, BATCH).await > 0 {
        // Under load, let a batch fill for a moment: one transaction per
        // ~25 ms instead of one per handful of records.
        if buf.len() < BATCH && !buf.iter().any(|m| matches!(m, Msg::Flush(_))) {
            tokio::time::sleep(Duration::from_millis(25)).await;
            while buf.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => buf.push(m),
                    Err(_) => break,
                }
            }
        }
        let mut batch = Vec::with_capacity(buf.len());
        let mut flushes = Vec::new();
        for m in buf.drain(..) {
            match m {
                Msg::Record(a) => batch.push(a),
                Msg::Flush(tx) => flushes.push(tx),
            }
        }
        let n = batch.len();
        let retention = exec
            .upgrade()
            .map(|e| e.opts.activation_retention)
            .unwrap_or(u64::MAX);
        since_prune += n;
        let prune = since_prune >= 1000;
        if prune {
            since_prune = 0;
        }
        let s = store.clone();
        let res = tokio::task::spawn_blocking(move || {
            if !batch.is_empty() {
                s.insert_activations(&batch)?;
            }
            if prune {
                s.prune_activations(retention)?;
            }
            Ok::<_, wisp_store::Error>(())
        })
        .await;
        match res {
            Ok(Ok(())) => {
                if let Some(e) = exec.upgrade() {
                    e.metrics.activations_written.fetch_add(n as u64, Relaxed);
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, dropped = n, "writing activation records failed")
            }
            Err(e) => tracing::warn!(error = %e, "activation writer task failed"),
        }
        for f in flushes {
            let _ = f.send(());
        }
    }
}
