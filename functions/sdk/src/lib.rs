//! # wisp-sdk — write Wisp functions in plain Rust
//!
//! A Wisp function is a WASI preview 1 *command* (`wasm32-wasip1`, `fn main`)
//! that speaks CGI/1.1 (WAGI style). For every request the host starts a fresh
//! instance and hands it:
//!
//! * the request body on **stdin** (read up to `CONTENT_LENGTH` bytes when that
//!   variable is set, otherwise to end of file);
//! * `REQUEST_METHOD`, `PATH_INFO` (the sub-path after `/fn/NAME`),
//!   `QUERY_STRING`, `CONTENT_TYPE`, `CONTENT_LENGTH` and one `HTTP_<NAME>`
//!   variable per request header in the **environment**.
//!
//! The function answers on **stdout** with a CGI header block (`Status:`,
//! `Content-Type:`, other `Name: value` lines), a blank line and the body.
//! Anything written to stderr is the activation log.
//!
//! This crate does that plumbing and nothing else (no host dependencies), so the
//! very same source also builds natively and behaves identically when run as a
//! process with the same environment and stdin — which is how the native
//! benchmark baseline is produced:
//!
//! ```sh
//! REQUEST_METHOD=GET QUERY_STRING='n=20' ./target/release/fibonacci
//! ```
//!
//! ## HTTP-style functions: [`serve`]
//!
//! ```no_run
//! use wisp_sdk::{Request, Response};
//!
//! fn main() {
//!     wisp_sdk::serve(|req: Request| {
//!         let n: u32 = req.param_or("n", 32)?; // ?n=40, "absent or empty" → 32, junk → 400
//!         if req.method != "GET" {
//!             return Ok(Response::text("use GET\n").status(405).header("Allow", "GET"));
//!         }
//!         Ok(Response::text(format!("n = {n}\n")))
//!     });
//! }
//! ```
//!
//! The handler returns [`wisp_sdk::Result<Response>`](Result) (error type
//! [`Error`]). Every `std::error::Error + Send + Sync + 'static` converts into
//! [`Error`] with `?` (I/O, parse, serde, image … errors), so closures need no
//! type annotations. An error is answered with its status (500 unless built
//! with [`Error::new`] / [`Error::bad_request`] …), `Content-Type: text/plain;
//! charset=utf-8`, and the message plus a newline as the body; the message is
//! also written to stderr. The process still exits 0 so the host passes that
//! status through.
//!
//! ## Action-style functions: [`json`]
//!
//! ```no_run
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! #[serde(default)]
//! struct In { n: u32 }
//! impl Default for In { fn default() -> Self { In { n: 32 } } }
//!
//! #[derive(Serialize)]
//! struct Out { n: u32, square: u64 }
//!
//! fn main() {
//!     wisp_sdk::json(|input: In| {
//!         Ok(Out { n: input.n, square: u64::from(input.n).pow(2) })
//!     });
//! }
//! ```
//!
//! The input is built by [`Request::input`]: the JSON body (an empty body is
//! `{}`) **merged with the query parameters, which win**. Each query value
//! that is itself valid JSON is taken as that JSON value (`?n=40` → `40`,
//! `?on=true` → `true`, `?xs=[1,2]` → an array), anything else is a string
//! (`?name=Bob` → `"Bob"`; quote it, `?name="42"`, to force a numeric-looking
//! string). The merged object is deserialized into `In` (use
//! `#[serde(default)]` for optional fields); failure is a 400. The output is
//! serialized as compact JSON with `Content-Type: application/json`.
//!
//! ## Granted directories
//!
//! Host directories are WASI preopens (e.g. a host directory mapped to guest
//! `/data`). The [`fs`] helpers turn "no such file" on an ungranted path into
//! a clear 500 naming the missing grant.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::str::FromStr;

pub use serde;
pub use serde_json;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Error
// ---------------------------------------------------------------------------

/// An error answered to the client: an HTTP status (500 by default) and a
/// message (sent as the `text/plain` body and logged to stderr).
///
/// Every `std::error::Error + Send + Sync + 'static` converts into it (status
/// 500), so `?` works in handlers. Like `anyhow::Error`, it deliberately does
/// not implement `std::error::Error` itself.
pub struct Error {
    status: u16,
    message: String,
}

