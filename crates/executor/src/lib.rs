//! Wisp's executor: the warm function table, admission (per-function
//! concurrency with a bounded wait queue, node-wide instance and buffer
//! caps), deadlines, activation records and metrics. It sits between the
//! HTTP layer and the runtime and parses no HTTP itself.
//!
//! Lifecycle:
//! - **deploy** (slow path, on purpose, [`table`]): validate, store the
//!   module content-addressed, compile ahead of time once, link, commit the
//!   version, and install a pre-warmed handle; cancel-safe and one at a time;
//! - **startup**: every stored function gets a handle that points at its
//!   artifact; the first request verifies and maps it (a *cold* start, no
//!   compile, [`template`]);
//! - **request** ([`invoke`]): a [`Draft`](activation) record, admission
//!   ([`admission`]: a guard that releases everything once), the warm
//!   template, a fresh instance under the ABI's rules, and the record
//!   finished off the hot path ([`writer`]).

mod activation;
pub mod admission;
mod call;
mod error;
mod invoke;
mod metrics;
mod namespaces;
mod resolve;
mod table;
mod template;
mod workflow;
mod writer;

pub use activation::new_activation_id;
pub use call::{Call, Called};
pub use error::Error;
pub use invoke::{Request, RequestBody, Response, ResponseBody};
pub use metrics::{FunctionMetrics, Metrics};
pub use namespaces::Issued;
pub use table::{Deployed, FunctionHandle, Source, invoke_path};
pub use wisp_store::{ActivationQuery, Namespace};
pub use workflow::{Prepared, WorkflowHandle, WorkflowInput, WorkflowOutput};

use activation::{Msg, Recorder};
use admission::NodeLimits;
use error::{join_err, store_err};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, oneshot};
use wisp_core::{Activation, FunctionInfo, FunctionVersion};
use wisp_runtime::Runtime;
use wisp_store::Store;

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
    /// inline on the caller's runtime (fine for tools and tests). With a
    /// slow lane, guests that keep running move to lower-priority threads
    /// (see `wisp_runtime::GuestLanes`).
    pub guest_runtime: Option<wisp_runtime::GuestLanes>,
    /// Roots directory grants may come from (canonical paths). Empty: no
    /// grants at all. Never the Wisp home, whatever is listed.
    pub allow_dirs: Vec<PathBuf>,
    /// Instances alive at once node-wide, whatever the allocator (the pool
    /// size in pooling mode).
    pub max_instances: usize,
    /// Request-body bytes buffered at once node-wide.
    pub max_buffered_body_bytes: usize,
    /// Longest a deploy may compile before it is abandoned.
    pub compile_timeout: Duration,
    /// Deploys that may wait for the one running.
    pub max_pending_deploys: usize,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            activation_retention: 100_000,
            activation_queue: 8192,
            max_module_bytes: 64 << 20,
            guest_runtime: None,
            allow_dirs: Vec::new(),
            max_instances: 2000,
            max_buffered_body_bytes: 1 << 30,
            compile_timeout: Duration::from_secs(120),
            max_pending_deploys: 16,
        }
    }
}

/// The executor. Share it behind an `Arc`.
pub struct Executor {
    runtime: Arc<Runtime>,
    store: Arc<Store>,
    /// namespace → name → the served version.
    table: RwLock<HashMap<String, HashMap<String, Arc<FunctionHandle>>>>,
    fn_metrics: RwLock<HashMap<(String, String), Arc<FunctionMetrics>>>,
    keys: namespaces::Keys,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    node: Arc<NodeLimits>,
    deploy_lock: Arc<tokio::sync::Mutex<()>>,
    pending_deploys: Arc<Semaphore>,
    opts: ExecutorOptions,
    /// namespace → name → the deployed workflow.
    workflows: RwLock<HashMap<String, HashMap<String, Arc<WorkflowHandle>>>>,
    /// Handles of pinned function versions that aren't active ([`resolve`]),
    /// by namespace and reference.
    pinned: RwLock<HashMap<(String, wisp_workflow::FunctionRef), Arc<FunctionHandle>>>,
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
        let metrics = Arc::new(Metrics::default());
        let exec = Arc::new(Executor {
            runtime,
            store: store.clone(),
            table: RwLock::new(HashMap::new()),
            fn_metrics: RwLock::new(HashMap::new()),
            keys: namespaces::Keys::load(&store).map_err(store_err)?,
            recorder: Recorder {
                tx,
                metrics: metrics.clone(),
            },
            metrics,
            node: Arc::new(NodeLimits::new(
                opts.max_instances.max(1),
                opts.max_buffered_body_bytes,
            )),
            deploy_lock: Arc::new(tokio::sync::Mutex::new(())),
            pending_deploys: Arc::new(Semaphore::new(opts.max_pending_deploys.max(1))),
            opts,
            workflows: RwLock::new(HashMap::new()),
            pinned: RwLock::new(HashMap::new()),
        });
        let removed = store.gc(exec.runtime.fingerprint()).map_err(store_err)?;
        if removed > 0 {
            tracing::info!(
                removed,
                "removed unreferenced blobs, stale artifacts and temp files"
            );
        }
        for f in store.list_functions(None).map_err(store_err)? {
            exec.install(f.active, None);
        }
        for w in store.list_workflows(None).map_err(store_err)? {
            exec.install_workflow(w);
        }
        tokio::spawn(writer::writer(Arc::downgrade(&exec), store, rx));
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

