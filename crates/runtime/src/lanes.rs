//! Where guest code runs: a fast lane for every new invocation, and a slow
//! lane for guests that keep running.
//!
//! Most invocations finish in their first time slice. A guest that has run
//! for `demote_after` in its later slices (a spinning loop, a memory bomb, a
//! long computation; time suspended does not count) is moved, between two of its time slices, to the slow lane:
//! another Tokio runtime whose threads run at a lower OS priority (a higher
//! nice value, set once when each thread starts, which needs no privilege).
//! The kernel then gives the I/O threads and the fast lane's short guests the
//! CPU first, and long runners take what is left. A long runner is never
//! starved: on an idle machine a nice value costs nothing.
//!
//! This is a two-level feedback queue, built from what the platform already
//! has: Wasmtime's async fibers can be polled from any thread, so the
//! instance future is handed from one runtime to the other while it is
//! suspended at an epoch yield. Nothing changes for an invocation that
//! completes in one poll (the common case): one boxed future, no clock read.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::{AbortHandle, JoinHandle};

/// The runtimes guests run on. Cheap to clone.
#[derive(Clone, Debug)]
pub struct GuestLanes {
    fast: Handle,
    slow: Option<(Handle, Duration)>,
}

impl GuestLanes {
    /// Every guest runs on `fast`, start to end.
    pub fn new(fast: Handle) -> GuestLanes {
        GuestLanes { fast, slow: None }
    }

    /// The fast lane's runtime, for work that drives guests rather than
    /// being one (a workflow's engine: the guests it spawns from there start
    /// on the same thread, without a cross-thread wake-up).
    pub fn fast(&self) -> &Handle {
        &self.fast
    }

    /// Guests that have run `demote_after` (in polls after their first)
    /// continue on `slow`.
    pub fn with_slow_lane(mut self, slow: Handle, demote_after: Duration) -> GuestLanes {
        self.slow = Some((slow, demote_after));
        self
    }

    /// Run `fut` (one guest invocation) in the lanes. Aborting the returned
    /// handle stops the guest in whichever lane it is.
    pub fn spawn<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.spawn_for(None, fut)
    }

    /// [`spawn`](Self::spawn) an invocation of the function `hint` tracks:
    /// if its invocations were moved to the slow lane lately, this one starts
    /// there, instead of holding a fast-lane thread for its first
    /// `demote_after` (with 2 fast threads, two heavy requests arriving at
    /// once block every short one behind them for that long).
    pub fn spawn_for<F>(&self, hint: Option<&Arc<LaneHint>>, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.slow {
            None => self.fast.spawn(fut),
            Some((slow, _)) if hint.is_some_and(|h| h.heavy()) => slow.spawn(fut),
            Some((slow, after)) => {
                self.fast
                    .spawn(demoting(fut, slow.clone(), *after, hint.cloned()))
            }
        }
    }

    /// Spawn work that should run beside the caller's task, not after it
    /// (making a workflow step's instance while the step before it runs):
    /// on the slow lane when there is one, whose idle threads take it at
    /// once. (Spawned from a fast-lane thread onto the fast lane, it would
    /// wait in that thread's next-task slot until the caller yields.) The
    /// work must not depend on starting soon: under load, the slow lane's
    /// lower priority may hold it back.
    pub fn spawn_beside<F>(&self, fut: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.slow {
            Some((slow, _)) => slow.spawn(fut),
            None => self.fast.spawn(fut),
        }
    }

    /// Run `fut` (one guest invocation) in the caller's own task, which must
    /// be running on the fast lane (e.g. a workflow's engine, spawned there):
    /// under the same rules as [`spawn_for`](Self::spawn_for) (moved to the
    /// slow lane once it has run `demote_after`, started there when `hint`
    /// says its function is heavy), but without a task of its own. A guest
    /// that finishes in its first poll then costs no spawn and no wake-up of
    /// the waiting task. Dropping the future stops the guest, in whichever
    /// lane it is.
    pub async fn run_here_for<F>(&self, hint: Option<&Arc<LaneHint>>, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.slow {
            None => fut.await,
            Some((slow, _)) if hint.is_some_and(|h| h.heavy()) => run_on(slow, fut).await,
            Some((slow, after)) => demoting(fut, slow.clone(), *after, hint.cloned()).await,
        }
    }
}

/// What one function's invocations did in the lanes lately: whether one was
/// moved to the slow lane within [`LaneHint::MEMORY`]. Lock-free; a function
/// that never ran long costs one atomic load per invocation and no clock
/// read.
#[derive(Debug, Default)]
pub struct LaneHint {
    /// When an invocation was last demoted, in ms since [`epoch`] + 1 (0: never).
    demoted_at: std::sync::atomic::AtomicU64,
}

