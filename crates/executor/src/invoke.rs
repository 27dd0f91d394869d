//! One invocation: admit → template → run → record, for each ABI. The
//! pieces ([`admit`], [`Executor::template`], [`Draft`]) are shared, so a new
//! way of invoking (a JSON call, a workflow step) reuses them instead of
//! copying them.

use crate::Executor;
use crate::activation::{CancelReason, Draft, PendingRecord, log_text};
use crate::admission::{Admitted, InstanceSlot, NodeLimits, admit, body_error};
use crate::error::{Error, run_error};
use crate::table::FunctionHandle;
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wisp_core::{ErrorKind, Limits};
use wisp_runtime::{CgiRequest, GuestBody, HttpInvocation, Invocation, Loaded, RunError};

/// One HTTP request, reduced to what the ABIs need.
#[derive(Debug, Default)]
pub struct Request {
    /// Method.
    pub method: http::Method,
    /// Sub-path after `/fn/{name}` ("" or starting with `/`).
    pub path_info: String,
    /// Raw query string.
    pub query: String,
    /// Headers.
    pub headers: http::HeaderMap,
    /// Body. A stream is read only after the request is admitted, against
    /// the function's `max_body_bytes` and the node's buffer budget.
    pub body: RequestBody,
    /// Client address.
    pub remote_addr: String,
    /// Host name the server answers as.
    pub server_name: String,
    /// Port the server answers on.
    pub server_port: u16,
}

/// A request body.
pub enum RequestBody {
    /// Fully read.
    Full(Bytes),
    /// Not read yet: collected after admission (command modules) or
    /// streamed into the guest (components).
    Stream(GuestBody),
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Full(Bytes::new())
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            RequestBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A response body.
pub enum ResponseBody {
    /// Complete (command ABI).
    Full(Bytes),
    /// Streams while the component keeps running (`http` ABI).
    Stream(wisp_runtime::ResponseBody),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseBody::Full(b) => write!(f, "Full({} bytes)", b.len()),
            ResponseBody::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// A guest's answer plus what the platform measured.
#[derive(Debug)]
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// Headers from the guest (CGI header lines that are not valid HTTP are
    /// dropped).
    pub headers: http::HeaderMap,
    /// Body.
    pub body: ResponseBody,
    /// Activation id.
    pub activation_id: String,
    /// Whether this request loaded the function.
    pub cold: bool,
    /// Queue wait.
    pub wait: Duration,
    /// Load time (zero when warm).
    pub init: Duration,
    /// Instantiate + run time (to the response head, for a component).
    pub run: Duration,
    /// Of `run`: creating the instance.
    pub instantiate: Duration,
    /// When the guest's own code started.
    pub guest_start: Instant,
    /// When the guest's code ended, if it has (a command module's has; a
    /// component's body may still be streaming).
    pub guest_end: Option<Instant>,
    /// A component instance still running behind a streamed body.
    pub(crate) instance: Option<tokio::task::AbortHandle>,
}

/// Where a command module's guest runs when there is a guest runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// In a task of its own on the guest lanes: the caller is on an I/O
    /// thread (a request).
    Spawned,
    /// In the caller's task, which already runs on the fast lane (a
    /// workflow's engine): no spawn, and no wake-up of a waiting task when
    /// the guest ends. The lanes' rules still hold (see
    /// [`wisp_runtime::GuestLanes::run_here_for`]).
    Here,
}

/// Where a command module's guest runs, and in what.
pub(crate) struct GuestAt {
    pub(crate) place: Place,
    /// Its instance, if one is being made ahead.
    pub(crate) ahead: Option<Making>,
}

impl GuestAt {
    /// A task of its own, a fresh instance: a request's guest.
    pub(crate) fn spawned() -> GuestAt {
        GuestAt {
            place: Place::Spawned,
            ahead: None,
        }
    }
}

/// A command module's instance being made ahead of its request, beside
/// the caller (a workflow step whose input is still being produced; see
/// [`Making::start`]). It holds a node instance slot, which the request's
/// admission takes over. The request takes the instance if making it has
/// begun, waiting for the rest of the instantiation; if it hasn't begun
/// (the lanes are busy) the request instantiates as usual and the task
/// gives up when it begins. Dropped, it stops the task and frees the
/// instance and its slot.
pub(crate) struct Making {
    state: Arc<std::sync::atomic::AtomicU8>,
    task: tokio::task::JoinHandle<Option<Result<wisp_runtime::Ahead, RunError>>>,
    slot: Option<InstanceSlot>,
}