    /// Options.
    pub fn options(&self) -> &ExecutorOptions {
        &self.opts
    }

    /// A function as stored.
    pub async fn info(&self, namespace: &str, name: &str) -> Result<Option<FunctionInfo>, Error> {
        let store = self.store.clone();
        let (ns, n) = (namespace.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.get_function(&ns, &n))
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// A stored version (the active one if `version` is `None`) and its
    /// module bytes, checked against the version's digest.
    pub async fn module(
        &self,
        namespace: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(FunctionVersion, Vec<u8>)>, Error> {
        let store = self.store.clone();
        let (ns, n) = (namespace.to_string(), name.to_string());
        tokio::task::spawn_blocking(move || store.module(&ns, &n, version))
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// The functions of a namespace (of all when `None`) as stored.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<FunctionInfo>, Error> {
        let store = self.store.clone();
        let ns = namespace.map(str::to_string);
        tokio::task::spawn_blocking(move || store.list_functions(ns.as_deref()))
            .await
            .map_err(join_err)?
            .map_err(store_err)
    }

    /// Recent activations, newest first.
    pub async fn activations(
        &self,
        namespace: Option<String>,
        function: Option<String>,
        since_ms: Option<i64>,
        upto_ms: Option<i64>,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<Activation>, Error> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.list_activations(&ActivationQuery {
                namespace: namespace.as_deref(),
                function: function.as_deref(),
                since_ms,
                upto_ms,
                limit,
                skip,
            })
        })
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

    /// Write a finished record that [`Executor::call`] handed back, off
    /// the hot path like every other record.
    pub fn record(&self, rec: Activation) {
        self.recorder.send(rec);
    }

    /// Wait until every activation recorded so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.recorder.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Prometheus text exposition of every metric.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(4096);
        // Series labels: `function="f"` in the default namespace (as before
        // namespaces), `function="f",namespace="ns"` elsewhere.
        let fns: Vec<(String, Arc<FunctionMetrics>)> = self
            .fn_metrics
            .read()
            .unwrap()
            .iter()
            .map(|((ns, f), v)| {
                let labels = if ns == wisp_core::DEFAULT_NAMESPACE {
                    format!("function=\"{f}\"")
                } else {
                    format!("function=\"{f}\",namespace=\"{ns}\"")
                };
                (labels, v.clone())
            })
            .collect();
        let table: Vec<Arc<FunctionHandle>> = self
            .table
            .read()
            .unwrap()
            .values()
            .flat_map(|fns| fns.values().cloned())
            .collect();
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
        let scalars: [(&str, &str, &str, u64); 12] = [
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
                "wisp_workflow_instances_made_ahead_total",
                "counter",
                "Workflow steps that ran in an instance made while their inputs were produced.",
                self.metrics.made_ahead_used.load(Relaxed),
            ),
            (
                "wisp_workflow_instances_not_ready_total",
                "counter",
                "Workflow steps whose instance made ahead was not ready when they started (they made their own).",
                self.metrics.made_ahead_missed.load(Relaxed),
            ),
            (
                "wisp_node_instances",
                "gauge",
                "Instances admitted node-wide and not yet ended (capped by --pool-instances).",
                self.node.instances.in_use() as u64,
            ),
            (
                "wisp_node_buffered_body_bytes",
                "gauge",
                "Request-body bytes buffered node-wide (capped by --max-buffered-body).",
                self.node.body_bytes.in_use() as u64,
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
