//! The `http` ABI: components exporting `wasi:http/incoming-handler`
//! (the `wasi:http/proxy` world), served through `wasmtime-wasi-http`.
//!
//! Same life cycle as the command ABI: a fresh store and instance per
//! request from a cached `ProxyPre`, the same epoch deadline, memory
//! limiter and log capture. The `wasi:cli` interfaces are linked too (as
//! `wasmtime serve -Scli` does), so components built with Rust's own
//! `wasm32-wasip2` std run unchanged.
//!
//! Outbound HTTP goes through [`Outbound`]: only to the function's allowed
//! hosts (a denied call fails *inside* the guest with
//! `HTTP-request-denied` and is noted in the log), over a shared keep-alive
//! connection pool for plain HTTP.

use crate::engine::Runtime;
use crate::invoke::{
    Budget, Limiter, RunError, arm_deadline, classify, instantiate_error, preopen,
};
use crate::pipe::CappedPipe;
use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wisp_core::outbound::AllowList;
use wisp_core::{DirGrant, Limits};

/// Error type of bodies crossing the guest boundary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body streamed into a guest.
pub type GuestBody = UnsyncBoxBody<Bytes, BoxError>;
/// A response body streamed out of a guest.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Process-wide outbound HTTP client: keep-alive pool for `http://`.
pub(crate) type Pool = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>,
>;

pub(crate) fn new_pool() -> Pool {
    let mut c = hyper_util::client::legacy::connect::HttpConnector::new();
    c.set_connect_timeout(Some(Duration::from_secs(5)));
    c.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(c)
}

/// Per-store state of a component instance.
pub struct HttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: Outbound,
    pub(crate) limiter: Limiter,
}

impl WasiView for HttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The outbound policy of one request: allow-list, pool, log.
pub(crate) struct Outbound {
    allow: Arc<AllowList>,
    pool: Pool,
    log: CappedPipe,
}

