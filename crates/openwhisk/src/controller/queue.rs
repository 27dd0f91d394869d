//! The durable queue of non-blocking activations.
//!
//! An invoke without `blocking` is a row in the store's `queue` table
//! before the 202 goes out ([`wisp_store::Store::enqueue`], bounded by
//! `--queue-max`). Workers take the oldest rows, count each start durably,
//! run the activation, and write its record and delete the row in one
//! transaction ([`wisp_store::Store::complete_queued`]): after a restart,
//! graceful or `kill -9`, every accepted activation either has its record
//! or is run (again, if it was running: at least once). One started
//! [`MAX_STARTS`] times without finishing is recorded as a whisk internal
//! error instead of being run again. A run refused by admission (the
//! action's concurrency and queue are full) stays queued and is retried.

use super::activations::response_of;
use super::invoke::Run;
use super::{Controller, OwError};
use axum::http::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use wisp_core::{Activation, ActivationStatus};
use wisp_store::Queued;

/// Starts after which a queued activation that never finished is given up.
pub const MAX_STARTS: u32 = 3;

/// The workers' state.
pub(crate) struct Queue {
    /// Rung when a job is accepted.
    notify: Arc<Notify>,
    /// Ids being run by this process.
    running: Mutex<HashSet<String>>,
    /// Jobs run at once.
    slots: Arc<Semaphore>,
}

impl Queue {
    pub(crate) fn wake(&self) {
        self.notify.notify_waiters();
    }

    pub(crate) fn new(workers: usize) -> Queue {
        Queue {
            notify: Arc::new(Notify::new()),
            running: Mutex::new(HashSet::new()),
            slots: Arc::new(Semaphore::new(workers.max(1))),
        }
    }
}

fn blocking_err(e: tokio::task::JoinError) -> OwError {
    OwError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl Controller {
    /// Accept a run for later: durable once this returns.
    pub(crate) async fn enqueue(&self, run: Run) -> Result<(), OwError> {
        let job = json!({
            "name": run.name,
            "params": run.params,
            "cause": run.cause,
            "subject": run.subject,
        });
        let store = self.exec.store().clone();
        let max = self.opts.queue_max;
        let (id, ns) = (run.id.clone(), run.ns.clone());
        let accepted = tokio::task::spawn_blocking(move || store.enqueue(&id, &ns, &job, max))
            .await
            .map_err(blocking_err)?
            .map_err(super::actions::store_error)?;
        if !accepted {
            return Err(OwError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "System is overloaded, try again later. ({max} activations are queued; wisp serve --queue-max)"
                ),
            ));
        }
        self.queue.notify.notify_one();
        Ok(())
    }
}

/// A record for an activation that could not run (its action is gone, or
/// it was started too often), so that whoever holds its id finds out why.
pub(crate) fn platform_record(run: &Run, status_code: u8, error: &str) -> Activation {
    let status = if status_code == 1 {
        "application error"
    } else {
        "whisk internal error"
    };
    Activation {
        id: run.id.clone(),
        namespace: run.ns.clone(),
        function: run.name.clone(),
        version: 0,
        start_ms: chrono::Utc::now().timestamp_millis(),
        wait_us: run.queued_ms * 1000,
        init_us: 0,
        run_us: 0,
        status: ActivationStatus::Error,
        http_status: 500,
        cold: false,
        bytes_in: 0,
        bytes_out: 0,
        error: Some(error.to_string()),
        log: None,
        parent: None,
        step: None,
        result: Some(json!({ "error": error })),
        meta: Some(json!({"openwhisk": {
            "status": status,
            "statusCode": status_code,
            "annotations": [{"key": "path", "value": format!("{}/{}", run.ns, run.name)}],
            "subject": run.subject,
            "cause": run.cause,
        }})),
    }
}

fn run_of(job: &Queued) -> Run {
    let j = &job.job;
    let now = chrono::Utc::now().timestamp_millis();
    Run {
        ns: job.namespace.clone(),
        name: j["name"].as_str().unwrap_or("").to_string(),
        params: j["params"].as_object().cloned().unwrap_or_default(),
        id: job.id.clone(),
        cause: j["cause"].as_str().map(str::to_string),
        subject: j["subject"].as_str().unwrap_or(&job.namespace).to_string(),
        queued_ms: (now - job.enqueued_ms).max(0) as u64,
        depth: 0,
    }
}

/// The workers' loop: take jobs while there are free slots.
pub(crate) async fn run(ctl: Weak<Controller>) {
    loop {
        let Some(c) = ctl.upgrade() else { return };
        if c.is_stopping() {
            return;
        }
        let notify = c.queue.notify.clone();
        let notified = notify.notified();
        let free = c.queue.slots.available_permits().max(1) as u32;
        let store = c.exec.store().clone();
        let skip: HashSet<String> = c.queue.running.lock().unwrap().clone();
        let jobs = tokio::task::spawn_blocking(move || store.queued(free, &|id| skip.contains(id)))
            .await
            .unwrap_or_else(|e| Err(wisp_store::Error::Corrupt(e.to_string())));
        let jobs = match jobs {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(error = %e, "reading the activation queue failed");
                Vec::new()
            }
        };
        if jobs.is_empty() {
            drop(c);
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        for job in jobs {
            let Ok(permit) = c.queue.slots.clone().acquire_owned().await else {
                return;
            };
            c.queue.running.lock().unwrap().insert(job.id.clone());
            let c2 = c.clone();
            tokio::spawn(async move {
                let id = job.id.clone();
                run_job(&c2, job).await;
                c2.queue.running.lock().unwrap().remove(&id);
                drop(permit);
                c2.queue.notify.notify_one();
            });
        }
    }
}

async fn run_job(ctl: &Arc<Controller>, job: Queued) {
    let store = ctl.exec.store().clone();
    let mut run = run_of(&job);
    let record = if job.attempts >= MAX_STARTS {
        platform_record(
            &run,
            3,
            &format!(
                "The activation was started {} times without finishing (the server stopped while it ran); it is not run again.",
                job.attempts
            ),
        )
    } else {
        let id = job.id.clone();
        let s = store.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || s.start_queued(&id)).await {
            tracing::error!(error = %e, "counting a queued activation's start failed");
        }
        let mut backoff = Duration::from_millis(20);
        loop {
            match ctl.run(run.clone()).await {
                Ok(rec) => break rec,
                Err(e)
                    if e.status == StatusCode::TOO_MANY_REQUESTS
                        || e.status == StatusCode::SERVICE_UNAVAILABLE =>
                {
                    // Admission said not now: stay queued, try again.
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    run.queued_ms += backoff.as_millis() as u64;
                }
                Err(e) if e.status == StatusCode::NOT_FOUND => {
                    break platform_record(
                        &run,
                        1,
                        "Action could not be found or may have been deleted.",
                    );
                }
                Err(e) => break platform_record(&run, 3, &e.error),
            }
        }
    };
    if ctl.is_stopping() {
        // Its guest may have been stopped with the server: run it again
        // after the restart rather than record that.
        tracing::info!(id = %job.id, "server stopping: the queued activation stays queued");
        return;
    }
    let id = job.id.clone();
    let ok = response_of(&record)["statusCode"] == 0;
    match tokio::task::spawn_blocking(move || store.complete_queued(&id, &record)).await {
        Ok(Ok(())) => tracing::debug!(id = %job.id, ok, "queued activation done"),
        Ok(Err(e)) => {
            tracing::error!(id = %job.id, error = %e, "writing a queued activation's record failed; it stays queued")
        }
        Err(e) => {
            tracing::error!(id = %job.id, error = %e, "writing a queued activation's record failed")
        }
    }
}