impl Error {
    /// An error with an explicit HTTP status.
    pub fn new(status: u16, message: impl fmt::Display) -> Error {
        Error {
            status,
            message: message.to_string(),
        }
    }

    /// A 500 Internal Server Error with this message.
    pub fn msg(message: impl fmt::Display) -> Error {
        Error::new(500, message)
    }

    /// A 400 Bad Request with this message.
    pub fn bad_request(message: impl fmt::Display) -> Error {
        Error::new(400, message)
    }

    /// A 404 Not Found with this message.
    pub fn not_found(message: impl fmt::Display) -> Error {
        Error::new(404, message)
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message (without trailing newline).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Prefixes the message: `"{context}: {message}"`.
    pub fn context(mut self, context: impl fmt::Display) -> Error {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    fn from(err: E) -> Error {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Error::msg(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Error({} {}: {:?})",
            self.status,
            reason_phrase(self.status),
            self.message
        )
    }
}

// ---------------------------------------------------------------------------
// Request
// ---------------------------------------------------------------------------

/// An HTTP request as received through the CGI environment and stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `REQUEST_METHOD` (`"GET"` if unset).
    pub method: String,
    /// `PATH_INFO`: the sub-path after `/fn/NAME`, as given by the host (may be empty).
    pub path: String,
    /// `QUERY_STRING`, raw (not decoded).
    pub query_string: String,
    /// Decoded query parameters (`+` is a space, `%XX` decoded; the last of repeated keys wins).
    pub query: BTreeMap<String, String>,
    /// Request headers, names lower-case with `-` (`HTTP_X_API_KEY` → `x-api-key`);
    /// `CONTENT_TYPE` / `CONTENT_LENGTH` appear as `content-type` / `content-length`.
    pub headers: BTreeMap<String, String>,
    /// The request body (stdin).
    pub body: Vec<u8>,
}

impl Request {
    /// Reads the request from the CGI environment and stdin.
    ///
    /// The body is `CONTENT_LENGTH` bytes of stdin when that variable holds a
    /// number, otherwise all of stdin — except that an interactive terminal is
    /// never read when `CONTENT_LENGTH` is unset (so a native run from a shell
    /// does not wait for input).
    pub fn from_env() -> Result<Request> {
        let var = |k: &str| std::env::var(k).ok();
        let mut headers = BTreeMap::new();
        for (k, v) in std::env::vars_os() {
            let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
                continue;
            };
            if let Some(name) = k.strip_prefix("HTTP_") {
                headers.insert(name.to_ascii_lowercase().replace('_', "-"), v.to_string());
            }
        }
        if let Some(ct) = var("CONTENT_TYPE").filter(|v| !v.is_empty()) {
            headers.insert("content-type".into(), ct);
        }
        let content_length = var("CONTENT_LENGTH").and_then(|v| v.trim().parse::<u64>().ok());
        if let Some(n) = content_length {
            headers.insert("content-length".into(), n.to_string());
        }
        let mut body = Vec::new();
        let stdin = io::stdin();
        match content_length {
            Some(n) => {
                stdin
                    .lock()
                    .take(n)
                    .read_to_end(&mut body)
                    .map_err(|e| Error::from(e).context("reading the request body"))?;
            }
            None if !stdin.is_terminal() => {
                stdin
                    .lock()
                    .read_to_end(&mut body)
                    .map_err(|e| Error::from(e).context("reading the request body"))?;
            }
            None => {}
        }
        let method = var("REQUEST_METHOD")
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "GET".into());
        let path = var("PATH_INFO").unwrap_or_default();
        let query_string = var("QUERY_STRING").unwrap_or_default();
        Ok(Request::from_parts(
            &method,
            &path,
            &query_string,
            headers,
            body,
        ))
    }

    /// Builds a request by hand (tests, local tools). Header names are
    /// lower-cased; `query` is parsed from `query_string`.
    pub fn from_parts<K, V>(
        method: &str,
        path: &str,
        query_string: &str,
        headers: impl IntoIterator<Item = (K, V)>,
        body: impl Into<Vec<u8>>,
    ) -> Request
    where
        K: AsRef<str>,
        V: Into<String>,
    {
        Request {
            method: method.to_string(),
            path: path.to_string(),
            query_string: query_string.to_string(),
            query: parse_query(query_string).into_iter().collect(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_ascii_lowercase(), v.into()))
                .collect(),
            body: body.into(),
        }
    }

    /// A query parameter, decoded; `None` if absent.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.get(name).map(String::as_str)
    }

    /// A query parameter parsed as `T`, or `default` when it is absent or
    /// empty. A value that does not parse is a 400 Bad Request naming it.
    ///
    /// `let n: u64 = req.param_or("n", 32)?;`
    pub fn param_or<T>(&self, name: &str, default: T) -> Result<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        Ok(self.param_as(name)?.unwrap_or(default))
    }

    /// A query parameter parsed as `T`; `Ok(None)` when absent or empty, 400 when it does not parse.
    pub fn param_as<T>(&self, name: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.param(name) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<T>().map(Some).map_err(|e| {
                Error::bad_request(format!("invalid query parameter {name}={v}: {e}"))
            }),
        }
    }

    /// A header by name, case-insensitively (`req.header("Content-Type")`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase().replace('_', "-"))
            .map(String::as_str)
    }

    /// The `content-type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body as UTF-8 text (400 if it is not valid UTF-8).
    pub fn body_text(&self) -> Result<&str> {
        std::str::from_utf8(&self.body)
            .map_err(|e| Error::bad_request(format!("request body is not UTF-8: {e}")))
    }

    /// The body parsed as JSON into `T` (400 on failure).
    pub fn body_json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }

    /// The action input: the JSON body (empty = `{}`) merged with the query
    /// parameters (query wins; a value that parses as JSON is that JSON value,
    /// otherwise a string), deserialized into `T`. 400 on any failure.
    pub fn input<T: DeserializeOwned>(&self) -> Result<T> {
        use serde_json::{Map, Value};
        let body = if self.body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Map::new())
        } else {
            self.body_json::<Value>()?
        };
        let value = match body {
            Value::Object(mut obj) => {
                for (k, v) in &self.query {
                    let v = serde_json::from_str::<Value>(v)
                        .unwrap_or_else(|_| Value::String(v.clone()));
                    obj.insert(k.clone(), v);
                }
                Value::Object(obj)
            }
            other if self.query.is_empty() => other,
            _ => {
                return Err(Error::bad_request(
                    "the JSON body must be an object to be merged with query parameters",
                ));
            }
        };
        serde_json::from_value(value).map_err(|e| Error::bad_request(format!("invalid input: {e}")))
    }
}