impl Making {
    const WAITING: u8 = 0;
    const BEGUN: u8 = 1;
    const GIVEN_UP: u8 = 2;

    /// Start making an instance of `loaded` under `limits` beside the
    /// caller, on `lanes`; `None` when the node has no instance slot to
    /// spare ([`InstanceSlot::try_take_spare`]).
    pub(crate) fn start(
        lanes: &wisp_runtime::GuestLanes,
        node: &Arc<NodeLimits>,
        runtime: Arc<wisp_runtime::Runtime>,
        loaded: Loaded,
        limits: Limits,
    ) -> Option<Making> {
        let slot = InstanceSlot::try_take_spare(node)?;
        let state = Arc::new(std::sync::atomic::AtomicU8::new(Self::WAITING));
        let s = state.clone();
        let task = lanes.spawn_beside(async move {
            s.compare_exchange(Self::WAITING, Self::BEGUN, Relaxed, Relaxed)
                .ok()?;
            Some(runtime.instantiate_ahead(&loaded, &limits).await)
        });
        Some(Making {
            state,
            task,
            slot: Some(slot),
        })
    }

    /// The node instance slot it holds, for the request's admission.
    pub(crate) fn take_slot(&mut self) -> Option<InstanceSlot> {
        self.slot.take()
    }

    /// The instance, if making it had begun and it worked; `None`: make
    /// one now.
    async fn take(mut self) -> Option<wisp_runtime::Ahead> {
        if self
            .state
            .compare_exchange(Self::WAITING, Self::GIVEN_UP, Relaxed, Relaxed)
            .is_ok()
        {
            return None;
        }
        // Begun: what is left is at most one instantiation. A failure
        // (e.g. no free slot) is met again, and reported, on the usual path.
        match (&mut self.task).await {
            Ok(Some(Ok(a))) => Some(a),
            _ => None,
        }
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Ties an activation to a workflow run: (run id, step name, why unfinished
/// steps stopped).
pub(crate) type Link<'a> = (&'a str, &'a str, CancelReason);

/// What the stages before running hand to an ABI.
pub(crate) struct Ready<'h> {
    pub(crate) loaded: &'h Loaded,
    pub(crate) admitted: Admitted,
    pub(crate) cold: bool,
    pub(crate) wait: Duration,
    pub(crate) init: Duration,
}

impl Executor {
    /// Invoke `h` with `req`. Never panics on guest behaviour; every failure
    /// is an [`Error`] with a kind. Cancel-safe: dropping the future stops
    /// the guest, releases every slot and records a cancelled activation.
    pub async fn invoke(&self, h: &Arc<FunctionHandle>, req: Request) -> Result<Response, Error> {
        self.invoke_as(h, req, &h.version.config.limits, None, GuestAt::spawned())
            .await
    }

    /// [`Executor::invoke`] under `limits` (a workflow step's, never above
    /// the function's own), its record tied to a workflow run by `link`, a
    /// command module's guest run `at`.
    pub(crate) async fn invoke_as(
        &self,
        h: &Arc<FunctionHandle>,
        req: Request,
        limits: &Limits,
        link: Option<Link<'_>>,
        mut at: GuestAt,
    ) -> Result<Response, Error> {
        let mut draft = Draft::start(
            &h.version.namespace,
            &h.version.name,
            h.version.version,
            h.metrics.clone(),
            self.recorder.clone(),
        );
        if let Some((parent, step, cancel)) = link {
            draft.link(parent, step, cancel);
        }
        let slot = at.ahead.as_mut().and_then(Making::take_slot);
        let ready = match self.prepare(h, &mut draft, slot).await {
            Ok(r) => r,
            Err(e) => return Err(draft.fail(e)),
        };
        match ready.loaded {
            Loaded::Command(_) => self.run_command(h, req, limits, ready, draft, at).await,
            Loaded::Http(_) => self.run_http(h, req, limits, ready, draft).await,
        }
    }

    /// Admission and the template: what every ABI needs before it runs;
    /// `slot`, a node instance slot the caller holds already.
    pub(crate) async fn prepare<'h>(
        &self,
        h: &'h FunctionHandle,
        draft: &mut Draft,
        slot: Option<InstanceSlot>,
    ) -> Result<Ready<'h>, Error> {
        if let Some(why) = &h.broken {
            return Err(Error::new(ErrorKind::Unavailable, why.clone()));
        }
        let admitted = admit(h, &self.node, slot).await?;
        let wait = draft.started().elapsed();
        draft.waited(wait);
        let (loaded, cold, init) = self.template(h).await?;
        draft.loaded(cold, init);
        Ok(Ready {
            loaded,
            admitted,
            cold,
            wait,
            init,
        })
    }

