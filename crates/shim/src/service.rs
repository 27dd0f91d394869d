//! The task service (task API v2) and the shim's process lifecycle.
//!
//! One shim daemon serves every container of a containerd namespace on the
//! node by default, or a pod's, or one container's (see [`group`]). Per
//! daemon: one [`Runtime`] (engine, pool, epoch ticker), built at the first
//! `create`, the modules it has mapped, the pool's slots shared by all its
//! containers, and one `wisp-guest` Tokio runtime for command modules, so a
//! spinning guest never delays a ttrpc answer. Per HTTP function: a Tokio
//! runtime inside the container's network namespace (see `netns`).
//!
//! State of a task: `Created` → `Running` → `Stopped`, the exit written
//! once by whoever ends it (the guest, `kill` of a created task) and then
//! published as `TaskExit`. The std mutexes here are never held across an
//! await.

use crate::cache;
use crate::group::{self, Group};
use crate::http::{self, HttpFunction};
use crate::netns;
use crate::shimlog;
use crate::spec::{self, BundleSpec};
use crate::stdio::{self, LogSink};
use anyhow::{Context as _, Result as AnyResult, anyhow};
use async_trait::async_trait;
use containerd_shim::asynchronous::util::mount_rootfs;
use containerd_shim::asynchronous::{ExitSignal, Shim, spawn};
use containerd_shim::protos::api;
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::shim_async::Task;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::util::convert_to_any;
use containerd_shim::{
    Config, Context, DeleteResponse, Error, Flags, StartOpts, TtrpcContext, TtrpcResult,
};
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OnceCell, watch};
use wisp_core::outbound::AllowList;
use wisp_core::{DirGrant, Limits, MAX_MEMORY_BYTES};
use wisp_runtime::{
    CommandExit, CommandRun, EXIT_TIMEOUT, EXIT_TRAP, EngineOptions, Loaded, Runtime, StopHandle,
};
use wisp_shim_launcher::start::{Plan, StartSpec, write_address};

/// Env variable: how long SIGTERM waits for a guest before stopping it, in ms.
pub const GRACE_ENV: &str = "WISP_SHIM_STOP_GRACE_MS";
/// Default grace period after SIGTERM.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(2);
/// Env variable: instance slots in the shim's pool.
pub const POOL_ENV: &str = "WISP_SHIM_POOL_INSTANCES";
/// Default pool slots of a daemon shared by the node's containers (`node`
/// grouping): each reserves address space (not memory), as `wisp serve`'s
/// 2000 do. A running command holds one slot, an HTTP request one.
pub const DEFAULT_POOL: u32 = 1000;
/// Default pool slots of a daemon serving one pod or container.
pub const DEFAULT_POOL_PER_POD: u32 = 32;

const SIGKILL: u32 = 9;
const SIGTERM: u32 = 15;
const SIGINT: u32 = 2;

/// The shim's process lifecycle (`start`, `delete`, serve until shutdown).
pub struct WispShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    /// The grouping, or why `WISP_SHIM_GROUP` is wrong (said at `start`).
    group: Result<Group, group::BadGroup>,
    /// The daemon's socket (`-socket`; empty for `start` and `delete`).
    socket: String,
    debug: bool,
}

