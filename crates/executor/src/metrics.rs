//! Lock-free counters and histograms, rendered as Prometheus text.
//!
//! The hot path only does relaxed atomic adds on structures it already
//! holds an `Arc` to; rendering walks them when `/metrics` is scraped.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use wisp_core::{ActivationStatus, ErrorKind};

/// Upper bounds (seconds) of the latency histogram buckets.
pub const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A cumulative-on-render latency histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    /// Record one observation in microseconds.
    pub fn observe_us(&self, us: u64) {
        let s = us as f64 / 1e6;
        let i = BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.counts[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{b}\"}} {cum}");
        }
        cum += self.counts[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "{name}_sum{{{}}} {}",
            labels.trim_end_matches(','),
            self.sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "{name}_count{{{}}} {cum}",
            labels.trim_end_matches(',')
        );
    }
}

/// Per-function metrics; survive redeploys of the same name.
#[derive(Default)]
pub struct FunctionMetrics {
    by_status: [AtomicU64; ActivationStatus::ALL.len()],
    /// Cold starts (the function had to be loaded for the request).
    pub cold_starts: AtomicU64,
    /// Requests waiting for a concurrency slot right now.
    pub queue_depth: AtomicU64,
    /// Instances running right now.
    pub running: AtomicU64,
    /// End-to-end latency (wait + init + run).
    pub latency: Histogram,
    /// Recent request rate, for the server's per-function fairness.
    pub rate: wisp_runtime::RateMeter,
    /// Whether its invocations ran long lately: they then start in the
    /// guests' slow lane (see `wisp_runtime::LaneHint`).
    pub lane: std::sync::Arc<wisp_runtime::LaneHint>,
}

fn status_index(s: ActivationStatus) -> usize {
    ActivationStatus::ALL
        .iter()
        .position(|&x| x == s)
        .expect("every status is in ALL")
}

impl FunctionMetrics {
    /// Count one invocation outcome.
    pub fn count(&self, s: ActivationStatus) {
        self.by_status[status_index(s)].fetch_add(1, Relaxed);
    }
    /// Invocations with this outcome so far.
    pub fn invocations(&self, s: ActivationStatus) -> u64 {
        self.by_status[status_index(s)].load(Relaxed)
    }
}

/// Process-wide metrics.
#[derive(Default)]
pub struct Metrics {
    errors: [AtomicU64; ErrorKind::ALL.len()],
    /// Successful deploys that created a version.
    pub deploys: AtomicU64,
    /// Artifacts loaded from disk (cold loads).
    pub loads: AtomicU64,
    /// Activation records dropped because the writer fell behind.
    pub activations_dropped: AtomicU64,
    /// Activation records written.
    pub activations_written: AtomicU64,
    /// Workflow steps that ran in an instance made while their inputs
    /// were produced.
    pub made_ahead_used: AtomicU64,
    /// Workflow steps whose instance was being made ahead but had not
    /// begun (or failed) when they started: they made their own.
    pub made_ahead_missed: AtomicU64,
}

impl Metrics {
    /// Count an error by kind.
    pub fn error(&self, k: ErrorKind) {
        let i = ErrorKind::ALL.iter().position(|&x| x == k).unwrap();
        self.errors[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn render_errors(&self, out: &mut String) {
        out.push_str("# HELP wisp_errors_total Failed requests by error kind.\n# TYPE wisp_errors_total counter\n");
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "wisp_errors_total{{kind=\"{}\"}} {}",
                k.code(),
                self.errors[i].load(Relaxed)
            );
        }
    }
}

/// Render one function's series.
pub(crate) fn render_function(out: &mut String, labels: &str, m: &FunctionMetrics, section: &str) {
    match section {
        "invocations" => {
            for s in ActivationStatus::ALL {
                let _ = writeln!(
                    out,
                    "wisp_invocations_total{{{labels},status=\"{}\"}} {}",
                    s.as_str(),
                    m.invocations(s)
                );
            }
        }
        "cold" => {
            let _ = writeln!(
                out,
                "wisp_cold_starts_total{{{labels}}} {}",
                m.cold_starts.load(Relaxed)
            );
        }
        "queue" => {
            let _ = writeln!(
                out,
                "wisp_queue_depth{{{labels}}} {}",
                m.queue_depth.load(Relaxed)
            );
        }
        "running" => {
            let _ = writeln!(
                out,
                "wisp_instances_running{{{labels}}} {}",
                m.running.load(Relaxed)
            );
        }
        "latency" => m
            .latency
            .render(out, "wisp_request_duration_seconds", &format!("{labels},")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe_us(50); // 0.00005 s -> first bucket
        h.observe_us(3_000); // 0.003 -> le 0.005
        h.observe_us(60_000_000); // +Inf
        let mut s = String::new();
        h.render(&mut s, "x", "f=\"a\",");
        assert!(s.contains("x_bucket{f=\"a\",le=\"0.0001\"} 1"), "{s}");
        assert!(s.contains("x_bucket{f=\"a\",le=\"0.005\"} 2"), "{s}");
        assert!(s.contains("x_bucket{f=\"a\",le=\"+Inf\"} 3"), "{s}");
        assert!(s.contains("x_count{f=\"a\"} 3"), "{s}");
    }
}
