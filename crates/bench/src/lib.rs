//! `wisp bench`: the experiments of the papers Wisp is measured against,
//! run against real baselines in one invocation, with statistics, a JSON
//! file of raw samples, a Markdown report and SVG plots.
//!
//! The pieces are usable on their own: [`stats`] (summaries, Mann–Whitney
//! U, ECDF), [`load`] (closed/open-loop HTTP load generator), [`server`]
//! (launch `wisp serve` as a child), [`baseline`] (process- and
//! container-per-request servers), [`plot`] (SVG) and [`report`].
//! [`run`] ties them together into the scenarios of [`Scenario`].

pub mod baseline;
pub mod containerd;
pub mod edge;
pub mod http;
pub mod images;
pub mod invoker;
pub mod load;
pub mod plot;
pub mod progress;
pub mod report;
pub mod runc;
pub mod scenarios;
pub mod server;
pub mod stats;
pub mod wasmtime_serve;

use anyhow::{Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// One experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// One client, no keep-alive, one function at a time.
    Serial,
    /// Deploy and first-response times; concurrent cold starts.
    Cold,
    /// Rate-limited clients; open-loop maximum sustainable rate.
    Concurrent,
    /// CPU-bound + I/O-bound mix at rising rates; skewed mix.
    Mixed,
    /// RSS per warm idle function.
    Memory,
    /// CPU-bound functions, Wasm vs native.
    Runtime,
    /// Module, artifact, native and image sizes.
    Size,
    /// Reliability: kill -9 under load, soak, noisy neighbours. Not part
    /// of the default set (it kills servers and runs > 10 min in full).
    Chaos,
    /// Wasm images through the Wisp shim against runc containers, both
    /// under one private containerd. Not part of the default set (needs
    /// root, containerd, runc and the shim binary).
    Containerd,
    /// The WOW edge study's experiments through Wisp's OpenWhisk API
    /// against OpenWhisk's container model (a runc container per action).
    /// Not part of the default set (needs root, containerd and runc for
    /// the baseline).
    OpenWhisk,
    /// One workflow in a browser, on an edge-sized node and on the cloud
    /// node. Not part of the default set (needs Chromium and node; the edge
    /// arm needs root for its cgroup).
    Workflow,
    /// N replicas to Ready and to a first response on a single-node
    /// Kubernetes cluster (`scripts/k8s-local start --node`): WasmApp and
    /// Deployment through the Wisp shim against runc. Not part of the
    /// default set (needs root, the Kubernetes build, the shim and operator).
    K8s,
}

impl Scenario {
    /// All, in report order.
    pub const ALL: [Scenario; 12] = [
        Scenario::Serial,
        Scenario::Cold,
        Scenario::Concurrent,
        Scenario::Mixed,
        Scenario::Memory,
        Scenario::Runtime,
        Scenario::Size,
        Scenario::Chaos,
        Scenario::Containerd,
        Scenario::OpenWhisk,
        Scenario::Workflow,
        Scenario::K8s,
    ];

    /// Scenarios that run only when named: `chaos` kills servers, opens
    /// thousands of sockets and takes minutes; `containerd` needs root and
    /// a containerd, and starts a private one; `k8s` starts a whole cluster.
    pub fn opt_in(self) -> bool {
        matches!(
            self,
            Scenario::Chaos
                | Scenario::Containerd
                | Scenario::OpenWhisk
                | Scenario::Workflow
                | Scenario::K8s
        )
    }

    /// What runs when no scenario is named: every scenario but the opt-in
    /// ones (the papers' experiments).
    pub fn defaults() -> Vec<Scenario> {
        Scenario::ALL.into_iter().filter(|s| !s.opt_in()).collect()
    }

