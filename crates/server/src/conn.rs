//! The HTTP edge: a hand-written accept loop that replaces `axum::serve` and
//! bounds what one client can hold on to.
//!
//! `axum::serve` has no header-read timeout, no idle keep-alive timeout, no
//! body-read timeout and no connection cap, so a slowloris client (or simply
//! 100k idle sockets) can starve or exhaust the server. [`serve`] enforces
//! [`HttpLimits`]:
//!
//! * **Connection cap.** A [`Semaphore`] with `max_connections` permits; each
//!   served connection holds an owned permit for its whole life. A connection
//!   accepted while none is free gets a canned `503` (JSON body,
//!   `Retry-After: 1`, `Connection: close`) from a short-lived task with a
//!   hard deadline, and is closed. The accept loop never waits on it.
//! * **Header-read timeout**, measured *from the first byte* of a request head
//!   to the end of its header block.
//! * **Idle keep-alive timeout**: how long a connection with no request in
//!   flight may sit without sending the first byte of its next request (this
//!   includes a fresh connection that has sent nothing yet).
//! * **Body-read timeout**: every request body is wrapped in
//!   [`ReadTimeoutBody`], which fails with [`BodyReadTimeout`] when no frame
//!   arrives within `body_read_timeout` of the last one (time counts only while
//!   the handler is actually waiting for the body). [`is_body_read_timeout`]
//!   lets a handler turn that into a `408`.
//! * **Graceful shutdown**: when the `shutdown` future resolves the listener
//!   is dropped (new connections are refused), every live connection gets
//!   hyper's `graceful_shutdown()` (idle ones close at once, busy ones after
//!   their in-flight response), and [`serve`] returns once all are gone. The
//!   caller bounds that wait.
//!
//! # What hyper does natively, and what this module adds
//!
//! hyper 1.x (`proto/h1/conn.rs`, `Conn::poll_read_head`) arms its
//! `header_read_timeout` timer when it *starts waiting* for a request head,
//! not when the first byte of the head arrives: on a fresh connection that is
//! the moment the connection is first polled, and on a keep-alive connection
//! it is the moment the previous exchange finished (`State::idle` sets
//! `notify_read` precisely so that "the next read will start and poll the
//! header read timeout"). So hyper's one timer covers *idle time plus header
//! time* with a single duration; there is no separate idle keep-alive
//! timeout. Set to 10 s it would close every idle keep-alive connection after
//! 10 s; set to 60 s it would give a slowloris 60 s per connection. (With a
//! timer configured and no explicit value hyper also defaults it to 30 s.)
//!
//! So this module enforces both limits itself, in an IO wrapper
//! (`GuardedIo`) that sits between the `TcpStream` and hyper:
//!
//! * the service marks a request *in flight* from the moment hyper hands it
//!   over until the response body has been fully produced or dropped (a guard
//!   travels from the request into the response body), so long handlers and
//!   long streamed responses are never cut by these timers;
//! * with nothing in flight the connection is *idle*: a deadline of
//!   `idle_timeout` runs from the end of the last exchange (or from accept);
//! * the first byte read while idle switches to *reading head*: a deadline of
//!   `header_read_timeout` from that byte, until hyper has parsed the head and
//!   called the service;
//! * when hyper waits on the socket (a read, write or flush returns `Pending`)
//!   past the deadline of the current phase, the wrapper fails the IO with
//!   `TimedOut`, and hyper drops the connection (no response is written; a
//!   client stalled mid-head just sees the connection close).
//!
//! The hot path touches no timer. A phase change only records when the phase
//! began (`Instant::now()`, a vDSO read). Each connection has one check
//! timer, armed at most `min(idle_timeout, header_read_timeout)` ahead and
//! re-armed only when it fires: then the current phase's deadline is worked
//! out, and the connection fails or the timer is re-armed to that deadline.
//! A check is never late, because the timer was armed before the phase began
//! and never sleeps longer than the shortest timeout. A first version reset
//! a `Sleep` at every phase change, and hyper armed its own header timer per
//! request. The timer registrations woke the parked runtime thread: measured
//! with `scripts/bench-ab`, 11 % fewer requests/s for a hello function, with
//! about twice the futex and epoll_wait calls per request. So hyper gets no
//! timer at all. Without one it enforces no header timeout of its own.
//!
//! # Caveats
//!
//! * HTTP/1.1 only (as `axum::serve` was with axum's default features); no
//!   HTTP upgrades (no WebSocket) are enabled.
//! * While a request is in flight there is no connection-level timer: a
//!   handler that never reads its body and never answers, or a client that
//!   stops reading a long streamed response (zero TCP window), holds the
//!   connection until the handler or the executor gives up. Once the response
//!   body has ended, a client that still does not read its tail is cut after
//!   `idle_timeout`.
//! * A pipelined request whose head was already buffered while the previous
//!   one was in flight is timed by `idle_timeout`, not `header_read_timeout`
//!   (its first byte arrived while the connection was busy).
//! * `graceful_shutdown()` does not close a connection stalled in the middle
//!   of a request head; it ends by the header-read timeout.
//!
//! # Dependencies
//!
//! axum 0.8, hyper 1 (`http1`, `server`), hyper-util 0.1 (`http1`, `server`,
//! `server-graceful`, `service`, `tokio`), http-body 1, tokio 1, bytes 1,
//! tracing 0.1.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Limits of the HTTP edge.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Most connections open at once; past it new connections get a canned 503 and are closed (default 10_000).
    pub max_connections: usize,
    /// Time allowed to receive a request's complete header block, from the first byte (default 10 s).
    pub header_read_timeout: Duration,
    /// Time an idle keep-alive connection may wait for its next request (default 60 s).
    pub idle_timeout: Duration,
    /// Longest gap between two chunks of a request body before the body errors (default 30 s).
    pub body_read_timeout: Duration,
    /// Per-function fairness of the I/O path (default: none).
    pub demotion: Option<Demotion>,
}

