//! `build_cgi_env` with a fuzzed query string and headers.
//!
//! Input: the first line is the raw query string; each later line (at most
//! 16) `name: value` becomes a request header when `http` accepts it.
//!
//! Invariants: never panics; every entry whose name is a CGI meta-variable
//! (RFC 3875 §4.1) or starts with `HTTP_`/`SERVER_` — compared in any ASCII
//! case — carries exactly what the request itself supplied (its method,
//! script name, address, ... and its headers), so the query string cannot
//! set or shadow them; each meta-variable appears exactly once; the
//! function's own env wins over the query; every other entry is a query
//! parameter, unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use wisp_core::cgi::{CgiRequest, build_cgi_env, parse_query};

/// RFC 3875 §4.1 meta-variables, and the common non-standard ones guests
/// may trust (`HTTPS`, `REQUEST_URI`, …).
const META: [&str; 25] = [
    "HTTPS",
    "REQUEST_URI",
    "REQUEST_SCHEME",
    "DOCUMENT_ROOT",
    "SCRIPT_FILENAME",
    "REDIRECT_STATUS",
    "REMOTE_PORT",
    "UNIQUE_ID",
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "GATEWAY_INTERFACE",
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
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
];

fn reserved(name: &str) -> bool {
    let up = name.to_ascii_uppercase();
    up.starts_with("HTTP_") || up.starts_with("SERVER_") || META.contains(&up.as_str())
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let query = lines.next().unwrap_or("");
    let mut headers = http::HeaderMap::new();
    for line in lines.take(16) {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            http::HeaderValue::from_bytes(value.trim().as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    let req = CgiRequest {
        method: "POST",
        path_info: "/a/b",
        query,
        headers: &headers,
        content_length: 42,
        function: "f",
        server_name: "localhost",
        server_port: 8080,
        remote_addr: "192.0.2.7",
    };
    let fn_env = [("MODE".to_string(), "safe".to_string())];
    let env = build_cgi_env(&req, &fn_env);

    // What the request supplies, by exact name.
    let mut content_type = String::new();
    let mut supplied: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("SERVER_PROTOCOL".into(), "HTTP/1.1".into()),
        ("REQUEST_METHOD".into(), "POST".into()),
        ("SCRIPT_NAME".into(), "/fn/f".into()),
        ("PATH_INFO".into(), "/a/b".into()),
        ("QUERY_STRING".into(), query.into()),
        ("SERVER_NAME".into(), "localhost".into()),
        ("SERVER_PORT".into(), "8080".into()),
        ("REMOTE_ADDR".into(), "192.0.2.7".into()),
        ("CONTENT_LENGTH".into(), "42".into()),
    ];
    let singles: Vec<String> = supplied
        .iter()
        .map(|(k, _)| k.clone())
        .chain(["SERVER_SOFTWARE".into(), "CONTENT_TYPE".into()])
        .collect();
    for (k, v) in &headers {
        let Ok(v) = v.to_str() else { continue };
        match k.as_str() {
            "content-type" => content_type = v.to_string(),
            "content-length" | "authorization" | "proxy" => {}
            k => supplied.push((
                format!("HTTP_{}", k.to_ascii_uppercase().replace('-', "_")),
                v.into(),
            )),
        }
    }
    supplied.push(("CONTENT_TYPE".into(), content_type));

    let params = parse_query(query);
    let params: HashSet<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for (k, v) in &env {
        if k == "MODE" {
            assert_eq!(v, "safe", "the function's env lost to the query");
        } else if reserved(k) {
            let ok = supplied.iter().any(|(sk, sv)| sk == k && sv == v)
                || (k == "SERVER_SOFTWARE" && v.starts_with("wisp/"));
            assert!(
                ok,
                "{k}={v:?} was not supplied by the request (query {query:?})"
            );
        } else {
            assert!(
                params.contains(&(k.as_str(), v.as_str())),
                "{k}={v:?} is neither a meta-variable nor a query parameter"
            );
            assert!(!k.is_empty() && !k.contains('=') && !k.contains('\0') && !v.contains('\0'));
        }
    }
    assert_eq!(env.iter().filter(|(k, _)| k == "MODE").count(), 1);
    for name in &singles {
        let n = env
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count();
        assert_eq!(n, 1, "{name} appears {n} times (query {query:?})");
    }
});