/// Parses an `application/x-www-form-urlencoded` string (a query string) into
/// decoded `(key, value)` pairs, in order. A key without `=` has value `""`.
pub fn parse_query(qs: &str) -> Vec<(String, String)> {
    qs.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes `%XX` escapes and `+` (space); malformed escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Response
// ---------------------------------------------------------------------------

/// An HTTP response, written to stdout as CGI output by [`serve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code (200 by default).
    pub status: u16,
    /// Headers in order; names as given. `Content-Type` is one of them.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Default for Response {
    fn default() -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

impl Response {
    /// 200 with `content_type` and this body.
    pub fn bytes(content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response::default()
            .header("Content-Type", content_type)
            .with_body(body)
    }

    /// 200 `text/plain; charset=utf-8`.
    pub fn text(body: impl Into<String>) -> Response {
        Response::bytes("text/plain; charset=utf-8", body.into())
    }

    /// 200 `application/json`: `value` as compact JSON plus a newline. If it
    /// cannot be serialized (e.g. a map with non-string keys) the response is
    /// a 500 saying so.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Response {
        match serde_json::to_vec(value) {
            Ok(mut body) => {
                body.push(b'\n');
                Response::bytes("application/json", body)
            }
            Err(e) => {
                Response::from_error(&Error::msg(format!("serializing the JSON response: {e}")))
            }
        }
    }

    /// 200 with no body and no content type (the host then defaults it).
    pub fn empty() -> Response {
        Response::default()
    }

    /// The response for an error: its status, `text/plain`, message + newline.
    pub fn from_error(err: &Error) -> Response {
        Response::text(format!("{}\n", err.message)).status(err.status)
    }

    /// Sets the status code.
    pub fn status(mut self, code: u16) -> Response {
        self.status = code;
        self
    }

    /// Sets a header, replacing any header of the same name (case-insensitive).
    pub fn header(mut self, name: &str, value: impl fmt::Display) -> Response {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Replaces the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The value of a header (case-insensitive).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Writes the CGI form: `Status: CODE REASON` (only when not 200), the
    /// headers (`\n`-terminated; CR/LF in names or values become spaces), a
    /// blank line, the body.
    pub fn write_cgi<W: Write>(&self, mut w: W) -> io::Result<()> {
        let clean = |s: &str| s.replace(['\r', '\n'], " ");
        let mut head = String::new();
        if self.status != 200 {
            head.push_str(&format!(
                "Status: {} {}\n",
                self.status,
                reason_phrase(self.status)
            ));
        }
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("status") {
                continue;
            }
            head.push_str(&format!("{}: {}\n", clean(n), clean(v)));
        }
        head.push('\n');
        w.write_all(head.as_bytes())?;
        w.write_all(&self.body)?;
        w.flush()
    }
}

