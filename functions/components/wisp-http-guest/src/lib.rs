//! Shared helpers for Wisp's `wasi:http/proxy` guest components (WASI 0.2,
//! `wasm32-wasip2`, bindings from the `wasi` 0.14 crate):
//!
//! - [`get`], [`put`] and [`send`]: blocking outbound HTTP over
//!   `wasi:http/outgoing-handler` (the host may deny it; every failure comes
//!   back as an `Err`, never a trap);
//! - [`Params`]: the request's query string, percent-decoded;
//! - [`respond`], [`start_response`], [`write_all`]: answering through the
//!   `response-outparam`.
//!
//! Resource lifetimes follow the WASI rules: a stream is dropped before its
//! body is finished (or dropped), a body before its request/response.

use std::fmt::Write as _;

pub use wasi;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};
use wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Largest write `blocking-write-and-flush` accepts in one call.
const MAX_WRITE: usize = 4096;
/// How much one read asks for.
const READ_CHUNK: u64 = 64 * 1024;

// ---------------------------------------------------------------- outbound

/// A completed outbound exchange.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header names and values as the host gave them (names lowercase on Wasmtime).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// Why an outbound request failed.
#[derive(Debug)]
pub enum OutboundError {
    /// The host or the network said no (`HttpRequestDenied`, `ConnectionRefused`,
    /// DNS errors, ...): the `wasi:http` error code.
    Http(ErrorCode),
    /// Anything else: a malformed URL, an invalid header, a stream failure
    /// without an error code.
    Other(String),
}

impl std::fmt::Display for OutboundError {
    /// `Http` shows the `ErrorCode`'s `Debug` form (e.g. `HttpRequestDenied`,
    /// `ConnectionRefused`, `DnsError(DnsErrorPayload { .. })`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutboundError::Http(code) => write!(f, "{code:?}"),
            OutboundError::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for OutboundError {}

impl From<ErrorCode> for OutboundError {
    fn from(code: ErrorCode) -> Self {
        OutboundError::Http(code)
    }
}

/// `GET url` → (status, body). Errors are [`OutboundError`]'s `Display`.
pub fn get(url: &str) -> Result<(u16, Vec<u8>), String> {
    let resp = send(Method::Get, url, &[], None).map_err(|e| e.to_string())?;
    Ok((resp.status, resp.body))
}

/// `PUT url` with `body` (sent with `content-type` and `content-length`) → status.
/// The response body is read and discarded.
pub fn put(url: &str, content_type: &str, body: &[u8]) -> Result<u16, String> {
    let headers = [("content-type", content_type.as_bytes())];
    let resp = send(Method::Put, url, &headers, Some(body)).map_err(|e| e.to_string())?;
    Ok(resp.status)
}

/// The parts of an absolute `http://` / `https://` URL that `outgoing-request` wants.
#[derive(Debug, PartialEq, Eq)]
pub struct Url<'a> {
    pub scheme: &'a str,
    pub authority: &'a str,
    /// Path and query, always starting with `/` (the fragment is dropped).
    pub path_with_query: String,
}

/// Splits `scheme://authority/path?query#fragment`.
pub fn parse_url(url: &str) -> Result<Url<'_>, String> {
    let url = url.trim();
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not an absolute URL: {url:?}"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(format!("bad URL scheme in {url:?}"));
    }
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.is_empty() {
        return Err(format!("no host in URL {url:?}"));
    }
    let path_with_query = if tail.is_empty() {
        "/".to_string()
    } else if tail.starts_with('?') {
        format!("/{tail}")
    } else {
        tail.to_string()
    };
    Ok(Url {
        scheme,
        authority,
        path_with_query,
    })
}

