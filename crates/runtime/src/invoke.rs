//! One request: a fresh store, WASI context and instance, run under limits.

use crate::engine::{Loaded, Runtime};
use crate::pipe::CappedPipe;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};
use wisp_core::{DirGrant, Limits};

/// Per-store state: the WASI context and the memory limiter.
pub struct HostState {
    pub(crate) wasi: WasiP1Ctx,
    pub(crate) limiter: Limiter,
}

/// One instance's memory budget, shared by everything that grows with the
/// guest: its linear memories and tables (all of them: a component may
/// have dozens) and the host-side buffers of its stdout and stderr. Counted
/// down as they grow; nothing is given back before the store is dropped,
/// since memories never shrink and the buffers are read only at the end.
#[derive(Clone)]
pub(crate) struct Budget(Arc<AtomicUsize>);

impl Budget {
    pub(crate) fn new(bytes: usize) -> Budget {
        Budget(Arc::new(AtomicUsize::new(bytes)))
    }

    /// Bytes left.
    pub(crate) fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Take `n` bytes; false (and nothing taken) if fewer are left.
    pub(crate) fn take(&self, n: usize) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            })
            .is_ok()
    }
}

/// Table elements are counted at this many bytes each (a funcref slot).
const TABLE_ELEMENT_BYTES: usize = 8;

/// Memory/table limiter over the instance's [`Budget`]; remembers a denied
/// grow, so an out-of-memory abort can be reported as such.
pub(crate) struct Limiter {
    memory_bytes: usize,
    pub(crate) budget: Budget,
    /// Core instances / memories / tables per store: 1 for a module, a
    /// handful for a component (its own core modules and adapters).
    objects: usize,
    pub(crate) denied: Option<usize>,
}

impl Limiter {
    /// For a core module.
    pub(crate) fn new(budget: Budget, memory_bytes: usize) -> Limiter {
        Limiter {
            memory_bytes,
            budget,
            objects: 1,
            denied: None,
        }
    }
    /// For a component: up to [`COMPONENT_OBJECTS`] core instances and
    /// memories, four times that many tables, all on one budget.
    pub(crate) fn for_component(budget: Budget, memory_bytes: usize) -> Limiter {
        Limiter {
            memory_bytes,
            budget,
            objects: COMPONENT_OBJECTS,
            denied: None,
        }
    }
}

/// Most core instances (and memories) one component instance may create.
pub(crate) const COMPONENT_OBJECTS: usize = 32;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes || !self.budget.take(desired.saturating_sub(current)) {
            self.denied = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let bytes = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        Ok(desired <= 1_000_000 && self.budget.take(bytes))
    }
    fn instances(&self) -> usize {
        self.objects
    }
    fn memories(&self) -> usize {
        self.objects
    }
    fn tables(&self) -> usize {
        self.objects * 4
    }
}

/// What one request hands the guest.
pub struct Invocation<'a> {
    /// `argv`; `argv[0]` is conventionally the function name.
    pub args: &'a [String],
    /// Environment (CGI variables, query, function env).
    pub env: &'a [(String, String)],
    /// Request body, fed on stdin.
    pub stdin: Bytes,
    /// Directories to preopen.
    pub dirs: &'a [DirGrant],
    /// Limits to enforce.
    pub limits: &'a Limits,
}

/// What the guest produced.
#[derive(Debug)]
pub struct Output {
    /// Everything written to stdout.
    pub stdout: Bytes,
    /// stderr, capped at the log limit.
    pub stderr: Bytes,
    /// Whether stderr was truncated.
    pub stderr_truncated: bool,
    /// Time to create the store and instance.
    pub instantiate: Duration,
    /// Time in `_start`.
    pub run: Duration,
    /// When the run began (before instantiation), on the monotonic clock:
    /// the guest code ran from `started + instantiate` for `run`.
    pub started: Instant,
    /// The finished instance, not yet torn down: dropping it frees its
    /// pool slot, resetting the memory the guest dirtied (milliseconds for
    /// a guest that grew its heap by tens of MiB). `run` ends before it,
    /// so the caller may answer first and drop it elsewhere.
    pub teardown: Option<Teardown>,
}

/// A finished instance's store, kept until the caller drops it (see
/// [`Output::teardown`]). Never touched again: the mutex only makes it
/// `Sync`, as errors carrying an [`Output`] must be.
pub struct Teardown {
    _store: std::sync::Mutex<Store<HostState>>,
    used: usize,
}

impl Teardown {
    /// Bytes of its memory budget the instance used: its memories and
    /// tables as grown, and its buffered output. What tearing it down
    /// resets is at most this.
    pub fn used_bytes(&self) -> usize {
        self.used
    }
}

