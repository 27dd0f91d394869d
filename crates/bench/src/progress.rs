//! Progress output for long runs: bars on a terminal, plain lines otherwise
//! (CI logs, pipes), all on stderr so stdout stays the report's path.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

fn multi() -> Option<&'static MultiProgress> {
    static MP: OnceLock<Option<MultiProgress>> = OnceLock::new();
    MP.get_or_init(|| {
        std::io::stderr()
            .is_terminal()
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
    })
    .as_ref()
}

/// A status line (above any bars on a terminal).
pub fn line(msg: &str) {
    match multi() {
        Some(mp) => {
            let _ = mp.println(format!("[bench] {msg}"));
        }
        None => eprintln!("[bench] {msg}"),
    }
}

/// A bar that disappears when dropped.
pub struct Bar {
    bar: Option<ProgressBar>,
    stop: Option<Arc<AtomicBool>>,
}

impl Bar {
    /// One unit of a counted bar done.
    pub fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(s) = &self.stop {
            s.store(true, Ordering::Relaxed);
        }
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            if let Some(mp) = multi() {
                mp.remove(&b);
            }
        }
    }
}

/// A bar over `n` steps (cold starts, deploys). Off a terminal: one line.
pub fn counter(label: &str, n: u64) -> Bar {
    let Some(mp) = multi() else {
        line(&format!("{label} ({n})"));
        return Bar {
            bar: None,
            stop: None,
        };
    };
    let b = mp.add(ProgressBar::new(n));
    b.set_style(
        ProgressStyle::with_template("  {msg:40} [{bar:30}] {pos}/{len} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(label.to_string());
    Bar {
        bar: Some(b),
        stop: None,
    }
}

/// A bar over a fixed duration (a load run). Off a terminal: one line.
pub fn timed(label: &str, d: Duration) -> Bar {
    let Some(mp) = multi() else {
        line(&format!("{label} for {:.1} s", d.as_secs_f64()));
        return Bar {
            bar: None,
            stop: None,
        };
    };
    let total = d.as_millis().max(1) as u64;
    let b = mp.add(ProgressBar::new(total));
    b.set_style(
        ProgressStyle::with_template("  {msg:40} [{bar:30}] {elapsed}/{duration}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    b.set_message(label.to_string());
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (b, stop) = (b.clone(), stop.clone());
        let t0 = Instant::now();
        // A thread, not a task: the load generator owns the runtime's workers.
        let _ = std::thread::Builder::new()
            .name("bench-progress".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    b.set_position((t0.elapsed().as_millis() as u64).min(total));
                    std::thread::sleep(Duration::from_millis(200));
                }
            });
    }
    Bar {
        bar: Some(b),
        stop: Some(stop),
    }
}
