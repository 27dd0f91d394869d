//! A call whose input is already built: a JSON API (an OpenWhisk action,
//! a sequence step, a workflow step) hands over the guest's stdin and
//! environment and gets the raw output back to judge by its own contract.
//! Admission, the warm template, the guest runtime and the record are the
//! same as for an HTTP invocation ([`Executor::prepare`], [`Executor::run_guest`],
//! `Draft`); only the record is handed back instead of written, so the
//! caller can add its result and metadata (or write it in its own
//! transaction, as the durable queue does).

use crate::Executor;
use crate::activation::{Draft, log_text};
use crate::error::{Error, run_error};
use crate::table::FunctionHandle;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wisp_core::{Activation, ErrorKind};
use wisp_runtime::{Loaded, Output, RunError};

/// A call's input.
#[derive(Debug, Default)]
pub struct Call {
    /// The guest's stdin.
    pub stdin: Bytes,
    /// The guest's whole environment (the caller includes the function's
    /// own [`FunctionHandle::env`] where its contract says so).
    pub env: Vec<(String, String)>,
    /// Record under this activation id (one the caller showed already, or
    /// told the guest); a new one when `None`.
    pub id: Option<String>,
}

/// What a call that ran produced.
#[derive(Debug)]
pub struct Called {
    /// The guest's output, or how its run failed.
    pub result: Result<Output, RunError>,
    /// Its finished record, counted in the metrics but **not written**:
    /// complete it and pass it to [`Executor::record`] (or store it).
    pub record: Activation,
    /// Whether this call loaded the function.
    pub cold: bool,
    /// Queue wait.
    pub wait: Duration,
    /// Load time (zero when warm).
    pub init: Duration,
    /// Instantiate + run time.
    pub run: Duration,
}

impl Executor {
    /// Run `h` once with a prebuilt input. `Err` when it did not run
    /// (refused by admission, broken, not loadable, not a command module);
    /// that refusal's record is written as for any invocation. Cancel-safe
    /// like [`Executor::invoke`].
    pub async fn call(&self, h: &Arc<FunctionHandle>, call: Call) -> Result<Called, Error> {
        let mut draft = Draft::start(
            &h.version.namespace,
            &h.version.name,
            h.version.version,
            h.metrics.clone(),
            self.recorder.clone(),
        );
        let mut ready = match self.prepare(h, &mut draft, None).await {
            Ok(r) => r,
            // A refusal is recorded under an id of its own: the caller may
            // try again under the id it chose.
            Err(e) => return Err(draft.fail(e)),
        };
        if let Some(id) = call.id {
            draft.set_id(id);
        }
        if !matches!(ready.loaded, Loaded::Command(_)) {
            return Err(draft.fail(Error::new(
                ErrorKind::BadRequest,
                format!(
                    "{} is a wasi:http component; only command modules take a JSON call",
                    h.version.name
                ),
            )));
        }
        draft.bytes_in(call.stdin.len() as u64);
        ready.admitted.start_running(&h.metrics);
        let t_run = Instant::now();
        let result = self
            .run_guest(
                h,
                ready.loaded,
                call.env,
                call.stdin,
                &h.version.config.limits,
                crate::invoke::GuestAt::spawned(),
            )
            .await;
        let run = t_run.elapsed();
        drop(ready.admitted);
        let record = match &result {
            Ok(out) => {
                draft.ran(run, log_text(&out.stderr, out.stderr_truncated));
                draft.succeed_keep(200, out.stdout.len() as u64)
            }
            Err(e) => {
                let log = e
                    .output()
                    .and_then(|o| log_text(&o.stderr, o.stderr_truncated));
                draft.ran(run, log);
                draft.fail_keep(run_error(e)).1
            }
        };
        Ok(Called {
            result,
            record,
            cold: ready.cold,
            wait: ready.wait,
            init: ready.init,
            run,
        })
    }
}