impl std::fmt::Debug for Teardown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Teardown")
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

/// Why a run failed. `Output` is attached where the guest produced any.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Ran past its wall-clock deadline.
    #[error("function exceeded its {0:?} timeout")]
    Timeout(Duration, Option<Box<Output>>),
    /// Trapped; the message names the trap.
    #[error("function trapped: {0}")]
    Trap(String, Option<Box<Output>>),
    /// Exited with a non-zero status.
    #[error("function exited with status {0}")]
    Exit(i32, Option<Box<Output>>),
    /// Wrote more than `max_response_bytes` to stdout.
    #[error("response exceeded the {0}-byte limit")]
    ResponseTooLarge(u64, Option<Box<Output>>),
    /// The instance pool is exhausted (too many instances alive).
    #[error("no free instance slot: {0}")]
    PoolExhausted(String),
    /// A host-side failure (bad grant path, engine error).
    #[error("{0}")]
    Internal(String),
}

impl RunError {
    /// Attach the guest's output to an error that has none yet.
    pub(crate) fn with_output(self, o: Output) -> RunError {
        let o = Some(Box::new(o));
        match self {
            RunError::Timeout(d, None) => RunError::Timeout(d, o),
            RunError::Trap(m, None) => RunError::Trap(m, o),
            RunError::Exit(c, None) => RunError::Exit(c, o),
            RunError::ResponseTooLarge(n, None) => RunError::ResponseTooLarge(n, o),
            other => other,
        }
    }

    /// Attach a captured log to an error that has no output yet.
    pub(crate) fn with_log(self, log: Bytes, truncated: bool) -> RunError {
        self.with_output(Output {
            stdout: Bytes::new(),
            stderr: log,
            stderr_truncated: truncated,
            instantiate: Duration::ZERO,
            run: Duration::ZERO,
            started: Instant::now(),
            teardown: None,
        })
    }

    /// The guest's output, if it produced any before failing.
    pub fn output(&self) -> Option<&Output> {
        match self {
            RunError::Timeout(_, o)
            | RunError::Trap(_, o)
            | RunError::Exit(_, o)
            | RunError::ResponseTooLarge(_, o) => o.as_deref(),
            _ => None,
        }
    }
}

/// Preopen the granted directories.
pub(crate) fn preopen(b: &mut WasiCtxBuilder, dirs: &[DirGrant]) -> Result<(), RunError> {
    for d in dirs {
        let perms = if d.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&d.host, &d.guest, perms).map_err(|e| {
            RunError::Internal(format!("granted dir {} is not usable: {e:#}", d.host))
        })?;
    }
    Ok(())
}

/// One tick ahead; on every tick, either trap (past the deadline) or yield
/// to the scheduler so a CPU-bound guest cannot starve others.
pub(crate) fn arm_deadline<T: 'static>(store: &mut Store<T>, deadline: Instant) {
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if Instant::now() >= deadline {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::Yield(1))
        }
    });
}

/// Why instantiation failed.
pub(crate) fn instantiate_error(e: wasmtime::Error) -> RunError {
    if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        RunError::PoolExhausted(format!("{e}"))
    } else {
        RunError::Internal(format!("instantiation failed: {e:#}"))
    }
}

/// What an error out of guest code means. `exit(0)` is not a failure.
/// `denied` is the memory size the limiter refused, if any: a trap after a
/// refused grow is reported as out of memory.
pub(crate) fn classify(
    e: wasmtime::Error,
    limits: &Limits,
    denied: Option<usize>,
) -> Result<(), RunError> {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return if exit.0 == 0 {
            Ok(())
        } else {
            Err(RunError::Exit(exit.0, None))
        };
    }
    Err(match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => RunError::Timeout(limits.timeout(), None),
        Some(Trap::StackOverflow) => RunError::Trap("stack overflow".into(), None),
        Some(t) => match denied {
            Some(want) => RunError::Trap(
                format!(
                    "out of memory: the guest tried to grow its memory to {want} bytes, past its {}-byte limit ({t})",
                    limits.memory_bytes
                ),
                None,
            ),
            None => RunError::Trap(t.to_string(), None),
        },
        None => RunError::Trap(format!("{e:#}"), None),
    })
}

/// A command module's fresh instance made before its request is known:
/// a workflow step whose input is still being produced, so that
/// instantiating happens beside the producer instead of after it. It has
/// run no guest code (a module's `start` function aside) and is never
/// reused: [`Runtime::invoke_ahead`] gives it its one request, and
/// dropping it frees the instance.
pub struct Ahead {
    store: Store<HostState>,
    instance: wasmtime::Instance,
    /// How long instantiating took.
    pub instantiate: Duration,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ahead")
            .field("instantiate", &self.instantiate)
            .finish_non_exhaustive()
    }
}

