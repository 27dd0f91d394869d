//! Who may call what: the bearer token of `/v1/*` (and `/metrics` unless it
//! is opened), and the `Host`/`Origin` check that keeps web pages a
//! developer visits from reaching a server on their loopback (DNS
//! rebinding, cross-site requests).

use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use wisp_core::ErrorKind;

/// Access policy of a server.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Bearer token required on `/v1/*` (and `/metrics`), if any.
    pub token: Option<String>,
    /// Serve `/metrics` without the token.
    pub public_metrics: bool,
    /// Host names requests may be addressed to, if checked.
    pub hosts: Option<HostCheck>,
}

/// The names a server answers to. A request whose `Host` (or, on `/v1`, an
/// `Origin`) names anything else is refused with 403.
#[derive(Debug, Clone)]
pub struct HostCheck {
    names: Vec<String>,
}

impl HostCheck {
    /// The loopback names (`localhost`, `127.0.0.1`, `::1`) plus `extra`.
    pub fn loopback(extra: &[String]) -> HostCheck {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        names.extend(extra.iter().map(|n| n.to_ascii_lowercase()));
        HostCheck { names }
    }

    /// Exactly `names`.
    pub fn only(names: &[String]) -> HostCheck {
        HostCheck {
            names: names.iter().map(|n| n.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether `authority` (`host[:port]`, `[v6]:port`) names this server.
    pub fn allows(&self, authority: &str) -> bool {
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or(""),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.names.contains(&host)
    }

    /// The host of an `Origin` value (`scheme://host[:port]`), or `None`
    /// for an opaque `null` origin.
    fn origin_allows(&self, origin: &str) -> bool {
        match origin.split_once("://") {
            Some((_, authority)) => self.allows(authority),
            None => false,
        }
    }
}

fn forbidden(what: &str, value: &str) -> Response {
    ApiError::new(
        ErrorKind::Forbidden,
        format!(
            "{what} {value:?} is not a name this server answers to \
             (wisp serve --allow-host NAME adds one)"
        ),
    )
    .into_response()
}

/// Refuse requests addressed to a host name the server doesn't serve.
pub(crate) async fn host_check(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if let Some(hc) = &st.access.hosts
        && let Some(host) = req.headers().get(header::HOST)
    {
        let host = host.to_str().unwrap_or("\u{fffd}");
        if !hc.allows(host) {
            return forbidden("Host", host);
        }
    }
    next.run(req).await
}

fn token_ok(st: &AppState, req: &Request) -> bool {
    let Some(token) = &st.access.token else {
        return true;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare digests: constant time, and the length of the token leaks nothing.
    let (a, b) = (
        Sha256::digest(given.as_bytes()),
        Sha256::digest(token.as_bytes()),
    );
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn unauthorized() -> Response {
    ApiError::new(
        ErrorKind::Unauthorized,
        "missing or wrong bearer token (Authorization: Bearer <token>)",
    )
    .into_response()
}

/// `/v1/*`: the token, and no cross-site requests from a foreign origin.
pub(crate) async fn api_auth(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if let (Some(hc), Some(origin)) = (&st.access.hosts, req.headers().get(header::ORIGIN)) {
        let origin = origin.to_str().unwrap_or("null");
        if !hc.origin_allows(origin) {
            return forbidden("Origin", origin);
        }
    }
    if !token_ok(&st, &req) {
        return unauthorized();
    }
    next.run(req).await
}

/// `/metrics`: the token unless the operator opened it.
pub(crate) async fn metrics_auth(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if !st.access.public_metrics && !token_ok(&st, &req) {
        return unauthorized();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names() {
        let hc = HostCheck::loopback(&["wisp.internal".into()]);
        for ok in [
            "localhost:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "localhost",
            "Wisp.Internal:9",
            "localhost.:8080",
        ] {
            assert!(hc.allows(ok), "{ok}");
        }
        for bad in [
            "evil.com:8080",
            "127.0.0.2:8080",
            "localhost.evil.com",
            "[::2]:80",
            "",
        ] {
            assert!(!hc.allows(bad), "{bad}");
        }
        assert!(hc.origin_allows("http://localhost:3000"));
        assert!(!hc.origin_allows("https://evil.com"));
        assert!(!hc.origin_allows("null"));
    }
}
