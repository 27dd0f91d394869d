//! Activation records. [`Draft`] is the only code that writes one: every
//! way of invoking starts a draft, fills it in, and ends it as a success, a
//! failure, or (when dropped unfinished: the client went away) a
//! cancellation. Finished records go to the batched writer through a
//! bounded channel, off the hot path.

use crate::error::Error;
use crate::metrics::{FunctionMetrics, Metrics};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use wisp_core::{Activation, ActivationStatus, ErrorKind};

pub(crate) enum Msg {
    Record(Activation),
    Flush(oneshot::Sender<()>),
}

/// Where finished records go: the writer's channel. A full channel drops
/// the record and counts it rather than slowing the request down.
#[derive(Clone)]
pub(crate) struct Recorder {
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Recorder {
    pub(crate) fn send(&self, rec: Activation) {
        if self.tx.try_send(Msg::Record(rec)).is_err() {
            self.metrics.activations_dropped.fetch_add(1, Relaxed);
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// 32 hex digits: 48 bits of Unix milliseconds, then 80 random bits (the
/// layout of a UUIDv7 without the version nibbles). Time-ordered ids make the
/// activation log's unique index append-mostly instead of a random B-tree
/// insert per request, and sort the way people read logs.
pub fn new_activation_id() -> String {
    let ms = now_ms() as u128 & ((1 << 48) - 1);
    let rnd = rand::random::<u128>() & ((1 << 80) - 1);
    format!("{:032x}", (ms << 80) | rnd)
}

/// Guest output as log text.
pub(crate) fn log_text(stderr: &[u8], truncated: bool) -> Option<String> {
    if stderr.is_empty() {
        return None;
    }
    let mut s = String::from_utf8_lossy(stderr).into_owned();
    if truncated {
        s.push_str("\n[log truncated]");
    }
    Some(s)
}

const CLIENT_GONE: &str = "the client went away before the response was complete";

/// An activation being recorded.
pub(crate) struct Draft {
    rec: Option<Activation>,
    t0: Instant,
    fm: Arc<FunctionMetrics>,
    recorder: Recorder,
}

impl Draft {
    pub(crate) fn start(
        namespace: &str,
        function: &str,
        version: u32,
        fm: Arc<FunctionMetrics>,
        recorder: Recorder,
    ) -> Draft {
        Draft {
            rec: Some(Activation {
                id: new_activation_id(),
                namespace: namespace.to_string(),
                function: function.to_string(),
                version,
                start_ms: now_ms(),
                wait_us: 0,
                init_us: 0,
                run_us: 0,
                status: ActivationStatus::Rejected,
                http_status: 0,
                cold: false,
                bytes_in: 0,
                bytes_out: 0,
                error: None,
                log: None,
                result: None,
                meta: None,
            }),
            t0: Instant::now(),
            fm,
            recorder,
        }
    }

    fn rec(&mut self) -> &mut Activation {
        self.rec.as_mut().expect("a draft is finished only once")
    }

    pub(crate) fn id(&self) -> &str {
        &self.rec.as_ref().expect("unfinished").id
    }

    /// Record under an id the caller chose (and may have shown already).
    pub(crate) fn set_id(&mut self, id: String) {
        self.rec().id = id;
    }

    /// When the request arrived.
    pub(crate) fn started(&self) -> Instant {
        self.t0
    }

    pub(crate) fn waited(&mut self, wait: Duration) {
        self.rec().wait_us = wait.as_micros() as u64;
    }

    pub(crate) fn loaded(&mut self, cold: bool, init: Duration) {
        let r = self.rec();
        r.cold = cold;
        r.init_us = init.as_micros() as u64;
    }

    pub(crate) fn bytes_in(&mut self, n: u64) {
        self.rec().bytes_in = n;
    }

    pub(crate) fn ran(&mut self, run: Duration, log: Option<String>) {
        let r = self.rec();
        r.run_us = run.as_micros() as u64;
        if log.is_some() {
            r.log = log;
        }
    }

    /// The guest answered.
    pub(crate) fn succeed(mut self, http_status: u16, bytes_out: u64) {
        let mut rec = self.rec.take().expect("unfinished");
        rec.status = ActivationStatus::Success;
        rec.http_status = http_status;
        rec.bytes_out = bytes_out;
        finish(&self.fm, &self.recorder, rec, self.t0);
    }

    /// The guest answered: the finished record, counted but not written
    /// (the caller completes it and writes it).
    pub(crate) fn succeed_keep(mut self, http_status: u16, bytes_out: u64) -> Activation {
        let mut rec = self.rec.take().expect("unfinished");
        rec.status = ActivationStatus::Success;
        rec.http_status = http_status;
        rec.bytes_out = bytes_out;
        count(&self.fm, &rec, self.t0);
        rec
    }

    /// Record the failure; hand back the error carrying the activation id.
    pub(crate) fn fail(self, e: Error) -> Error {
        let (e, rec, fm, recorder, t0) = self.failed(e);
        finish(&fm, &recorder, rec, t0);
        e
    }

    /// As [`Draft::fail`], handing back the record instead of writing it.
    pub(crate) fn fail_keep(self, e: Error) -> (Error, Activation) {
        let (e, rec, fm, _, t0) = self.failed(e);
        count(&fm, &rec, t0);
        (e, rec)
    }

    fn failed(
        mut self,
        mut e: Error,
    ) -> (Error, Activation, Arc<FunctionMetrics>, Recorder, Instant) {
        let mut rec = self.rec.take().expect("unfinished");
        rec.status = match e.kind {
            ErrorKind::Timeout => ActivationStatus::Timeout,
            ErrorKind::TooManyRequests | ErrorKind::Unavailable => ActivationStatus::Rejected,
            _ => ActivationStatus::Error,
        };
        rec.http_status = e.kind.http_status();
        rec.error = Some(e.message.clone());
        self.recorder.metrics.error(e.kind);
        e.activation_id = Some(rec.id.clone());
        (e, rec, self.fm.clone(), self.recorder.clone(), self.t0)
    }

    /// A response whose body streams after this returns: the record is
    /// finished by whichever of its holders lets go last.
    pub(crate) fn streaming(mut self, http_status: u16) -> Arc<PendingRecord> {
        let mut rec = self.rec.take().expect("unfinished");
        rec.http_status = http_status;
        rec.status = ActivationStatus::Success;
        Arc::new(PendingRecord {
            rec: std::sync::Mutex::new(Some(rec)),
            bytes_out: AtomicU64::new(0),
            client_gone: std::sync::atomic::AtomicBool::new(false),
            fm: self.fm.clone(),
            recorder: self.recorder.clone(),
            t0: self.t0,
        })
    }
}

fn count(fm: &FunctionMetrics, rec: &Activation, t0: Instant) {
    fm.count(rec.status);
    fm.latency.observe_us(t0.elapsed().as_micros() as u64);
}

fn finish(fm: &FunctionMetrics, recorder: &Recorder, rec: Activation, t0: Instant) {
    count(fm, &rec, t0);
    recorder.send(rec);
}

impl Drop for Draft {
    /// Dropped unfinished: the caller's future was dropped, i.e. the client
    /// went away. Whatever it held was released with it; say so.
    fn drop(&mut self) {
        if let Some(mut rec) = self.rec.take() {
            rec.status = ActivationStatus::Cancelled;
            rec.error = Some(CLIENT_GONE.into());
            rec.run_us = rec.run_us.max(
                self.t0
                    .elapsed()
                    .as_micros()
                    .saturating_sub((rec.wait_us + rec.init_us) as u128) as u64,
            );
            finish(&self.fm, &self.recorder, rec, self.t0);
        }
    }
}

/// A streamed activation awaiting its end: written when the last of its
/// holders (the instance's completion, the response body) lets go.
pub(crate) struct PendingRecord {
    rec: std::sync::Mutex<Option<Activation>>,
    pub(crate) bytes_out: AtomicU64,
    /// The response body was dropped before its end.
    pub(crate) client_gone: std::sync::atomic::AtomicBool,
    fm: Arc<FunctionMetrics>,
    recorder: Recorder,
    t0: Instant,
}

impl PendingRecord {
    /// The instance ended: its run time, log and outcome.
    pub(crate) fn instance_ended(
        &self,
        run: Duration,
        log: &Bytes,
        log_truncated: bool,
        result: Result<(), wisp_runtime::RunError>,
    ) {
        let mut g = self.rec.lock().unwrap_or_else(|p| p.into_inner());
        let Some(rec) = g.as_mut() else { return };
        rec.run_us = run.as_micros() as u64;
        rec.log = log_text(log, log_truncated);
        if let Err(e) = result {
            let timeout = matches!(e, wisp_runtime::RunError::Timeout(..));
            rec.status = if timeout {
                ActivationStatus::Timeout
            } else {
                ActivationStatus::Error
            };
            rec.error = Some(format!("after the response head was sent: {e}"));
            self.recorder.metrics.error(if timeout {
                ErrorKind::Timeout
            } else {
                ErrorKind::Trap
            });
        }
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        let Some(mut rec) = self.rec.get_mut().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        rec.bytes_out = *self.bytes_out.get_mut();
        if *self.client_gone.get_mut() && rec.status == ActivationStatus::Success {
            rec.status = ActivationStatus::Cancelled;
            rec.error = Some(CLIENT_GONE.into());
        }
        finish(&self.fm, &self.recorder, rec, self.t0);
    }
}
