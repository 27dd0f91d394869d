//! A small HTTP/1.1 client (hyper), with keep-alive on or off.

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A response, fully read.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// A header as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    /// Body as UTF-8 (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Fail unless 2xx.
    pub fn ok(self) -> Result<Reply> {
        if self.status.is_success() {
            Ok(self)
        } else {
            anyhow::bail!("HTTP {}: {}", self.status, self.text().trim_end())
        }
    }
}

/// HTTP client. With `keep_alive = false` every request opens a new TCP
/// connection and sends `Connection: close` (no idle pool).
#[derive(Clone)]
pub struct Http {
    inner: HyperClient<HttpConnector, Full<Bytes>>,
    keep_alive: bool,
}

impl Http {
    /// A client.
    pub fn new(keep_alive: bool) -> Http {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let mut b = HyperClient::builder(TokioExecutor::new());
        b.pool_idle_timeout(Duration::from_secs(30));
        if !keep_alive {
            b.pool_max_idle_per_host(0);
        }
        Http {
            inner: b.build(conn),
            keep_alive,
        }
    }

    /// Send a request to an absolute `url`.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !self.keep_alive {
            req = req.header("connection", "close");
        }
        let req = req
            .body(Full::new(body))
            .with_context(|| format!("building request to {url}"))?;
        let resp = self
            .inner
            .request(req)
            .await
            .with_context(|| format!("requesting {url}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .context("reading response body")?
            .to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// GET.
    pub async fn get(&self, url: &str) -> Result<Reply> {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }
}

/// Encode a `multipart/form-data` body; returns (content type, body).
pub fn multipart(parts: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "wisp-bench-7f4a7c15b1e2d3c4";
    let mut body = Vec::new();
    for (name, ctype, data) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: {ctype}\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