    /// The command ABI: CGI in, CGI out, a fresh instance in between.
    async fn run_command(
        &self,
        h: &Arc<FunctionHandle>,
        req: Request,
        limits: &Limits,
        mut ready: Ready<'_>,
        mut draft: Draft,
        at: GuestAt,
    ) -> Result<Response, Error> {
        let body = match req.body {
            RequestBody::Full(b) => b,
            RequestBody::Stream(s) => {
                match ready.admitted.collect_body(s, limits.max_body_bytes).await {
                    Ok(b) => b,
                    Err(e) => return Err(draft.fail(e)),
                }
            }
        };
        draft.bytes_in(body.len() as u64);
        let cgi = CgiRequest {
            method: req.method.as_str(),
            path_info: &req.path_info,
            query: &req.query,
            headers: &req.headers,
            content_length: body.len(),
            function: &h.version.name,
            server_name: &req.server_name,
            server_port: req.server_port,
            remote_addr: &req.remote_addr,
        };
        let env = wisp_runtime::build_cgi_env(&cgi, &h.env);
        ready.admitted.start_running(&h.metrics);
        let t_run = Instant::now();
        let mut result = self.run_guest(h, ready.loaded, env, body, limits, at).await;
        let run = t_run.elapsed();
        if let Ok(out) = &mut result
            && let Some(t) = out.teardown.take()
        {
            self.tear_down(t, &mut ready.admitted);
        }
        drop(ready.admitted);
        match result {
            Ok(out) => {
                draft.ran(run, log_text(&out.stderr, out.stderr_truncated));
                let guest_start = out.started + out.instantiate;
                let (instantiate, guest_end) = (out.instantiate, guest_start + out.run);
                let resp = wisp_runtime::parse_cgi_response(out.stdout);
                let id = draft.id().to_string();
                draft.succeed(resp.status, resp.body.len() as u64);
                Ok(Response {
                    status: resp.status,
                    headers: header_map(resp.headers),
                    body: ResponseBody::Full(resp.body),
                    activation_id: id,
                    cold: ready.cold,
                    wait: ready.wait,
                    init: ready.init,
                    run,
                    instantiate,
                    guest_start,
                    guest_end: Some(guest_end),
                    instance: None,
                })
            }
            Err(e) => {
                let log = e
                    .output()
                    .and_then(|o| log_text(&o.stderr, o.stderr_truncated));
                draft.ran(run, log);
                Err(draft.fail(run_error(&e)))
            }
        }
    }

