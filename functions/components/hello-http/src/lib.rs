//! `hello-http`: a `wasi:http/proxy` component that probes what a host gives a
//! guest. It uses nothing Wisp-specific, so the same `.wasm` runs on Spin,
//! `wasmtime serve` and Wisp.
//!
//! | route | answer |
//! | --- | --- |
//! | `/` | 200 `Hello from a wasi:http component!\n` |
//! | `/echo` | 200, the request body streamed back chunk by chunk, the request's `content-type`, `x-echo-method: <METHOD>` |
//! | `/status/<code>` | `<code>`, `x-wisp-test: yes`, `status <code>\n` |
//! | `/stream?chunks=N&size=S` | 200, N chunks of S bytes (`b'a' + i % 26`), each flushed (N=4, S=16384) |
//! | `/env?name=K` | 200, the value of env var K, or `unset` |
//! | `/fetch?url=U` | outbound GET: 200 `status <S>\n` + body, or 502 `outbound error: <ErrorCode>\n` |
//! | `/tcp?addr=IP:PORT` | a raw `wasi:sockets` TCP connect: 200 `connected\n`, or 502 `tcp error: <kind>\n` |
//! | anything else | 404 `not found\n` |
use wisp_http_guest::wasi;
use wisp_http_guest::{Params, finish, respond, split_path, start_response, text, write_all};

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{IncomingRequest, ResponseOutparam};
use wasi::io::streams::StreamError;

struct HelloHttp;

wasi::http::proxy::export!(HelloHttp);

const TEXT: &[u8] = b"text/plain; charset=utf-8";
/// Upper bounds for `/stream` (1 GiB in total at most).
const MAX_CHUNKS: u64 = 1 << 20;
const MAX_TOTAL: u64 = 1 << 30;

impl Guest for HelloHttp {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path_with_query = request.path_with_query();
        let (path, query) = split_path(path_with_query.as_deref());
        let params = Params::parse(query);
        match path {
            "/" => respond(
                out,
                200,
                &[("content-type", b"text/plain")],
                b"Hello from a wasi:http component!\n",
            ),
            "/echo" => echo(request, out),
            "/stream" => stream(&params, out),
            "/env" => env(&params, out),
            "/fetch" => fetch(&params, out),
            "/tcp" => tcp(&params, out),
            _ => match path.strip_prefix("/status/") {
                Some(code) => status(code, out),
                None => text(out, 404, "not found\n"),
            },
        }
    }
}

/// Streams the request body back as it arrives.
fn echo(request: IncomingRequest, out: ResponseOutparam) {
    let method = wisp_http_guest::method_name(&request.method()).to_string();
    let content_type = {
        let headers = request.headers();
        headers.get("content-type").into_iter().next()
    };
    let mut headers: Vec<(&str, &[u8])> = vec![("x-echo-method", method.as_bytes())];
    if let Some(ct) = &content_type {
        headers.push(("content-type", ct));
    }
    let Ok(incoming) = request.consume() else {
        return text(out, 500, "request body already consumed\n");
    };
    let Ok(input) = incoming.stream() else {
        return text(out, 500, "request body stream unavailable\n");
    };
    let outgoing = start_response(out, 200, &headers);
    if let Ok(output) = outgoing.write() {
        loop {
            match input.blocking_read(64 * 1024) {
                Ok(chunk) => {
                    if write_all(&output, &chunk).is_err() {
                        break; // the client went away
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(_)) => break,
            }
        }
        drop(output);
    }
    drop(input);
    drop(incoming);
    finish(outgoing);
}

fn status(code: &str, out: ResponseOutparam) {
    match code.parse::<u16>() {
        Ok(code) if (100..=599).contains(&code) => respond(
            out,
            code,
            &[("content-type", TEXT), ("x-wisp-test", b"yes")],
            format!("status {code}\n").as_bytes(),
        ),
        _ => text(
            out,
            400,
            &format!("invalid status code {code:?} (want 100-599)\n"),
        ),
    }
}

fn stream(params: &Params, out: ResponseOutparam) {
    let (chunks, size) = match (
        params.parse_or("chunks", 4u64),
        params.parse_or("size", 16384u64),
    ) {
        (Ok(c), Ok(s)) => (c, s),
        (Err(e), _) | (_, Err(e)) => return text(out, 400, &e),
    };
    if chunks > MAX_CHUNKS || chunks.saturating_mul(size) > MAX_TOTAL {
        return text(
            out,
            400,
            &format!("too much: at most {MAX_CHUNKS} chunks and {MAX_TOTAL} bytes\n"),
        );
    }
    let outgoing = start_response(out, 200, &[("content-type", b"application/octet-stream")]);
    if let Ok(output) = outgoing.write() {
        let mut buf = vec![0u8; size as usize];
        for i in 0..chunks {
            buf.fill(b'a' + (i % 26) as u8);
            if write_all(&output, &buf).is_err() {
                break;
            }
        }
        drop(output);
    }
    finish(outgoing);
}

fn env(params: &Params, out: ResponseOutparam) {
    let Some(name) = params.get("name") else {
        return text(out, 400, "missing parameter 'name'\n");
    };
    let value = std::env::var(name).unwrap_or_else(|_| "unset".to_string());
    respond(out, 200, &[("content-type", TEXT)], value.as_bytes());
}

/// Opens a TCP connection with std (`wasi:sockets` underneath), which the
/// host grants only for `tcp://` entries of the allow-list.
fn tcp(params: &Params, out: ResponseOutparam) {
    let Some(addr) = params.get("addr").and_then(|a| a.parse::<std::net::SocketAddr>().ok()) else {
        return text(out, 400, "missing or bad parameter 'addr' (IP:PORT)\n");
    };
    match std::net::TcpStream::connect(addr) {
        Ok(_) => text(out, 200, "connected\n"),
        Err(e) => text(out, 502, &format!("tcp error: {:?}\n", e.kind())),
    }
}

fn fetch(params: &Params, out: ResponseOutparam) {
    let Some(url) = params.get("url") else {
        return text(out, 400, "missing parameter 'url'\n");
    };
    match wisp_http_guest::get(url) {
        Ok((status, body)) => {
            let mut answer = format!("status {status}\n").into_bytes();
            answer.extend_from_slice(&body);
            respond(out, 200, &[("content-type", TEXT)], &answer);
        }
        Err(e) => text(out, 502, &format!("outbound error: {e}\n")),
    }
}