/// Connections that carry requests to a hot function (one over `hot_rps`
/// requests a second) move to the runtime `to`, whose threads run at a
/// lower CPU priority: a storm of cheap requests to one function then
/// takes the CPU only when other functions' requests leave it. The
/// connection-level twin of the guests' slow lane; the slow lane's runtime
/// serves both.
#[derive(Debug, Clone)]
pub struct Demotion {
    /// The lower-priority runtime.
    pub to: tokio::runtime::Handle,
    /// Rate (requests a second, over the last 250 ms) past which a
    /// function is hot.
    pub hot_rps: u32,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            demotion: None,
        }
    }
}

/// The whole canned answer to a connection over the cap.
const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
Retry-After: 1\r\n\
Content-Type: application/json\r\n\
Content-Length: 97\r\n\
Connection: close\r\n\
\r\n\
{\"error\":{\"code\":\"unavailable\",\"message\":\"the server is at its connection limit; retry shortly\"}}";

/// Deadline for writing [`BUSY_RESPONSE`] and lingering for the client's EOF.
const REJECT_DEADLINE: Duration = Duration::from_secs(1);
/// Most rejections being written at once; past it an over-the-cap connection
/// gets one non-blocking write attempt and is dropped on the spot.
const MAX_REJECTING: usize = 1024;
/// Pause after an accept error such as `EMFILE`, so the loop does not spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Serve `app` on `listener` with `limits` until `shutdown` resolves; then
/// stop accepting, shut every live connection down gracefully, and return
/// once they are all closed (the caller bounds that wait).
///
/// Each request carries `ConnectInfo<SocketAddr>` (the peer address) in its
/// extensions and a body wrapped in [`ReadTimeoutBody`]. See the module docs
/// for what each limit means exactly.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let rejecting = Arc::new(AtomicUsize::new(0));
    let graceful = GracefulShutdown::new();
    let router = TowerToHyperService::new(app);

    let mut builder = http1::Builder::new();
    // No hyper timer: the deadlines are GuardedIo's (see the module docs).
    builder.keep_alive(true);

    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) if is_connection_error(&err) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    continue;
                }
            },
        };

        let Ok(permit) = permits.clone().try_acquire_owned() else {
            reject(stream, &rejecting);
            continue;
        };
        // Streamed bodies go out as several writes; without TCP_NODELAY,
        // Nagle and delayed ACKs would hold each response's tail for ~40 ms.
        let _ = stream.set_nodelay(true);

        let hot_rps = limits.demotion.as_ref().map_or(0, |d| d.hot_rps);
        let shared = Arc::new(ConnShared::new(hot_rps));
        let io = GuardedIo::new(stream, shared.clone(), &limits);
        let service = ConnService {
            router: router.clone(),
            shared: shared.clone(),
            peer,
            body_read_timeout: limits.body_read_timeout,
        };
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        let task = async move {
            if let Err(err) = conn.await {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        };
        match &limits.demotion {
            None => {
                tokio::spawn(task);
            }
            Some(d) => {
                let flag = shared.clone();
                tokio::spawn(CONN.scope(
                    shared,
                    wisp_runtime::demote_when(task, d.to.clone(), move |_| {
                        flag.heavy.load(Ordering::Relaxed)
                    }),
                ));
            }
        }
    }

    // Stop accepting: connections still queued in the backlog are refused.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Errors of `accept` that concern one connection only (axum's list).
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Answer a connection over the cap with [`BUSY_RESPONSE`] and close it,
/// without ever blocking the accept loop.
fn reject(stream: TcpStream, rejecting: &Arc<AtomicUsize>) {
    if rejecting.fetch_add(1, Ordering::Relaxed) >= MAX_REJECTING {
        rejecting.fetch_sub(1, Ordering::Relaxed);
        // Flooded: one non-blocking attempt (a fresh socket's send buffer
        // takes these few hundred bytes), then drop.
        let _ = stream.try_write(BUSY_RESPONSE);
        return;
    }
    let rejecting = RejectingGuard(rejecting.clone());
    tokio::spawn(async move {
        let _rejecting = rejecting;
        let mut stream = stream;
        let _ = tokio::time::timeout(REJECT_DEADLINE, async {
            stream.write_all(BUSY_RESPONSE).await?;
            stream.shutdown().await?;
            // Lingering close: read what the client sent until its EOF.
            // Closing with unread request bytes would make the kernel send
            // an RST, which can destroy the 503 before the client reads it.
            let mut buf = [0u8; 1024];
            let mut drained = 0usize;
            while drained < 64 * 1024 {
                match stream.read(&mut buf).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<_, io::Error>(())
        })
        .await;
    });
}

struct RejectingGuard(Arc<AtomicUsize>);

impl Drop for RejectingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stand-in for "never" when a limit is absurdly large.
const FAR_FUTURE: Duration = Duration::from_secs(60 * 60 * 24 * 365);

/// `now + d`, capped at [`FAR_FUTURE`] so it cannot overflow.
fn deadline_after(d: Duration) -> Instant {
    Instant::now() + d.min(FAR_FUTURE)
}

// ---------------------------------------------------------------------------
// Per-connection request tracking.

/// What the service tells the connection's IO wrapper. Everything of one
/// connection runs on its own task, so relaxed atomics are enough.
struct ConnShared {
    /// Requests handed to the service so far (wrapping).
    started: AtomicU32,
    /// [`Demotion::hot_rps`] (0: off).
    hot_rps: u32,
    /// Set once a request went to a hot function: the connection moves to
    /// the lower-priority runtime at its next suspension.
    heavy: std::sync::atomic::AtomicBool,
    /// Requests whose response body has not ended or been dropped yet.
    active: AtomicU32,
    /// When the connection was accepted: the origin of `ended_ns`.
    base: Instant,
    /// When the last exchange ended, in nanoseconds after `base`.
    ended_ns: AtomicU64,
}

impl ConnShared {
    fn new(hot_rps: u32) -> ConnShared {
        ConnShared {
            started: AtomicU32::new(0),
            hot_rps,
            heavy: std::sync::atomic::AtomicBool::new(false),
            active: AtomicU32::new(0),
            base: Instant::now(),
            ended_ns: AtomicU64::new(0),
        }
    }

    fn ended(&self) -> Instant {
        self.base + Duration::from_nanos(self.ended_ns.load(Ordering::Relaxed))
    }
}

tokio::task_local! {
    /// The connection a request came on, while fairness is on.
    static CONN: Arc<ConnShared>;
}

/// Count a request to a function whose rate meter is `hit` and, if the
/// function is hot, mark the connection it came on for the lower-priority
/// runtime. Does nothing (not even read the clock) unless a [`Demotion`]
/// is configured.
pub(crate) fn account(hit: impl FnOnce(u64) -> u32) {
    let _ = CONN.try_with(|c| {
        if c.hot_rps == 0 {
            return;
        }
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now_ms = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64;
        if hit(now_ms) > c.hot_rps {
            c.heavy.store(true, Ordering::Relaxed);
        }
    });
}

/// Marks one request in flight; lives in the handler future and then in the
/// response body, so it drops when hyper is done with the response.
struct InFlight(Arc<ConnShared>);

impl InFlight {
    fn start(shared: &Arc<ConnShared>) -> Self {
        shared.started.fetch_add(1, Ordering::Relaxed);
        shared.active.fetch_add(1, Ordering::Relaxed);
        Self(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let ns = self.0.base.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.0.ended_ns.store(ns, Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::Release);
    }
}

/// The per-connection hyper service: adds `ConnectInfo`, wraps the request
/// body in [`ReadTimeoutBody`], calls the router, and ties an [`InFlight`]
/// guard to the response body.
#[derive(Clone)]
struct ConnService {
    router: TowerToHyperService<Router>,
    shared: Arc<ConnShared>,
    peer: SocketAddr,
    body_read_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = axum::http::Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        let guard = InFlight::start(&self.shared);
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let timeout = self.body_read_timeout;
        let req = req.map(|body| axum::body::Body::new(ReadTimeoutBody::new(body, timeout)));
        let response = hyper::service::Service::call(&self.router, req);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|inner| TrackedBody {
                inner,
                _in_flight: guard,
            }))
        })
    }
}

