//! A container's stdio: the FIFOs (or files) containerd hands the shim in
//! `CreateTaskRequest`, opened without blocking a Tokio worker.

use anyhow::{Context, Result};
use bytes::Bytes;
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::unix::pipe;
use wisp_runtime::{GuestInput, GuestOutput};

/// containerd passes paths, sometimes as `file://` or `fifo://` URIs.
fn path_of(uri: &str) -> Option<PathBuf> {
    let p = uri
        .strip_prefix("fifo://")
        .or_else(|| uri.strip_prefix("file://"))
        .unwrap_or(uri);
    (!p.is_empty()).then(|| PathBuf::from(p))
}

/// An async writer for a stdout/stderr path: a FIFO without blocking
/// (containerd has its read side open before `create`), or a file
/// opened for appending.
pub fn writer(uri: &str) -> Result<Option<Pin<Box<dyn AsyncWrite + Send + Sync>>>> {
    let Some(path) = path_of(uri) else {
        return Ok(None);
    };
    let fifo = std::fs::metadata(&path)
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if fifo {
        let tx = pipe::OpenOptions::new()
            .open_sender(&path)
            .with_context(|| format!("opening the output FIFO {}", path.display()))?;
        Ok(Some(Box::pin(tx)))
    } else {
        let f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .with_context(|| format!("opening the output file {}", path.display()))?;
        Ok(Some(Box::pin(tokio::fs::File::from_std(f))))
    }
}

/// The guest's view of an output path.
pub fn guest_output(uri: &str) -> Result<GuestOutput> {
    Ok(match writer(uri)? {
        Some(w) => GuestOutput::Writer(w),
        None => GuestOutput::Null,
    })
}

/// The guest's view of the stdin path.
pub fn guest_input(uri: &str) -> GuestInput {
    match path_of(uri) {
        Some(p) => GuestInput::Reader(Box::pin(LazyFifo::open(p))),
        None => GuestInput::Null,
    }
}

/// The read side of the stdin FIFO, opened in the background.
///
/// A FIFO opened for reading without `O_NONBLOCK` waits for a writer, and
/// one opened with it reads end-of-file until a writer comes, so a guest
/// that reads at once would see an empty stdin. The blocking open runs on
/// its own thread (not Tokio's blocking pool, which runtime shutdown would
/// wait for); reads wait for it. If the reader is dropped while the open
/// still waits, a momentary writer releases the thread.
struct LazyFifo {
    path: PathBuf,
    state: In,
}

enum In {
    Opening(tokio::sync::oneshot::Receiver<io::Result<std::fs::File>>),
    Open(pipe::Receiver),
    Failed,
}

impl LazyFifo {
    fn open(path: PathBuf) -> LazyFifo {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let p = path.clone();
        let spawned = std::thread::Builder::new()
            .name("wisp-stdin-open".into())
            .spawn(move || {
                let _ = tx.send(std::fs::File::open(&p));
            });
        LazyFifo {
            path,
            state: if spawned.is_ok() {
                In::Opening(rx)
            } else {
                In::Failed
            },
        }
    }
}

impl AsyncRead for LazyFifo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            match &mut self.state {
                In::Opening(rx) => {
                    let opened = ready!(Pin::new(rx).poll(cx));
                    self.state = In::Failed;
                    let file = opened.map_err(|_| io::Error::other("stdin open thread died"))??;
                    self.state = In::Open(pipe::Receiver::from_file(file)?);
                }
                In::Open(r) => return Pin::new(r).poll_read(cx, buf),
                In::Failed => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Drop for LazyFifo {
    fn drop(&mut self) {
        if let In::Opening(_) = self.state {
            release_open(&self.path);
        }
    }
}

use std::future::Future;

/// Wake a thread blocked opening `path` for reading, by opening and closing
/// a writer (succeeds at once: the waiting reader counts).
fn release_open(path: &Path) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
}