    /// The `http` ABI: stream the request into a fresh component instance.
    /// The instance task holds the admission guard, so it stays counted
    /// until it ends, also when it outlives its client; the activation is
    /// recorded when the instance finishes, which may be after the response
    /// head was sent (the body streams).
    async fn run_http(
        &self,
        h: &Arc<FunctionHandle>,
        req: Request,
        limits: &Limits,
        mut ready: Ready<'_>,
        draft: Draft,
    ) -> Result<Response, Error> {
        let Loaded::Http(pre) = ready.loaded else {
            unreachable!("checked by the caller")
        };
        let c = &h.version.config;
        let mut path = if req.path_info.is_empty() {
            "/".to_string()
        } else {
            req.path_info.clone()
        };
        if !req.query.is_empty() {
            path.push('?');
            path.push_str(&req.query);
        }
        let mut b = http::Request::builder().method(req.method).uri(path);
        if let Some(hs) = b.headers_mut() {
            *hs = req.headers;
        }
        if let (Some(hs), Some(p)) = (b.headers_mut(), &h.prefix) {
            hs.insert("x-forwarded-prefix", p.clone());
        }
        let max = limits.max_body_bytes as usize;
        let body = match req.body {
            RequestBody::Stream(s) => http_body_util::Limited::new(s, max)
                .map_err(|e| {
                    let e = body_error(e);
                    Box::new(e) as wisp_runtime::BoxError
                })
                .boxed_unsync(),
            RequestBody::Full(bytes) => http_body_util::Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
        };
        let hreq = match b.body(body) {
            Ok(r) => r,
            Err(e) => {
                return Err(draft.fail(Error::new(
                    ErrorKind::BadRequest,
                    format!("invalid request: {e}"),
                )));
            }
        };
        ready.admitted.start_running(&h.metrics);
        let t_run = Instant::now();
        let inv = HttpInvocation {
            env: &h.env,
            dirs: &c.dirs,
            limits,
            allow: h.allow.clone(),
            hold: Box::new(ready.admitted),
            lane: Some(h.metrics.lane.clone()),
        };
        let result = self
            .runtime
            .invoke_http(pre, hreq, inv, self.opts.guest_runtime.as_ref())
            .await;
        let out = match result {
            Ok(o) => o,
            Err(e) => {
                let mut draft = draft;
                let log = e
                    .output()
                    .and_then(|o| log_text(&o.stderr, o.stderr_truncated));
                draft.ran(t_run.elapsed(), log);
                return Err(draft.fail(run_error(&e)));
            }
        };
        let (parts, body) = out.response.into_parts();
        let id = draft.id().to_string();
        // The record is written when the last of its two holders lets go:
        // the instance's completion (outcome, log) and the response body
        // (bytes sent). The body ends only after the instance has, so a
        // client holding the whole response can read its record.
        let pending = draft.streaming(parts.status.as_u16());
        let (ended_tx, ended_rx) = oneshot::channel();
        let body = BodyExt::boxed_unsync(Counted {
            inner: Some(body),
            pending: Some(pending.clone()),
            instance_ended: ended_rx,
        });
        out.done.on_complete(move |d| {
            pending.instance_ended(t_run.elapsed(), &d.log, d.log_truncated, d.result);
            // Let go first, then tell the body: its drop is then the last.
            drop(pending);
            let _ = ended_tx.send(());
        });
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: ResponseBody::Stream(body),
            activation_id: id,
            cold: ready.cold,
            wait: ready.wait,
            init: ready.init,
            run: out.instantiate,
            instantiate: out.instantiate,
            guest_start: t_run + out.instantiate,
            guest_end: None,
            instance: Some(out.abort),
        })
    }
}

/// A finished instance that used at least this much memory is torn down
/// on the slow lane after the answer instead of before it: resetting its
/// dirtied memory costs more than the wake-up of another thread (about
/// 2 ms for a frame step on 4 MiB frames, against ~20 µs for one on
/// 16 KiB frames, where moving it was slower; docs/benchmarks.md).
const TEARDOWN_BESIDE_BYTES: usize = 4 << 20;

/// Whether `t` is torn down beside the caller: it used
/// [`TEARDOWN_BESIDE_BYTES`] or more and the node has slots to spare.
fn beside(t: &wisp_runtime::Teardown, node: &NodeLimits) -> bool {
    t.used_bytes() >= TEARDOWN_BESIDE_BYTES && node.instances_spare()
}

impl Executor {
    /// Drop a finished instance (with a guest runtime, only a large one
    /// comes this far: [`run_guest`](Self::run_guest) drops the others on
    /// the guest's thread): at once, or (when there is a guest runtime and
    /// the node has slots to spare) on the slow lane,
    /// holding `admitted`'s node instance slot until it is gone, so the
    /// node's count stays true. (Under pressure a slot being reset beside
    /// would turn the next request away: then the teardown stays inline.)
    fn tear_down(&self, t: wisp_runtime::Teardown, admitted: &mut Admitted) {
        match &self.opts.guest_runtime {
            Some(lanes) if beside(&t, &self.node) => {
                let slot = admitted.take_slot();
                drop(lanes.spawn_beside(async move {
                    drop(t);
                    drop(slot);
                }));
            }
            _ => drop(t),
        }
    }

