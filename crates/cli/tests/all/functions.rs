//! Golden tests of the benchmark suite: every function deployed on a real
//! `wisp serve`, invoked with its default input and one other, must answer
//! exactly what its native build answers for the same request (run as a
//! process with the same CGI environment).

use crate::support::*;
use http::Method;
use serde_json::json;
use std::path::Path;
use wisp_runtime::{CgiRequest, build_cgi_env, parse_cgi_response};

#[derive(Clone, Copy, PartialEq)]
enum Data {
    /// No directory granted.
    None,
    /// The generated inputs, read-only at /data.
    Inputs,
    /// A fresh writable scratch directory at /data.
    Scratch,
}

struct Case {
    query: &'static str,
    body: Option<&'static [u8]>,
}

const fn q(query: &'static str) -> Case {
    Case { query, body: None }
}

const fn qb(query: &'static str, body: &'static [u8]) -> Case {
    Case {
        query,
        body: Some(body),
    }
}

/// Run the native build the way the host runs the wasm one. Paths under
/// `/data` become the granted host directory.
fn run_native(
    exe: &Path,
    case: &Case,
    host_dir: Option<&Path>,
    host: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let query = match host_dir {
        Some(d) => case.query.replace("/data", d.to_str().unwrap()),
        None => case.query.to_string(),
    };
    let body = case.body.unwrap_or(b"");
    let method = if case.body.is_some() { "POST" } else { "GET" };
    // The headers the test client sends.
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, host.parse().unwrap());
    if case.body.is_some() {
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/octet-stream"),
        );
    }
    let env = build_cgi_env(
        &CgiRequest {
            method,
            path_info: "",
            query: &query,
            headers: &headers,
            content_length: body.len(),
            function: "f",
            server_name: "127.0.0.1",
            server_port: 0,
            remote_addr: "127.0.0.1",
        },
        &[],
    );
    let mut stdout = wisp_bench::baseline::run_process(exe, env, body)
        .unwrap_or_else(|e| panic!("native {}: {e:#}", exe.display()));
    if let Some(d) = host_dir {
        // Normalise the host path back to the guest's view.
        let from = d.to_str().unwrap().as_bytes();
        let mut norm = Vec::with_capacity(stdout.len());
        let mut i = 0;
        while i < stdout.len() {
            if stdout[i..].starts_with(from) {
                norm.extend_from_slice(b"/data");
                i += from.len();
            } else {
                norm.push(stdout[i]);
                i += 1;
            }
        }
        stdout = norm;
    }
    let r = parse_cgi_response(stdout.into());
    (r.status, r.headers, r.body.to_vec())
}

async fn golden(name: &str, data: Data, cases: &[Case]) {
    let built = manifest()
        .get(name)
        .unwrap_or_else(|| panic!("{name} not built"))
        .clone();
    let native = built
        .native
        .clone()
        .expect("native build (run scripts/build-functions without --wasm-only)");
    let s = Server::allowing_dirs();
    let c = s.client();
    for (i, case) in cases.iter().enumerate() {
        // Fresh scratch dirs per case and side, so writes can't leak between them.
        let wasm_scratch = tempfile::tempdir().unwrap();
        let native_scratch = tempfile::tempdir().unwrap();
        let (wasm_dir, native_dir): (Option<&Path>, Option<&Path>) = match data {
            Data::None => (None, None),
            Data::Inputs => (Some(inputs()), Some(inputs())),
            Data::Scratch => (Some(wasm_scratch.path()), Some(native_scratch.path())),
        };
        let config = match wasm_dir {
            Some(d) => {
                json!({"dirs": [{"host": d.to_str().unwrap(), "guest": "/data", "read_only": data == Data::Inputs}],
                              "limits": {"timeout_ms": 120000}})
            }
            None => json!({"limits": {"timeout_ms": 120000}}),
        };
        let fname = format!("{name}-{i}");
        let r = deploy(&c, &fname, &std::fs::read(&built.wasm).unwrap(), config).await;
        assert!(r.status.is_success(), "deploy {name}: {}", r.text());
        let path = if case.query.is_empty() {
            format!("/fn/{fname}")
        } else {
            format!("/fn/{fname}?{}", case.query)
        };
        let r = match case.body {
            Some(b) => c
                .send(
                    Method::POST,
                    &path,
                    &[("content-type", "application/octet-stream")],
                    b.to_vec(),
                )
                .await
                .unwrap(),
            None => c.get(&path).await.unwrap(),
        };
        let (nstatus, nheaders, nbody) = run_native(
            &native,
            case,
            native_dir,
            s.url.trim_start_matches("http://"),
        );
        let what = format!("{name} ?{} (case {i})", case.query);
        assert_eq!(
            r.status.as_u16(),
            nstatus,
            "{what}: status; wasm body: {}",
            r.text()
        );
        assert!(
            nstatus < 400,
            "{what}: native answered {nstatus}: {}",
            String::from_utf8_lossy(&nbody)
        );
        if r.body[..] != nbody[..] {
            panic!(
                "{what}: wasm and native answers differ\n wasm ({} B): {:?}\n native ({} B): {:?}",
                r.body.len(),
                String::from_utf8_lossy(&r.body[..r.body.len().min(300)]),
                nbody.len(),
                String::from_utf8_lossy(&nbody[..nbody.len().min(300)])
            );
        }
        for (k, v) in &nheaders {
            assert_eq!(r.header(k), Some(v.as_str()), "{what}: header {k}");
        }
        assert!(!r.body.is_empty(), "{what}: empty answer");
    }
}

