//! Benchmark baseline: the naive design of the thesis' Wasmtime POC.
//!
//! Every request builds `Engine::default()`, compiles the module with
//! `Module::from_file`, links WASI, instantiates and runs `_start`, and
//! answers with stdout (`wisp_bench::baseline::run_naive_wasm`, the same
//! baseline `wisp bench` measures). No AOT, no template reuse, no pooling. It exists
//! only so `scripts/bench-server` can measure Wisp against it in the same
//! run.
//!
//! Usage: `naive_server ADDR MODULE.wasm`

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;

fn run_once(path: &std::path::Path) -> anyhow::Result<Bytes> {
    let env = [("REQUEST_METHOD".to_string(), "GET".to_string())];
    Ok(Bytes::from(wisp_bench::baseline::run_naive_wasm(
        path, &env, b"",
    )?))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8090".into());
    let module: Arc<std::path::PathBuf> = Arc::new(
        args.next()
            .expect("usage: naive_server ADDR MODULE.wasm")
            .into(),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "naive server listening on http://{}",
        listener.local_addr()?
    );
    loop {
        let (sock, _) = listener.accept().await?;
        let module = module.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req| {
                let module = module.clone();
                async move {
                    let body = tokio::task::spawn_blocking(move || run_once(&module))
                        .await
                        .unwrap();
                    let resp = match body {
                        Ok(b) => hyper::Response::new(Full::new(b)),
                        Err(e) => {
                            let mut r =
                                hyper::Response::new(Full::new(Bytes::from(format!("{e:#}"))));
                            *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                            r
                        }
                    };
                    Ok::<_, Infallible>(resp)
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}
