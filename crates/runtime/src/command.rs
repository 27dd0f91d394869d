//! The plain-command ABI: run a WASI preview 1 command once, like
//! `wasmtime run`. argv, env, preopened dirs and real stdio; the result is
//! an exit status, not a response.
//!
//! Two callers share this runner: `wisp run FILE -- ARGS…` (stdio inherited)
//! and `containerd-shim-wisp-v1` (stdio on containerd's FIFOs, stopped by
//! `kill`). It uses the same engine, memory limiter and epoch callback as a
//! request under `wisp serve`; what differs is what a run is for: there is
//! no CGI translation, output is streamed rather than buffered, and the
//! wall-clock deadline is optional.

use crate::engine::{Loaded, Runtime};
use crate::invoke::{Budget, HostState, Limiter, RunError, classify, instantiate_error, preopen};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::cli::{AsyncStdinStream, AsyncStdoutStream};
use wisp_core::{DirGrant, Limits};

/// Exit status of a run that trapped, as `wasmtime run` reports it on Unix
/// (128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;
/// Exit status of a run stopped by its own `timeout` (as coreutils'
/// `timeout(1)` reports it).
pub const EXIT_TIMEOUT: i32 = 124;

/// Where a guest's stdin comes from.
pub enum GuestInput {
    /// Empty: the first read sees end of file.
    Null,
    /// This process's stdin.
    Inherit,
    /// Any async reader (a FIFO, a pipe, a socket).
    Reader(Pin<Box<dyn AsyncRead + Send + Sync>>),
}

/// Where a guest's stdout or stderr goes.
pub enum GuestOutput {
    /// Discarded.
    Null,
    /// This process's stdout (or stderr, for the guest's stderr).
    Inherit,
    /// Any async writer (a FIFO, a pipe).
    Writer(Pin<Box<dyn AsyncWrite + Send + Sync>>),
}

/// Bytes a guest may have written but not yet flushed to a [`GuestOutput::Writer`].
const WRITE_BUDGET: usize = 64 << 10;

/// Stops a running command from another task: the guest traps at its next
/// epoch tick (within about a millisecond) if it is running Wasm, and its
/// future is dropped if it is waiting (sleep, stdin). Cheap to clone.
#[derive(Clone, Default)]
pub struct StopHandle(Arc<StopInner>);

#[derive(Default)]
struct StopInner {
    stopped: AtomicBool,
    notify: tokio::sync::Notify,
}

impl StopHandle {
    /// A handle nothing has stopped yet.
    pub fn new() -> StopHandle {
        StopHandle::default()
    }

    /// Stop the run (idempotent).
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    /// Whether [`StopHandle::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        self.0.stopped.load(Ordering::SeqCst)
    }

    /// Resolves once [`StopHandle::stop`] has been called.
    pub async fn stopped(&self) {
        loop {
            let notified = self.0.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// One run of a command module.
pub struct CommandRun<'a> {
    /// `argv`; `argv[0]` is the program name (`wisp run` passes the file
    /// name, as `wasmtime run` does; the shim passes the spec's args as given).
    pub args: &'a [String],
    /// The environment, exactly as given (nothing of the host's is added).
    pub env: &'a [(String, String)],
    /// Directories to preopen.
    pub dirs: &'a [DirGrant],
    /// Largest linear memory (and tables) the instance may use, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit; `None` runs until the guest ends or is stopped.
    pub timeout: Option<Duration>,
    /// stdin.
    pub stdin: GuestInput,
    /// stdout.
    pub stdout: GuestOutput,
    /// stderr.
    pub stderr: GuestOutput,
    /// Lets another task stop the run.
    pub stop: StopHandle,
}

/// How a command ended. Host-side failures are a [`RunError`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandExit {
    /// `_start` returned (status 0) or the guest called `proc_exit(status)`.
    Exited(i32),
    /// The guest trapped; the message says why (out of memory included).
    Trapped(String),
    /// The run passed [`CommandRun::timeout`].
    TimedOut(Duration),
    /// [`StopHandle::stop`] ended it.
    Stopped,
}