    /// Lower-case name (`--scenario` value, JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Serial => "serial",
            Scenario::Cold => "cold",
            Scenario::Concurrent => "concurrent",
            Scenario::Mixed => "mixed",
            Scenario::Memory => "memory",
            Scenario::Runtime => "runtime",
            Scenario::Size => "size",
            Scenario::Chaos => "chaos",
            Scenario::Containerd => "containerd",
            Scenario::OpenWhisk => "openwhisk",
            Scenario::Workflow => "workflow",
            Scenario::K8s => "k8s",
        }
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown scenario {s:?} (one of: {})",
                    Scenario::ALL.map(|x| x.name()).join(", ")
                )
            })
    }
}

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `wisp` binary to launch as the server.
    pub wisp_bin: PathBuf,
    /// Output directory (created).
    pub out: PathBuf,
    /// Every scenario briefly (smoke test).
    pub quick: bool,
    /// Scenarios to run (empty = [`Scenario::defaults`]).
    pub scenarios: Vec<Scenario>,
    /// `functions/target/manifest.json` (from `scripts/build-functions`).
    pub manifest: PathBuf,
    /// Serial scenario: measuring time per function and platform.
    pub duration: Option<Duration>,
    /// Cold scenario: repetitions.
    pub cold_runs: Option<usize>,
    /// Memory scenario: function counts.
    pub memory_counts: Option<Vec<usize>>,
    /// Concurrent scenario: duration of the rate-limited run.
    pub concurrent_duration: Option<Duration>,
    /// Skip the container (runc) baseline even if available.
    pub no_container: bool,
    /// Chaos: parts to run, of "kill", "soak", "noisy" (empty = all).
    pub chaos_parts: Vec<String>,
    /// Containerd: the `containerd-shim-wisp-v1` binary to install.
    pub shim_bin: Option<PathBuf>,
    /// Containerd: repetitions per function and side.
    pub containerd_runs: Option<usize>,
    /// OpenWhisk: most containers of the container baseline alive at once.
    pub ow_containers: Option<usize>,
    /// K8s: the `wisp-operator` binary to run.
    pub operator_bin: Option<PathBuf>,
    /// K8s: replica counts (default 1, 5, 20; 1 with `quick`).
    pub k8s_replicas: Option<Vec<usize>>,
    /// K8s: repetitions per replica count and way (default 5; 1 with `quick`).
    pub k8s_runs: Option<usize>,
}

impl Options {
    /// Defaults for `wisp_bin` and `out`.
    pub fn new(wisp_bin: PathBuf, out: PathBuf, manifest: PathBuf) -> Options {
        Options {
            wisp_bin,
            out,
            quick: false,
            scenarios: vec![],
            manifest,
            duration: None,
            cold_runs: None,
            memory_counts: None,
            concurrent_duration: None,
            no_container: false,
            chaos_parts: vec![],
            shim_bin: None,
            containerd_runs: None,
            ow_containers: None,
            operator_bin: None,
            k8s_replicas: None,
            k8s_runs: None,
        }
    }
}

/// One built guest, from the manifest.
#[derive(Clone, Debug, Deserialize)]
pub struct Func {
    /// The `.wasm`.
    pub wasm: PathBuf,
    /// The native build (command modules only).
    pub native: Option<PathBuf>,
    /// Wasm size in bytes.
    pub wasm_size: u64,
    /// Native size in bytes.
    pub native_size: Option<u64>,
    /// "command" or "http".
    #[serde(default = "command")]
    pub abi: String,
}

fn command() -> String {
    "command".into()
}

/// State shared by the scenarios of one run.
pub struct Ctx {
    /// The options.
    pub opts: Options,
    /// Guests by name.
    pub funcs: BTreeMap<String, Func>,
    /// Scratch directory (server homes, bundles), removed at the end.
    pub work: PathBuf,
    runc: OnceLock<Result<Arc<runc::Runc>, String>>,
    runtime: OnceLock<Result<Arc<wisp_runtime::Runtime>, String>>,
}

impl Ctx {
    /// A guest by name, or an error naming the script that builds it.
    pub fn func(&self, name: &str) -> Result<&Func> {
        self.funcs.get(name).with_context(|| {
            format!(
                "function {name} is not in {} (run scripts/build-functions)",
                self.opts.manifest.display()
            )
        })
    }

    /// A guest's native build.
    pub fn native(&self, name: &str) -> Result<&Path> {
        self.func(name)?.native.as_deref().with_context(|| {
            format!("{name} has no native build (run scripts/build-functions without --wasm-only)")
        })
    }

