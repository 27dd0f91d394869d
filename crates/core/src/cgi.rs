//! CGI/1.1 (RFC 3875) conventions of the command ABI: the environment a
//! request becomes, and the response a guest's stdout is parsed into.

use bytes::Bytes;

/// A parsed guest response.
#[derive(Debug, Clone, PartialEq)]
pub struct CgiResponse {
    /// HTTP status (200 unless the guest sent `Status:` or `Location:`).
    pub status: u16,
    /// Headers the guest sent, in order, `Status` removed.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Bytes,
}

/// Parse stdout: optional CGI header lines, a blank line, then the body.
///
/// Headers are recognised only if stdout *starts* with a well-formed header
/// block (`Name: value` lines, `\n` or `\r\n`, ended by an empty line).
/// Anything else is all body, served as `text/plain` — so a guest that just
/// prints text works.
pub fn parse_cgi_response(out: Bytes) -> CgiResponse {
    match split_headers(&out) {
        Some((headers, body_at)) => {
            let mut status = 200;
            let mut hs = Vec::with_capacity(headers.len());
            let mut has_location = false;
            for (k, v) in headers {
                if k.eq_ignore_ascii_case("status") {
                    if let Some(code) = v
                        .split_whitespace()
                        .next()
                        .and_then(|c| c.parse::<u16>().ok())
                        && (100..=999).contains(&code)
                    {
                        status = code;
                    }
                } else {
                    if k.eq_ignore_ascii_case("location") {
                        has_location = true;
                    }
                    hs.push((k, v));
                }
            }
            if has_location && status == 200 {
                status = 302;
            }
            CgiResponse {
                status,
                headers: hs,
                body: out.slice(body_at..),
            }
        }
        None => CgiResponse {
            status: 200,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: out,
        },
    }
}

/// Returns the headers and the body offset, or None if `out` does not start
/// with a header block.
fn split_headers(out: &[u8]) -> Option<(Vec<(String, String)>, usize)> {
    const MAX_HEADER_BLOCK: usize = 64 * 1024;
    let mut headers = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &out[pos..];
        let nl = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += nl + 1;
        if line.is_empty() {
            return if headers.is_empty() {
                None
            } else {
                Some((headers, pos))
            };
        }
        if pos > MAX_HEADER_BLOCK {
            return None;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let name = &line[..colon];
        if name.is_empty()
            || !name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        let value = std::str::from_utf8(&line[colon + 1..]).ok()?.trim();
        headers.push((String::from_utf8_lossy(name).into_owned(), value.to_owned()));
    }
}

/// The request as seen by `build_cgi_env`.
pub struct CgiRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// Path after `/fn/{name}`, starting with `/` or empty.
    pub path_info: &'a str,
    /// Raw query string without `?`.
    pub query: &'a str,
    /// Request headers.
    pub headers: &'a http::HeaderMap,
    /// Body length.
    pub content_length: usize,
    /// Function name (SCRIPT_NAME is `/fn/{name}`).
    pub function: &'a str,
    /// Server host name and port.
    pub server_name: &'a str,
    /// Server port.
    pub server_port: u16,
    /// Client address.
    pub remote_addr: &'a str,
}

/// Build the guest environment: CGI meta-variables, then each query
/// parameter, then the function's own env (which wins on conflicts, so a
/// caller cannot override configuration through the query string).
pub fn build_cgi_env(req: &CgiRequest<'_>, fn_env: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::with_capacity(16 + req.headers.len() + fn_env.len());
    let mut put = |k: &str, v: &str| env.push((k.to_owned(), v.to_owned()));
    put("GATEWAY_INTERFACE", "CGI/1.1");
    put("SERVER_PROTOCOL", "HTTP/1.1");
    put(
        "SERVER_SOFTWARE",
        concat!("wisp/", env!("CARGO_PKG_VERSION")),
    );
    put("REQUEST_METHOD", req.method);
    put("SCRIPT_NAME", &format!("/fn/{}", req.function));
    put("PATH_INFO", req.path_info);
    put("QUERY_STRING", req.query);
    put("SERVER_NAME", req.server_name);
    put("SERVER_PORT", &req.server_port.to_string());
    put("REMOTE_ADDR", req.remote_addr);
    put("CONTENT_LENGTH", &req.content_length.to_string());
    let mut content_type = "";
    for (k, v) in req.headers {
        let Ok(v) = v.to_str() else { continue };
        if k == http::header::CONTENT_TYPE {
            content_type = v;
            continue;
        }
        if k == http::header::CONTENT_LENGTH
            || k == http::header::AUTHORIZATION
            || k.as_str() == "proxy"
        {
            // RFC 3875 §4.1.18: credentials are not passed through. `Proxy`
            // would become HTTP_PROXY, which HTTP clients read as their
            // proxy setting (httpoxy, CVE-2016-5385).
            continue;
        }
        let k = k.as_str();
        let mut name = String::with_capacity(5 + k.len());
        name.push_str("HTTP_");
        for c in k.chars() {
            name.push(if c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            });
        }
        put(&name, v);
    }
    put("CONTENT_TYPE", content_type);
    for (k, v) in parse_query(req.query) {
        if !k.is_empty()
            && !k.contains('=')
            && !k.contains('\0')
            && !v.contains('\0')
            && !reserved(&k)
        {
            put(&k, &v);
        }
    }
    for (k, v) in fn_env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// The names a query parameter may not take: the CGI meta-variables and