/// A second write handle on an output FIFO, to tell when its reader has
/// taken everything written to it.
///
/// `ctr` (containerd's `cio`) opens its read ends in background goroutines
/// and, when the task is deleted, drops any it has not finished opening,
/// with whatever the pipe holds. Under CPU pressure a short task could
/// exit, be reported and be deleted before that: its output was lost (seen
/// for both the Wisp shim and runc's). The shim waits, boundedly, until the
/// FIFO is empty before reporting the exit: once the reader has read, it
/// has opened.
pub struct DrainProbe(std::fs::File);

impl DrainProbe {
    /// A probe on `uri` if it is a FIFO (files need none).
    pub fn open(uri: &str) -> Option<DrainProbe> {
        let path = path_of(uri)?;
        let fifo = std::fs::metadata(&path).ok()?.file_type().is_fifo();
        if !fifo {
            return None;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .ok()
            .map(DrainProbe)
    }

    /// Bytes written and not yet read.
    pub fn pending(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), libc::FIONREAD, &mut n) };
        if r == 0 { n.max(0) as usize } else { 0 }
    }

    /// Wait until the reader has taken everything, for at most `limit`;
    /// whether it did. Closes the probe.
    pub async fn drained(self, limit: std::time::Duration) -> bool {
        let until = tokio::time::Instant::now() + limit;
        let mut pause = std::time::Duration::from_micros(200);
        loop {
            if self.pending() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_millis(10));
        }
    }
}

/// A line-oriented sink on the container's stderr, shared by the shim's own
/// messages and the guests' logs of an HTTP function: writes are queued
/// (bounded; dropped when the reader is slow) and a task writes them in
/// order, so no request waits on containerd's reader.
#[derive(Clone)]
pub struct LogSink(Option<tokio::sync::mpsc::Sender<Bytes>>);

impl LogSink {
    /// A sink writing to `uri` (nothing if empty), from a task on the current runtime.
    pub fn open(uri: &str) -> Result<LogSink> {
        let Some(mut w) = writer(uri)? else {
            return Ok(LogSink(None));
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if w.write_all(&b).await.is_err() {
                    break;
                }
            }
        });
        Ok(LogSink(Some(tx)))
    }

    /// A sink that drops everything.
    pub fn disabled() -> LogSink {
        LogSink(None)
    }

    /// Queue bytes (dropped if the queue is full).
    pub fn write(&self, b: Bytes) {
        if let Some(tx) = &self.0
            && !b.is_empty()
        {
            let _ = tx.try_send(b);
        }
    }

    /// Queue one line of the shim's own.
    pub fn line(&self, msg: impl std::fmt::Display) {
        self.write(Bytes::from(format!("{msg}\n")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn stdin_waits_for_its_writer_and_sees_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("in");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut r = LazyFifo::open(p.clone());
        let p2 = p.clone();
        let w = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::fs::write(p2, b"hello").unwrap();
        });
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello", "not an early end-of-file");
        w.join().unwrap();

        // Dropped before any writer: the opening thread is released.
        let r = LazyFifo::open(p);
        std::thread::sleep(std::time::Duration::from_millis(50));
        drop(r);
    }

    #[tokio::test]
    async fn a_drain_probe_sees_what_the_reader_has_not_taken() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&p)
            .unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let probe = DrainProbe::open(p.to_str().unwrap()).expect("a FIFO gets a probe");
        w.write_all(&[7u8; 100]).unwrap();
        drop(w);
        assert_eq!(probe.pending(), 100);

        // Nobody reads: the wait ends at its limit and says so.
        let t0 = std::time::Instant::now();
        let probe2 = DrainProbe::open(p.to_str().unwrap()).unwrap();
        assert!(!probe2.drained(std::time::Duration::from_millis(50)).await);
        assert!(t0.elapsed() >= std::time::Duration::from_millis(50));

        // The reader takes it a little later: the wait sees the pipe empty.
        let late = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            let mut b = [0u8; 200];
            reader.read(&mut b).unwrap()
        });
        assert!(probe.drained(std::time::Duration::from_secs(5)).await);
        assert_eq!(late.join().unwrap(), 100);

        // A plain file needs no probe.
        let f = dir.path().join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(DrainProbe::open(f.to_str().unwrap()).is_none());
    }
}