    /// Run a command module's fresh instance (the one made `ahead`, if
    /// there is one) with this environment and stdin, on the guest runtime
    /// when there is one, `at` its place (aborted with the caller's future,
    /// so a client that leaves stops its guest).
    pub(crate) async fn run_guest(
        &self,
        h: &Arc<FunctionHandle>,
        loaded: &Loaded,
        env: Vec<(String, String)>,
        stdin: Bytes,
        limits: &Limits,
        at: GuestAt,
    ) -> Result<wisp_runtime::Output, RunError> {
        let GuestAt { place, ahead } = at;
        let Some(rt) = &self.opts.guest_runtime else {
            let inv = Invocation {
                args: &h.args,
                env: &env,
                stdin,
                dirs: &h.version.config.dirs,
                limits,
            };
            return self.runtime.invoke(loaded, inv).await;
        };
        // Owned: the guest may move to the slow lane's threads.
        let (runtime, loaded, h2) = (self.runtime.clone(), loaded.clone(), h.clone());
        let limits = limits.clone();
        let metrics = ahead.as_ref().map(|_| self.metrics.clone());
        let node = self.node.clone();
        let run = async move {
            let ahead = match ahead {
                Some(m) => m.take().await,
                None => None,
            };
            if let Some(m) = metrics {
                match ahead {
                    Some(_) => m.made_ahead_used.fetch_add(1, Relaxed),
                    None => m.made_ahead_missed.fetch_add(1, Relaxed),
                };
            }
            let inv = Invocation {
                args: &h2.args,
                env: &env,
                stdin,
                dirs: &h2.version.config.dirs,
                limits: &limits,
            };
            let mut r = match ahead {
                Some(a) => runtime.invoke_ahead(a, inv).await,
                None => runtime.invoke(&loaded, inv).await,
            };
            // A small instance is torn down here, on the guest's thread,
            // before the answer; a large one goes back to the caller.
            if let Ok(out) = &mut r
                && !out.teardown.as_ref().is_some_and(|t| beside(t, &node))
            {
                out.teardown = None;
            }
            r
        };
        let hint = Some(&h.metrics.lane);
        if place == Place::Here {
            return rt.run_here_for(hint, run).await;
        }
        let task = rt.spawn_for(hint, run);
        // If the caller goes away, stop the guest too.
        let _abort = wisp_runtime::AbortOnDrop(task.abort_handle());
        task.await.unwrap_or_else(|e| {
            Err(RunError::Internal(format!(
                "guest task ended abnormally: {e}"
            )))
        })
    }
}

/// A streamed response body that counts the bytes sent and ends only once
/// the instance has too: as with a CGI process, the response is complete
/// when the function is, and its record is queued before the last bytes go
/// out. Dropped before its end, it marks the activation cancelled.
struct Counted {
    /// `None` once the guest's body has ended.
    inner: Option<wisp_runtime::ResponseBody>,
    pending: Option<Arc<PendingRecord>>,
    instance_ended: oneshot::Receiver<()>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Some(p) = &self.pending {
            p.client_gone.store(true, Relaxed);
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = wisp_runtime::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        use std::task::Poll;
        let this = &mut *self;
        if let Some(inner) = &mut this.inner {
            match std::pin::Pin::new(inner).poll_frame(cx) {
                Poll::Ready(None) => this.inner = None,
                Poll::Ready(Some(Ok(f))) => {
                    if let (Some(d), Some(p)) = (f.data_ref(), &this.pending) {
                        p.bytes_out.fetch_add(d.len() as u64, Relaxed);
                    }
                    return Poll::Ready(Some(Ok(f)));
                }
                other => return other,
            }
        }
        // The guest's body is done; end the response with the instance.
        // (A dropped sender also means the instance is gone.)
        if std::pin::Pin::new(&mut this.instance_ended)
            .poll(cx)
            .is_pending()
        {
            return Poll::Pending;
        }
        this.pending = None;
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| http_body::SizeHint::with_exact(0))
    }
}

/// CGI header lines as an HTTP header map; lines that are not valid HTTP
/// names or values are dropped.
fn header_map(lines: Vec<(String, String)>) -> http::HeaderMap {
    let mut hs = http::HeaderMap::with_capacity(lines.len());
    for (k, v) in lines {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::try_from(v),
        ) {
            hs.append(k, v);
        }
    }
    hs
}