/// A response body that keeps its request counted as in flight until hyper
/// has finished with it.
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

// ---------------------------------------------------------------------------
// Idle and header-read timeouts.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Nothing in flight and no byte of a next request seen: `idle_timeout`.
    Idle,
    /// First byte of a request head seen: `header_read_timeout` from it.
    Head,
    /// A request is in flight: no connection deadline.
    Busy,
}

/// The connection's socket as hyper sees it. Fails a read, write or flush
/// that would wait past the deadline of the current [`Phase`] with
/// `TimedOut`, which makes hyper drop the connection.
struct GuardedIo {
    io: TcpStream,
    shared: Arc<ConnShared>,
    phase: Phase,
    /// `shared.started` when the phase was last worked out.
    seen_started: u32,
    idle_timeout: Duration,
    header_read_timeout: Duration,
    /// When the current phase began.
    since: Instant,
    /// Wakes the connection to look at its deadline; re-armed only when it
    /// fires, never on the hot path.
    check: Pin<Box<Sleep>>,
}

impl GuardedIo {
    fn new(io: TcpStream, shared: Arc<ConnShared>, limits: &HttpLimits) -> Self {
        let since = Instant::now();
        let check = since
            + limits
                .idle_timeout
                .min(limits.header_read_timeout)
                .min(FAR_FUTURE);
        Self {
            io,
            shared,
            phase: Phase::Idle,
            seen_started: 0,
            idle_timeout: limits.idle_timeout,
            header_read_timeout: limits.header_read_timeout,
            since,
            check: Box::pin(tokio::time::sleep_until(check)),
        }
    }