#[async_trait]
impl Shim for WispShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, config: &mut Config) -> Self {
        // The daemon's log follows its live containers (see `shimlog`).
        config.no_setup_logger = true;
        WispShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            group: Group::from_env(),
            socket: args.socket.clone(),
            debug: args.debug,
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // The working directory is the bundle. The container may choose its
        // grouping; else the node's setting holds. The launcher decides the
        // same way (one `Plan`) and answers itself when the shared daemon
        // is alive; this runs when it is not, or for a daemon per `start`.
        let bundle = Path::new(".");
        let spec = StartSpec::load(bundle);
        let plan = Plan::new(&opts.id, spec.as_ref(), self.group.clone())
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let (group, key) = (plan.group, plan.key.clone());
        // The daemon learns its grouping from its environment.
        let vars = vec![(group::GROUP_ENV, group.name())];
        let Some(address) = plan.shared_address(&opts.address, &opts.namespace) else {
            let address = spawn(opts, &key, vars).await?;
            write_address(bundle, &address).map_err(|e| Error::Other(format!("start: {e}")))?;
            return Ok(address);
        };
        // A shared daemon: hand out its socket when it runs (no process,
        // no engine to start), else start it, deciding under the lock a
        // lingering daemon takes before it leaves.
        let addr = address.clone();
        let lock = tokio::task::spawn_blocking(move || -> AnyResult<_> {
            let lock = group::StartLock::acquire(&addr)?;
            let alive = group::alive(&addr);
            Ok((lock, alive))
        })
        .await
        .map_err(|e| Error::Other(format!("start: {e}")))?;
        let (lock, alive) = lock.map_err(|e| Error::Other(format!("start: {e:#}")))?;
        let address = if alive {
            address
        } else {
            spawn(opts, &key, vars).await?
        };
        lock.stamp()
            .map_err(|e| Error::Other(format!("start: {e:#}")))?;
        drop(lock);
        write_address(bundle, &address).map_err(|e| Error::Other(format!("start: {e}")))?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // The launcher answers `delete` itself; the same code, should this
        // binary be run as the shim directly.
        let bundle = std::env::current_dir().map_err(|e| Error::Other(format!("bundle: {e}")))?;
        Ok(wisp_shim_launcher::delete::delete(&bundle))
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> TaskService {
        let bundle = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
        shimlog::init(&bundle, self.debug);
        let group = self.group.clone().unwrap_or(Group::Container);
        if group.lingers() {
            // Outlives this bundle: don't keep it as the working directory.
            let _ = std::env::set_current_dir("/");
        }
        let guests = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("wisp-guest")
            .enable_all()
            .build()
            .expect("starting the guest runtime");
        let grace = std::env::var(GRACE_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_GRACE);
        TaskService(Arc::new(Inner {
            containers: Mutex::new(HashMap::new()),
            publisher,
            namespace: self.namespace.clone(),
            exit: self.exit.clone(),
            runtime: OnceCell::new(),
            mapped: cache::Mapped::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(runtime_pool(group) as usize)),
            guests: guests.handle().clone(),
            _guests: GuestRuntime(Some(guests)),
            grace,
            group,
            socket: self.socket.clone(),
            lingering: false.into(),
            last_change: Mutex::new(std::time::Instant::now()),
        }))
    }
}

/// The ttrpc task service.
#[derive(Clone)]
pub struct TaskService(Arc<Inner>);

struct Inner {
    containers: Mutex<HashMap<String, Arc<Container>>>,
    publisher: RemotePublisher,
    namespace: String,
    exit: Arc<ExitSignal>,
    runtime: OnceCell<Arc<Runtime>>,
    /// Modules mapped for earlier containers of this daemon.
    mapped: cache::Mapped,
    /// Instance slots (the pool's size), shared by every container.
    slots: Arc<tokio::sync::Semaphore>,
    guests: tokio::runtime::Handle,
    /// Owns the guest runtime.
    _guests: GuestRuntime,
    grace: Duration,
    group: Group,
    /// This daemon's socket address.
    socket: String,
    /// Whether a linger countdown runs.
    lingering: std::sync::atomic::AtomicBool,
    /// When a container last came or went.
    last_change: Mutex<std::time::Instant>,
}

/// A runtime shut down in the background when dropped: the one guests run
/// on, and an HTTP function's while it starts.
///
/// The shim drops it on an async thread (its `shutdown` path), where a
/// plain `Runtime` drop would block, which Tokio refuses with a panic: the
/// shim used to exit with status 101 after every container, and to spend
/// ~0.4 s of CPU printing a backtrace when `RUST_BACKTRACE` was set.
struct GuestRuntime(Option<tokio::runtime::Runtime>);

impl Drop for GuestRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What runs in the container.
enum Kind {
    /// A command module: `_start` once.
    Command(Loaded),
    /// An HTTP function (component, or command module speaking CGI).
    Http(Arc<HttpFunction>),
    /// A Kubernetes pod's sandbox ("pause") container: holds nothing (the
    /// CRI made the network namespace already) and runs until killed.
    Sandbox,
}

#[derive(Clone, Copy)]
struct Exit {
    code: u32,
    at: (i64, i32),
}

