//! `wisp serve`.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wisp_executor::{Executor, ExecutorOptions};
use wisp_runtime::{EngineOptions, Runtime};
use wisp_server::{Access, AppState, HostCheck, HttpLimits};

/// Run the Wisp server.
#[derive(Args, Debug)]
pub struct ServeCommand {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "WISP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory: SQLite database, module blobs, compiled artifacts.
    #[arg(long, env = "WISP_HOME", default_value = ".wisp")]
    home: PathBuf,
    /// Require `Authorization: Bearer <token>` on /v1/* and /metrics. Prefer
    /// --token-file: a flag's value shows in `ps`. Required on a non-loopback
    /// address (see --insecure); may not be empty.
    #[arg(
        long,
        env = "WISP_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// Read the token from this file (its first line, whitespace trimmed).
    #[arg(long, env = "WISP_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Serve without a token on a non-loopback address. Anyone who can reach
    /// the port can then deploy code and read every activation: only for
    /// networks you trust completely.
    #[arg(long, env = "WISP_INSECURE")]
    insecure: bool,
    /// Serve /metrics without the token (e.g. for a Prometheus without credentials).
    #[arg(long, env = "WISP_PUBLIC_METRICS")]
    public_metrics: bool,
    /// A host name requests may be addressed to (repeatable, or comma-separated
    /// in WISP_ALLOW_HOST). On a loopback address the names localhost,
    /// 127.0.0.1 and ::1 are always allowed and every other Host gets 403 (DNS
    /// rebinding); on other addresses, listing any turns the check on.
    #[arg(long = "allow-host", env = "WISP_ALLOW_HOST", value_delimiter = ',')]
    allow_hosts: Vec<String>,
    /// A directory under which functions may be granted dirs (repeatable, or
    /// comma-separated in WISP_ALLOW_DIR). Default: none, so no deploy may
    /// grant a directory. Never the Wisp home or a directory containing it.
    #[arg(long = "allow-dir", env = "WISP_ALLOW_DIR", value_delimiter = ',')]
    allow_dirs: Vec<PathBuf>,
    /// Most HTTP connections open at once; new ones past it get a 503 and are closed.
    #[arg(long, env = "WISP_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Length of the kernel's queue of connections not yet accepted (capped
    /// by net.core.somaxconn). Past it, new connections' SYNs are dropped and
    /// clients wait for a retransmit (1 s, then 3 s) instead of being served.
    #[arg(long, env = "WISP_BACKLOG", default_value_t = 4096)]
    backlog: u32,
    /// Time a client has to send a request's headers, from their first byte, e.g. 10s.
    #[arg(long, env = "WISP_HEADER_TIMEOUT", default_value = "10s", value_parser = wisp_core::units::parse_duration)]
    header_timeout: Duration,
    /// Time an idle keep-alive connection is kept open, e.g. 60s.
    #[arg(long, env = "WISP_IDLE_TIMEOUT", default_value = "60s", value_parser = wisp_core::units::parse_duration)]
    idle_timeout: Duration,
    /// Longest pause between two chunks of a request body, e.g. 30s.
    #[arg(long, env = "WISP_BODY_TIMEOUT", default_value = "30s", value_parser = wisp_core::units::parse_duration)]
    body_timeout: Duration,
    /// Request-body bytes buffered at once across all functions, e.g. 1GiB;
    /// past it requests get 503.
    #[arg(long, env = "WISP_MAX_BUFFERED_BODY", default_value = "1GiB", value_parser = wisp_core::units::parse_size)]
    max_buffered_body: u64,
    /// Longest a deploy may spend compiling, e.g. 120s; past it the deploy fails.
    #[arg(long, env = "WISP_COMPILE_TIMEOUT", default_value = "120s", value_parser = wisp_core::units::parse_duration)]
    compile_timeout: Duration,
    /// Instance slots in the pooling allocator: the most instances alive at once.
    #[arg(long, env = "WISP_POOL_INSTANCES", default_value_t = 2000)]
    pool_instances: u32,
    /// Epoch tick: granularity of deadlines and of CPU-bound guests yielding, e.g. 1ms.
    #[arg(long, env = "WISP_EPOCH_TICK", default_value = "1ms", value_parser = wisp_core::units::parse_duration)]
    epoch_tick: Duration,
    /// Bytes of a pool slot's memory restored in place between requests instead
    /// of being unmapped, e.g. 1MiB (default: 1MiB of dirty pages when the
    /// kernel has PAGEMAP_SCAN, Linux >= 6.7; else the first 64KiB).
    #[arg(long, env = "WISP_KEEP_RESIDENT", value_parser = wisp_core::units::parse_size)]
    keep_resident: Option<u64>,
    /// Use on-demand instance allocation instead of the pooling allocator.
    #[arg(long, env = "WISP_NO_POOLING")]
    no_pooling: bool,
    /// Activation records kept (oldest pruned).
    #[arg(long, env = "WISP_ACTIVATION_RETENTION", default_value_t = 100_000)]
    activation_retention: u64,
    /// Largest module accepted at deploy, e.g. 64MiB.
    #[arg(long, env = "WISP_MAX_MODULE", default_value = "64MiB", value_parser = wisp_core::units::parse_size)]
    max_module: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish, e.g. 10s.
    #[arg(long, env = "WISP_DRAIN_TIMEOUT", default_value = "10s", value_parser = wisp_core::units::parse_duration)]
    drain_timeout: Duration,
    /// Threads doing HTTP I/O (default: one per core).
    #[arg(long, env = "WISP_WORKERS")]
    workers: Option<usize>,
    /// Threads running guest code (default: one per core; 0 runs guests on the I/O threads).
    #[arg(long, env = "WISP_GUEST_WORKERS")]
    guest_workers: Option<usize>,
    /// A guest still running this long after it first yielded moves to the
    /// slow lane: threads at a lower CPU priority, so short requests and
    /// HTTP I/O go first when the CPU is contended, e.g. 5ms; 0 turns the
    /// slow lane off.
    #[arg(long, env = "WISP_DEMOTE_AFTER", default_value = "5ms", value_parser = wisp_core::units::parse_duration)]
    demote_after: Duration,
    /// A function getting more requests a second than this is hot: the
    /// connections carrying its requests move to the slow lane's
    /// lower-priority threads, so a storm against one function leaves the
    /// CPU to the others first; 0 turns it off (as does --demote-after 0).
    #[arg(long, env = "WISP_HOT_FUNCTION_RPS", default_value_t = 1000)]
    hot_function_rps: u32,
    /// How many nice steps below the server the slow lane's threads run (1-19).
    #[arg(long, env = "WISP_SLOW_LANE_NICE", default_value_t = 10, value_parser = clap::value_parser!(i32).range(1..=19))]
    slow_lane_nice: i32,
    /// A registry `oci://` deploys may pull from over plain HTTP, HOST or
    /// HOST:PORT (repeatable, or comma-separated in WISP_INSECURE_REGISTRY;
    /// loopback registries always may; default: none).
    #[arg(
        long = "insecure-registry",
        env = "WISP_INSECURE_REGISTRY",
        value_delimiter = ','
    )]
    insecure_registries: Vec<String>,
    /// The only registries `oci://` deploys may pull from, HOST[:PORT]
    /// (repeatable, or comma-separated in WISP_ALLOW_REGISTRY; default: any).
    #[arg(
        long = "allow-registry",
        env = "WISP_ALLOW_REGISTRY",
        value_delimiter = ','
    )]
    allow_registries: Vec<String>,
    /// Longest an `oci://` deploy may spend pulling its module, e.g. 60s.
    #[arg(long, env = "WISP_PULL_TIMEOUT", default_value = "60s", value_parser = wisp_core::units::parse_duration)]
    pull_timeout: Duration,
    /// OpenWhisk API: longest a blocking invoke waits before it answers 202
    /// with the activation id (the activation goes on), e.g. 60s.
    #[arg(long, env = "WISP_BLOCKING_WAIT", default_value = "60s", value_parser = wisp_core::units::parse_duration)]
    blocking_wait: Duration,
    /// OpenWhisk API: non-blocking activations accepted and not yet run, at
    /// most (a durable queue in the store); past it invokes get 503.
    #[arg(long, env = "WISP_QUEUE_MAX", default_value_t = 10_000)]
    queue_max: u64,
    /// OpenWhisk API: queued activations run at once.
    #[arg(long, env = "WISP_QUEUE_WORKERS", default_value_t = 64)]
    queue_workers: usize,
    /// Log as JSON lines (filter with WISP_LOG, default `info`).
    #[arg(long, env = "WISP_LOG_JSON")]
    log_json: bool,
}