    /// Catch up with what the service did since the last IO call.
    fn refresh(&mut self) {
        let started = self.shared.started.load(Ordering::Relaxed);
        if self.shared.active.load(Ordering::Acquire) > 0 {
            self.phase = Phase::Busy;
            self.seen_started = started;
        } else if self.phase == Phase::Busy || started != self.seen_started {
            // An exchange ended (perhaps a whole one since the last call):
            // idle since it did.
            self.seen_started = started;
            self.phase = Phase::Idle;
            self.since = self.shared.ended().max(self.since);
        }
    }

    /// Switch phase: only the time is noted; no timer is touched.
    fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = Instant::now();
    }

    /// Called when the socket is not ready: `Ready(err)` once the current
    /// phase's deadline has passed.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.check.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // The exchange may have ended since the last IO call.
            self.refresh();
            let now = Instant::now();
            let shortest = self
                .idle_timeout
                .min(self.header_read_timeout)
                .min(FAR_FUTURE);
            let timeout = match self.phase {
                Phase::Idle => self.idle_timeout,
                Phase::Head => self.header_read_timeout,
                Phase::Busy => {
                    // No deadline while busy: look again later.
                    self.check.as_mut().reset(now + shortest);
                    continue;
                }
            };
            let deadline = self.since + timeout.min(FAR_FUTURE);
            if deadline <= now {
                return Poll::Ready(io::ErrorKind::TimedOut.into());
            }
            // A later phase change can bring the deadline no closer than the
            // shortest timeout from now: never sleep longer than that.
            self.check.as_mut().reset(deadline.min(now + shortest));
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.refresh();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.phase == Phase::Idle && buf.filled().len() > before {
                    this.enter(Phase::Head);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => this.poll_deadline(cx).map(Err),
        }
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.refresh();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.refresh();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.refresh();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.poll_deadline(cx).map(Err),
            ready => ready,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

