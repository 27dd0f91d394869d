//! An in-memory output pipe with a byte cap, for guest stdout and stderr.
//!
//! Unlike `MemoryOutputPipe`, going past the cap is recorded rather than
//! trapping mid-write, so the host can say *why* the guest failed: stdout
//! past its cap closes the stream (the guest sees EPIPE and usually stops)
//! and the host answers `response_too_large`; stderr past its cap is
//! silently truncated, since a chatty log must not fail a request.

use crate::invoke::Budget;
use bytes::{Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

#[derive(Default)]
struct Inner {
    buf: BytesMut,
    overflowed: bool,
    /// The instance's memory budget refused more.
    budget_hit: bool,
}

/// Shared handle: the guest writes through clones, the host reads the result.
#[derive(Clone)]
pub(crate) struct CappedPipe {
    cap: usize,
    close_on_overflow: bool,
    budget: Option<Budget>,
    inner: Arc<Mutex<Inner>>,
}

impl CappedPipe {
    pub(crate) fn new(cap: usize, close_on_overflow: bool) -> Self {
        CappedPipe {
            cap,
            close_on_overflow,
            budget: None,
            inner: Arc::new(Mutex::new(Inner::default())),
        }
    }

    /// Count buffered bytes against the instance's memory budget too.
    pub(crate) fn with_budget(mut self, budget: &Budget) -> Self {
        self.budget = Some(budget.clone());
        self
    }

    /// Whether the memory budget, not the cap, stopped the writes.
    pub(crate) fn budget_hit(&self) -> bool {
        self.inner.lock().unwrap().budget_hit
    }

    /// Bytes written so far and whether the cap was hit.
    pub(crate) fn take(&self) -> (Bytes, bool) {
        let mut i = self.inner.lock().unwrap();
        let buf = std::mem::take(&mut i.buf);
        (buf.freeze(), i.overflowed)
    }

    /// Append up to the cap; returns false if anything was dropped.
    fn push(&self, data: &[u8]) -> bool {
        let mut i = self.inner.lock().unwrap();
        let room = self.cap.saturating_sub(i.buf.len());
        let mut n = room.min(data.len());
        if let Some(b) = &self.budget
            && n > 0
            && !b.take(n)
        {
            i.budget_hit = true;
            n = 0;
        }
        i.buf.extend_from_slice(&data[..n]);
        if n < data.len() {
            i.overflowed = true;
            false
        } else {
            true
        }
    }

    fn closed(&self) -> bool {
        self.close_on_overflow && self.inner.lock().unwrap().overflowed
    }
}

impl OutputStream for CappedPipe {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        if self.closed() {
            return Err(StreamError::Closed);
        }
        if !self.push(&bytes) && self.close_on_overflow {
            return Err(StreamError::Closed);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        if self.closed() {
            return Err(StreamError::Closed);
        }
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedPipe {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.closed() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_flags() {
        let mut p = CappedPipe::new(4, true);
        p.write(Bytes::from_static(b"ab")).unwrap();
        assert!(p.write(Bytes::from_static(b"cde")).is_err());
        assert!(p.check_write().is_err());
        assert_eq!(p.take(), (Bytes::from_static(b"abcd"), true));

        let mut log = CappedPipe::new(3, false);
        log.write(Bytes::from_static(b"abcdef")).unwrap();
        log.write(Bytes::from_static(b"g")).unwrap();
        assert_eq!(log.take(), (Bytes::from_static(b"abc"), true));
    }

    #[test]
    fn buffered_output_counts_against_the_instance_budget() {
        let budget = Budget::new(10);
        assert!(budget.take(4), "e.g. memory already grown");
        let mut out = CappedPipe::new(100, true).with_budget(&budget);
        out.write(Bytes::from_static(b"123456")).unwrap();
        assert!(out.write(Bytes::from_static(b"7")).is_err(), "budget spent");
        assert!(out.budget_hit());
        assert!(!budget.take(1));
    }
}
