//! `ANY /fn/{name}[/{*path}]`: run a function for an HTTP request.

use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::Arc;
use wisp_core::{Abi, ErrorKind};
use wisp_executor::{RequestBody, ResponseBody};

/// `{name}` (default namespace) or `{ns}` and `{name}`, and the sub-path.
#[derive(serde::Deserialize)]
pub(crate) struct Target {
    ns: Option<String>,
    name: String,
    path: Option<String>,
}

pub(crate) async fn invoke(
    State(st): State<Arc<AppState>>,
    Path(t): Path<Target>,
    req: Request,
) -> Response {
    let path_info = match t.path {
        Some(p) => {
            let mut s = String::with_capacity(p.len() + 1);
            s.push('/');
            s.push_str(&p);
            s
        }
        None => String::new(),
    };
    let ns = t.ns.as_deref().unwrap_or(wisp_core::DEFAULT_NAMESPACE);
    run(st, ns, t.name, path_info, req)
        .await
        .unwrap_or_else(|e| e.into_response())
}

async fn run(
    st: Arc<AppState>,
    ns: &str,
    name: String,
    path_info: String,
    req: Request,
) -> Result<Response, ApiError> {
    let remote_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    // A private function (an OpenWhisk action that is not a web action) is
    // as absent here as one that does not exist.
    let Some(h) = st
        .exec
        .get(ns, &name)
        .filter(|h| !h.version().config.private)
    else {
        st.exec.metrics().error(ErrorKind::NotFound);
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("function {name:?} not found"),
        ));
    };
    crate::conn::account(|now_ms| h.hit(now_ms));
    let max = h.version().config.limits.max_body_bytes;
    let (parts, body) = req.into_parts();
    let too_large = || {
        st.exec.metrics().error(ErrorKind::PayloadTooLarge);
        ApiError::new(
            ErrorKind::PayloadTooLarge,
            format!("request body exceeds the function's {max}-byte limit"),
        )
    };
    if let Some(len) = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && len > max
    {
        return Err(too_large());
    }
    // Read (command modules) or streamed (components) only once admitted,
    // against the function's limit and the node's buffer budget.
    // A body hyper knows is empty (a GET, `Content-Length: 0`) needs no
    // stream: most invocations take this path.
    let body = if http_body::Body::is_end_stream(&body) {
        RequestBody::Full(bytes::Bytes::new())
    } else {
        RequestBody::Stream(
            body.map_err(|e| Box::new(e) as wisp_runtime::BoxError)
                .boxed_unsync(),
        )
    };
    let request = wisp_executor::Request {
        query: parts.uri.query().unwrap_or("").to_string(),
        method: parts.method,
        path_info,
        headers: parts.headers,
        body,
        remote_addr,
        server_name: st.server_name.clone(),
        server_port: st.server_port,
    };
    let r = st.exec.invoke(&h, request).await?;

    let mut resp = match r.body {
        ResponseBody::Full(b) => Response::new(Body::from(b)),
        ResponseBody::Stream(s) => Response::new(Body::new(s)),
    };
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    let hs = resp.headers_mut();
    *hs = r.headers;
    // Framing is the server's business, not the guest's.
    for name in [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::UPGRADE,
    ] {
        hs.remove(name);
    }
    hs.remove("keep-alive");
    if !hs.contains_key(header::CONTENT_TYPE) && h.version().abi == Abi::Command {
        hs.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&r.activation_id) {
        hs.insert("wisp-activation-id", v);
    }
    hs.insert(
        "wisp-cold",
        HeaderValue::from_static(if r.cold { "true" } else { "false" }),
    );
    let timing = format!(
        "wait;dur={:.3}, init;dur={:.3}, run;dur={:.3}",
        r.wait.as_secs_f64() * 1e3,
        r.init.as_secs_f64() * 1e3,
        r.run.as_secs_f64() * 1e3
    );
    if let Ok(v) = HeaderValue::from_str(&timing) {
        hs.insert("server-timing", v);
    }
    Ok(resp)
}