// ---------------------------------------------------------------------------
// Body-read timeout.

/// The error a request body fails with when the client sent nothing for
/// `body_read_timeout` while the handler was waiting for the next chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyReadTimeout {
    /// The limit that was exceeded.
    pub timeout: Duration,
}

impl fmt::Display for BodyReadTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request body stalled: no data for {} ms",
            self.timeout.as_millis()
        )
    }
}

impl StdError for BodyReadTimeout {}

/// Whether `err`, or any error in its `source()` chain, is a
/// [`BodyReadTimeout`]: lets a handler answer `408 Request Timeout` rather
/// than `400` when `axum::body::to_bytes`, `Limited`/`collect` or an
/// extractor fails. Pass the error itself (e.g. `&err` for an
/// `axum::Error`, or `&*err` for a `Box<dyn Error + Send + Sync>`).
pub fn is_body_read_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<BodyReadTimeout>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// A request body that fails with [`BodyReadTimeout`] when no frame arrives
/// within `timeout` of the last one.
///
/// The clock runs only while the consumer is waiting (a poll returned
/// `Pending`), so a handler that is slow to read is not charged for it; it
/// restarts after every frame. After the timeout the body reports its end.
/// The timer is allocated on the first wait only, so bodies that are already
/// complete (e.g. a `GET`'s) cost nothing extra.
pub struct ReadTimeoutBody<B> {
    inner: B,
    timeout: Duration,
    /// Present once the body has had to wait; armed while waiting.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
    timed_out: bool,
}

impl<B> ReadTimeoutBody<B> {
    /// Wrap `inner`, failing it after `timeout` without a frame.
    pub fn new(inner: B, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            armed: false,
            timed_out: false,
        }
    }
}

impl<B> fmt::Debug for ReadTimeoutBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadTimeoutBody")
            .field("timeout", &self.timeout)
            .field("timed_out", &self.timed_out)
            .finish_non_exhaustive()
    }
}

