//! Wisp workflows, the pure part: DAGs of function calls as written (YAML or
//! JSON, [`def`]), validated against the deployed functions into a runnable
//! [`Plan`] ([`plan`]), the fan-in rules ([`merge`]) and the record of a run
//! ([`record`]).
//!
//! It does no I/O and knows no engine: the executor runs plans
//! (`wisp-executor`'s `workflow` module), the server stores definitions and
//! the browser runner (`web/`) runs the same definitions in Web Workers. Being
//! pure, the parser and validator are unit-tested here and fuzzed
//! (`fuzz/fuzz_targets/workflow.rs`).

pub mod def;
pub mod merge;
pub mod plan;
pub mod record;

pub use def::{INPUT, Merge, Step, StepLimits, Workflow, parse};
pub use plan::{Catalog, FunctionRef, Plan, PlannedStep, Resolved, Source, validate};
pub use record::{StepRecord, WorkflowActivation, server_timing};

/// A definition that can't be deployed: which step, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The step at fault, if one is.
    pub step: Option<String>,
    /// What is wrong, safe to show.
    pub message: String,
}

impl Invalid {
    /// A problem of the workflow as a whole.
    pub fn workflow(message: impl Into<String>) -> Invalid {
        Invalid {
            step: None,
            message: message.into(),
        }
    }

    /// A problem of one step.
    pub fn step(step: &str, message: impl Into<String>) -> Invalid {
        Invalid {
            step: Some(step.to_string()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.step {
            Some(s) => write!(f, "step {s:?}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Invalid {}

/// Parse and validate in one go (what a deploy does).
pub fn check(text: &[u8], catalog: &dyn Catalog) -> Result<(Workflow, Plan), Invalid> {
    let w = parse(text)?;
    let p = validate(&w, catalog)?;
    Ok((w, p))
}