/// Sends one request and waits for the whole response (blocking on the
/// future's pollable, reading the body stream to its end).
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &[u8])],
    body: Option<&[u8]>,
) -> Result<Response, OutboundError> {
    let url = parse_url(url).map_err(OutboundError::Other)?;

    let fields = Fields::new();
    for (name, value) in headers {
        fields
            .append(name, value)
            .map_err(|e| OutboundError::Other(format!("request header {name}: {e:?}")))?;
    }
    if let Some(body) = body {
        fields
            .append("content-length", body.len().to_string().as_bytes())
            .map_err(|e| OutboundError::Other(format!("request header content-length: {e:?}")))?;
    }

    let request = OutgoingRequest::new(fields);
    request
        .set_method(&method)
        .map_err(|()| OutboundError::Other(format!("invalid method {method:?}")))?;
    let scheme = match url.scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| OutboundError::Other(format!("invalid scheme {:?}", url.scheme)))?;
    request
        .set_authority(Some(url.authority))
        .map_err(|()| OutboundError::Other(format!("invalid authority {:?}", url.authority)))?;
    request
        .set_path_with_query(Some(&url.path_with_query))
        .map_err(|()| OutboundError::Other(format!("invalid path {:?}", url.path_with_query)))?;

    // The body must be taken before `handle` consumes the request; it is
    // written after, so a host that streams it to the wire never deadlocks.
    let outgoing_body = match body {
        Some(_) => Some(
            request
                .body()
                .map_err(|()| OutboundError::Other("request body already taken".into()))?,
        ),
        None => None,
    };

    let future = outgoing_handler::handle(request, None)?;

    let mut write_error = None;
    if let (Some(outgoing_body), Some(bytes)) = (outgoing_body, body) {
        match outgoing_body.write() {
            Ok(stream) => {
                if let Err(e) = write_all(&stream, bytes) {
                    write_error = Some(stream_error("writing the request body", e));
                }
                drop(stream);
            }
            Err(()) => {
                write_error = Some(OutboundError::Other(
                    "request body stream already taken".into(),
                ))
            }
        }
        if let Err(code) = OutgoingBody::finish(outgoing_body, None) {
            write_error.get_or_insert(OutboundError::Http(code));
        }
    }

    // A failed write usually means the connection failed: the future then
    // carries the real error code, so it is asked first.
    let incoming = loop {
        match future.get() {
            Some(Ok(Ok(resp))) => break resp,
            Some(Ok(Err(code))) => return Err(OutboundError::Http(code)),
            Some(Err(())) => return Err(OutboundError::Other("response already taken".into())),
            None => future.subscribe().block(),
        }
    };
    drop(future);
    if let Some(e) = write_error {
        return Err(e);
    }

    let status = incoming.status();
    let headers = {
        let h = incoming.headers();
        h.entries()
    };
    let body = {
        let body = incoming
            .consume()
            .map_err(|()| OutboundError::Other("response body already taken".into()))?;
        let bytes = match body.stream() {
            Ok(stream) => {
                let result = read_to_end(&stream);
                drop(stream);
                result
            }
            Err(()) => Err(OutboundError::Other(
                "response body stream already taken".into(),
            )),
        };
        // Dropping the future-trailers right away is fine: we ignore trailers.
        drop(IncomingBody::finish(body));
        bytes?
    };
    drop(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads a stream to its end.
pub fn read_to_end(stream: &InputStream) -> Result<Vec<u8>, OutboundError> {
    let mut out = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => out.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(out),
            Err(e) => return Err(stream_error("reading the response body", e)),
        }
    }
}

/// A stream failure as an [`OutboundError`], with the HTTP error code when the
/// host attached one.
pub fn stream_error(what: &str, e: StreamError) -> OutboundError {
    match e {
        StreamError::LastOperationFailed(err) => match wasi::http::types::http_error_code(&err) {
            Some(code) => OutboundError::Http(code),
            None => OutboundError::Other(format!("{what}: {}", err.to_debug_string())),
        },
        StreamError::Closed => OutboundError::Other(format!("{what}: stream closed")),
    }
}

// ---------------------------------------------------------------- incoming

/// `GET`, `POST`, ... (or the extension method's own name).
pub fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(m) => m,
    }
}

/// Splits a request's `path-with-query` into (path, query); an absent or empty
/// path is `/`.
pub fn split_path(path_with_query: Option<&str>) -> (&str, &str) {
    let pq = path_with_query.unwrap_or("");
    let (path, query) = pq.split_once('?').unwrap_or((pq, ""));
    (if path.is_empty() { "/" } else { path }, query)
}