impl<B> Body for ReadTimeoutBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.armed = false;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let deadline = deadline_after(this.timeout);
                let sleep = match &mut this.sleep {
                    Some(sleep) => {
                        if !this.armed {
                            sleep.as_mut().reset(deadline);
                        }
                        sleep
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                this.armed = true;
                if sleep.as_mut().poll(cx).is_ready() {
                    this.timed_out = true;
                    this.sleep = None;
                    return Poll::Ready(Some(Err(Box::new(BodyReadTimeout {
                        timeout: this.timeout,
                    }))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.timed_out || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.timed_out {
            SizeHint::with_exact(0)
        } else {
            self.inner.size_hint()
        }
    }
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use axum::extract::Request as AxumRequest;
    use axum::http::StatusCode;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const MS: Duration = Duration::from_millis(1);

    struct Server {
        addr: SocketAddr,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<io::Result<()>>,
    }

    impl Server {
        async fn start(limits: HttpLimits) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = oneshot::channel::<()>();
            let task = tokio::spawn(serve(listener, app(), limits, async move {
                let _ = rx.await;
            }));
            Self {
                addr,
                stop: Some(tx),
                task,
            }
        }

        /// Trigger shutdown and wait (bounded) for `serve` to return.
        async fn stop(mut self) {
            let _ = self.stop.take().unwrap().send(());
            tokio::time::timeout(Duration::from_secs(5), &mut self.task)
                .await
                .expect("serve did not return after shutdown")
                .unwrap()
                .unwrap();
        }
    }

    fn limits(header: u64, idle: u64, body: u64) -> HttpLimits {
        HttpLimits {
            max_connections: 100,
            header_read_timeout: Duration::from_millis(header),
            idle_timeout: Duration::from_millis(idle),
            body_read_timeout: Duration::from_millis(body),
            demotion: None,
        }
    }

    /// A response body that sends `n` chunks `gap` apart.
    struct Ticks {
        left: u32,
        gap: Duration,
        sleep: Pin<Box<Sleep>>,
    }

    impl Body for Ticks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            std::task::ready!(self.sleep.as_mut().poll(cx));
            self.left -= 1;
            let next = Instant::now() + self.gap;
            self.sleep.as_mut().reset(next);
            Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"tick\n")))))
        }
    }

    fn app() -> Router {
        Router::new()
            .route("/", get(|| async { "ok" }))
            .route(
                "/peer",
                get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
            )
            .route(
                "/upload",
                post(|req: AxumRequest| async move {
                    match axum::body::to_bytes(req.into_body(), usize::MAX).await {
                        Ok(b) => (StatusCode::OK, format!("got {}", b.len())),
                        Err(e) if is_body_read_timeout(&e) => {
                            (StatusCode::REQUEST_TIMEOUT, "body timeout".to_owned())
                        }
                        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()),
                    }
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(600 * MS).await;
                    "slow"
                }),
            )
            .route(
                "/ticks",
                get(|| async {
                    axum::body::Body::new(Ticks {
                        left: 5,
                        gap: 200 * MS,
                        sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
                    })
                }),
            )
    }

    struct Resp {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Resp {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// Read one response (Content-Length or chunked framing) off `s`.
    async fn read_response(s: &mut TcpStream) -> io::Result<Resp> {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut rest = buf[head_end..].to_vec();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().unwrap();
            while rest.len() < len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            resp.body = rest[..len].to_vec();
        } else {
            // Chunked: read until the terminating chunk, keep the raw bytes.
            while !rest.ends_with(b"0\r\n\r\n") {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                rest.extend_from_slice(&chunk[..n]);
            }
            resp.body = rest;
        }
        Ok(resp)
    }

    async fn get_on(s: &mut TcpStream, path: &str) -> io::Result<Resp> {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await?;
        read_response(s).await
    }

    /// Wait (bounded by `within`) for the server to close `s`; returns the
    /// time it took. Any bytes received first fail the test.
    async fn closed_within(s: &mut TcpStream, within: Duration) -> Duration {
        let t0 = Instant::now();
        let mut b = [0u8; 256];
        match tokio::time::timeout(within, s.read(&mut b)).await {
            Err(_) => panic!("connection still open after {within:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => t0.elapsed(),
            Ok(Ok(n)) => panic!("expected close, got {:?}", String::from_utf8_lossy(&b[..n])),
        }
    }

    #[test]
    fn busy_response_is_well_formed() {
        let text = std::str::from_utf8(BUSY_RESPONSE).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.contains(&format!("\r\nContent-Length: {}\r\n", body.len())));
        assert_eq!(
            body,
            r#"{"error":{"code":"unavailable","message":"the server is at its connection limit; retry shortly"}}"#
        );
    }

    /// 1. A client stalled mid-head is cut after ~header_read_timeout while a
    /// normal client is served meanwhile.
    #[tokio::test]
    async fn stalled_header_is_cut_after_header_timeout() {
        let srv = Server::start(limits(300, 5_000, 5_000)).await;
        let mut slow = TcpStream::connect(srv.addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHo").await.unwrap();
        let t0 = Instant::now();

        let mut good = TcpStream::connect(srv.addr).await.unwrap();
        let r = get_on(&mut good, "/").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"ok");
        // Served while the stalled connection was still held open.
        let mut b = [0u8; 16];
        assert_eq!(
            slow.try_read(&mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "stalled connection already closed before the normal client was served"
        );

        closed_within(&mut slow, 3 * Duration::from_secs(1)).await;
        let took = t0.elapsed();
        assert!(took >= 280 * MS, "closed too early: {took:?}");
        assert!(took < 1_500 * MS, "closed too late: {took:?}");

        // The well-behaved connection is still usable afterwards.
        let r = get_on(&mut good, "/").await.unwrap();
        assert_eq!(r.status, 200);
        srv.stop().await;
    }

    /// The header timer starts at the first byte, not at accept: a fresh
    /// connection that waits longer than header_read_timeout (but less than
    /// idle_timeout) before sending is still served. (hyper's own timer,
    /// armed when it starts waiting, would have closed it.)
    #[tokio::test]
    async fn header_timer_starts_at_first_byte() {
        let srv = Server::start(limits(200, 5_000, 5_000)).await;
        let mut c = TcpStream::connect(srv.addr).await.unwrap();
        tokio::time::sleep(500 * MS).await;
        let r = get_on(&mut c, "/").await.unwrap();
        assert_eq!(r.status, 200);
        // Same after a keep-alive pause longer than the header timeout.
        tokio::time::sleep(500 * MS).await;
        let r = get_on(&mut c, "/").await.unwrap();
        assert_eq!(r.status, 200);
        // And a head trickled in under the header timeout is fine.
        c.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        tokio::time::sleep(100 * MS).await;
        c.write_all(b"Host: x\r\n\r\n").await.unwrap();
        assert_eq!(read_response(&mut c).await.unwrap().status, 200);
        srv.stop().await;
    }

    /// 2. An idle keep-alive connection is closed after ~idle_timeout, and
    /// each request restarts the idle clock.
    #[tokio::test]
    async fn idle_keepalive_is_closed_after_idle_timeout() {
        let srv = Server::start(limits(5_000, 400, 5_000)).await;
        let mut c = TcpStream::connect(srv.addr).await.unwrap();
        assert_eq!(get_on(&mut c, "/").await.unwrap().status, 200);
        let first = Instant::now();
        tokio::time::sleep(250 * MS).await;
        assert_eq!(get_on(&mut c, "/").await.unwrap().status, 200);
        let second = Instant::now();
        closed_within(&mut c, Duration::from_secs(3)).await;
        let since_second = second.elapsed();
        assert!(
            first.elapsed() >= 600 * MS,
            "idle clock was not restarted by the second request"
        );
        assert!(
            since_second >= 380 * MS,
            "closed too early: {since_second:?}"
        );
        assert!(
            since_second < 1_500 * MS,
            "closed too late: {since_second:?}"
        );

        // A fresh connection that never sends anything is idle too.
        let mut quiet = TcpStream::connect(srv.addr).await.unwrap();
        let took = closed_within(&mut quiet, Duration::from_secs(3)).await;
        assert!(took >= 350 * MS && took < 1_500 * MS, "{took:?}");
        srv.stop().await;
    }

    /// In-flight requests are not cut by the idle/header timers: a handler
    /// slower than idle_timeout, and a streamed response longer than it.
    #[tokio::test]
    async fn in_flight_requests_are_not_cut() {
        let srv = Server::start(limits(300, 300, 300)).await;
        let mut c = TcpStream::connect(srv.addr).await.unwrap();
        let r = get_on(&mut c, "/slow").await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"slow"[..]));
        let t0 = Instant::now();
        let r = get_on(&mut c, "/ticks").await.unwrap();
        assert!(t0.elapsed() >= 750 * MS);
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        assert_eq!(text.matches("tick").count(), 5, "{text:?}");
        // ...and the connection then idles out as usual.
        let took = closed_within(&mut c, Duration::from_secs(3)).await;
        assert!(took < 1_500 * MS, "{took:?}");
        srv.stop().await;
    }

    /// 3. A body that stalls mid-way fails the handler's read within
    /// ~body_read_timeout; one that pauses less than that between chunks
    /// (but longer in total) succeeds.
    #[tokio::test]
    async fn stalled_body_fails_the_read() {
        let srv = Server::start(limits(5_000, 5_000, 300)).await;

        let mut ok = TcpStream::connect(srv.addr).await.unwrap();
        ok.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 30\r\n\r\n")
            .await
            .unwrap();
        for _ in 0..3 {
            tokio::time::sleep(180 * MS).await;
            ok.write_all(b"0123456789").await.unwrap();
        }
        let r = read_response(&mut ok).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"got 30"[..]));

        let mut c = TcpStream::connect(srv.addr).await.unwrap();
        c.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let t0 = Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), read_response(&mut c))
            .await
            .expect("no response to a stalled body")
            .unwrap();
        let took = t0.elapsed();
        assert_eq!(r.status, 408, "{:?}", String::from_utf8_lossy(&r.body));
        assert!(took >= 280 * MS, "failed too early: {took:?}");
        assert!(took < 1_500 * MS, "failed too late: {took:?}");
        // The half-read request cannot be resynchronised: the connection closes.
        closed_within(&mut c, Duration::from_secs(3)).await;
        srv.stop().await;
    }

    /// 4. Over the connection cap: canned 503 with Retry-After, then close;
    /// a slot freed by a closing connection is reused.
    #[tokio::test]
    async fn connection_cap_rejects_with_503() {
        let mut l = limits(5_000, 5_000, 5_000);
        l.max_connections = 2;
        let srv = Server::start(l).await;

        let mut a = TcpStream::connect(srv.addr).await.unwrap();
        let mut b = TcpStream::connect(srv.addr).await.unwrap();
        assert_eq!(get_on(&mut a, "/").await.unwrap().status, 200);
        assert_eq!(get_on(&mut b, "/").await.unwrap().status, 200);

        let mut c = TcpStream::connect(srv.addr).await.unwrap();
        let r = get_on(&mut c, "/").await.unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("retry-after"), Some("1"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("connection"), Some("close"));
        assert_eq!(
            r.body,
            br#"{"error":{"code":"unavailable","message":"the server is at its connection limit; retry shortly"}}"#
        );
        closed_within(&mut c, Duration::from_secs(2)).await;

        // The two held connections still work.
        assert_eq!(get_on(&mut a, "/").await.unwrap().status, 200);

        drop(a);
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut d = TcpStream::connect(srv.addr).await.unwrap();
            let r = get_on(&mut d, "/").await.unwrap();
            if r.status == 200 {
                break;
            }
            assert_eq!(r.status, 503);
            assert!(Instant::now() < deadline, "slot never freed");
            tokio::time::sleep(20 * MS).await;
        }
        drop(b);
        srv.stop().await;
    }

    /// 5. Handlers see the peer address.
    #[tokio::test]
    async fn connect_info_is_present() {
        let srv = Server::start(limits(5_000, 5_000, 5_000)).await;
        let mut c = TcpStream::connect(srv.addr).await.unwrap();
        let local = c.local_addr().unwrap();
        let r = get_on(&mut c, "/peer").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(String::from_utf8(r.body).unwrap(), local.to_string());
        srv.stop().await;
    }

    /// 6. 200 stalled slowloris connections do not stop a well-behaved client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slowloris_does_not_starve_good_client() {
        let mut l = limits(10_000, 10_000, 10_000);
        l.max_connections = 300;
        let srv = Server::start(l).await;

        let mut lorises = Vec::with_capacity(200);
        for _ in 0..200 {
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            lorises.push(s);
        }

        let t0 = Instant::now();
        for i in 0..50 {
            let mut c = TcpStream::connect(srv.addr).await.unwrap();
            let r = get_on(&mut c, "/").await.unwrap();
            assert_eq!(r.status, 200, "request {i}");
        }
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(3), "50 requests took {took:?}");

        // The slowloris connections were held, not rejected or answered.
        let mut b = [0u8; 16];
        for s in &mut lorises[..5] {
            assert!(
                tokio::time::timeout(10 * MS, s.read(&mut b)).await.is_err(),
                "slowloris connection got data or EOF"
            );
        }
        drop(lorises);
        srv.stop().await;
    }

    /// Shutdown: idle connections close at once, in-flight requests finish,
    /// then `serve` returns and the port refuses connections.
    #[tokio::test]
    async fn graceful_shutdown_finishes_in_flight() {
        let srv = Server::start(limits(5_000, 5_000, 5_000)).await;
        let addr = srv.addr;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get_on(&mut idle, "/").await.unwrap().status, 200);
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(100 * MS).await;

        let t0 = Instant::now();
        let stopping = tokio::spawn(srv.stop());
        closed_within(&mut idle, Duration::from_secs(2)).await;
        // The idle one went while the slow request was still in flight.
        let mut b = [0u8; 16];
        assert_eq!(
            busy.try_read(&mut b).unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "idle connection was not closed before the in-flight request ended"
        );
        let r = read_response(&mut busy).await.unwrap();
        assert_eq!((r.status, &r.body[..]), (200, &b"slow"[..]));
        stopping.await.unwrap();
        assert!(t0.elapsed() >= 400 * MS);
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
