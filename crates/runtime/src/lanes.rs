//! Where guest code runs: a fast lane for every new invocation, and a slow
//! lane for guests that keep running.
//!
//! Most invocations finish in their first time slice. A guest that is still
//! running after `demote_after` (a spinning loop, a memory bomb, a long
//! computation) is moved, between two of its time slices, to the slow lane:
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

    /// Guests still running `demote_after` after their first suspension
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
        match &self.slow {
            None => self.fast.spawn(fut),
            Some((slow, after)) => self.fast.spawn(demoting(fut, slow.clone(), *after)),
        }
    }
}

/// Poll `fut` here until it has been suspended for `after` since its first
/// suspension, then hand it to `slow` and wait for it there.
async fn demoting<F>(fut: F, slow: Handle, after: Duration) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut fut: Pin<Box<F>> = Box::pin(fut);
    let mut first_pending: Option<Instant> = None;
    let finished = poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => {
            let now = Instant::now();
            let since = *first_pending.get_or_insert(now);
            if now.duration_since(since) >= after {
                Poll::Ready(None)
            } else {
                Poll::Pending
            }
        }
    })
    .await;
    if let Some(v) = finished {
        return v;
    }
    // Suspended (at an epoch yield or waiting on I/O): safe to move. Its
    // timers and sockets stay registered with the runtime that made them.
    let task = slow.spawn(fut);
    let _abort = AbortOnDrop(task.abort_handle());
    match task.await {
        Ok(v) => v,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Cancelled: the slow lane is shutting down, and so is the server.
        Err(_) => std::future::pending().await,
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
            let t = Instant::now();
            while t.elapsed() < Duration::from_millis(30) {
                tokio::task::yield_now().await;
            }
            (before, thread_name(), own_nice())
        });
        let main = runtime("main", None);
        assert_eq!(main.block_on(short).unwrap(), "fast");
        let (before, after, nice) = main.block_on(long).unwrap();
        assert_eq!((before.as_str(), after.as_str()), ("fast", "slow"));
        assert_eq!(nice, (own_nice_of_new_thread() + 7).min(19));
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
                tokio::task::yield_now().await;
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
}