impl Exit {
    fn timestamp(&self) -> Timestamp {
        Timestamp {
            seconds: self.at.0,
            nanos: self.at.1,
            ..Default::default()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Created,
    Running,
    Stopped,
}

struct Container {
    id: String,
    bundle: String,
    stdin: String,
    stdout: String,
    stderr: String,
    spec: BundleSpec,
    kind: Kind,
    rootfs_mounted: bool,
    netns: Option<Arc<OwnedFd>>,
    status: Mutex<Status>,
    exit: watch::Sender<Option<Exit>>,
    stop: StopHandle,
    /// The signal that asked it to stop (0: none yet).
    signal: std::sync::atomic::AtomicU32,
    /// Whether the stop may wait for a drain (SIGTERM) or not (SIGKILL).
    graceful: std::sync::atomic::AtomicBool,
    /// An HTTP function's own runtime, shut down at delete.
    server_rt: Mutex<Option<tokio::runtime::Runtime>>,
    /// A command's output FIFOs, opened at create and taken at start.
    outputs: Mutex<Option<Outputs>>,
}

/// A command's stdout, stderr, and a second stderr writer for the shim's
/// own messages (trap, host error), after the guest's.
///
/// Opened at `create`, as runc's shim does, not at `start`: `ctr` (containerd's
/// `cio`) opens its read ends in the background and drops them unopened if
/// the task is deleted first, so a short task whose FIFOs opened only at
/// start could exit before the reader was there and lose its output.
struct Outputs {
    stdout: wisp_runtime::GuestOutput,
    stderr: wisp_runtime::GuestOutput,
    messages: Option<std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send + Sync>>>,
    /// Waited on before the exit is reported (see [`stdio::DrainProbe`]).
    probes: Vec<stdio::DrainProbe>,
}

/// How long a command's exit report waits for `ctr`/the CRI to read the
/// output it left in the FIFOs.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

impl Outputs {
    fn open(stdout: &str, stderr: &str) -> AnyResult<Outputs> {
        Ok(Outputs {
            stdout: stdio::guest_output(stdout)?,
            stderr: stdio::guest_output(stderr)?,
            messages: stdio::writer(stderr).ok().flatten(),
            probes: [stdout, stderr]
                .into_iter()
                .filter_map(stdio::DrainProbe::open)
                .collect(),
        })
    }
}

impl Container {
    fn status(&self) -> Status {
        *self.status.lock().unwrap()
    }

    fn exited(&self) -> Option<Exit> {
        *self.exit.borrow()
    }
}

fn now() -> (i64, i32) {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, d.subsec_nanos() as i32)
}

fn pid() -> u32 {
    std::process::id()
}

fn not_found(id: &str) -> containerd_shim::protos::ttrpc::Error {
    Error::NotFoundError(format!("container {id} not found")).into()
}

fn invalid(msg: String) -> containerd_shim::protos::ttrpc::Error {
    Error::InvalidArgument(msg).into()
}

fn precondition(msg: String) -> containerd_shim::protos::ttrpc::Error {
    Error::FailedPreconditionError(msg).into()
}

use wisp_shim_launcher::delete::unmount;

impl TaskService {
    fn get(&self, id: &str) -> TtrpcResult<Arc<Container>> {
        self.0
            .containers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(id))
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) = self
            .0
            .publisher
            .publish(Context::default(), topic, &self.0.namespace, event)
            .await
        {
            log::warn!("publishing {topic}: {e}");
        }
    }

    /// The process-wide runtime, built on first use (off the async workers).
    async fn runtime(&self) -> AnyResult<Arc<Runtime>> {
        self.0
            .runtime
            .get_or_try_init(|| async {
                let pool = runtime_pool(self.0.group);
                tokio::task::spawn_blocking(move || {
                    Runtime::new(EngineOptions {
                        pool_instances: pool,
                        ..Default::default()
                    })
                    .map(Arc::new)
                    .map_err(|e| anyhow!("starting the Wasm engine: {e}"))
                })
                .await?
            })
            .await
            .cloned()
    }

    /// The network namespace pod sandbox `id` was given: from its container
    /// when this process runs it (a pod's containers share a shim), else
    /// from its bundle, which containerd keeps next to the container's.
    fn sandbox_netns(&self, id: &str, bundle: &str) -> AnyResult<spec::NetNs> {
        if let Some(c) = self.0.containers.lock().unwrap().get(id) {
            return Ok(c.spec.netns.clone());
        }
        let dir = Path::new(bundle)
            .parent()
            .context("the bundle has no parent directory")?
            .join(id);
        Ok(BundleSpec::load(&dir)
            .with_context(|| format!("the sandbox's bundle {}", dir.display()))?
            .netns)
    }

    /// Everything `create` does after the rootfs is mounted.
    async fn prepare(
        &self,
        req: &api::CreateTaskRequest,
        spec: &BundleSpec,
    ) -> AnyResult<(Kind, Option<Arc<OwnedFd>>)> {
        if spec.is_sandbox() {
            return Ok((Kind::Sandbox, None));
        }
        let module = spec.module_path()?;
        let runtime = self.runtime().await?;
        let rootfs = spec.rootfs.clone();
        let svc = self.clone();
        let (loaded, module_name) = tokio::task::spawn_blocking(move || -> AnyResult<_> {
            let wasm = read_in_root(&rootfs, &module)?;
            let (loaded, source) = svc
                .0
                .mapped
                .load(&runtime, &cache::cache_dir()?, &wasm)
                .with_context(|| display_in_root(&rootfs, &module))?;
            log::info!(
                "module {} loaded ({source:?})",
                display_in_root(&rootfs, &module)
            );
            Ok((loaded, display_in_root(&rootfs, &module)))
        })
        .await??;
        let http = matches!(loaded, Loaded::Http(_)) || spec.marked_http();
        if !http {
            return Ok((Kind::Command(loaded), None));
        }
        let netns = netns::open(&spec.pod_netns(|id| self.sandbox_netns(id, &req.bundle))?)?;
        let limits = Limits {
            memory_bytes: memory_limit(spec),
            max_concurrency: runtime_pool(self.0.group),
            ..Limits::default()
        };
        let allow = spec
            .env_var(spec::OUTBOUND_ENV)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let allow = AllowList::parse(&allow).map_err(|e| anyhow!("{}: {e}", spec::OUTBOUND_ENV))?;
        let f = HttpFunction {
            name: req.id.clone(),
            loaded,
            env: spec.env.clone(),
            dirs: dirs(spec),
            limits,
            allow: Arc::new(allow),
            // Opened at start, on the server's runtime.
            log: LogSink::disabled(),
            node_slots: self.0.slots.clone(),
        };
        log::info!("{module_name} is an HTTP function");
        Ok((Kind::Http(Arc::new(f)), netns))
    }

    /// A shared daemon whose last container went: wait out the linger,
    /// then leave, unless a container came or a `start` just handed out
    /// this socket (see [`group`]). Also leaves when containerd is gone.
    fn linger(&self) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.0.lingering.swap(true, SeqCst) {
            return;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            let linger = group::linger();
            let containerd = std::env::var("TTRPC_ADDRESS").ok();
            loop {
                tokio::time::sleep(linger.min(Duration::from_millis(500))).await;
                if !svc.0.containers.lock().unwrap().is_empty() {
                    break;
                }
                let idle = svc.0.last_change.lock().unwrap().elapsed();
                let s = svc.clone();
                let c = containerd.clone();
                let left = tokio::task::spawn_blocking(move || {
                    let gone = c.as_deref().is_some_and(|a| !group::alive(a));
                    (idle >= linger || gone) && s.try_leave(gone, idle)
                })
                .await
                .unwrap_or(false);
                if left {
                    return;
                }
            }
            svc.0.lingering.store(false, SeqCst);
            // A container may have come and gone while this was ending.
            if svc.0.containers.lock().unwrap().is_empty() {
                svc.linger();
            }
        });
    }

    /// Leave if still idle, under the lock `start` takes. Blocking.
    fn try_leave(&self, containerd_gone: bool, idle: Duration) -> bool {
        let lock = match group::StartLock::acquire(&self.0.socket) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("lingering: {e:#}");
                return false;
            }
        };
        if !self.0.containers.lock().unwrap().is_empty() {
            return false;
        }
        if !containerd_gone && lock.since_stamp() < group::START_WINDOW {
            return false;
        }
        // The next `start` finds no socket and starts a new daemon.
        let _ = std::fs::remove_file(group::socket_path(&self.0.socket));
        lock.remove();
        log::info!(
            "no container for {:.1} s{}: shutting down",
            idle.as_secs_f64(),
            if containerd_gone {
                " and containerd is gone"
            } else {
                ""
            }
        );
        // Held until the process exits.
        std::mem::forget(lock);
        self.0.exit.signal();
        true
    }

    fn touch(&self) {
        *self.0.last_change.lock().unwrap() = std::time::Instant::now();
    }

    /// Record the exit once and tell containerd.
    async fn finish(&self, c: &Container, code: u32) {
        {
            let mut st = c.status.lock().unwrap();
            if *st == Status::Stopped {
                return;
            }
            *st = Status::Stopped;
        }
        let exit = Exit { code, at: now() };
        c.exit.send_replace(Some(exit));
        log::info!("container {} exited with status {code}", c.id);
        self.publish(
            "/tasks/exit",
            Box::new(TaskExit {
                container_id: c.id.clone(),
                id: c.id.clone(),
                pid: pid(),
                exit_status: code,
                exited_at: MessageField::some(exit.timestamp()),
                ..Default::default()
            }),
        )
        .await;
    }

    /// Start the container's work; returns once it runs.
    async fn launch(&self, c: Arc<Container>) -> AnyResult<()> {
        match &c.kind {
            Kind::Sandbox => {
                let svc = self.clone();
                tokio::spawn(async move {
                    c.stop.stopped().await;
                    let sig = c.signal.load(std::sync::atomic::Ordering::SeqCst);
                    svc.finish(&c, 128 + sig).await;
                });
            }
            Kind::Command(loaded) => {
                let runtime = self.runtime().await?;
                let Outputs {
                    stdout,
                    stderr,
                    mut messages,
                    probes,
                } = match c.outputs.lock().unwrap().take() {
                    Some(o) => o,
                    None => Outputs::open(&c.stdout, &c.stderr)?,
                };
                let stdin = stdio::guest_input(&c.stdin);
                let loaded = loaded.clone();
                let svc = self.clone();
                let slots = self.0.slots.clone();
                self.0.guests.spawn(async move {
                    // A slot of the pool for the guest's life: with every
                    // slot taken, the container waits (running) for one.
                    let _slot = tokio::select! {
                        s = slots.acquire_owned() => s.ok(),
                        () = c.stop.stopped() => None,
                    };
                    if c.stop.is_stopped() {
                        drop(probes);
                        let sig = c.signal.load(std::sync::atomic::Ordering::SeqCst);
                        svc.finish(&c, 128 + sig).await;
                        return;
                    }
                    let dirs = dirs(&c.spec);
                    let exit = runtime
                        .run_command(
                            &loaded,
                            CommandRun {
                                args: &c.spec.args,
                                env: &c.spec.env,
                                dirs: &dirs,
                                memory_bytes: memory_limit(&c.spec),
                                timeout: None,
                                stdin,
                                stdout,
                                stderr,
                                stop: c.stop.clone(),
                            },
                        )
                        .await;
                    let module = c.spec.args.first().cloned().unwrap_or_default();
                    let (code, msg) = match exit {
                        Ok(CommandExit::Exited(code)) => (code as u32, None),
                        Ok(CommandExit::Stopped) => (
                            128 + c.signal.load(std::sync::atomic::Ordering::SeqCst),
                            None,
                        ),
                        Ok(CommandExit::Trapped(m)) => (
                            EXIT_TRAP as u32,
                            Some(format!("wisp: {module}: wasm trap: {m}")),
                        ),
                        Ok(CommandExit::TimedOut(d)) => (
                            EXIT_TIMEOUT as u32,
                            Some(format!("wisp: {module}: timed out after {d:?}")),
                        ),
                        Err(e) => (1, Some(format!("wisp: {module}: {e}"))),
                    };
                    if let Some(msg) = msg {
                        log::error!("container {}: {msg}", c.id);
                        if let Some(w) = messages.as_mut() {
                            use tokio::io::AsyncWriteExt;
                            let _ = w.write_all(format!("{msg}\n").as_bytes()).await;
                        }
                    }
                    drop(messages);
                    // A killed task is reported at once, read or not.
                    let probes = if c.stop.is_stopped() {
                        Vec::new()
                    } else {
                        probes
                    };
                    for p in probes {
                        if !p.drained(DRAIN_LIMIT).await {
                            log::warn!(
                                "container {}: its output was not read within {DRAIN_LIMIT:?}",
                                c.id
                            );
                        }
                    }
                    svc.finish(&c, code).await;
                });
            }
            Kind::Http(f) => {
                let listen = c
                    .spec
                    .env_var(spec::LISTEN_ENV)
                    .unwrap_or(spec::DEFAULT_LISTEN)
                    .to_string();
                let addr: std::net::SocketAddr = listen
                    .parse()
                    .map_err(|e| anyhow!("{}={listen:?}: {e}", spec::LISTEN_ENV))?;
                // Dropped on an async thread if anything below fails (a port
                // in use, say): a plain Runtime would panic there, and the
                // shim with it, leaving containerd's `start` unanswered.
                let mut rt = GuestRuntime(Some(netns::runtime(c.netns.clone(), 2)?));
                let handle = rt.0.as_ref().expect("just built").handle().clone();
                let stderr = c.stderr.clone();
                let listener = handle
                    .spawn(async move {
                        let log: LogSink = LogSink::open(&stderr)?;
                        let l = http::bind(addr).await.with_context(|| {
                            format!("binding {addr} in the container's network namespace")
                        })?;
                        AnyResult::<_>::Ok((l, log))
                    })
                    .await??;
                let (listener, log) = listener;
                let f = Arc::new(HttpFunction {
                    log,
                    name: f.name.clone(),
                    loaded: f.loaded.clone(),
                    env: f.env.clone(),
                    dirs: f.dirs.clone(),
                    limits: f.limits.clone(),
                    allow: f.allow.clone(),
                    node_slots: f.node_slots.clone(),
                });
                log::info!("container {} serving HTTP on {addr}", c.id);
                let runtime = self.runtime().await?;
                let svc = self.clone();
                let grace = self.0.grace;
                let c2 = c.clone();
                let server = handle.spawn(async move {
                    let c3 = c2.clone();
                    http::serve(runtime, f, listener, c2.stop.clone(), move || {
                        if c3.graceful.load(std::sync::atomic::Ordering::SeqCst) {
                            grace
                        } else {
                            Duration::ZERO
                        }
                    })
                    .await
                });
                *c.server_rt.lock().unwrap() = rt.0.take();
                tokio::spawn(async move {
                    let ended = server.await;
                    let code = match ended {
                        Ok(http::Ended::Drained) => 0,
                        _ => 128 + c.signal.load(std::sync::atomic::Ordering::SeqCst),
                    };
                    svc.finish(&c, code).await;
                });
            }
        }
        Ok(())
    }
}