/// every `HTTP_*` name (in any case), so what the guest is told about the
/// request comes from the request itself, never from its query string.
const META_VARIABLES: [&str; 22] = [
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "GATEWAY_INTERFACE",
    // Not set by Wisp, but common outside RFC 3875: guests and their
    // frameworks may trust them (scheme, full URI, file paths, status).
    "HTTPS",
    "REQUEST_URI",
    "REQUEST_SCHEME",
    "DOCUMENT_ROOT",
    "SCRIPT_FILENAME",
    "REDIRECT_STATUS",
    "REMOTE_PORT",
    "UNIQUE_ID",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_IDENT",
    "REMOTE_USER",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "SERVER_NAME",
];

fn reserved(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    upper.starts_with("HTTP_")
        || upper.starts_with("SERVER_")
        || META_VARIABLES.contains(&upper.as_str())
}

/// Split and percent-decode `a=1&b=two+words`.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if hexval(b.get(i + 1)).is_some() && hexval(b.get(i + 2)).is_some() => {
                out.push(hexval(b.get(i + 1)).unwrap() * 16 + hexval(b.get(i + 2)).unwrap());
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hexval(c: Option<&u8>) -> Option<u8> {
    match c? {
        c @ b'0'..=b'9' => Some(c - b'0'),
        c @ b'a'..=b'f' => Some(c - b'a' + 10),
        c @ b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_body() {
        let r = parse_cgi_response(Bytes::from_static(b"hello\nworld\n"));
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"hello\nworld\n");
    }

    #[test]
    fn headers_and_status() {
        let r = parse_cgi_response(Bytes::from_static(
            b"Status: 404 Not Found\r\nContent-Type: application/json\r\nX-A: b\r\n\r\n{}",
        ));
        assert_eq!(r.status, 404);
        assert_eq!(
            r.headers,
            vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-A".into(), "b".into())
            ]
        );
        assert_eq!(&r.body[..], b"{}");
    }

    #[test]
    fn location_redirects() {
        let r = parse_cgi_response(Bytes::from_static(b"Location: /x\n\n"));
        assert_eq!(r.status, 302);
    }

    #[test]
    fn colon_in_text_is_not_a_header() {
        let r = parse_cgi_response(Bytes::from_static(
            b"note: this has a colon\nbut no blank line",
        ));
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], b"note: this has a colon\nbut no blank line");
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("a=1&b=two+words&c=%41%zz&d"),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two words".into()),
                ("c".into(), "A%zz".into()),
                ("d".into(), "".into())
            ]
        );
    }

    #[test]
    fn env_has_cgi_vars_query_and_fn_env_wins() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-trace-id", "7".parse().unwrap());
        headers.insert("content-type", "text/csv".parse().unwrap());
        headers.insert("authorization", "Bearer s".parse().unwrap());
        let req = CgiRequest {
            method: "POST",
            path_info: "/a/b",
            query: "n=40&MODE=evil",
            headers: &headers,
            content_length: 3,
            function: "f",
            server_name: "localhost",
            server_port: 8080,
            remote_addr: "127.0.0.1",
        };
        let env = build_cgi_env(&req, &[("MODE".into(), "safe".into())]);
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(ek, _)| ek == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("PATH_INFO"), Some("/a/b"));
        assert_eq!(get("QUERY_STRING"), Some("n=40&MODE=evil"));
        assert_eq!(get("HTTP_X_TRACE_ID"), Some("7"));
        assert_eq!(get("CONTENT_TYPE"), Some("text/csv"));
        assert_eq!(get("CONTENT_LENGTH"), Some("3"));
        assert_eq!(get("HTTP_AUTHORIZATION"), None);
        assert_eq!(get("n"), Some("40"));
        assert_eq!(get("MODE"), Some("safe"));
        assert_eq!(env.iter().filter(|(k, _)| k == "MODE").count(), 1);
    }

    #[test]
    fn query_cannot_set_meta_variables_or_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        headers.insert("proxy", "http://evil:1".parse().unwrap());
        let req = CgiRequest {
            method: "GET",
            path_info: "",
            query: "HTTP_X_FORWARDED_FOR=6.6.6.6&HTTP_AUTHORIZATION=Bearer+x&http_cookie=a\
                    &REMOTE_ADDR=6.6.6.6&SERVER_PORT=1&Request_Method=PUT&HTTPS=on&n=1",
            headers: &headers,
            content_length: 0,
            function: "f",
            server_name: "localhost",
            server_port: 8080,
            remote_addr: "127.0.0.1",
        };
        let env = build_cgi_env(&req, &[]);
        let all = |k: &str| -> Vec<&str> {
            env.iter()
                .filter(|(ek, _)| ek.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        assert_eq!(all("HTTP_X_FORWARDED_FOR"), vec!["1.1.1.1"]);
        assert!(all("HTTP_AUTHORIZATION").is_empty());
        assert!(all("HTTP_COOKIE").is_empty());
        assert!(all("HTTP_PROXY").is_empty(), "httpoxy");
        assert_eq!(all("REMOTE_ADDR"), vec!["127.0.0.1"]);
        assert_eq!(all("SERVER_PORT"), vec!["8080"]);
        assert_eq!(all("REQUEST_METHOD"), vec!["GET"]);
        assert!(all("HTTPS").is_empty());
        assert_eq!(all("n"), vec!["1"], "ordinary parameters still pass");
    }
}
