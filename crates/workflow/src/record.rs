//! The record of one workflow run: its outcome, makespan and each step's
//! timings. Each step also has an ordinary activation record (with its log)
//! whose `parent` is this run's id.
//!
//! Timings of a step, all from the same monotonic clock, as offsets from the
//! run's start (when its input was read):
//!
//! ```text
//!   last input ends ──handoff──▶ step called ──wait──▶ admitted ──init──▶ template
//!        │                                                          ──instantiate──▶ guest starts ──run──▶ step ends
//!        └──────────────────────────── delay ─────────────────────────────────────────┘
//! ```
//!
//! For a streamed input (`stream: true`) "last input ends" is when the
//! producer's response head arrived.

use serde::{Deserialize, Serialize};
use wisp_core::ActivationStatus;

/// One run of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkflowActivation {
    /// 32 hex digits, time-ordered like activation ids.
    pub id: String,
    /// The workflow's namespace.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The workflow's name.
    pub workflow: String,
    /// The definition's version that ran.
    pub version: u32,
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// Outcome: `success`, or the failing step's (`error`, `timeout`,
    /// `rejected`), `timeout` for the workflow's own, `cancelled` when the
    /// client went away.
    #[schema(value_type = String)]
    pub status: ActivationStatus,
    /// HTTP status answered.
    pub http_status: u16,
    /// From the input read to the output step's end, µs.
    pub makespan_us: u64,
    /// Input size.
    pub bytes_in: u64,
    /// Output size.
    pub bytes_out: u64,
    /// The step that failed the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The steps that started, in the order they started.
    pub steps: Vec<StepRecord>,
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StepRecord {
    /// Step name.
    pub step: String,
    /// Function name.
    pub function: String,
    /// Version that ran.
    pub version: u32,
    /// Its activation record's id (none if it failed before one was made).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation_id: Option<String>,
    /// Outcome.
    #[schema(value_type = String)]
    pub status: ActivationStatus,
    /// HTTP status the function answered (0 if it didn't).
    pub http_status: u16,
    /// Whether the function had to be loaded.
    pub cold: bool,
    /// When its last input ended (or the run started), µs from the run's start.
    pub ready_us: u64,
    /// When its guest code started, µs from the run's start.
    pub start_us: u64,
    /// When it ended, µs from the run's start.
    pub end_us: u64,
    /// Last input's end → guest code starts: hand-off, queueing, loading,
    /// instantiation. µs.
    pub delay_us: u64,
    /// Of the delay: last input's end → the executor is called (the engine's
    /// own hand-off, including a fan-in's merge). µs.
    pub handoff_us: u64,
    /// Of the delay: waiting for a concurrency slot. µs.
    pub wait_us: u64,
    /// Of the delay: loading the function (cold only). µs.
    pub init_us: u64,
    /// Of the delay: creating the instance. µs.
    pub instantiate_us: u64,
    /// Guest code, start to end. µs.
    pub run_us: u64,
    /// Input size.
    pub bytes_in: u64,
    /// Output size.
    pub bytes_out: u64,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The `Server-Timing` header of a run: per step `<step>.delay` and
/// `<step>.run` (in execution order), then `makespan`; milliseconds.
pub fn server_timing(a: &WorkflowActivation) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(32 * a.steps.len() + 24);
    for st in &a.steps {
        let _ = write!(
            s,
            "{0}.delay;dur={1:.3}, {0}.run;dur={2:.3}, ",
            st.step,
            st.delay_us as f64 / 1e3,
            st.run_us as f64 / 1e3
        );
    }
    let _ = write!(s, "makespan;dur={:.3}", a.makespan_us as f64 / 1e3);
    s
}

fn default_namespace() -> String {
    "default".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_timing_lists_steps_then_the_makespan() {
        let step = |name: &str, delay, run| StepRecord {
            step: name.into(),
            function: "f".into(),
            version: 1,
            activation_id: Some("0".repeat(32)),
            status: ActivationStatus::Success,
            http_status: 200,
            cold: false,
            ready_us: 0,
            start_us: 0,
            end_us: 0,
            delay_us: delay,
            handoff_us: 0,
            wait_us: 0,
            init_us: 0,
            instantiate_us: 0,
            run_us: run,
            bytes_in: 0,
            bytes_out: 0,
            error: None,
        };
        let a = WorkflowActivation {
            id: "1".repeat(32),
            namespace: "default".into(),
            workflow: "w".into(),
            version: 1,
            start_ms: 0,
            status: ActivationStatus::Success,
            http_status: 200,
            makespan_us: 2500,
            bytes_in: 0,
            bytes_out: 0,
            failed_step: None,
            error: None,
            steps: vec![step("a", 12, 1000), step("b", 40, 1250)],
        };
        assert_eq!(
            server_timing(&a),
            "a.delay;dur=0.012, a.run;dur=1.000, b.delay;dur=0.040, b.run;dur=1.250, makespan;dur=2.500"
        );
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(json["status"], "success");
        assert!(json.get("failed_step").is_none());
        assert_eq!(
            serde_json::from_value::<WorkflowActivation>(json).unwrap(),
            a
        );
    }
}