/// Memory limit per instance: the spec's, else the most a 32-bit Wasm
/// memory can have (a container without a limit is not limited by runc
/// either), within Wisp's bounds.
fn memory_limit(spec: &BundleSpec) -> u64 {
    spec.memory_limit
        .unwrap_or(MAX_MEMORY_BYTES)
        .clamp(64 << 10, MAX_MEMORY_BYTES)
}

/// Pool slots: the daemon's instances alive at once.
fn runtime_pool(group: Group) -> u32 {
    std::env::var(POOL_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(if group.lingers() {
            DEFAULT_POOL
        } else {
            DEFAULT_POOL_PER_POD
        })
}

/// The guest's directories: the rootfs as `/` and the spec's bind mounts.
fn dirs(spec: &BundleSpec) -> Vec<DirGrant> {
    let mut d = vec![DirGrant {
        host: spec.rootfs.to_string_lossy().into_owned(),
        guest: "/".into(),
        read_only: false,
    }];
    for (src, dst) in &spec.bind_dirs {
        d.push(DirGrant {
            host: src.to_string_lossy().into_owned(),
            guest: dst.clone(),
            read_only: false,
        });
    }
    d
}

fn display_in_root(rootfs: &Path, module: &Path) -> String {
    format!(
        "/{}",
        module.strip_prefix(rootfs).unwrap_or(module).display()
    )
}

/// Read `path` (inside `root`) with symlinks resolved as if `root` were `/`
/// (`openat2` with `RESOLVE_IN_ROOT`), so an image can't point the shim at
/// a host file.
fn read_in_root(root: &Path, path: &Path) -> AnyResult<Vec<u8>> {
    use std::io::Read;
    use std::os::fd::FromRawFd;
    let shown = display_in_root(root, path);
    let rel = path.strip_prefix(root).unwrap_or(path);
    let dir = std::fs::File::open(root)
        .with_context(|| format!("opening the container's rootfs {}", root.display()))?;
    let c = std::ffi::CString::new(rel.as_os_str().as_encoded_bytes())?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT;
    // SAFETY: valid dirfd, C string and open_how of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            std::os::fd::AsRawFd::as_raw_fd(&dir),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return Err(anyhow!(
            "{shown}: the module is not in the image ({e}); the container's command must be the .wasm file's path"
        ));
    }
    // SAFETY: a new fd we own.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd as i32) };
    if !f.metadata()?.is_file() {
        return Err(anyhow!("{shown}: not a regular file"));
    }
    let mut wasm = Vec::new();
    f.read_to_end(&mut wasm)
        .with_context(|| format!("reading {shown}"))?;
    Ok(wasm)
}

