//! Isolation probe: a global counter incremented once per call. With a fresh
//! instance per request it must always print 1.
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn main() {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst) + 1;
    println!("{n}");
}