impl CommandExit {
    /// The process exit status a command-line tool reports: the guest's own
    /// status, [`EXIT_TRAP`] for a trap, [`EXIT_TIMEOUT`] for a timeout and
    /// `stopped` (the caller's choice, e.g. 128 + signal) when stopped.
    pub fn code(&self, stopped: i32) -> i32 {
        match self {
            CommandExit::Exited(c) => *c,
            CommandExit::Trapped(_) => EXIT_TRAP,
            CommandExit::TimedOut(_) => EXIT_TIMEOUT,
            CommandExit::Stopped => stopped,
        }
    }
}

impl Runtime {
    /// Run `_start` of a command module once, to its end.
    ///
    /// Errors are host-side only: `loaded` is a component, a granted
    /// directory is unusable, or no instance slot is free. Everything the
    /// guest does, trapping included, is a [`CommandExit`].
    /// Cancellation-safe: dropping the future drops the instance.
    pub async fn run_command(
        &self,
        loaded: &Loaded,
        run: CommandRun<'_>,
    ) -> Result<CommandExit, RunError> {
        let Loaded::Command(pre) = loaded else {
            return Err(RunError::Internal(
                "this is a wasi:http component, not a command module: \
                 it can only answer HTTP requests"
                    .into(),
            ));
        };
        let mut b = WasiCtxBuilder::new();
        match run.stdin {
            GuestInput::Null => {}
            GuestInput::Inherit => {
                b.inherit_stdin();
            }
            GuestInput::Reader(r) => {
                b.stdin(AsyncStdinStream::new(r));
            }
        }
        match run.stdout {
            GuestOutput::Null => {}
            GuestOutput::Inherit => {
                b.inherit_stdout();
            }
            GuestOutput::Writer(w) => {
                b.stdout(AsyncStdoutStream::new(WRITE_BUDGET, w));
            }
        }
        match run.stderr {
            GuestOutput::Null => {}
            GuestOutput::Inherit => {
                b.inherit_stderr();
            }
            GuestOutput::Writer(w) => {
                b.stderr(AsyncStdoutStream::new(WRITE_BUDGET, w));
            }
        }
        b.args(run.args).envs(run.env);
        preopen(&mut b, run.dirs)?;
        let memory = run.memory_bytes as usize;
        let state = HostState {
            wasi: b.build_p1(),
            limiter: Limiter::new(Budget::new(memory), memory),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);

        // As `arm_deadline`, plus the stop flag: each tick either traps
        // (stopped, or past the deadline) or yields, so a spinning guest
        // lets the stop and timeout futures below be polled.
        let deadline = run.timeout.map(|t| Instant::now() + t);
        let stop = run.stop.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if stop.is_stopped() || deadline.is_some_and(|d| Instant::now() >= d) {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        let guest = async {
            let instance = pre
                .instantiate_async(&mut store)
                .await
                .map_err(instantiate_error)?;
            let start = instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .map_err(|e| RunError::Internal(format!("{e:#}")))?;
            Ok::<_, RunError>(start.call_async(&mut store, ()).await)
        };
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let outcome = tokio::select! {
            r = tokio::time::timeout_at(deadline.unwrap_or(far).into(), guest) => r,
            () = run.stop.stopped() => return Ok(CommandExit::Stopped),
        };
        let denied = store.data().limiter.denied;
        drop(store);
        let result = match outcome {
            Err(_elapsed) => return Ok(timed_out(run.timeout)),
            Ok(r) => r?,
        };
        let limits = Limits {
            memory_bytes: run.memory_bytes,
            ..Limits::default()
        };
        Ok(match result.map_err(|e| classify(e, &limits, denied)) {
            Ok(()) | Err(Ok(())) => CommandExit::Exited(0),
            Err(Err(RunError::Exit(code, _))) => CommandExit::Exited(code),
            // `classify` reads an epoch interrupt as a timeout; here it may
            // also be a stop.
            Err(Err(RunError::Timeout(..))) if run.stop.is_stopped() => CommandExit::Stopped,
            Err(Err(RunError::Timeout(..))) => timed_out(run.timeout),
            Err(Err(e @ RunError::Trap(..))) => CommandExit::Trapped(trap_message(e)),
            Err(Err(e)) => return Err(e),
        })
    }
}

fn timed_out(timeout: Option<Duration>) -> CommandExit {
    CommandExit::TimedOut(timeout.unwrap_or_default())
}

fn trap_message(e: RunError) -> String {
    match e {
        RunError::Trap(m, _) => m,
        other => other.to_string(),
    }
}