/// The standard reason phrase of a status code (`"Unknown"` if not standard).
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------

/// Runs an HTTP-style handler: reads the [`Request`] from the CGI environment
/// and stdin, calls `handler`, writes the [`Response`] (or the error, see
/// [`Error`]) to stdout. Exits the process with 1 only if stdout fails.
pub fn serve<F>(handler: F)
where
    F: FnOnce(Request) -> Result<Response>,
{
    let response = match Request::from_env().and_then(handler) {
        Ok(resp) => resp,
        Err(err) => {
            eprintln!(
                "error: {} ({} {})",
                err.message,
                err.status,
                reason_phrase(err.status)
            );
            Response::from_error(&err)
        }
    };
    let stdout = io::stdout();
    if let Err(e) = response.write_cgi(io::BufWriter::with_capacity(64 * 1024, stdout.lock())) {
        eprintln!("error: writing the response: {e}");
        std::process::exit(1);
    }
}

/// Runs an action-style handler: the input is [`Request::input`] (JSON body
/// merged with query parameters), the output is answered as JSON.
pub fn json<I, O, F>(handler: F)
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(I) -> Result<O>,
{
    serve(|req: Request| {
        let input: I = req.input()?;
        Ok(Response::json(&handler(input)?))
    })
}

// ---------------------------------------------------------------------------
// Granted directories
// ---------------------------------------------------------------------------

/// File helpers whose errors name the missing directory grant.
pub mod fs {
    use super::Error;
    use std::io;
    use std::path::{Component, Path, PathBuf};

    /// The grant a path lives under: its first component (`/data/a/b` →
    /// `/data`; relative `out/x` → `out`).
    pub fn grant_root(path: &Path) -> PathBuf {
        let mut root = PathBuf::new();
        for c in path.components() {
            match c {
                Component::RootDir | Component::Prefix(_) => root.push(c.as_os_str()),
                Component::CurDir => continue,
                other => {
                    root.push(other.as_os_str());
                    break;
                }
            }
        }
        root
    }

    /// Turns an I/O error on `path` into an [`Error`]. If the path's grant
    /// root is not accessible at all, it is a 500 saying which directory must
    /// be granted; a missing file inside an accessible directory is a 404;
    /// anything else a 500 with the OS message.
    pub fn io_error(op: &str, path: &Path, err: io::Error) -> Error {
        let root = grant_root(path);
        if !root.as_os_str().is_empty() && std::fs::metadata(&root).is_err() {
            return Error::msg(format!(
                "{op} {}: no directory is granted at {} (grant a host directory to this function mapped to {})",
                path.display(),
                root.display(),
                root.display()
            ));
        }
        let status = if err.kind() == io::ErrorKind::NotFound {
            404
        } else {
            500
        };
        Error::new(status, format!("{op} {}: {err}", path.display()))
    }

    /// Reads a whole file.
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<u8>, Error> {
        let path = path.as_ref();
        std::fs::read(path).map_err(|e| io_error("read", path, e))
    }

