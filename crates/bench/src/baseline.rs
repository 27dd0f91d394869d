//! Baselines that run a whole process per request, served over HTTP so the
//! same load generator measures them end to end exactly as it measures Wisp:
//!
//! - **native**: the function's native build, spawned per request with the
//!   CGI environment (what `crates/cli/tests/all/functions.rs` checks for
//!   equality with the Wasm build), classic CGI;
//! - **container**: the same native build in a fresh `runc` container per
//!   request (see [`crate::runc`]);
//! - **naive Wasm**: a new Wasmtime engine and a fresh compile per request.
//!
//! The HTTP front (a hyper server on its own two-thread Tokio runtime in
//! this process) adds a few tens of µs on top of the spawn.

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wisp_runtime::{CgiRequest, build_cgi_env, parse_cgi_response};

/// How one request is executed.
#[derive(Clone, Debug)]
pub enum Launcher {
    /// Spawn this native executable.
    Native(PathBuf),
    /// Run this native executable in a fresh runc container.
    Runc(Arc<crate::runc::Runc>, PathBuf),
    /// The naive Wasm design (the thesis' first Wasmtime POC): a new
    /// `Engine`, `Module::from_file` (compiling every time), WASI linking and
    /// `_start` per request, on a blocking thread.
    NaiveWasm(PathBuf),
}

/// One request in the naive design; returns stdout.
pub fn run_naive_wasm(module: &Path, env: &[(String, String)], body: &[u8]) -> Result<Vec<u8>> {
    use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
    let engine = wasmtime::Engine::default();
    let module = wasmtime::Module::from_file(&engine, module)?;
    let mut linker = wasmtime::Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)?;
    let out = MemoryOutputPipe::new(16 << 20);
    let ctx = wasmtime_wasi::WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(Bytes::copy_from_slice(body)))
        .stdout(out.clone())
        .envs(env)
        .build_p1();
    let mut store = wasmtime::Store::new(&engine, ctx);
    let instance = linker.instantiate(&mut store, &module)?;
    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
    if let Err(e) = start.call(&mut store, ()) {
        match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            Some(x) if x.0 == 0 => {}
            _ => return Err(e.into()),
        }
    }
    drop(store);
    Ok(out.contents().to_vec())
}

/// The CGI environment for a request of `query` with a body of `body_len` bytes.
pub fn cgi_env(
    method: &str,
    query: &str,
    body_len: usize,
    function: &str,
) -> Vec<(String, String)> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::HOST,
        http::HeaderValue::from_static("127.0.0.1"),
    );
    build_cgi_env(
        &CgiRequest {
            method,
            path_info: "",
            query,
            headers: &headers,
            content_length: body_len,
            function,
            server_name: "127.0.0.1",
            server_port: 0,
            remote_addr: "127.0.0.1",
        },
        &[],
    )
}

/// Run a native executable once as a CGI process: exactly `env`, `body` on
/// stdin; returns its stdout. Fails if it exits non-zero.
pub fn run_process(exe: &Path, env: Vec<(String, String)>, body: &[u8]) -> Result<Vec<u8>> {
    let mut child = std::process::Command::new(exe)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", exe.display()))?;
    child.stdin.take().unwrap().write_all(body)?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "{} exited with {}",
        exe.display(),
        out.status
    );
    Ok(out.stdout)
}

/// Run a native executable once, synchronously; returns (wall time, stdout).
pub fn run_native_once(exe: &Path, query: &str, body: &[u8]) -> Result<(Duration, Vec<u8>)> {
    let env = cgi_env(
        if body.is_empty() { "GET" } else { "POST" },
        query,
        body.len(),
        "f",
    );
    let t0 = Instant::now();
    let stdout = run_process(exe, env, body)?;
    Ok((t0.elapsed(), stdout))
}

async fn run_launcher(
    l: &Launcher,
    method: &str,
    query: &str,
    body: Bytes,
    name: &str,
) -> Result<Vec<u8>> {
    let env = cgi_env(method, query, body.len(), name);
    let mut cmd = match l {
        Launcher::Native(exe) => {
            let mut c = tokio::process::Command::new(exe);
            c.env_clear().envs(env);
            c
        }
        Launcher::Runc(r, exe) => r.command(exe, &env)?,
        Launcher::NaiveWasm(m) => {
            let m = m.clone();
            return tokio::task::spawn_blocking(move || run_naive_wasm(&m, &env, &body)).await?;
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("spawning the baseline process")?;
    let mut stdin = child.stdin.take().unwrap();
    let writer = async move {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&body).await;
    };
    let (_, out) = tokio::join!(writer, child.wait_with_output());
    let out = out?;
    anyhow::ensure!(
        out.status.success(),
        "baseline process exited with {}",
        out.status
    );
    Ok(out.stdout)
}

/// An HTTP server that runs one process per request: `/fn/{name}?query`.
pub struct ProcessServer {
    /// Base URL.
    pub url: String,
    rt: Option<tokio::runtime::Runtime>,
}

impl ProcessServer {
    /// Serve `routes` on 127.0.0.1 (a free port).
    pub fn start(routes: HashMap<String, Launcher>) -> Result<ProcessServer> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bench-baseline")
            .enable_all()
            .build()?;
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let routes = Arc::new(routes);
        rt.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(std_listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let routes = routes.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let routes = routes.clone();
                        async move {
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().unwrap_or("").to_string();
                            let method = req.method().as_str().to_string();
                            let name = path
                                .strip_prefix("/fn/")
                                .unwrap_or("")
                                .split('/')
                                .next()
                                .unwrap_or("")
                                .to_string();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let resp = match routes.get(&name) {
                                None => hyper::Response::builder()
                                    .status(404)
                                    .body(Full::new(Bytes::from("no such function")))
                                    .unwrap(),
                                Some(l) => {
                                    match run_launcher(l, &method, &query, body, &name).await {
                                        Ok(out) => {
                                            let r = parse_cgi_response(out.into());
                                            let mut b = hyper::Response::builder().status(r.status);
                                            for (k, v) in &r.headers {
                                                b = b.header(k.as_str(), v.as_str());
                                            }
                                            b.body(Full::new(r.body)).unwrap_or_else(|_| {
                                                hyper::Response::new(Full::new(Bytes::new()))
                                            })
                                        }
                                        Err(e) => hyper::Response::builder()
                                            .status(500)
                                            .body(Full::new(Bytes::from(format!("{e:#}"))))
                                            .unwrap(),
                                    }
                                }
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(ProcessServer {
            url: format!("http://{addr}"),
            rt: Some(rt),
        })
    }

    /// URL of a function, `query` without `?`.
    pub fn fn_url(&self, name: &str, query: &str) -> String {
        if query.is_empty() {
            format!("{}/fn/{name}", self.url)
        } else {
            format!("{}/fn/{name}?{query}", self.url)
        }
    }
}

impl Drop for ProcessServer {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
