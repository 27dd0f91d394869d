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
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use wisp_core::ErrorKind;
use wisp_runtime::GuestBody;

/// A node-wide cap that is only ever tried, never waited for: an atomic
/// count, cheaper than a semaphore (whose release locks its waiter list, a
/// point every function's requests would share).
pub(crate) struct Quota {
    used: AtomicUsize,
    max: usize,
}

impl Quota {
    fn new(max: usize) -> Quota {
        Quota {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Take `n` if that stays within the cap.
    fn try_take(&self, n: usize) -> bool {
        self.try_take_within(n, self.max)
    }

    /// Take `n` if that stays within `cap` (at most the cap).
    fn try_take_within(&self, n: usize, cap: usize) -> bool {
        self.used
            .fetch_update(Relaxed, Relaxed, |u| u.checked_add(n).filter(|&t| t <= cap))
            .is_ok()
    }

    fn give(&self, n: usize) {
        self.used.fetch_sub(n, Relaxed);
    }

    pub(crate) fn in_use(&self) -> usize {
        self.used.load(Relaxed)
    }
}

/// Node-wide caps shared by every function.
pub(crate) struct NodeLimits {
    pub(crate) instances: Quota,
    pub(crate) body_bytes: Quota,
}

impl NodeLimits {
    /// Whether at most half the node's instance slots are in use: room for
    /// work that only speeds requests up (instances made ahead, teardown
    /// after the answer) without taking a slot a request needs next.
    pub(crate) fn instances_spare(&self) -> bool {
        self.instances.in_use() <= self.spare_cap()
    }

    /// The most instance slots in use that still leave room to spare.
    fn spare_cap(&self) -> usize {
        self.instances.max / 2
    }

    pub(crate) fn new(max_instances: usize, max_body_bytes: usize) -> NodeLimits {
        NodeLimits {
            instances: Quota::new(max_instances),
            body_bytes: Quota::new(max_body_bytes),
        }
    }
}

/// What an admitted request holds until its instance ends.
pub struct Admitted {
    _function: OwnedSemaphorePermit,
    /// Request-body bytes reserved from the node's budget.
    body: Buffered,
    running: Option<Arc<FunctionMetrics>>,
    /// `None` once handed to an instance torn down after this guard drops.
    slot: Option<InstanceSlot>,
}

/// One of the node's instance slots, given back when it drops: held by an
/// admitted request, or by an instance made ahead of its request (which
/// hands it to that request's admission).
pub(crate) struct InstanceSlot(Arc<NodeLimits>);

impl InstanceSlot {
    /// A slot, if the node has one free.
    pub(crate) fn try_take(node: &Arc<NodeLimits>) -> Option<InstanceSlot> {
        node.instances
            .try_take(1)
            .then(|| InstanceSlot(node.clone()))
    }

    /// A slot for work that only speeds a request up (an instance made
    /// ahead): only within [`NodeLimits::instances_spare`]'s half, so it
    /// never takes the slot a request needs next.
    pub(crate) fn try_take_spare(node: &Arc<NodeLimits>) -> Option<InstanceSlot> {
        node.instances
            .try_take_within(1, node.spare_cap())
            .then(|| InstanceSlot(node.clone()))
    }
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.0.instances.give(1);
    }
}

/// Bytes held in host memory on behalf of a request (its body, or a
/// workflow's input and step outputs), reserved from the node's buffer
/// budget (`--max-buffered-body`) and given back when this drops.
pub struct Buffered {
    node: Arc<NodeLimits>,
    bytes: usize,
}

impl Buffered {
    pub(crate) fn new(node: &Arc<NodeLimits>) -> Buffered {
        Buffered {
            node: node.clone(),
            bytes: 0,
        }
    }

    /// Reserve `n` more bytes; a 503 when the node's budget is spent.
    pub(crate) fn take(&mut self, n: usize) -> Result<(), Error> {
        if !self.node.body_bytes.try_take(n) {
            return Err(Error::retry(
                ErrorKind::Unavailable,
                format!(
                    "the node's request-buffer budget ({} bytes) is in use; retry shortly",
                    self.node.body_bytes.max
                ),
            ));
        }
        self.bytes += n;
        Ok(())
    }

    /// Read a whole body of at most `max` bytes, reserving each chunk
    /// before it is kept.
    pub(crate) async fn collect(&mut self, body: GuestBody, max: u64) -> Result<Bytes, Error> {
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
            self.take(data.len())?;
            buf.extend_from_slice(&data);
        }
        Ok(buf.freeze())
    }
}

impl Drop for Buffered {
    fn drop(&mut self) {
        self.node.body_bytes.give(self.bytes);
    }
}

/// Counts one request in the function's queue gauge while it lives.
struct Queued<'a>(&'a FunctionMetrics);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.queue_depth.fetch_sub(1, Relaxed);
    }
}

/// Take a slot of `h` (waiting in its bounded queue if it has none free) and
/// a node-wide instance slot (`slot`, if the caller holds one already: an
/// instance made ahead for this request took it).
pub(crate) async fn admit(
    h: &FunctionHandle,
    node: &Arc<NodeLimits>,
    slot: Option<InstanceSlot>,
) -> Result<Admitted, Error> {
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
    let Some(slot) = slot.or_else(|| InstanceSlot::try_take(node)) else {
        return Err(Error::retry(
            ErrorKind::Unavailable,
            format!(
                "the node is at its instance limit ({}); retry shortly",
                node.instances.max
            ),
        ));
    };
    Ok(Admitted {
        _function: function,
        body: Buffered::new(node),
        running: None,
        slot: Some(slot),
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

    /// The node instance slot, for an instance torn down after this guard
    /// drops: the slot is free only once the instance is.
    pub(crate) fn take_slot(&mut self) -> Option<InstanceSlot> {
        self.slot.take()
    }

    /// Read a whole request body of at most `max` bytes, reserving each
    /// chunk against the node's request-buffer budget first; the bytes stay
    /// reserved until this guard drops (the guest reads them until it ends).
    pub(crate) async fn collect_body(&mut self, body: GuestBody, max: u64) -> Result<Bytes, Error> {
        self.body.collect(body, max).await
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