impl LaneHint {
    /// How long a demotion marks the function as heavy. Its invocations then
    /// start in the slow lane, so none is demoted and the mark lapses: one
    /// invocation a second still starts in the fast lane and checks again.
    pub const MEMORY: Duration = Duration::from_secs(1);

    /// Whether an invocation was demoted within [`Self::MEMORY`].
    pub fn heavy(&self) -> bool {
        let at = self.demoted_at.load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && millis_now().saturating_sub(at - 1) < Self::MEMORY.as_millis() as u64
    }

    fn mark(&self) {
        self.demoted_at
            .store(millis_now() + 1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Milliseconds since the first call in this process (monotonic).
fn millis_now() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Poll `fut` here until it has run for `after` (time spent in its polls,
/// after the first one), then hand it to `slow` (noting it in `hint`) and
/// wait for it there.
///
/// Only time in `poll` counts, not time suspended: a guest that waits for
/// I/O, a timer, or a thread of this runtime to poll it again (every guest,
/// when the machine is saturated) is not running, and moving it would mark
/// a light function as heavy for what its neighbours do. The first poll is
/// not timed (no clock read for an invocation that finishes in it); it ends
/// at the guest's first epoch yield, one tick at most.
async fn demoting<F>(
    fut: F,
    slow: Handle,
    after: Duration,
    hint: Option<Arc<LaneHint>>,
) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut ran = Duration::ZERO;
    demote_when(fut, slow, move |poll| {
        ran += poll.unwrap_or_default();
        let demote = ran >= after;
        if demote && let Some(h) = &hint {
            h.mark();
        }
        demote
    })
    .await
}

/// Poll `fut` on the current runtime; each time it is suspended, ask
/// `demote` with how long that poll took (`None` for the first poll, which
/// is not timed), and once that says yes, hand the suspended future to
/// `slow` and wait for it there. Dropping the returned future stops `fut`
/// in whichever runtime it is. `demote` is not asked when `fut` finishes in
/// its first poll.
pub async fn demote_when<F>(
    fut: F,
    slow: Handle,
    mut demote: impl FnMut(Option<Duration>) -> bool,
) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut fut: Pin<Box<F>> = Box::pin(fut);
    let mut polled = false;
    let finished = poll_fn(|cx| {
        let start = polled.then(Instant::now);
        polled = true;
        match fut.as_mut().poll(cx) {
            Poll::Ready(v) => Poll::Ready(Some(v)),
            Poll::Pending if demote(start.map(|t| t.elapsed())) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    if let Some(v) = finished {
        return v;
    }
    // Suspended (at an epoch yield or waiting on I/O): safe to move. Its
    // timers and sockets stay registered with the runtime that made them.
    run_on(&slow, fut).await
}

/// Run `fut` on `rt` and wait for it here, as if it ran here: a panic comes
/// back as one, and dropping the wait stops it.
async fn run_on<F>(rt: &Handle, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let task = rt.spawn(fut);
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the runtime is shutting down, and so is the server.
        Err(_) => std::future::pending().await,
    }
}

/// An approximate request rate, cheap enough to update on every request:
/// requests are counted in 250 ms windows, and [`RateMeter::hit`] answers
/// the last complete window's count as a rate (0 when that window was not
/// the one just before). Lock-free; concurrent hits may blur a window edge.
#[derive(Debug, Default)]
pub struct RateMeter {
    window: std::sync::atomic::AtomicU64,
    count: std::sync::atomic::AtomicU32,
    rate: std::sync::atomic::AtomicU32,
}

/// [`RateMeter`]'s window.
const RATE_WINDOW_MS: u64 = 250;

impl RateMeter {
    /// Count one request at `now_ms` (any monotonic millisecond clock);
    /// returns the rate of the last complete window, per second.
    pub fn hit(&self, now_ms: u64) -> u32 {
        use std::sync::atomic::Ordering::Relaxed;
        let w = now_ms / RATE_WINDOW_MS;
        let cur = self.window.load(Relaxed);
        if w > cur
            && self
                .window
                .compare_exchange(cur, w, Relaxed, Relaxed)
                .is_ok()
        {
            let n = self.count.swap(0, Relaxed);
            let rate = if w == cur + 1 {
                n.saturating_mul((1000 / RATE_WINDOW_MS) as u32)
            } else {
                0
            };
            self.rate.store(rate, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.rate.load(Relaxed)
    }
}

/// Aborts a task when dropped: a guest's task goes when whoever waits for
/// it goes (the client's request, or the fast-lane task that handed the
/// guest to the slow lane).
pub struct AbortOnDrop(pub AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Lower the calling thread's CPU priority by `by` nice steps, from
/// whatever the process runs at, capped at 19 (Linux: nice values are per
/// thread). For a slow lane's `on_thread_start`. Raising a nice value never
/// needs privilege.
pub fn lower_thread_priority(by: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain syscalls on the calling thread; no memory is shared.
        let rc = unsafe {
            let tid = libc::gettid() as libc::id_t;
            let now = libc::getpriority(libc::PRIO_PROCESS, tid);
            libc::setpriority(libc::PRIO_PROCESS, tid, (now + by.max(0)).min(19))
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = by;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn runtime(name: &str, nice: Option<i32>) -> tokio::runtime::Runtime {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(1).enable_all().thread_name(name);
        if let Some(n) = nice {
            b.on_thread_start(move || lower_thread_priority(n).unwrap());
        }
        b.build().unwrap()
    }

    fn thread_name() -> String {
        std::thread::current().name().unwrap_or("").to_string()
    }

    fn own_nice() -> i32 {
        // SAFETY: reads the calling thread's nice value.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
    }

    #[test]
    fn a_short_guest_stays_and_a_long_one_moves_to_the_lower_priority_lane() {
        let fast = runtime("fast", None);
        let slow = runtime("slow", Some(7));
        let lanes = GuestLanes::new(fast.handle().clone())
            .with_slow_lane(slow.handle().clone(), Duration::from_millis(5));
        let short = lanes.spawn(async { thread_name() });
        let long = lanes.spawn(async {
            let before = thread_name();
            // A CPU-bound guest yields at every tick.
            for _ in 0..30 {
                tick(Duration::from_millis(1)).await;
            }
            (before, thread_name(), own_nice())
        });
        let main = runtime("main", None);
        assert_eq!(main.block_on(short).unwrap(), "fast");
        let (before, after, nice) = main.block_on(long).unwrap();
        assert_eq!((before.as_str(), after.as_str()), ("fast", "slow"));
        assert_eq!(nice, (own_nice_of_new_thread() + 7).min(19));
    }

    /// One time slice of a CPU-bound guest: run `slice`, then yield (as
    /// a guest does at an epoch tick).
    async fn tick(slice: Duration) {
        let t = Instant::now();
        while t.elapsed() < slice {
            std::hint::spin_loop();
        }
        tokio::task::yield_now().await;
    }

    fn own_nice_of_new_thread() -> i32 {
        std::thread::spawn(own_nice).join().unwrap()
    }

    #[test]
    fn aborting_the_invocation_stops_the_guest_in_the_slow_lane() {
        let fast = runtime("fast", None);
        let slow = runtime("slow", Some(1));
        let lanes = GuestLanes::new(fast.handle().clone())
            .with_slow_lane(slow.handle().clone(), Duration::from_millis(1));
        let alive = Arc::new(AtomicBool::new(true));
        struct Flag(Arc<AtomicBool>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.store(false, Ordering::SeqCst);
            }
        }
        let flag = Flag(alive.clone());
        let moved = Arc::new(AtomicBool::new(false));
        let m = moved.clone();
        let task = lanes.spawn(async move {
            let _flag = flag;
            loop {
                if thread_name() == "slow" {
                    m.store(true, Ordering::SeqCst);
                }
                tick(Duration::from_micros(200)).await;
            }
        });
        let t = Instant::now();
        while !moved.load(Ordering::SeqCst) {
            assert!(t.elapsed() < Duration::from_secs(5), "never demoted");
            std::thread::sleep(Duration::from_millis(1));
        }
        task.abort();
        while alive.load(Ordering::SeqCst) {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "still running after abort"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn run_here_runs_on_the_callers_thread_and_still_demotes_and_honours_the_hint() {
        let fast = runtime("fast", None);
        let slow = runtime("slow", Some(3));
        let lanes = GuestLanes::new(fast.handle().clone())
            .with_slow_lane(slow.handle().clone(), Duration::from_millis(5));
        let hint = Arc::new(LaneHint::default());
        let (l, h) = (lanes.clone(), hint.clone());
        // The caller: a task of the fast lane (like a workflow's engine).
        let (short, long, then) = fast
            .block_on(fast.spawn(async move {
                let caller = std::thread::current().id();
                let short = l
                    .run_here_for(
                        Some(&h),
                        async move { std::thread::current().id() == caller },
                    )
                    .await;
                let long = l
                    .run_here_for(Some(&h), async {
                        let before = thread_name();
                        for _ in 0..30 {
                            tick(Duration::from_millis(1)).await;
                        }
                        (before, thread_name())
                    })
                    .await;
                // Demoted lately: the next one starts in the slow lane.
                let then = l.run_here_for(Some(&h), async { thread_name() }).await;
                (short, long, then)
            }))
            .unwrap();
        assert!(short, "a short guest ran on another thread than its caller");
        assert_eq!((long.0.as_str(), long.1.as_str()), ("fast", "slow"));
        assert!(hint.heavy());
        assert_eq!(then, "slow");
    }

    #[test]
    fn a_guest_that_waits_is_not_demoted_and_its_function_not_marked() {
        // Waiting (for I/O, a timer, or a saturated machine's threads) is
        // not running: 40 ms suspended in 2 ms naps, with a 5 ms budget,
        // stays in the fast lane; so does the next invocation.
        let fast = runtime("fast", None);
        let slow = runtime("slow", Some(2));
        let lanes = GuestLanes::new(fast.handle().clone())
            .with_slow_lane(slow.handle().clone(), Duration::from_millis(5));
        let main = runtime("main", None);
        let hint = Arc::new(LaneHint::default());
        let napper = || async {
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            thread_name()
        };
        let last = main
            .block_on(lanes.spawn_for(Some(&hint), napper()))
            .unwrap();
        assert_eq!(last, "fast");
        assert!(!hint.heavy());
        let last = main
            .block_on(lanes.spawn_for(Some(&hint), napper()))
            .unwrap();
        assert_eq!(last, "fast");
    }

    #[test]
    fn a_function_demoted_lately_starts_in_the_slow_lane_until_the_mark_lapses() {
        let fast = runtime("fast", None);
        let slow = runtime("slow", Some(2));
        let lanes = GuestLanes::new(fast.handle().clone())
            .with_slow_lane(slow.handle().clone(), Duration::from_millis(2));
        let main = runtime("main", None);
        let hint = Arc::new(LaneHint::default());
        let spinner = || async {
            let first = thread_name();
            for _ in 0..20 {
                tick(Duration::from_millis(1)).await;
            }
            first
        };
        // Unknown: starts fast, is demoted, and the function is marked.
        assert!(!hint.heavy());
        let first = main
            .block_on(lanes.spawn_for(Some(&hint), spinner()))
            .unwrap();
        assert_eq!(first, "fast");
        assert!(hint.heavy());
        // Marked: the next one starts in the slow lane.
        let first = main
            .block_on(lanes.spawn_for(Some(&hint), spinner()))
            .unwrap();
        assert_eq!(first, "slow");
        // Another function is not affected.
        let other = Arc::new(LaneHint::default());
        let first = main.block_on(lanes.spawn_for(Some(&other), async { thread_name() }));
        assert_eq!(first.unwrap(), "fast");
        // After the mark lapses, it gets the fast lane again.
        std::thread::sleep(LaneHint::MEMORY + Duration::from_millis(50));
        assert!(!hint.heavy());
        let first = main.block_on(lanes.spawn_for(Some(&hint), async { thread_name() }));
        assert_eq!(first.unwrap(), "fast");
    }

    #[test]
    fn the_rate_meter_answers_the_last_complete_window() {
        let m = RateMeter::default();
        // 100 hits in window 4 (1000..1250 ms): no complete window yet.
        for i in 0..100 {
            assert_eq!(m.hit(1000 + i), 0);
        }
        // The next window reports them as 400/s.
        assert_eq!(m.hit(1260), 400);
        assert_eq!(m.hit(1400), 400);
        // After an idle gap, the rate is 0 again.
        assert_eq!(m.hit(5000), 0);
    }

    #[test]
    fn demote_when_moves_a_future_once_asked_and_not_before() {
        let fast = runtime("fast", None);
        let slow = runtime("slow", Some(3));
        let flag = Arc::new(AtomicBool::new(false));
        let f2 = flag.clone();
        let task = fast.spawn(demote_when(
            async move {
                let mut seen = vec![thread_name()];
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    seen.push(thread_name());
                }
                f2.store(true, Ordering::SeqCst);
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                    seen.push(thread_name());
                }
                seen
            },
            slow.handle().clone(),
            move |_| flag.load(Ordering::SeqCst),
        ));
        let seen = fast.block_on(task).unwrap();
        assert_eq!(&seen[..4], ["fast", "fast", "fast", "fast"], "{seen:?}");
        assert_eq!(seen.last().unwrap(), "slow", "{seen:?}");
    }
}