#[async_trait]
impl Task for TaskService {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        log::info!("create {} (bundle {})", req.id, req.bundle);
        if req.terminal {
            return Err(invalid(
                "a terminal (tty) is not supported by the wisp runtime: run without -t".into(),
            ));
        }
        if self.0.containers.lock().unwrap().contains_key(&req.id) {
            return Err(Error::Other(format!("container {} already exists", req.id)).into());
        }
        let bundle = PathBuf::from(&req.bundle);
        // This container's log FIFO may carry the daemon's lines, its own
        // errors first (forgotten at delete, or once containerd closes it).
        shimlog::add_bundle(&bundle);
        let spec = BundleSpec::load(&bundle).map_err(|e| invalid(format!("{e:#}")))?;
        let mut mounted = false;
        for m in &req.rootfs {
            mount_rootfs(m, &spec.rootfs).await.map_err(|e| {
                unmount(&spec.rootfs);
                Error::Other(format!("mounting the rootfs: {e}"))
            })?;
            mounted = true;
        }
        let (kind, netns) = match self.prepare(&req, &spec).await {
            Ok(k) => k,
            Err(e) => {
                if mounted {
                    unmount(&spec.rootfs);
                }
                let msg = format!("wisp: {e:#}");
                log::error!("create {}: {msg}", req.id);
                return Err(invalid(msg));
            }
        };
        let outputs = match &kind {
            Kind::Command(_) => match Outputs::open(&req.stdout, &req.stderr) {
                Ok(o) => Some(o),
                Err(e) => {
                    if mounted {
                        unmount(&spec.rootfs);
                    }
                    let msg = format!("wisp: {e:#}");
                    log::error!("create {}: {msg}", req.id);
                    return Err(Error::Other(msg).into());
                }
            },
            _ => None,
        };
        let c = Arc::new(Container {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            spec,
            kind,
            rootfs_mounted: mounted,
            netns,
            status: Mutex::new(Status::Created),
            exit: watch::channel(None).0,
            stop: StopHandle::new(),
            signal: 0.into(),
            graceful: false.into(),
            server_rt: Mutex::new(None),
            outputs: Mutex::new(outputs),
        });
        self.0.containers.lock().unwrap().insert(req.id.clone(), c);
        self.touch();
        self.publish(
            "/tasks/create",
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid: pid(),
                ..Default::default()
            }),
        )
        .await;
        Ok(api::CreateTaskResponse {
            pid: pid(),
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        if !req.exec_id.is_empty() {
            return Err(
                Error::Unimplemented("exec: a Wasm container runs one process".into()).into(),
            );
        }
        let c = self.get(&req.id)?;
        {
            let mut st = c.status.lock().unwrap();
            if *st != Status::Created {
                return Err(precondition(format!(
                    "container {} was already started",
                    req.id
                )));
            }
            *st = Status::Running;
        }
        // TaskStart is queued before the work can end, so it precedes TaskExit.
        self.publish(
            "/tasks/start",
            Box::new(TaskStart {
                container_id: req.id.clone(),
                pid: pid(),
                ..Default::default()
            }),
        )
        .await;
        if let Err(e) = self.launch(c.clone()).await {
            let msg = format!("wisp: {e:#}");
            log::error!("start {}: {msg}", req.id);
            if let Ok(Some(mut w)) = stdio::writer(&c.stderr) {
                use tokio::io::AsyncWriteExt;
                let _ = w.write_all(format!("{msg}\n").as_bytes()).await;
            }
            self.finish(&c, 1).await;
            return Err(Error::Other(msg).into());
        }
        Ok(api::StartResponse {
            pid: pid(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let c = self.get(&req.id)?;
        let sig = req.signal;
        log::info!("kill {} with signal {sig}", req.id);
        match c.status() {
            Status::Stopped => {
                return Err(not_found(&format!("{} (process already finished)", req.id)));
            }
            Status::Created => {
                if matches!(sig, SIGKILL | SIGTERM | SIGINT) {
                    c.signal.store(sig, std::sync::atomic::Ordering::SeqCst);
                    c.stop.stop();
                    self.finish(&c, 128 + sig).await;
                }
                return Ok(api::Empty::new());
            }
            Status::Running => {}
        }
        match sig {
            SIGKILL => {
                c.signal.store(sig, std::sync::atomic::Ordering::SeqCst);
                c.stop.stop();
            }
            SIGTERM | SIGINT => {
                // A guest can't catch a signal: give it the grace period to
                // end on its own (an HTTP function drains its requests), then
                // stop it.
                c.signal.store(sig, std::sync::atomic::Ordering::SeqCst);
                c.graceful.store(true, std::sync::atomic::Ordering::SeqCst);
                let grace = self.0.grace;
                match &c.kind {
                    Kind::Http(_) => c.stop.stop(),
                    _ => {
                        let c = c.clone();
                        tokio::spawn(async move {
                            let mut rx = c.exit.subscribe();
                            let ended =
                                tokio::time::timeout(grace, rx.wait_for(|e| e.is_some())).await;
                            if ended.is_err() {
                                c.stop.stop();
                            }
                        });
                    }
                }
            }
            other => {
                log::info!(
                    "signal {other} to {} ignored: a Wasm guest has no signal handlers",
                    req.id
                );
            }
        }
        Ok(api::Empty::new())
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        if !req.exec_id.is_empty() {
            return Err(not_found(&format!("{}/{}", req.id, req.exec_id)));
        }
        let c = self.get(&req.id)?;
        let mut rx = c.exit.subscribe();
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map(|e| e.expect("checked"))
            .map_err(|_| Error::Other("container went away".into()))?;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let c = self.get(&req.id)?;
        let status = match c.status() {
            Status::Created => api::Status::CREATED,
            Status::Running => api::Status::RUNNING,
            Status::Stopped => api::Status::STOPPED,
        };
        let exit = c.exited();
        Ok(api::StateResponse {
            id: c.id.clone(),
            bundle: c.bundle.clone(),
            pid: pid(),
            status: status.into(),
            stdin: c.stdin.clone(),
            stdout: c.stdout.clone(),
            stderr: c.stderr.clone(),
            terminal: false,
            exit_status: exit.map(|e| e.code).unwrap_or(0),
            exited_at: match exit {
                Some(e) => MessageField::some(e.timestamp()),
                None => MessageField::none(),
            },
            exec_id: req.exec_id,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        if !req.exec_id.is_empty() {
            return Err(not_found(&format!("{}/{}", req.id, req.exec_id)));
        }
        let c = self.get(&req.id)?;
        if c.status() == Status::Running {
            return Err(precondition(format!(
                "container {} is running: kill it first",
                req.id
            )));
        }
        let exit = c.exited().unwrap_or(Exit { code: 0, at: now() });
        if c.rootfs_mounted {
            unmount(&c.spec.rootfs);
        }
        if let Some(rt) = c.server_rt.lock().unwrap().take() {
            rt.shutdown_background();
        }
        self.0.containers.lock().unwrap().remove(&req.id);
        self.touch();
        log::info!("deleted {}", req.id);
        shimlog::remove_bundle(Path::new(&c.bundle));
        self.publish(
            "/tasks/delete",
            Box::new(TaskDelete {
                container_id: req.id.clone(),
                id: req.id.clone(),
                pid: pid(),
                exit_status: exit.code,
                exited_at: MessageField::some(exit.timestamp()),
                ..Default::default()
            }),
        )
        .await;
        Ok(api::DeleteResponse {
            pid: pid(),
            exit_status: exit.code,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        self.get(&req.id)?;
        Ok(api::PidsResponse {
            processes: vec![api::ProcessInfo {
                pid: pid(),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        // The guest sees end-of-file when containerd closes its write side.
        self.get(&req.id)?;
        Ok(api::Empty::new())
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        self.get(&req.id)?;
        let stats = crate::stats::metrics().map_err(|e| Error::Other(format!("stats: {e:#}")))?;
        Ok(api::StatsResponse {
            stats: MessageField::some(convert_to_any(Box::new(stats))?),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        Ok(api::ConnectResponse {
            shim_pid: pid(),
            task_pid: pid(),
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        let empty = self.0.containers.lock().unwrap().is_empty();
        if req.now || (empty && !self.0.group.lingers()) {
            log::info!("shutting down");
            if self.0.group.lingers() {
                let _ = std::fs::remove_file(group::socket_path(&self.0.socket));
            }
            self.0.exit.signal();
        } else if empty {
            self.linger();
        }
        Ok(api::Empty::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim's shutdown drops the guest runtime on an async thread; a
    /// plain `Runtime` panics there ("Cannot drop a runtime in a context
    /// where blocking is not allowed"), which made every shim exit 101.
    #[tokio::test]
    async fn the_guest_runtime_can_be_dropped_on_an_async_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.spawn(tokio::time::sleep(Duration::from_secs(3600)));
        drop(GuestRuntime(Some(rt)));
    }
}