impl ServeCommand {
    /// Validate, build everything, bind, serve until a signal.
    pub fn execute(self) -> Result<i32> {
        quiet_library_backtraces();
        init_tracing(self.log_json);
        if self.pool_instances == 0 {
            anyhow::bail!("--pool-instances must be at least 1");
        }
        if self.backlog == 0 {
            anyhow::bail!("--backlog must be at least 1");
        }
        if self.max_connections == 0 {
            anyhow::bail!("--max-connections must be at least 1");
        }
        let token = self.resolve_token()?;
        if token.is_none() && !self.listen.ip().is_loopback() && !self.insecure {
            anyhow::bail!(
                "refusing to serve {} without a token: anyone who can reach it could deploy code. \
                 Set one with --token-file FILE (or WISP_TOKEN), or pass --insecure if this network is trusted",
                self.listen
            );
        }
        let allow_dirs = self
            .allow_dirs
            .iter()
            .map(|d| {
                d.canonicalize()
                    .with_context(|| format!("--allow-dir {}", d.display()))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut rt = tokio::runtime::Builder::new_multi_thread();
        rt.enable_all().thread_name("wisp-worker");
        if let Some(w) = self.workers {
            rt.worker_threads(w.max(1));
        }
        let io = rt.build()?;
        // Guest code runs on its own runtime; see ExecutorOptions::guest_runtime.
        let mut g = tokio::runtime::Builder::new_multi_thread();
        g.enable_all().thread_name("wisp-guest");
        if let Some(w) = self.guest_workers {
            g.worker_threads(w.max(1));
        }
        let inline = self.guest_workers == Some(0);
        let guests = g.build()?;
        // Guests still running after --demote-after continue here, on
        // threads the kernel schedules after the I/O threads and short guests.
        let slow = match (inline, self.demote_after.is_zero()) {
            (false, false) => {
                let nice = self.slow_lane_nice;
                let mut s = tokio::runtime::Builder::new_multi_thread();
                s.enable_all()
                    .thread_name("wisp-guest-slow")
                    .on_thread_start(move || {
                        if let Err(e) = wisp_runtime::lower_thread_priority(nice) {
                            tracing::warn!(error = %e, "could not lower a slow-lane thread's priority");
                        }
                    });
                if let Some(w) = self.guest_workers {
                    s.worker_threads(w.max(1));
                }
                Some(s.build()?)
            }
            _ => None,
        };
        let lanes = (!inline).then(|| {
            let lanes = wisp_runtime::GuestLanes::new(guests.handle().clone());
            match &slow {
                Some(s) => lanes.with_slow_lane(s.handle().clone(), self.demote_after),
                None => lanes,
            }
        });
        let demotion = match (&slow, self.hot_function_rps) {
            (Some(s), rps) if rps > 0 => Some(wisp_server::Demotion {
                to: s.handle().clone(),
                hot_rps: rps,
            }),
            _ => None,
        };
        let code = io.block_on(self.serve(lanes, demotion, token, allow_dirs));
        if let Some(s) = slow {
            s.shutdown_timeout(Duration::from_secs(1));
        }
        guests.shutdown_timeout(Duration::from_secs(1));
        code
    }

    /// The token from --token or --token-file; an empty one is an error,
    /// never "no auth".
    fn resolve_token(&self) -> Result<Option<String>> {
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(f)
                    .with_context(|| format!("reading --token-file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(t) = &token
            && t.trim().is_empty()
        {
            anyhow::bail!(
                "the token is empty (from --token, WISP_TOKEN or --token-file): an empty token would turn auth off; \
                 unset it to serve without auth on loopback, or set a real one"
            );
        }
        Ok(token)
    }

    async fn serve(
        self,
        guests: Option<wisp_runtime::GuestLanes>,
        demotion: Option<wisp_server::Demotion>,
        token: Option<String>,
        allow_dirs: Vec<PathBuf>,
    ) -> Result<i32> {
        raise_nofile_limit();
        let runtime = Arc::new(
            Runtime::new(EngineOptions {
                pooling: !self.no_pooling,
                pool_instances: self.pool_instances,
                epoch_tick: self.epoch_tick.max(Duration::from_micros(100)),
                keep_resident: self.keep_resident.map(|b| b as usize),
                ..Default::default()
            })
            .context("starting the Wasm engine")?,
        );
        std::fs::create_dir_all(&self.home)
            .with_context(|| format!("creating {}", self.home.display()))?;
        let home = self.home.canonicalize()?;
        let store = Arc::new(
            wisp_store::Store::open(&home)
                .with_context(|| format!("opening the store at {}", home.display()))?,
        );
        let exec = Executor::start(
            runtime.clone(),
            store,
            ExecutorOptions {
                activation_retention: self.activation_retention,
                max_module_bytes: self.max_module as usize,
                guest_runtime: guests,
                allow_dirs,
                max_instances: self.pool_instances as usize,
                max_buffered_body_bytes: self.max_buffered_body as usize,
                compile_timeout: self.compile_timeout,
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading functions from the store")?;

        let listener =
            bind(self.listen, self.backlog).with_context(|| format!("binding {}", self.listen))?;
        let addr = listener.local_addr()?;
        let hosts = if addr.ip().is_loopback() {
            Some(HostCheck::loopback(&self.allow_hosts))
        } else if !self.allow_hosts.is_empty() {
            Some(HostCheck::only(&self.allow_hosts))
        } else {
            None
        };
        let auth = token.is_some();
        let openwhisk = wisp_openwhisk::controller::Controller::start(
            exec.clone(),
            wisp_openwhisk::controller::ControllerOptions {
                blocking_wait: self.blocking_wait,
                queue_max: self.queue_max,
                queue_workers: self.queue_workers,
                api_host: format!("http://{addr}"),
                admin_token: token.clone(),
                max_module_bytes: self.max_module as usize,
            },
        );
        let state = Arc::new(AppState {
            exec: exec.clone(),
            access: Access {
                token,
                public_metrics: self.public_metrics,
                hosts,
            },
            server_name: addr.ip().to_string(),
            server_port: addr.port(),
            oci: wisp_server::OciPulls::new(
                wisp_oci::RegistryOptions {
                    credentials: None,
                    insecure: self.insecure_registries.clone(),
                    max_module_bytes: self.max_module,
                    timeout: self.pull_timeout,
                    progress: None,
                },
                self.allow_registries.clone(),
            ),
            openwhisk: Some(openwhisk.clone()),
        });
        let limits = HttpLimits {
            max_connections: self.max_connections,
            header_read_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_read_timeout: self.body_timeout,
            demotion,
        };
        let n = exec.list(None).await.map(|l| l.len()).unwrap_or(0);
        tracing::info!(
            %addr, home = %home.display(), functions = n, pooling = runtime.pooling(), pagemap_scan = runtime.pagemap_scan(),
            engine = runtime.fingerprint(), auth, "wisp serving"
        );
        // The one line scripts and tests parse.
        println!("wisp listening on http://{addr}");

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            wisp_server::serve(listener, state, limits, async {
                let _ = stop_rx.await;
            })
            .await
        });
        shutdown_signal().await;
        tracing::info!(drain = ?self.drain_timeout, "shutting down: draining in-flight requests");
        openwhisk.stop();
        let _ = stop_tx.send(());
        tokio::select! {
            r = server => { if let Ok(Err(e)) = r { tracing::warn!(error = %e, "server error during shutdown"); } }
            _ = tokio::time::sleep(self.drain_timeout) => tracing::warn!("drain timeout reached; abandoning in-flight requests"),
            _ = shutdown_signal() => tracing::warn!("second signal; quitting now"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), exec.flush()).await;
        tracing::info!("bye");
        Ok(0)
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A server holds a socket per connection: lift the soft open-files limit
/// to the hard one, as most servers do.
fn raise_nofile_limit() {
    // SAFETY: plain libc calls with a valid, initialised struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// The log filter when `WISP_LOG` is unset. wasmtime-wasi marks each WASI
/// preview-1 call `#[instrument]`, an INFO span: at plain `info` every call a
/// guest makes built a span and formatted its fields, whether or not anything
/// was printed (about 5 % of a busy server's CPU). Its warnings still show.
pub const DEFAULT_LOG_FILTER: &str = "info,wasmtime_wasi=warn";

pub(crate) fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("WISP_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

/// With `RUST_BACKTRACE=1` in the environment every library error captures a
/// stack trace, and Wasmtime builds one such error each time a component
/// store is dropped: about 2 % of a busy server's CPU spent unwinding. Unless
/// the operator chose otherwise with `RUST_LIB_BACKTRACE`, turn library
/// backtraces off; panics still print theirs under `RUST_BACKTRACE`.
fn quiet_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `serve`, before any thread exists.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// A listening socket with our backlog (tokio's `bind` uses 1024): under a
/// burst of new connections a short queue drops SYNs, and each dropped one
/// costs its client a 1 s retransmit, which shows as a p99 of a second.
fn bind(addr: SocketAddr, backlog: u32) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(backlog)
}