    /// A guest's wasm bytes.
    pub fn wasm(&self, name: &str) -> Result<Vec<u8>> {
        let f = self.func(name)?;
        std::fs::read(&f.wasm).with_context(|| format!("reading {}", f.wasm.display()))
    }

    /// Progress line on stderr (above the bars on a terminal).
    pub fn progress(&self, msg: &str) {
        progress::line(msg);
    }

    /// A fresh directory under the scratch directory.
    pub fn scratch(&self, name: &str) -> PathBuf {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.work.join(format!("{name}-{n}"))
    }

    /// Start a `wisp serve` with a fresh home.
    pub fn start_wisp(&self, args: &[&str]) -> Result<server::WispServer> {
        server::WispServer::start(&self.opts.wisp_bin, &self.scratch("home"), args)
    }

    /// The container baseline, set up once for every native build; `Err`
    /// says why it is not measured.
    pub fn runc(&self) -> Result<Arc<runc::Runc>, String> {
        self.runc
            .get_or_init(|| {
                if self.opts.no_container {
                    return Err("disabled with --no-container".into());
                }
                let exes: Vec<PathBuf> = ["hello"]
                    .iter()
                    .filter_map(|n| self.funcs.get(*n).and_then(|f| f.native.clone()))
                    .chain(
                        self.funcs
                            .iter()
                            .filter(|(n, _)| *n != "hello")
                            .filter_map(|(_, f)| f.native.clone()),
                    )
                    .collect();
                runc::Runc::setup(&self.work.join("runc"), &exes)
                    .map(Arc::new)
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
    }

    /// An in-process Wasm runtime (the engine `wisp serve` uses).
    pub fn runtime(&self) -> Result<Arc<wisp_runtime::Runtime>> {
        self.runtime
            .get_or_init(|| {
                wisp_runtime::Runtime::new(wisp_runtime::EngineOptions {
                    pool_instances: 16,
                    ..Default::default()
                })
                .map(Arc::new)
                .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Pick the quick or the full value.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.opts.quick { quick } else { full }
    }
}

/// Where the results went.
#[derive(Debug)]
pub struct Written {
    /// `results.json`.
    pub json: PathBuf,
    /// `report.md`.
    pub markdown: PathBuf,
    /// The SVG files (and PNG copies when `rsvg-convert` is installed).
    pub plots: Vec<PathBuf>,
    /// Scenarios that failed (name, error).
    pub failed: Vec<(String, String)>,
}

/// Run the chosen scenarios and write the report. Creates its own Tokio runtime.
pub fn run(opts: Options) -> Result<Written> {
    let text = std::fs::read_to_string(&opts.manifest).with_context(|| {
        format!(
            "reading {} (build the guests first: scripts/build-functions)",
            opts.manifest.display()
        )
    })?;
    let funcs: BTreeMap<String, Func> = serde_json::from_str(&text)
        .with_context(|| format!("parsing {}", opts.manifest.display()))?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let work = opts.out.join(".work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let ctx = Ctx {
        opts,
        funcs,
        work: work.clone(),
        runc: OnceLock::new(),
        runtime: OnceLock::new(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("bench")
        .build()?;
    let scenarios = if ctx.opts.scenarios.is_empty() {
        Scenario::defaults()
    } else {
        ctx.opts.scenarios.clone()
    };
    let started = std::time::Instant::now();
    let mut sections = Vec::new();
    for s in scenarios {
        ctx.progress(&format!(
            "scenario {} ({})",
            s.name(),
            if ctx.opts.quick { "quick" } else { "full" }
        ));
        let t0 = std::time::Instant::now();
        let sec = match rt.block_on(scenarios::run(&ctx, s)) {
            Ok(mut sec) => {
                sec.seconds = t0.elapsed().as_secs_f64();
                sec
            }
            Err(e) => {
                ctx.progress(&format!("scenario {} FAILED: {e:#}", s.name()));
                report::Section::failed(s.name(), &format!("{e:#}"), t0.elapsed().as_secs_f64())
            }
        };
        ctx.progress(&format!(
            "scenario {} done in {:.1} s",
            s.name(),
            sec.seconds
        ));
        sections.push(sec);
    }
    drop(rt);
    let written = report::write(&ctx, &sections, started.elapsed().as_secs_f64())?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(written)
}
