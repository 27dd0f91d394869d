//! Prometheus metrics and the HTTP endpoint serving them (`/metrics`, `/healthz`).
//!
//! Hand-written text exposition, as `wisp-executor` does: four families do not
//! need a metrics crate.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the reconcile duration histogram.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// Counters of one operator process.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciles: AtomicU64,
    invalid: AtomicU64,
    errors: AtomicU64,
    /// Cumulative per bucket, plus +Inf last.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    duration_micros: AtomicU64,
    leader: AtomicU64,
}

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Objects applied, status written.
    Applied,
    /// The spec was invalid; reported as `Degraded`.
    Invalid,
    /// An API call failed; retried with backoff.
    Error,
}

impl Metrics {
    /// Record one reconcile.
    pub fn reconciled(&self, outcome: Outcome, took: Duration) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Outcome::Applied => {}
            Outcome::Invalid => {
                self.invalid.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Error => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        let secs = took.as_secs_f64();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                self.buckets[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.buckets[BUCKETS.len()].fetch_add(1, Ordering::Relaxed);
        self.duration_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Whether this process holds the Lease.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader as u64, Ordering::Relaxed);
    }

    /// Reconciles so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP wisp_operator_reconciles_total Reconciles of WasmApps, any outcome.\n\
             # TYPE wisp_operator_reconciles_total counter\n\
             wisp_operator_reconciles_total {}",
            r(&self.reconciles)
        );
        let _ = writeln!(
            out,
            "# HELP wisp_operator_reconcile_errors_total Reconciles that failed on an API call (retried with backoff).\n\
             # TYPE wisp_operator_reconcile_errors_total counter\n\
             wisp_operator_reconcile_errors_total {}",
            r(&self.errors)
        );
        let _ = writeln!(
            out,
            "# HELP wisp_operator_invalid_specs_total Reconciles that found an invalid spec (Degraded).\n\
             # TYPE wisp_operator_invalid_specs_total counter\n\
             wisp_operator_invalid_specs_total {}",
            r(&self.invalid)
        );
        let _ = writeln!(
            out,
            "# HELP wisp_operator_reconcile_duration_seconds Time of one reconcile.\n\
             # TYPE wisp_operator_reconcile_duration_seconds histogram"
        );
        for (i, le) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "wisp_operator_reconcile_duration_seconds_bucket{{le=\"{le}\"}} {}",
                r(&self.buckets[i])
            );
        }
        let total = r(&self.buckets[BUCKETS.len()]);
        let _ = writeln!(
            out,
            "wisp_operator_reconcile_duration_seconds_bucket{{le=\"+Inf\"}} {total}\n\
             wisp_operator_reconcile_duration_seconds_sum {}\n\
             wisp_operator_reconcile_duration_seconds_count {total}",
            r(&self.duration_micros) as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "# HELP wisp_operator_leader 1 while this process holds the leader Lease.\n\
             # TYPE wisp_operator_leader gauge\n\
             wisp_operator_leader {}",
            r(&self.leader)
        );
        out
    }
}

/// `/metrics` and `/healthz`.
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(metrics)
}

async fn render(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.reconciled(Outcome::Applied, Duration::from_millis(3));
        m.reconciled(Outcome::Error, Duration::from_millis(300));
        m.reconciled(Outcome::Invalid, Duration::from_secs(20));
        let t = m.render();
        for line in [
            "wisp_operator_reconciles_total 3",
            "wisp_operator_reconcile_errors_total 1",
            "wisp_operator_invalid_specs_total 1",
            "wisp_operator_reconcile_duration_seconds_bucket{le=\"0.005\"} 1",
            "wisp_operator_reconcile_duration_seconds_bucket{le=\"0.5\"} 2",
            "wisp_operator_reconcile_duration_seconds_bucket{le=\"10\"} 2",
            "wisp_operator_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3",
            "wisp_operator_reconcile_duration_seconds_count 3",
            "wisp_operator_leader 0",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
    }
}
