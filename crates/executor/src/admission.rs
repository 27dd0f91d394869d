//! Admission: a per-function concurrency permit (or a bounded wait for one),
//! a node-wide instance slot, and node-wide request-buffer bytes.
//!
//! Everything a request takes is held by one [`Admitted`] guard and given
//! back exactly once when it drops, at whatever await point a cancellation
//! lands: a client that gives up in the queue, while its body is read, or
//! while its guest runs. The queue-depth and running gauges are guards too.
//! Whoever runs the instance holds the guard; for a `wasi:http` component
//! that is the instance task itself, so an instance that outlives its client
//! stays counted until it ends.

use crate::error::Error;
use crate::metrics::FunctionMetrics;
use crate::table::FunctionHandle;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wisp_core::ErrorKind;
use wisp_runtime::GuestBody;

/// Node-wide caps shared by every function.
pub(crate) struct NodeLimits {
    instances: Arc<Semaphore>,
    max_instances: usize,
    body_bytes: Arc<Semaphore>,
    max_body_bytes: usize,
}

impl NodeLimits {
    pub(crate) fn new(max_instances: usize, max_body_bytes: usize) -> NodeLimits {
        let max_body_bytes = max_body_bytes.min(Semaphore::MAX_PERMITS);
        NodeLimits {
            instances: Arc::new(Semaphore::new(max_instances)),
            max_instances,
            body_bytes: Arc::new(Semaphore::new(max_body_bytes)),
            max_body_bytes,
        }
    }

    /// Instances admitted and not yet ended.
    pub(crate) fn instances_in_use(&self) -> usize {
        self.max_instances - self.instances.available_permits()
    }

    /// Request-body bytes buffered now.
    pub(crate) fn body_bytes_in_use(&self) -> usize {
        self.max_body_bytes - self.body_bytes.available_permits()
    }
}

/// What an admitted request holds until its instance ends.
pub struct Admitted {
    _function: OwnedSemaphorePermit,
    _node: OwnedSemaphorePermit,
    body: Option<OwnedSemaphorePermit>,
    running: Option<Arc<FunctionMetrics>>,
    node: Arc<NodeLimits>,
}

/// Counts one request in the function's queue gauge while it lives.
struct Queued<'a>(&'a FunctionMetrics);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queue_depth.fetch_sub(1, Relaxed);
    }
}

/// Take a slot of `h` (waiting in its bounded queue if it has none free) and
/// a node-wide instance slot.
pub(crate) async fn admit(h: &FunctionHandle, node: &Arc<NodeLimits>) -> Result<Admitted, Error> {
    let limits = &h.version.config.limits;
    let m = &h.metrics;
    let function = match h.permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            let depth = m.queue_depth.fetch_add(1, Relaxed);
            let _queued = Queued(m);
            if depth >= limits.max_queue as u64 {
                return Err(Error::retry(
                    ErrorKind::TooManyRequests,
                    format!(
                        "function {:?} is at its concurrency limit ({}) and its queue is full",
                        h.version.name, limits.max_concurrency
                    ),
                ));
            }
            let waited = tokio::time::timeout(
                Duration::from_millis(limits.queue_timeout_ms),
                h.permits.clone().acquire_owned(),
            )
            .await;
            match waited {
                Ok(Ok(p)) => p,
                _ => {
                    return Err(Error::retry(
                        ErrorKind::Unavailable,
                        format!(
                            "no instance of {:?} became free within {} ms",
                            h.version.name, limits.queue_timeout_ms
                        ),
                    ));
                }
            }
        }
    };
    let Ok(node_slot) = node.instances.clone().try_acquire_owned() else {
        return Err(Error::retry(
            ErrorKind::Unavailable,
            format!(
                "the node is at its instance limit ({}); retry shortly",
                node.max_instances
            ),
        ));
    };
    Ok(Admitted {
        _function: function,
        _node: node_slot,
        body: None,
        running: None,
        node: node.clone(),
    })
}

impl Admitted {
    /// Count the instance in its function's running gauge until this drops.
    pub(crate) fn start_running(&mut self, m: &Arc<FunctionMetrics>) {
        if self.running.is_none() {
            m.running.fetch_add(1, Relaxed);
            self.running = Some(m.clone());
        }
    }

    /// Read a whole request body of at most `max` bytes, reserving each
    /// chunk against the node's request-buffer budget first; the bytes stay
    /// reserved until this guard drops (the guest reads them until it ends).
    pub(crate) async fn collect_body(&mut self, body: GuestBody, max: u64) -> Result<Bytes, Error> {
        let mut body = http_body_util::Limited::new(body, max as usize);
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(body_error)?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let n = u32::try_from(data.len()).unwrap_or(u32::MAX);
            let Ok(p) = self.node.body_bytes.clone().try_acquire_many_owned(n) else {
                return Err(Error::retry(
                    ErrorKind::Unavailable,
                    format!(
                        "the node's request-buffer budget ({} bytes) is in use; retry shortly",
                        self.node.max_body_bytes
                    ),
                ));
            };
            match &mut self.body {
                Some(held) => held.merge(p),
                None => self.body = Some(p),
            }
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    }
}

/// A request body that failed: too large (413) or broken off (400).
pub(crate) fn body_error(e: wisp_runtime::BoxError) -> Error {
    if e.downcast_ref::<http_body_util::LengthLimitError>()
        .is_some()
    {
        Error::new(
            ErrorKind::PayloadTooLarge,
            "request body exceeds the function's max_body_bytes limit",
        )
    } else {
        Error::new(ErrorKind::BadRequest, format!("reading request body: {e}"))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(m) = self.running.take() {
            m.running.fetch_sub(1, Relaxed);
        }
    }
}