    /// Writes a whole file (created or truncated).
    pub fn write(path: impl AsRef<Path>, data: impl AsRef<[u8]>) -> Result<(), Error> {
        let path = path.as_ref();
        std::fs::write(path, data).map_err(|e| io_error("write", path, e))
    }

    /// Checks that `path` is an accessible directory and returns it.
    pub fn require_dir(path: impl AsRef<Path>) -> Result<PathBuf, Error> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(path.to_path_buf()),
            Ok(_) => Err(Error::bad_request(format!(
                "{} is not a directory",
                path.display()
            ))),
            Err(e) => Err(io_error("open directory", path, e)),
        }
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    fn req(qs: &str, body: &str) -> Request {
        Request::from_parts(
            "POST",
            "/x",
            qs,
            [("Content-Type", "application/json")],
            body,
        )
    }

    #[test]
    fn query_decoding() {
        let q = parse_query("a=1&b=hello+world&c=%41%2f&d&e=%zz&=x&f=%4");
        assert_eq!(
            q,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "hello world".into()),
                ("c".into(), "A/".into()),
                ("d".into(), "".into()),
                ("e".into(), "%zz".into()),
                ("".into(), "x".into()),
                ("f".into(), "%4".into()),
            ]
        );
    }

    #[test]
    fn params() {
        let r = req("n=40&bad=x&empty=", "");
        assert_eq!(r.param_or("n", 32u32).unwrap(), 40);
        assert_eq!(r.param_or("missing", 32u32).unwrap(), 32);
        assert_eq!(r.param_or("empty", 7u32).unwrap(), 7);
        let e = r.param_or("bad", 1u32).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("bad=x"), "{}", e.message());
        assert_eq!(r.header("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(r.content_type(), Some("application/json"));
    }

    #[test]
    fn input_merge() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct In {
            n: u32,
            name: String,
            flag: bool,
        }
        let r = req("n=40&name=Bob", r#"{"n": 1, "flag": true, "name": "x"}"#);
        assert_eq!(
            r.input::<In>().unwrap(),
            In {
                n: 40,
                name: "Bob".into(),
                flag: true
            }
        );
        assert_eq!(req("", "[1]").input::<Vec<u8>>().unwrap(), vec![1]);
        assert_eq!(
            req("a=1", "[1]").input::<Vec<u8>>().unwrap_err().status(),
            400
        );
        assert_eq!(req("", "{").input::<In>().unwrap_err().status(), 400);
    }

    #[test]
    fn cgi_output() {
        let mut out = Vec::new();
        Response::text("hi\n").write_cgi(&mut out).unwrap();
        assert_eq!(out, b"Content-Type: text/plain; charset=utf-8\n\nhi\n");

        let mut out = Vec::new();
        Response::json(&serde_json::json!({"a": 1}))
            .status(404)
            .header("X-A", "b\r\nInjected: 1")
            .write_cgi(&mut out)
            .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Status: 404 Not Found\nContent-Type: application/json\nX-A: b  Injected: 1\n\n{\"a\":1}\n"
        );

        let r = Response::text("x").header("content-type", "text/html");
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.get_header("Content-Type"), Some("text/html"));
    }

    #[test]
    fn error_conversion() {
        fn f() -> Result<u32> {
            Ok("x".parse::<u32>()?)
        }
        let e = f().unwrap_err();
        assert_eq!(e.status(), 500);
        let resp = Response::from_error(&e.context("parsing"));
        assert_eq!(resp.status, 500);
        assert!(
            String::from_utf8(resp.body)
                .unwrap()
                .starts_with("parsing: invalid digit")
        );
    }

    #[test]
    fn grant_errors() {
        let p = std::path::Path::new("/wisp-no-such-grant/x/y");
        assert_eq!(
            fs::grant_root(p),
            std::path::PathBuf::from("/wisp-no-such-grant")
        );
        let e = fs::read(p).unwrap_err();
        assert_eq!(e.status(), 500);
        assert!(
            e.message()
                .contains("no directory is granted at /wisp-no-such-grant"),
            "{}",
            e.message()
        );
        let e = fs::read("/proc/wisp-no-such-file").unwrap_err();
        assert_eq!(e.status(), 404);
    }
}
