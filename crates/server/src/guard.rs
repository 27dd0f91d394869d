//! Who may call what: the admin's bearer token or a namespace's key on
//! `/v1/*` (and the token on `/metrics` unless it is opened), and the
//! `Host`/`Origin` check that keeps web pages a developer visits from
//! reaching a server on their loopback (DNS rebinding, cross-site
//! requests).
//!
//! A request to `/v1` is made by a [`Caller`]: the admin (the server's
//! token, or anyone on a loopback server without one) or a namespace (its
//! `uuid:key`, as `Authorization: Basic base64(uuid:key)` the way
//! OpenWhisk clients send it, or `Bearer uuid:key`). The unscoped routes
//! (`/v1/functions/...`) act on the caller's namespace: `default` for the
//! admin. `/v1/namespaces/{ns}/...` names one; `_` is the caller's; a key
//! reaches only its own.

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

/// Who made a `/v1` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The server's token (or no token configured): every namespace.
    Admin,
    /// A namespace's key: that namespace only.
    Namespace(String),
}

impl Caller {
    /// The namespace the unscoped routes act on.
    pub fn namespace(&self) -> &str {
        match self {
            Caller::Admin => wisp_core::DEFAULT_NAMESPACE,
            Caller::Namespace(n) => n,
        }
    }

    /// Whether this caller may act on `ns`.
    pub fn may(&self, ns: &str) -> bool {
        match self {
            Caller::Admin => true,
            Caller::Namespace(n) => n == ns,
        }
    }
}

/// The namespace a `/v1` request acts on: the route's `{ns}` (`_` being
/// the caller's), else the caller's. 403 for another namespace's key, 404
/// for a namespace that does not exist.
pub(crate) fn scope(st: &AppState, caller: &Caller, ns: Option<&str>) -> Result<String, ApiError> {
    let ns = match ns {
        None | Some("_") => caller.namespace(),
        Some(n) => n,
    };
    if !caller.may(ns) {
        return Err(ApiError::new(
            ErrorKind::Forbidden,
            format!("this key is not authorized for namespace {ns:?}"),
        ));
    }
    if !st.exec.namespace_exists(ns) {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("namespace {ns:?} not found"),
        ));
    }
    Ok(ns.to_string())
}

/// Constant-time equality of two secrets of any length (their digests).
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// `uuid:key` from `Authorization: Basic base64(uuid:key)` or `Bearer uuid:key`.
pub fn namespace_key(authorization: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let pair = if let Some(b64) = authorization.strip_prefix("Basic ") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        String::from_utf8(raw).ok()?
    } else {
        authorization.strip_prefix("Bearer ")?.to_string()
    };
    let (uuid, key) = pair.split_once(':')?;
    Some((uuid.to_string(), key.to_string()))
}

/// Who is calling, if the credentials are good. `None`: refuse with 401.
fn caller(st: &AppState, req: &Request) -> Option<Caller> {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let (Some(token), Some(given)) = (
        &st.access.token,
        auth.and_then(|a| a.strip_prefix("Bearer ")),
    ) && same_secret(given, token)
    {
        return Some(Caller::Admin);
    }
    match auth {
        Some(a) => {
            let (uuid, key) = namespace_key(a)?;
            st.exec.authenticate(&uuid, &key).map(Caller::Namespace)
        }
        // No token configured (a loopback server): the admin.
        None if st.access.token.is_none() => Some(Caller::Admin),
        None => None,
    }
}

fn token_ok(st: &AppState, req: &Request) -> bool {
    caller(st, req) == Some(Caller::Admin)
}

fn unauthorized() -> Response {
    ApiError::new(
        ErrorKind::Unauthorized,
        "missing or wrong credentials (Authorization: Bearer <token>, or a namespace's key as Basic base64(uuid:key))",
    )
    .into_response()
}

/// `/v1/*`: the token, and no cross-site requests from a foreign origin.
pub(crate) async fn api_auth(
    State(st): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let (Some(hc), Some(origin)) = (&st.access.hosts, req.headers().get(header::ORIGIN)) {
        let origin = origin.to_str().unwrap_or("null");
        if !hc.origin_allows(origin) {
            return forbidden("Origin", origin);
        }
    }
    let Some(who) = caller(&st, &req) else {
        return unauthorized();
    };
    req.extensions_mut().insert(who);
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