/// Add a platform line to the activation log.
fn note(log: &CappedPipe, msg: String) {
    use wasmtime_wasi::p2::OutputStream;
    let _ = log.clone().write(Bytes::from(msg));
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        let uri = request.uri().clone();
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !self.allow.allows(&scheme, &host, port) {
            note(
                &self.log,
                format!(
                    "[wisp] outbound request to {scheme}://{host}:{port} denied: not in allowed_outbound_hosts\n"
                ),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let pool = self.pool.clone();
        let log = self.log.clone();
        Box::new(async move {
            let done: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send> =
                Box::new(async { Ok(()) });
            if scheme == "https" {
                // TLS: a fresh connection through wasmtime-wasi-http's default client.
                let (resp, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
                return Ok((
                    resp.map(|b| b.boxed_unsync()),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ));
            }
            let connect = options
                .and_then(|o| o.connect_timeout)
                .unwrap_or(Duration::from_secs(10));
            let first_byte = options
                .and_then(|o| o.first_byte_timeout)
                .unwrap_or(Duration::from_secs(600));
            let fut = pool.request(request);
            let resp = match tokio::time::timeout(connect.max(first_byte), fut).await {
                Err(_) => return Err(wasmtime_wasi_http::Error::ConnectionTimeout),
                Ok(Err(e)) => {
                    let code = if e.is_connect() {
                        wasmtime_wasi_http::Error::ConnectionRefused
                    } else {
                        wasmtime_wasi_http::Error::HttpProtocolError
                    };
                    note(
                        &log,
                        format!("[wisp] outbound request to {uri} failed: {e}\n"),
                    );
                    return Err(code);
                }
                Ok(Ok(r)) => r,
            };
            let resp = resp.map(|b| b.map_err(wasmtime_wasi_http::Error::from).boxed_unsync());
            Ok((resp, done))
        })
    }
}

/// What an `http` request hands the guest.
pub struct HttpInvocation<'a> {
    /// The function's env (no CGI variables: the request itself is typed).
    pub env: &'a [(String, String)],
    /// Directories to preopen.
    pub dirs: &'a [DirGrant],
    /// Limits to enforce.
    pub limits: &'a Limits,
    /// Outbound allow-list; its `tcp://`/`udp://` entries grant `wasi:sockets`.
    pub allow: Arc<AllowList>,
    /// Whatever the caller needs kept alive until the instance ends (its
    /// admission slots): the instance task owns it and drops it last.
    pub hold: Box<dyn Send>,
    /// The function's lane history (see [`crate::LaneHint`]), if tracked.
    pub lane: Option<Arc<crate::LaneHint>>,
}

/// A component's answer: the response head and a body that streams while
/// the instance keeps running, plus the future of the instance's end.
pub struct HttpOutput {
    /// Status, headers and streaming body.
    pub response: http::Response<ResponseBody>,
    /// The end of the instance (body written, instance dropped): register
    /// what to do with its outcome and log.
    pub done: Completion,
    /// Time to instantiate.
    pub instantiate: Duration,
}

/// How a component run ended.
pub struct HttpDone {
    /// `Err` if it trapped or timed out after answering.
    pub result: Result<(), RunError>,
    /// stdout + stderr, capped.
    pub log: Bytes,
    /// Whether the log was truncated.
    pub log_truncated: bool,
    /// Total time the instance lived.
    pub run: Duration,
}

type OnDone = Box<dyn FnOnce(HttpDone) + Send>;

enum DoneState {
    Pending,
    Waiting(OnDone),
    Finished(HttpDone),
}

/// The end of a component instance that outlives its response head.
///
/// The instance task finishes it; whoever holds the `Completion` says what
/// to do then with [`Completion::on_complete`]. The callback runs on the
/// instance's own task when it ends (or at once if it already has), so
/// finishing an activation costs no extra task, channel or wake-up.
pub struct Completion(Arc<std::sync::Mutex<DoneState>>);

impl Completion {
    fn new() -> Completion {
        Completion(Arc::new(std::sync::Mutex::new(DoneState::Pending)))
    }

    /// Run `f` with the outcome once the instance has ended.
    pub fn on_complete(self, f: impl FnOnce(HttpDone) + Send + 'static) {
        let mut st = self.0.lock().unwrap();
        match std::mem::replace(&mut *st, DoneState::Pending) {
            DoneState::Finished(d) => {
                drop(st);
                f(d)
            }
            _ => *st = DoneState::Waiting(Box::new(f)),
        }
    }

    /// Wait for the instance to end.
    pub async fn wait(self) -> HttpDone {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.on_complete(move |d| {
            let _ = tx.send(d);
        });
        // The instance task always finishes the completion, also when it is
        // cancelled (see `Finish`), so the sender is never just dropped.
        rx.await.expect("instance task finishes its completion")
    }

    fn finish(&self, d: HttpDone) {
        let mut st = self.0.lock().unwrap();
        match std::mem::replace(&mut *st, DoneState::Pending) {
            DoneState::Waiting(f) => {
                drop(st);
                f(d)
            }
            _ => *st = DoneState::Finished(d),
        }
    }
}

/// Aborts the instance task when dropped while armed.
struct AbortUnlessDone(Option<tokio::task::AbortHandle>);

impl Drop for AbortUnlessDone {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// `wasi:sockets` for a component: off unless its allow-list names `tcp://`
/// or `udp://` addresses, and then only to those addresses. Name lookup
/// stays off: grants are by address.
pub(crate) fn grant_sockets(b: &mut WasiCtxBuilder, allow: &Arc<AllowList>) {
    let tcp = allow.grants_sockets("tcp");
    let udp = allow.grants_sockets("udp");
    b.allow_tcp(tcp).allow_udp(udp).allow_ip_name_lookup(false);
    if tcp || udp {
        let allow = allow.clone();
        b.socket_addr_check(move |addr, use_| {
            use wasmtime_wasi::sockets::SocketAddrUse as U;
            // Grants are outbound: the implicit bind before a connect or
            // send (wildcard address, port 0) is fine; serving is not.
            let implicit = addr.ip().is_unspecified() && addr.port() == 0;
            let ok = match use_ {
                U::TcpBind => implicit || allow.allows_socket("tcp", addr),
                U::TcpConnect => allow.allows_socket("tcp", addr),
                U::UdpBind => implicit || allow.allows_socket("udp", addr),
                U::UdpSend | U::UdpReceive => allow.allows_socket("udp", addr),
                U::TcpListen | U::TcpAccept => false,
            };
            Box::pin(async move { ok })
        });
    }
}

/// Finishes a completion even if the instance task is dropped mid-way
/// (runtime shutdown): the waiter hears of it instead of hanging.
struct Finish {
    done: Option<Completion>,
    t0: Instant,
}

impl Finish {
    fn complete(mut self, d: HttpDone) {
        if let Some(c) = self.done.take() {
            c.finish(d)
        }
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if let Some(c) = self.done.take() {
            c.finish(HttpDone {
                result: Err(RunError::Internal(
                    "the instance task was cancelled (server shutting down)".into(),
                )),
                log: Bytes::new(),
                log_truncated: false,
                run: self.t0.elapsed(),
            })
        }
    }
}

impl Runtime {
    /// Serve one request with a fresh instance of a `wasi:http` component.
    ///
    /// The instance runs in a task spawned on `guests` (or on the current
    /// runtime when `None`). Returns once the guest has set its response
    /// (or failed before); the body streams afterwards and
    /// [`HttpOutput::done`] reports the end.
    pub async fn invoke_http(
        &self,
        pre: &ProxyPre<HttpState>,
        req: http::Request<GuestBody>,
        inv: HttpInvocation<'_>,
        guests: Option<&crate::GuestLanes>,
    ) -> Result<HttpOutput, RunError> {
        let t0 = Instant::now();
        let deadline = t0 + inv.limits.timeout();
        let budget = Budget::new(inv.limits.memory_bytes as usize);
        let log = CappedPipe::new(inv.limits.max_log_bytes as usize, false).with_budget(&budget);
        let mut b = WasiCtxBuilder::new();
        b.stdout(log.clone()).stderr(log.clone()).envs(inv.env);
        preopen(&mut b, inv.dirs)?;
        grant_sockets(&mut b, &inv.allow);
        let hold = inv.hold;
        let lane = inv.lane;
        let state = HttpState {
            wasi: b.build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: Outbound {
                allow: inv.allow,
                pool: self.pool.clone(),
                log: log.clone(),
            },
            limiter: Limiter::for_component(budget, inv.limits.memory_bytes as usize),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        arm_deadline(&mut store, deadline);

        let (parts, body) = req.into_parts();
        let body = body.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(e.to_string())));
        let req = http::Request::from_parts(parts, body);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (wreq, out) = {
            let mut h = store.data_mut().http();
            let wreq = h
                .new_incoming_request(Scheme::Http, req)
                .map_err(|e| RunError::Internal(format!("{e:#}")))?;
            let out = h
                .new_response_outparam(tx)
                .map_err(|e| RunError::Internal(format!("{e:#}")))?;
            (wreq, out)
        };

        let pre = pre.clone();
        let limits = inv.limits.clone();
        let (inst_tx, inst_rx) = tokio::sync::oneshot::channel::<Duration>();
        let done = Completion::new();
        let finish = Finish {
            done: Some(Completion(done.0.clone())),
            t0,
        };
        let task = async move {
            let _hold = hold;
            let run = async {
                let proxy = pre
                    .instantiate_async(&mut store)
                    .await
                    .map_err(instantiate_error)?;
                let _ = inst_tx.send(t0.elapsed());
                Ok(proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, wreq, out)
                    .await)
            };
            let outcome = tokio::time::timeout_at(deadline.into(), run).await;
            let denied = store.data().limiter.denied;
            drop(store);
            let result = match outcome {
                Err(_) => Err(RunError::Timeout(limits.timeout(), None)),
                Ok(Err(e)) => Err(e),
                Ok(Ok(Ok(()))) => Ok(()),
                Ok(Ok(Err(e))) => classify(e, &limits, denied),
            };
            let (log, log_truncated) = log.take();
            finish.complete(HttpDone {
                result,
                log,
                log_truncated,
                run: t0.elapsed(),
            });
        };
        let handle = match guests {
            Some(lanes) => lanes.spawn_for(lane.as_ref(), task),
            None => tokio::spawn(task),
        };
        // Until the head is out, the instance belongs to this call: if the
        // caller goes away (its client disconnected), stop the instance and
        // release what it holds. Once the head is out it runs to its end.
        let mut abort = AbortUnlessDone(Some(handle.abort_handle()));

        match rx.await {
            Ok(Ok(resp)) => {
                let instantiate = inst_rx.await.unwrap_or_default();
                let max = inv.limits.max_response_bytes as usize;
                let resp = resp.map(|b: HyperOutgoingBody| {
                    http_body_util::Limited::new(b.map_err(|e| Box::new(e) as BoxError), max)
                        .boxed_unsync()
                });
                abort.0 = None;
                Ok(HttpOutput {
                    response: resp,
                    done,
                    instantiate,
                })
            }
            Ok(Err(code)) => {
                let _ = done.wait().await;
                Err(RunError::Trap(
                    format!("the component answered with an error: {code:?}"),
                    None,
                ))
            }
            Err(_) => {
                // The outparam was dropped without a response: see why.
                let d = done.wait().await;
                match d.result {
                    Err(e) => Err(e.with_log(d.log, d.log_truncated)),
                    Ok(()) => Err(RunError::Trap(
                        "the component returned without setting a response".into(),
                        None,
                    )),
                }
            }
        }
    }
}