/// Decoded query parameters, in order.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Self {
        Params(wisp_sdk::parse_query(query))
    }

    /// The first value of `name`, if present and non-empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// `name` parsed, `default` when missing or empty; `Err` is a message for a 400.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("invalid value for parameter '{name}': {v:?}\n")),
        }
    }
}

/// `application/x-www-form-urlencoded` decoding, shared with the command-module SDK.
pub use wisp_sdk::percent_decode;

/// Percent-encodes a URL path: everything but unreserved characters and `/`.
pub fn encode_path(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

// ---------------------------------------------------------------- responses

/// Builds a header list; panics only on invalid names/values, which the
/// callers never pass (static names, validated values).
pub fn fields(headers: &[(&str, &[u8])]) -> Fields {
    let fields = Fields::new();
    for (name, value) in headers {
        // An invalid value (e.g. a control character copied from a request)
        // is dropped rather than trapping.
        let _ = fields.append(name, value);
    }
    fields
}

/// Sends the response head and returns the body to stream into; finish it
/// with [`finish`].
pub fn start_response(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, &[u8])],
) -> OutgoingBody {
    let resp = OutgoingResponse::new(fields(headers));
    if resp.set_status_code(status).is_err() {
        let _ = resp.set_status_code(500);
    }
    let body = resp
        .body()
        .expect("a new response's body is available once");
    ResponseOutparam::set(out, Ok(resp));
    body
}

/// Finishes a response body (a failure means the client went away: nothing to do).
pub fn finish(body: OutgoingBody) {
    let _ = OutgoingBody::finish(body, None);
}

/// A whole response in one go.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &[u8])], body: &[u8]) {
    let outgoing = start_response(out, status, headers);
    if let Ok(stream) = outgoing.write() {
        let _ = write_all(&stream, body);
        drop(stream);
    }
    finish(outgoing);
}

/// A `text/plain` response.
pub fn text(out: ResponseOutparam, status: u16, body: &str) {
    respond(
        out,
        status,
        &[("content-type", b"text/plain; charset=utf-8")],
        body.as_bytes(),
    );
}

/// An `application/json` response (`body` is serialized JSON).
pub fn json(out: ResponseOutparam, status: u16, body: &[u8]) {
    respond(out, status, &[("content-type", b"application/json")], body);
}

/// Writes all of `bytes`, in pieces of at most 4096 bytes, each flushed.
pub fn write_all(stream: &OutputStream, bytes: &[u8]) -> Result<(), StreamError> {
    for piece in bytes.chunks(MAX_WRITE) {
        stream.blocking_write_and_flush(piece)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_url("http://127.0.0.1:8080/a/b.txt?x=1#frag").unwrap();
        assert_eq!(
            u,
            Url {
                scheme: "http",
                authority: "127.0.0.1:8080",
                path_with_query: "/a/b.txt?x=1".into()
            }
        );
        let u = parse_url("https://example.com").unwrap();
        assert_eq!(u.path_with_query, "/");
        let u = parse_url("http://h?q").unwrap();
        assert_eq!((u.authority, u.path_with_query.as_str()), ("h", "/?q"));
        assert!(parse_url("example.com/x").is_err());
        assert!(parse_url("http:///x").is_err());
    }

    #[test]
    fn query() {
        let p = Params::parse("a=1&b=x%20y+z&c=&d&url=http%3A%2F%2Fh%2Fp%3Fq%3D1&bad=%zz%4");
        assert_eq!(p.get("a"), Some("1"));
        assert_eq!(p.get("b"), Some("x y z"));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get("d"), None);
        assert_eq!(p.get("url"), Some("http://h/p?q=1"));
        assert_eq!(p.get("bad"), Some("%zz%4"));
        assert_eq!(p.parse_or("a", 7u32), Ok(1));
        assert_eq!(p.parse_or("zz", 7u32), Ok(7));
        assert!(p.parse_or::<u32>("b", 7).is_err());
        assert_eq!(split_path(Some("/echo?x=1")), ("/echo", "x=1"));
        assert_eq!(split_path(None), ("/", ""));
        assert_eq!(split_path(Some("?x")), ("/", "x"));
        assert_eq!(encode_path("dir/a b.txt"), "dir/a%20b.txt");
    }
}