/// What a request's guest writes.
struct Pipes {
    stdout: CappedPipe,
    stderr: CappedPipe,
}

/// A request's WASI context: stdin, capped stdout and stderr counted in
/// `budget`, args, env and the granted directories.
fn command_ctx(inv: Invocation<'_>, budget: &Budget) -> Result<(WasiP1Ctx, Pipes), RunError> {
    let stdout = CappedPipe::new(inv.limits.max_response_bytes as usize, true).with_budget(budget);
    let stderr = CappedPipe::new(inv.limits.max_log_bytes as usize, false).with_budget(budget);
    let mut b = WasiCtxBuilder::new();
    b.stdin(MemoryInputPipe::new(inv.stdin))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .args(inv.args)
        .envs(inv.env);
    preopen(&mut b, inv.dirs)?;
    Ok((b.build_p1(), Pipes { stdout, stderr }))
}

/// A store for one command-module instance under `limits`, its deadline
/// armed at `deadline`.
fn command_store(
    engine: &wasmtime::Engine,
    wasi: WasiP1Ctx,
    budget: Budget,
    limits: &Limits,
    deadline: Instant,
) -> Store<HostState> {
    let state = HostState {
        wasi,
        limiter: Limiter::new(budget, limits.memory_bytes as usize),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    arm_deadline(&mut store, deadline);
    store
}

/// Where a request's instance comes from.
enum Instance<'a> {
    /// Made now, from the template.
    Fresh(&'a wasmtime::InstancePre<HostState>),
    /// Made ahead ([`Ahead`]).
    Ready(wasmtime::Instance),
}

impl Runtime {
    /// Run one request in a fresh instance of `loaded`.
    ///
    /// Cancellation-safe: dropping the future drops the store and instance.
    pub async fn invoke(&self, loaded: &Loaded, inv: Invocation<'_>) -> Result<Output, RunError> {
        let Loaded::Command(pre) = loaded else {
            return Err(not_a_command());
        };
        let t0 = Instant::now();
        let limits = inv.limits;
        let budget = Budget::new(limits.memory_bytes as usize);
        let (wasi, pipes) = command_ctx(inv, &budget)?;
        let store = command_store(&self.engine, wasi, budget, limits, t0 + limits.timeout());
        run_command_instance(store, Instance::Fresh(pre), pipes, t0, limits).await
    }

    /// Make a fresh instance of `loaded` for a request to come, under
    /// `limits` (the ones the request will run under). Instantiating is
    /// bounded by the limits' timeout.
    pub async fn instantiate_ahead(
        &self,
        loaded: &Loaded,
        limits: &Limits,
    ) -> Result<Ahead, RunError> {
        let Loaded::Command(pre) = loaded else {
            return Err(not_a_command());
        };
        let t0 = Instant::now();
        let budget = Budget::new(limits.memory_bytes as usize);
        // No request yet: an empty context, replaced before `_start`.
        let wasi = WasiCtxBuilder::new().build_p1();
        let mut store = command_store(&self.engine, wasi, budget, limits, t0 + limits.timeout());
        let instance = tokio::time::timeout(limits.timeout(), pre.instantiate_async(&mut store))
            .await
            .map_err(|_| RunError::Timeout(limits.timeout(), None))?
            .map_err(instantiate_error)?;
        Ok(Ahead {
            store,
            instance,
            instantiate: t0.elapsed(),
        })
    }

    /// Run one request in `ahead`, an instance made for it by
    /// [`Runtime::instantiate_ahead`] under the same limits. As
    /// [`Runtime::invoke`], but `Output::instantiate` is only the time to
    /// give the instance its request (the context and the deadline).
    pub async fn invoke_ahead(
        &self,
        ahead: Ahead,
        inv: Invocation<'_>,
    ) -> Result<Output, RunError> {
        let t0 = Instant::now();
        let limits = inv.limits;
        let Ahead {
            mut store,
            instance,
            ..
        } = ahead;
        // The instance's memories are counted in this budget already.
        let budget = store.data().limiter.budget.clone();
        let (wasi, pipes) = command_ctx(inv, &budget)?;
        store.data_mut().wasi = wasi;
        arm_deadline(&mut store, t0 + limits.timeout());
        run_command_instance(store, Instance::Ready(instance), pipes, t0, limits).await
    }
}

fn not_a_command() -> RunError {
    RunError::Internal("this function is a wasi:http component, not a command module".into())
}

/// Instantiate (unless made ahead) and run `_start` in `store` until
/// its deadline (`t0` + the timeout); then collect what the guest wrote and
/// say how it ended.
async fn run_command_instance(
    mut store: Store<HostState>,
    instance: Instance<'_>,
    Pipes { stdout, stderr }: Pipes,
    t0: Instant,
    limits: &Limits,
) -> Result<Output, RunError> {
    let deadline = t0 + limits.timeout();
    let run = async {
        let instance = match instance {
            Instance::Fresh(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map_err(instantiate_error)?,
            Instance::Ready(i) => i,
        };
        let t_inst = t0.elapsed();
        let start = instance
            .get_typed_func::<(), ()>(&mut store, "_start")
            .map_err(|e| RunError::Internal(format!("{e:#}")))?;
        let r = start.call_async(&mut store, ()).await;
        Ok((t_inst, r))
    };

    let outcome = tokio::time::timeout_at(deadline.into(), run).await;
    // The guest's run ends here: tearing its instance down (resetting the
    // memory it dirtied, tens of microseconds for a guest that grew its
    // heap) is the host's time, not the guest's.
    let ended = t0.elapsed();
    let denied = store.data().limiter.denied;
    // A run that finished keeps its instance for the caller to drop; one
    // that failed frees it at once.
    let store = match matches!(&outcome, Ok(Ok((_, Ok(()))))) {
        true => Some(store),
        false => {
            drop(store);
            None
        }
    };
    let collect = |inst: Duration| {
        let (out, overflow) = stdout.take();
        let (err, truncated) = stderr.take();
        (
            Output {
                stdout: out,
                stderr: err,
                stderr_truncated: truncated,
                instantiate: inst,
                run: ended.saturating_sub(inst),
                started: t0,
                teardown: None,
            },
            overflow,
        )
    };
    match outcome {
        Err(_elapsed) => {
            let (o, _) = collect(Duration::ZERO);
            Err(RunError::Timeout(limits.timeout(), None).with_output(o))
        }
        Ok(Err(e)) => Err(e),
        Ok(Ok((inst, result))) => {
            let over_budget = stdout.budget_hit();
            let (o, overflow) = collect(inst);
            if over_budget {
                return Err(RunError::Trap(
                    format!(
                        "out of memory: the guest's memory and its buffered output passed its {}-byte limit",
                        limits.memory_bytes
                    ),
                    None,
                )
                .with_output(o));
            }
            if overflow {
                return Err(
                    RunError::ResponseTooLarge(limits.max_response_bytes, None).with_output(o)
                );
            }
            match result.map_err(|e| classify(e, limits, denied)) {
                Ok(()) | Err(Ok(())) => Ok(Output {
                    teardown: store.map(|s| {
                        let left = s.data().limiter.budget.left();
                        Teardown {
                            used: (limits.memory_bytes as usize).saturating_sub(left),
                            _store: std::sync::Mutex::new(s),
                        }
                    }),
                    ..o
                }),
                Err(Err(err)) => Err(err.with_output(o)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copies up to 4 KiB of stdin to stdout: one `fd_read`, one `fd_write`.
    const CAT: &str = r#"(module
      (import "wasi_snapshot_preview1" "fd_read" (func $read (param i32 i32 i32 i32) (result i32)))
      (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 1)
      (func (export "_start")
        ;; iovec at 0: buf 1024, len 4096; nread at 16
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 4096))
        (drop (call $read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
        (i32.store (i32.const 4) (i32.load (i32.const 16)))
        (drop (call $write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 20)))))"#;

    fn rt() -> (Runtime, Loaded) {
        let rt = Runtime::new(crate::EngineOptions::default()).unwrap();
        let loaded = rt.load_bytes(&wat::parse_str(CAT).unwrap()).unwrap();
        (rt, loaded)
    }

    #[tokio::test]
    async fn a_finished_instance_holds_its_pool_slot_until_its_teardown_is_dropped() {
        let rt = Runtime::new(crate::EngineOptions {
            pool_instances: 1,
            ..Default::default()
        })
        .unwrap();
        let loaded = rt.load_bytes(&wat::parse_str(CAT).unwrap()).unwrap();
        let limits = Limits::default();
        let inv = || Invocation {
            args: &[],
            env: &[],
            stdin: Bytes::from_static(b"x"),
            dirs: &[],
            limits: &limits,
        };
        let mut out = rt.invoke(&loaded, inv()).await.unwrap();
        assert_eq!(
            &out.stdout[..],
            b"x",
            "the output is complete before the teardown"
        );
        let teardown = out
            .teardown
            .take()
            .expect("a finished run keeps its instance");
        // CAT's one 64 KiB page, and the byte it wrote.
        assert!(teardown.used_bytes() >= 64 << 10, "{teardown:?}");
        // The one pool slot is still the finished instance's.
        match rt.invoke(&loaded, inv()).await {
            Err(RunError::PoolExhausted(_)) => {}
            other => panic!("expected the pool to be exhausted, got {other:?}"),
        }
        drop(teardown);
        let again = rt.invoke(&loaded, inv()).await.unwrap();
        assert_eq!(&again.stdout[..], b"x");
        drop(again);
        // A run that fails frees its instance at once.
        let tiny = Limits {
            timeout_ms: 1,
            ..Limits::default()
        };
        let spin = rt
            .load_bytes(
                &wat::parse_str(r#"(module (func (export "_start") (loop (br 0))))"#).unwrap(),
            )
            .unwrap();
        let e = rt
            .invoke(
                &spin,
                Invocation {
                    limits: &tiny,
                    ..inv()
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(e, RunError::Timeout(..)), "{e:?}");
        assert!(
            rt.invoke(&loaded, inv()).await.is_ok(),
            "the failed run's slot is free"
        );
    }

    #[tokio::test]
    async fn an_instance_made_ahead_gets_the_request_given_later() {
        let (rt, loaded) = rt();
        let limits = Limits::default();
        let ahead = rt.instantiate_ahead(&loaded, &limits).await.unwrap();
        let inv = |stdin: &'static [u8]| Invocation {
            args: &[],
            env: &[],
            stdin: Bytes::from_static(stdin),
            dirs: &[],
            limits: &limits,
        };
        let out = rt
            .invoke_ahead(ahead, inv(b"given after instantiating"))
            .await
            .unwrap();
        assert_eq!(&out.stdout[..], b"given after instantiating");
        // The same as a fresh instance made for the request.
        let fresh = rt
            .invoke(&loaded, inv(b"given after instantiating"))
            .await
            .unwrap();
        assert_eq!(out.stdout, fresh.stdout);
        // Two made ahead are two instances: the first one's request is not the second's.
        let (a, b) = (
            rt.instantiate_ahead(&loaded, &limits).await.unwrap(),
            rt.instantiate_ahead(&loaded, &limits).await.unwrap(),
        );
        let (oa, ob) = (
            rt.invoke_ahead(a, inv(b"one")).await.unwrap(),
            rt.invoke_ahead(b, inv(b"two")).await.unwrap(),
        );
        assert_eq!((&oa.stdout[..], &ob.stdout[..]), (&b"one"[..], &b"two"[..]));
    }

    #[tokio::test]
    async fn an_instance_made_ahead_keeps_its_memory_limit_and_gets_its_deadline_at_the_request() {
        let (rt, loaded) = rt();
        // One page of memory does not fit in half a page.
        let tiny = Limits {
            memory_bytes: 32 << 10,
            ..Limits::default()
        };
        let e = rt.instantiate_ahead(&loaded, &tiny).await.unwrap_err();
        assert!(
            matches!(e, RunError::Internal(ref m) if m.contains("instantiation failed")),
            "{e:?}"
        );
        // The deadline runs from the request, not from instantiating.
        let limits = Limits {
            timeout_ms: 100,
            ..Limits::default()
        };
        let ahead = rt.instantiate_ahead(&loaded, &limits).await.unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let out = rt
            .invoke_ahead(
                ahead,
                Invocation {
                    args: &[],
                    env: &[],
                    stdin: Bytes::from_static(b"late but in time"),
                    dirs: &[],
                    limits: &limits,
                },
            )
            .await
            .unwrap();
        assert_eq!(&out.stdout[..], b"late but in time");
    }

    #[test]
    fn one_budget_across_all_memories_and_tables() {
        const MIB: usize = 1 << 20;
        let mut l = Limiter::for_component(Budget::new(10 * MIB), 10 * MIB);
        // Each memory alone is under the limit; together they are not.
        assert!(l.memory_growing(0, 6 * MIB, None).unwrap());
        assert!(!l.memory_growing(0, 6 * MIB, None).unwrap());
        assert_eq!(l.denied, Some(6 * MIB));
        assert!(l.memory_growing(0, 4 * MIB, None).unwrap());
        // Growth counts the difference only, and the budget is spent.
        assert!(!l.memory_growing(4 * MIB, 4 * MIB + 1, None).unwrap());
        assert!(!l.table_growing(0, 1, None).unwrap(), "tables share it too");
        assert_eq!(l.memories(), COMPONENT_OBJECTS);
        assert_eq!(Limiter::new(Budget::new(MIB), MIB).memories(), 1);
    }
}
