#![allow(missing_docs)]
//! In-process figures of the hot and cold paths.
//!
//! - `warm/*`: fresh `Store` + WASI context + instance from a cached
//!   `InstancePre`, run `_start`, drop — what every request pays.
//! - `cold/load`: precompiled artifact on disk → mapped `Module` → linked,
//!   ready `InstancePre` — what the first request after a restart pays.
//! - `naive/*`: the design of the thesis' Wasmtime POC for comparison:
//!   `Engine::default()` + `Module::from_file` (a full compile) per request.
//!
//! Run: `cargo bench -p wisp-runtime --bench instantiate`.
//! Guests come from `functions/` (built on demand, like the tests).

use criterion::{Criterion, criterion_group, criterion_main};
use std::path::PathBuf;
use std::process::Command;
use wisp_core::Limits;
use wisp_runtime::{EngineOptions, Invocation, Runtime};

fn guest(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let p = root.join(format!(
        "functions/target/wasm32-wasip1/release/{name}.wasm"
    ));
    if !p.exists() {
        let st = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(root.join("functions"))
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip1",
                "-p",
                name,
            ])
            .env_remove("CARGO_TARGET_DIR")
            .status()
            .expect("cargo");
        assert!(st.success());
    }
    p
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(EngineOptions::default()).unwrap();
    eprintln!("pooling allocator: {}", runtime.pooling());
    let limits = Limits::default();
    let args = vec!["f".to_string()];
    let env: Vec<(String, String)> = vec![
        ("REQUEST_METHOD".into(), "GET".into()),
        ("QUERY_STRING".into(), String::new()),
    ];

    let wat_empty =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    let dir = std::env::temp_dir().join(format!("wisp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let mut g = c.benchmark_group("warm");
    for (name, wasm) in [
        ("wat-empty", wat_empty.clone()),
        ("rust-empty", std::fs::read(guest("test-empty")).unwrap()),
        ("rust-hello", std::fs::read(guest("hello")).unwrap()),
    ] {
        let compiled = runtime.compile(&wasm).unwrap();
        let path = dir.join(format!("{name}.cwasm"));
        std::fs::write(&path, &compiled.artifact).unwrap();
        let loaded = runtime.load(&path).unwrap();
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(runtime.invoke(
                    &loaded,
                    Invocation {
                        args: &args,
                        env: &env,
                        stdin: bytes::Bytes::new(),
                        dirs: &[],
                        limits: &limits,
                    },
                ))
                .unwrap()
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("cold");
    let hello = std::fs::read(guest("hello")).unwrap();
    let path = dir.join("cold-hello.cwasm");
    std::fs::write(&path, runtime.compile(&hello).unwrap().artifact).unwrap();
    g.bench_function("load-hello", |b| b.iter(|| runtime.load(&path).unwrap()));
    g.finish();

    let mut g = c.benchmark_group("naive");
    g.sample_size(10);
    let hello_path = guest("hello");
    g.bench_function("engine+compile-hello", |b| {
        b.iter(|| {
            let engine = wasmtime::Engine::default();
            let module = wasmtime::Module::from_file(&engine, &hello_path).unwrap();
            std::hint::black_box(module);
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
