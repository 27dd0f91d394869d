//! HTTP functions in a container: a small hyper server on the container's
//! listen address, a fresh instance per request.
//!
//! The request path is `wisp-runtime`'s, as under `wisp serve`: a
//! `wasi:http` component through [`Runtime::invoke_http`], a command module
//! marked `wisp.abi=http` through [`Runtime::invoke`] with the CGI
//! translation of `wisp-core`. What `wisp serve` adds around it (routing,
//! activation records, SQLite) has no place in a container; admission is a
//! semaphore of `max_concurrency` permits, which also tells when the last
//! request has finished at shutdown.

use crate::stdio::LogSink;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wisp_core::outbound::AllowList;
use wisp_core::{DirGrant, Limits};
use wisp_runtime::{
    CgiRequest, HttpInvocation, Invocation, Loaded, ResponseBody, RunError, Runtime, StopHandle,
};

/// Everything a request needs, fixed at `create`.
pub struct HttpFunction {
    /// The container id (the CGI `SCRIPT_NAME`).
    pub name: String,
    /// The template: a component, or a command module speaking CGI.
    pub loaded: Loaded,
    /// The container's env.
    pub env: Vec<(String, String)>,
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Per-request limits (memory from the spec; the rest Wisp's defaults).
    pub limits: Limits,
    /// Outbound HTTP allow-list.
    pub allow: Arc<AllowList>,
    /// Where guests' stdout/stderr and the shim's request errors go.
    pub log: LogSink,
    /// The daemon's instance slots, shared by all its containers (its pool
    /// size): a request waits for one rather than fail to instantiate.
    pub node_slots: Arc<Semaphore>,
}

/// What a request holds while its instance lives: its function's permit
/// (which tells when the function has drained) and a slot of the daemon.
type Held = (OwnedSemaphorePermit, OwnedSemaphorePermit);

/// How a server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every in-flight request finished within the grace period.
    Drained,
    /// Stopped at once, or the grace period ran out.
    Killed,
}

/// Serve until `stop` (drain up to `grace`, or none when `grace` is zero).
pub async fn serve(
    runtime: Arc<Runtime>,
    f: Arc<HttpFunction>,
    listener: TcpListener,
    stop: StopHandle,
    grace: impl Fn() -> Duration,
) -> Ended {
    let slots = f.limits.max_concurrency as usize;
    let permits = Arc::new(Semaphore::new(slots));
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    loop {
        let (stream, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    log::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stop.stopped() => break,
        };
        let _ = stream.set_nodelay(true);
        let (rt, f, permits) = (runtime.clone(), f.clone(), permits.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let (rt, f, permits) = (rt.clone(), f.clone(), permits.clone());
                async move {
                    let (Ok(permit), Ok(slot)) = (
                        permits.acquire_owned().await,
                        f.node_slots.clone().acquire_owned().await,
                    ) else {
                        return Ok::<_, std::convert::Infallible>(text(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "shutting down",
                        ));
                    };
                    Ok(handle(&rt, &f, req, (permit, slot), peer, port).await)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
    drop(listener);
    let grace = grace();
    if grace.is_zero() {
        return Ended::Killed;
    }
    // All permits back = no request in flight (a component's permit is
    // held by its instance until it ends).
    match tokio::time::timeout(grace, permits.acquire_many(slots as u32)).await {
        Ok(_) => Ended::Drained,
        Err(_) => Ended::Killed,
    }
}

/// Bind `addr` (on the calling runtime, so in its network namespace).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

async fn handle(
    runtime: &Runtime,
    f: &HttpFunction,
    req: Request<Incoming>,
    permit: Held,
    peer: SocketAddr,
    port: u16,
) -> Response<ResponseBody> {
    match &f.loaded {
        Loaded::Http(pre) => {
            let max = f.limits.max_body_bytes as usize;
            let req =
                req.map(|b| -> wisp_runtime::GuestBody { Limited::new(b, max).boxed_unsync() });
            let inv = HttpInvocation {
                env: &f.env,
                dirs: &f.dirs,
                limits: &f.limits,
                allow: f.allow.clone(),
                hold: Box::new(permit),
                lane: None,
            };
            match runtime.invoke_http(pre, req, inv, None).await {
                Ok(out) => {
                    let log = f.log.clone();
                    out.done.on_complete(move |d| {
                        log.write(d.log);
                        if let Err(e) = d.result {
                            log.line(format_args!("wisp: request failed after its response: {e}"));
                        }
                    });
                    out.response
                }
                Err(e) => failure(f, e),
            }
        }
        Loaded::Command(_) => cgi(runtime, f, req, permit, peer, port).await,
    }
}

/// A command module marked HTTP: one CGI request, as under `wisp serve`.
async fn cgi(
    runtime: &Runtime,
    f: &HttpFunction,
    req: Request<Incoming>,
    _permit: Held,
    peer: SocketAddr,
    port: u16,
) -> Response<ResponseBody> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, f.limits.max_body_bytes as usize)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body: {e}"));
        }
    };
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_string())
        .unwrap_or_else(|| "localhost".into());
    let peer_ip = peer.ip().to_string();
    let cgi = CgiRequest {
        method: parts.method.as_str(),
        path_info: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        content_length: body.len(),
        function: &f.name,
        server_name: &host,
        server_port: port,
        remote_addr: &peer_ip,
    };
    let env = wisp_runtime::build_cgi_env(&cgi, &f.env);
    let args = [f.name.clone()];
    let r = runtime
        .invoke(
            &f.loaded,
            Invocation {
                args: &args,
                env: &env,
                stdin: body,
                dirs: &f.dirs,
                limits: &f.limits,
            },
        )
        .await;
    match r {
        Ok(out) => {
            f.log.write(out.stderr);
            let resp = wisp_runtime::parse_cgi_response(out.stdout);
            let mut b = Response::builder().status(resp.status);
            for (k, v) in &resp.headers {
                b = b.header(k, v);
            }
            b.body(full(resp.body))
                .unwrap_or_else(|e| text(StatusCode::BAD_GATEWAY, &format!("bad CGI header: {e}")))
        }
        Err(e) => failure(f, e),
    }
}

/// Log a failed request to the container's stderr and answer for it.
fn failure(f: &HttpFunction, e: RunError) -> Response<ResponseBody> {
    if let Some(o) = e.output() {
        f.log.write(o.stderr.clone());
    }
    f.log.line(format_args!("wisp: request failed: {e}"));
    let status = match e {
        RunError::Timeout(..) => StatusCode::GATEWAY_TIMEOUT,
        RunError::PoolExhausted(_) => StatusCode::SERVICE_UNAVAILABLE,
        RunError::ResponseTooLarge(..) => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, &format!("{e}"))
}

fn full(b: Bytes) -> ResponseBody {
    Full::new(b).map_err(|n| match n {}).boxed_unsync()
}

fn text(status: StatusCode, msg: &str) -> Response<ResponseBody> {
    let mut r = Response::new(full(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
