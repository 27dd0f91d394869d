//! The action proxy of the container baseline of `wisp bench --scenario
//! openwhisk`: what runs inside each warm runc container, as OpenWhisk's
//! runtime for native binaries (dockerskeleton) does:
//!
//! - listens on `127.0.0.1:$PORT` (default 8080; the bench runs its
//!   containers in the host's network namespace and gives each a port);
//! - `POST /init` `{"value": {"main": "/ow-hash", "env": {...}}}` once: the
//!   action's executable, already in the image (a second `/init` is 403, as
//!   from OpenWhisk's runtimes);
//! - `POST /run` `{"value": {...}, "activation_id": ..., ...}`: runs `main`
//!   as a fresh process with the CGI variables of a `POST` of
//!   `application/json` (the action contract of `crates/openwhisk`), every
//!   other field as `__OW_<FIELD>`, the parameters on stdin; answers 200
//!   with the result object (an application error included), 502 with
//!   `{"error"}` when the action broke the contract;
//! - one connection and one activation at a time (`Connection: close`), as
//!   the invoker drives a container.
//!
//! Native only: built for Wasm too (the functions workspace builds every
//! member both ways), where it exits at once with an error.
use serde_json::{Map, Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};

struct Action {
    main: String,
    env: Vec<(String, String)>,
}

fn main() {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let listener = match TcpListener::bind(format!("127.0.0.1:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ow-proxy: listening on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let mut action: Option<Action> = None;
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let _ = conn.set_nodelay(true);
        let (status, body) = match read_request(&mut conn) {
            Ok((path, body)) => handle(&mut action, &path, &body),
            Err(e) => (400, json!({ "error": e })),
        };
        let body = body.to_string();
        let _ = write!(
            conn,
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            if status == 200 { "OK" } else { "Error" },
            body.len()
        );
        let _ = conn.flush();
    }
}

/// One request: (path, body).
fn read_request(conn: &mut TcpStream) -> Result<(String, Vec<u8>), String> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method != "POST" {
        return Err(format!("{method} {path}: only POST /init and /run"));
    }
    let path = path.to_string();
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            len = v.trim().parse().map_err(|_| "bad Content-Length")?;
        }
    }
    if len > 64 << 20 {
        return Err("body over 64 MiB".into());
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((path, body))
}

fn handle(action: &mut Option<Action>, path: &str, body: &[u8]) -> (u16, Value) {
    let msg: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        _ => return (400, json!({ "error": "the body must be a JSON object" })),
    };
    let value = msg.get("value").cloned().unwrap_or(json!({}));
    match path {
        "/init" => {
            if action.is_some() {
                return (
                    403,
                    json!({ "error": "Cannot initialize the action more than once." }),
                );
            }
            let Some(main) = value.get("main").and_then(Value::as_str) else {
                return (502, json!({ "error": "init: no main executable" }));
            };
            if !std::path::Path::new(main).is_file() {
                return (
                    502,
                    json!({ "error": format!("init: {main} is not in the image") }),
                );
            }
            let env = value
                .get("env")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), String::from)))
                        .collect()
                })
                .unwrap_or_default();
            *action = Some(Action {
                main: main.into(),
                env,
            });
            (200, json!({ "ok": true }))
        }
        "/run" => match action {
            None => (500, json!({ "error": "run before init" })),
            Some(a) => run(a, &msg, &value),
        },
        other => (404, json!({ "error": format!("no route {other}") })),
    }
}

/// One activation: a fresh process of the action's executable.
fn run(a: &Action, msg: &Map<String, Value>, value: &Value) -> (u16, Value) {
    let stdin = value.to_string();
    let mut cmd = Command::new(&a.main);
    cmd.env_clear()
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", "POST")
        .env("CONTENT_TYPE", "application/json")
        .env("CONTENT_LENGTH", stdin.len().to_string())
        .env("QUERY_STRING", "")
        .env("PATH_INFO", "")
        .envs(a.env.iter().map(|(k, v)| (k, v)));
    for (k, v) in msg {
        if k == "value" {
            continue;
        }
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        cmd.env(format!("__OW_{}", k.to_ascii_uppercase()), v);
    }
    let child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return (502, json!({ "error": format!("starting {}: {e}", a.main) })),
    };
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(stdin.as_bytes());
    }
    let out = match child.wait_with_output() {
        Ok(o) => o,
        Err(e) => {
            return (
                502,
                json!({ "error": format!("waiting for {}: {e}", a.main) }),
            );
        }
    };
    if !out.status.success() {
        return (
            502,
            json!({ "error": format!("The action exited with {}.", out.status) }),
        );
    }
    let (status, body) = split_cgi(&out.stdout);
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if (200..300).contains(&status) || m.contains_key("error") => {
            (200, Value::Object(m))
        }
        Ok(v) if !(200..300).contains(&status) => (200, json!({ "error": v })),
        _ => (
            502,
            json!({ "error": "The action did not return a dictionary." }),
        ),
    }
}

/// A CGI answer's status and body (the whole output when it has no header block).
fn split_cgi(out: &[u8]) -> (u16, &[u8]) {
    if out.first() == Some(&b'{') {
        return (200, out);
    }
    let Some(end) = out.windows(2).position(|w| w == b"\n\n") else {
        return (200, out);
    };
    let head = String::from_utf8_lossy(&out[..end]);
    let status = head
        .lines()
        .find_map(|l| l.strip_prefix("Status:"))
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(200);
    (status, &out[end + 2..])
}