macro_rules! golden {
    ($test:ident, $name:literal, $data:expr, [$($case:expr),+ $(,)?]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            golden($name, $data, &[$($case),+]).await;
        }
    };
}

golden!(hello, "hello", Data::None, [q("")]);
golden!(
    echo,
    "echo",
    Data::None,
    [q(""), qb("a=1&b=two+words", b"some body")]
);
golden!(fibonacci, "fibonacci", Data::None, [q(""), q("n=20")]);
golden!(
    hash,
    "hash",
    Data::None,
    [q(""), q("iterations=10&input=abc")]
);
golden!(
    prime_numbers,
    "prime-numbers",
    Data::None,
    [q(""), q("n=10000")]
);
golden!(n_body, "n-body", Data::None, [q(""), q("steps=100")]);
golden!(
    float_operation,
    "float-operation",
    Data::None,
    [q(""), q("n=1000")]
);
golden!(matmul, "matmul", Data::None, [q(""), q("dimensions=50")]);
golden!(
    linear_equations,
    "linear-equations",
    Data::None,
    [q(""), q("unknowns=128")]
);
golden!(aes, "aes", Data::None, [q(""), q("length=64&iterations=3")]);
golden!(
    checksum,
    "checksum",
    Data::Inputs,
    [qb("", b"checksum me"), q("file=/data/files/random-1m.bin")]
);
golden!(
    fuzzysearch,
    "fuzzysearch",
    Data::Inputs,
    [
        q("file=/data/text/corpus.txt"),
        qb("search=fox", b"The quick brown fox; a fax; the fix.")
    ]
);
golden!(
    whatlang,
    "whatlang",
    Data::None,
    [
        q(""),
        q("text=Das+ist+ein+kurzer+Satz+in+deutscher+Sprache")
    ]
);
golden!(
    audio_sine_wave,
    "audio-sine-wave",
    Data::None,
    [q(""), q("freq=880&duration=1")]
);
golden!(
    zip_compression,
    "zip-compression",
    Data::Inputs,
    [q("dir=/data/files"), q("dir=/data/text")]
);
golden!(
    diskio,
    "diskio",
    Data::Scratch,
    [q("dir=/data"), q("dir=/data&lines=1000")]
);
golden!(
    image_processing,
    "image-processing",
    Data::Inputs,
    [
        q("file=/data/images/input.png"),
        q("file=/data/images/input.png&width=200&height=100&angle=90")
    ]
);
golden!(counter, "counter", Data::None, [q("")]);
golden!(
    ow_hash,
    "ow-hash",
    Data::None,
    [q(""), qb("", br#"{"iterations": 10, "input": "abc"}"#)]
);
golden!(ow_sleep, "ow-sleep", Data::None, [qb("", br#"{"ms": 5}"#)]);

// The frame pipeline (docs/workflows.md): generated frames and tiny ones.
const P6_2X2: &[u8] = b"P6\n2 2\n255\n\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0";
const P5_4X4: &[u8] = b"P5 # four by four\n4 4\n255\n\x00\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0";
const TWO_FRAMES: &[u8] = b"P5\n2 1\n255\n\x01\x02P6\n1 1\n255\n\x03\x04\x05trailing";
golden!(
    frame_decode,
    "frame-decode",
    Data::Inputs,
    [
        q("file=/data/frames/frame-16k.png"),
        q("file=/data/frames/frame-64k.png")
    ]
);
golden!(
    frame_gray,
    "frame-gray",
    Data::Inputs,
    [q("file=/data/frames/frame-16k.ppm"), qb("", P6_2X2)]
);
golden!(
    frame_resize,
    "frame-resize",
    Data::Inputs,
    [
        q("file=/data/frames/frame-16k.ppm"),
        q("file=/data/frames/frame-16k.ppm&factor=3"),
        qb("", P5_4X4)
    ]
);
golden!(
    frame_edges,
    "frame-edges",
    Data::Inputs,
    [q("file=/data/frames/frame-16k.ppm"), qb("", P5_4X4)]
);
golden!(
    frame_compress,
    "frame-compress",
    Data::Inputs,
    [q("file=/data/frames/frame-16k.ppm"), qb("level=1", P5_4X4)]
);
golden!(
    frame_summary,
    "frame-summary",
    Data::Inputs,
    [q("file=/data/frames/frame-16k.ppm"), qb("", TWO_FRAMES)]
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_decode_answers_the_generated_raw_frame() {
    // scripts/gen-inputs writes the 16k frame both as PNG and raw: decoding
    // the one must give the other, byte for byte.
    let s = Server::start();
    let c = s.client();
    deploy(&c, "frame-decode", &read_guest("frame-decode"), json!({}))
        .await
        .ok()
        .unwrap();
    let png = std::fs::read(inputs().join("frames/frame-16k.png")).unwrap();
    let ppm = std::fs::read(inputs().join("frames/frame-16k.ppm")).unwrap();
    let r = c
        .send(Method::POST, "/fn/frame-decode", &[], png)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/x-portable-pixmap"));
    assert!(
        r.body[..] == ppm[..],
        "decoded {} bytes, raw frame {} bytes",
        r.body.len(),
        ppm.len()
    );
    let r = c
        .send(Method::POST, "/fn/frame-decode", &[], b"not a png".to_vec())
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_needing_a_directory_fail_clearly_without_one() {
    let s = Server::start();
    let c = s.client();
    for (name, query) in [
        ("diskio", ""),
        ("zip-compression", "dir=/data/files"),
        ("checksum", "file=/data/files/random-1m.bin"),
    ] {
        deploy(&c, name, &std::fs::read(guest(name)).unwrap(), json!({}))
            .await
            .ok()
            .unwrap();
        let r = c.get(&format!("/fn/{name}?{query}")).await.unwrap();
        assert_eq!(r.status, 500, "{name}: {}", r.text());
        assert!(
            r.text().contains("no directory is granted at /data"),
            "{name}: {}",
            r.text()
        );
    }
}

#[test]
fn every_function_has_a_golden_test() {
    // A new function without a golden case breaks this test.
    let covered = [
        "hello",
        "echo",
        "fibonacci",
        "hash",
        "prime-numbers",
        "n-body",
        "float-operation",
        "matmul",
        "linear-equations",
        "aes",
        "checksum",
        "fuzzysearch",
        "whatlang",
        "audio-sine-wave",
        "zip-compression",
        "diskio",
        "image-processing",
        "counter",
        "ow-hash",
        "ow-sleep",
        "frame-decode",
        "frame-gray",
        "frame-resize",
        "frame-edges",
        "frame-compress",
        "frame-summary",
    ];
    let fixtures = [
        "sleep",
        "test-argv", // cli::run_a_plain_command_like_wasmtime_run, crates/shim/tests
        "test-cgi",
        "test-empty",
        "test-membomb",
        "test-spin",
        "test-action",
        "test-stack",
        "ow-proxy", // native only: the container baseline of wisp bench --scenario openwhisk
    ];
    for (name, b) in manifest() {
        if b.abi == "http" {
            continue; // components are covered by tests/all/http.rs
        }
        assert!(
            covered.contains(&name.as_str()) || fixtures.contains(&name.as_str()),
            "function {name} has no golden test in tests/all/functions.rs"
        );
    }
}
