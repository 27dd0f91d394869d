//! `wisp serve`.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wisp_executor::{Executor, ExecutorOptions};
use wisp_runtime::{EngineOptions, Runtime};
use wisp_server::AppState;

/// Run the Wisp server.
#[derive(Args, Debug)]
pub struct ServeCommand {
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "WISP_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Data directory: SQLite database, module blobs, compiled artifacts.
    #[arg(long, env = "WISP_HOME", default_value = ".wisp")]
    home: PathBuf,
    /// Require `Authorization: Bearer <token>` on /v1/* (default: no auth).
    #[arg(long, env = "WISP_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
        let handle = (!inline).then(|| guests.handle().clone());
        let code = io.block_on(self.serve(handle));
        guests.shutdown_timeout(Duration::from_secs(1));
        code
    }

    async fn serve(self, guests: Option<tokio::runtime::Handle>) -> Result<i32> {
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
                ..Default::default()
            },
        )
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("loading functions from the store")?;

        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("binding {}", self.listen))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(AppState {
            exec: exec.clone(),
            token: self.token.clone().filter(|t| !t.is_empty()),
            server_name: addr.ip().to_string(),
            server_port: addr.port(),
        });
        let n = exec.list().await.map(|l| l.len()).unwrap_or(0);
        tracing::info!(
            %addr, home = %home.display(), functions = n, pooling = runtime.pooling(), pagemap_scan = runtime.pagemap_scan(),
            engine = runtime.fingerprint(), auth = self.token.is_some(), "wisp serving"
        );
        // The one line scripts and tests parse.
        println!("wisp listening on http://{addr}");

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            wisp_server::serve(listener, state, async {
                let _ = stop_rx.await;
            })
            .await
        });
        shutdown_signal().await;
        tracing::info!(drain = ?self.drain_timeout, "shutting down: draining in-flight requests");
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

async fn shutdown_signal() {
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

fn init_tracing(json: bool) {
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
