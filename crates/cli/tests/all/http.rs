//! `wasi:http` components: round trip, streaming, limits, outbound
//! allow-list against a real nginx, side by side with command modules, and
//! portability to `wasmtime serve`.

use crate::support::*;
use http::Method;
use serde_json::json;
use std::time::{Duration, Instant};

fn component(name: &str) -> Vec<u8> {
    let b = manifest()
        .get(name)
        .unwrap_or_else(|| panic!("{name} not built"));
    assert_eq!(b.abi, "http");
    std::fs::read(&b.wasm).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_round_trip_status_headers_and_streams() {
    let s = Server::start();
    let c = s.client();
    let r = deploy(
        &c,
        "hh",
        &component("hello-http"),
        json!({"env": {"GREETING": "hej"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json().unwrap()["abi"], "http");

    let r = c.get("/fn/hh").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello from a wasi:http component!\n");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(r.header("wisp-cold"), Some("false"));
    assert_eq!(r.header("wisp-activation-id").map(str::len), Some(32));

    let r = c.get("/fn/hh/status/418").await.unwrap();
    assert_eq!(r.status, 418);
    assert_eq!(r.header("x-wisp-test"), Some("yes"));
    assert_eq!(r.text(), "status 418\n");

    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let r = c
        .send(
            Method::POST,
            "/fn/hh/echo",
            &[("content-type", "application/x-test")],
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-method"), Some("POST"));
    assert_eq!(r.header("content-type"), Some("application/x-test"));
    assert_eq!(r.body.len(), body.len());
    assert!(r.body[..] == body[..], "echoed body differs");

    let r = c.get("/fn/hh/stream?chunks=16&size=65536").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 16 * 65536);
    assert!(
        r.body
            .chunks(65536)
            .enumerate()
            .all(|(i, ch)| ch.iter().all(|&b| b == b'a' + (i % 26) as u8))
    );

    // Only granted env reaches the component.
    assert_eq!(
        c.get("/fn/hh/env?name=GREETING").await.unwrap().text(),
        "hej"
    );
    assert_eq!(c.get("/fn/hh/env?name=PATH").await.unwrap().text(), "unset");
    assert_eq!(c.get("/fn/hh/nope").await.unwrap().status, 404);

    // Activations are recorded once the instance is done.
    let l = get_json(&c, "/v1/activations?function=hh&limit=100").await;
    let acts = l["activations"].as_array().unwrap();
    assert_eq!(acts.len(), 7, "{l}");
    assert!(acts.iter().any(|a| a["http_status"] == 418));
    assert!(acts.iter().any(|a| a["bytes_out"] == 16 * 65536), "{l}");
    assert!(acts.iter().all(|a| a["status"] == "success"), "{l}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn component_and_command_side_by_side() {
    let s = Server::start();
    let c = s.client();
    deploy(&c, "hh", &component("hello-http"), json!({}))
        .await
        .ok()
        .unwrap();
    deploy_guest(&c, "hello", "hello").await;
    deploy_guest(&c, "counter", "counter").await;
    let futs = (0..30).map(|i| {
        let c = c.clone();
        async move {
            let path = ["/fn/hh", "/fn/hello", "/fn/counter"][i % 3];
            (i % 3, c.get(path).await.unwrap())
        }
    });
    for (k, r) in futures::future::join_all(futs).await {
        assert_eq!(r.status, 200);
        let want = [
            "Hello from a wasi:http component!\n",
            "Hello, world!\n",
            "1\n",
        ][k];
        assert_eq!(r.text(), want);
    }
    let l = get_json(&c, "/v1/functions").await;
    let abis: Vec<_> = l["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["abi"].as_str().unwrap().to_string())
        .collect();
    assert!(
        abis.contains(&"http".into()) && abis.contains(&"command".into()),
        "{abis:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_allow_list_against_real_nginx() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("hello.txt"), "from nginx\n").unwrap();
    let ng = Nginx::start(files.path());
    let other = Nginx::start(files.path());
    let s = Server::start();
    let c = s.client();
    let allowed = format!("http://127.0.0.1:{}", ng.port);
    let r = deploy(
        &c,
        "hh",
        &component("hello-http"),
        json!({"allowed_outbound_hosts": [allowed]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    deploy(&c, "closed", &component("hello-http"), json!({}))
        .await
        .ok()
        .unwrap();

    // Allowed: scheme, host and port match. Twice, to exercise the pool.
    for _ in 0..2 {
        let r = c
            .get(&format!("/fn/hh/fetch?url={}/hello.txt", ng.url()))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "status 200\nfrom nginx\n");
    }
    // Denied: another port, another host name, another scheme, no grant at all.
    for url in [
        format!("{}/hello.txt", other.url()),
        format!("http://localhost:{}/hello.txt", ng.port),
        format!("https://127.0.0.1:{}/hello.txt", ng.port),
    ] {
        let r = c.get(&format!("/fn/hh/fetch?url={url}")).await.unwrap();
        assert_eq!(r.status, 502, "{url}: {}", r.text());
        assert!(
            r.text().contains("HttpRequestDenied"),
            "{url}: {}",
            r.text()
        );
        let a = activation_of(&c, &r).await;
        assert!(
            a["log"]
                .as_str()
                .unwrap_or("")
                .contains("denied: not in allowed_outbound_hosts"),
            "{a}"
        );
    }
    let r = c
        .get(&format!("/fn/closed/fetch?url={}/hello.txt", ng.url()))
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    assert!(r.text().contains("HttpRequestDenied"));
    // Bad patterns are refused at deploy.
    let r = deploy(
        &c,
        "bad",
        &component("hello-http"),
        json!({"allowed_outbound_hosts": ["ftp://x"]}),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("scheme"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_to_a_dead_host_fails_within_the_timeout() {
    // A port nobody listens on: connection refused, handled by the guest.
    let dead = free_port();
    // A peer that accepts and never answers: only the deadline ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let s = Server::start();
    let c = s.client();
    deploy(
        &c,
        "hh",
        &component("hello-http"),
        json!({"allowed_outbound_hosts": ["http://127.0.0.1:*"], "limits": {"timeout_ms": 1500}}),
    )
    .await
    .ok()
    .unwrap();
    let r = c
        .get(&format!("/fn/hh/fetch?url=http://127.0.0.1:{dead}/x"))
        .await
        .unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("ConnectionRefused"), "{}", r.text());

    let t = Instant::now();
    let r = c
        .get(&format!(
            "/fn/hh/fetch?url=http://127.0.0.1:{silent_port}/x"
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(error_code(&r), "timeout");
    assert!(
        t.elapsed() < Duration::from_millis(3500),
        "{:?}",
        t.elapsed()
    );
    drop(silent);
    // The function and the server are fine afterwards.
    assert_eq!(c.get("/fn/hh").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_apply_to_components() {
    let s = Server::start();
    let c = s.client();
    deploy(
        &c,
        "hh",
        &component("hello-http"),
        json!({"limits": {"max_body_bytes": 1024, "max_concurrency": 1, "max_queue": 0, "timeout_ms": 1000}}),
    )
    .await
    .ok()
    .unwrap();
    let r = c
        .send(Method::POST, "/fn/hh/echo", &[], vec![b'x'; 2048])
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(error_code(&r), "payload_too_large");
    assert_eq!(
        c.send(Method::POST, "/fn/hh/echo", &[], vec![b'x'; 1024])
            .await
            .unwrap()
            .status,
        200
    );

    // Concurrency: one slot, no queue. Hold it with a slow outbound call.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let r = deploy(
        &c,
        "hh",
        &component("hello-http"),
        json!({"allowed_outbound_hosts": [format!("http://127.0.0.1:{port}")],
               "limits": {"max_concurrency": 1, "max_queue": 0, "timeout_ms": 1000}}),
    )
    .await;
    assert!(r.status.is_success(), "{}", r.text());
    let slow = {
        let c = c.clone();
        tokio::spawn(async move {
            c.get(&format!("/fn/hh/fetch?url=http://127.0.0.1:{port}/"))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = c.get("/fn/hh").await.unwrap();
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(slow.await.unwrap().status, 504);
    assert_eq!(c.get("/fn/hh").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzysearch_reads_its_text_from_object_storage() {
    let ng = Nginx::start(&inputs().join("text"));
    let s = Server::allowing_dirs();
    let c = s.client();
    let r = deploy(
        &c,
        "fz",
        &component("fuzzysearch-http"),
        json!({"env": {"STORE_URL": ng.url()}, "allowed_outbound_hosts": [ng.url()]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.get("/fn/fz?object=corpus.txt").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got = r.json().unwrap();
    // Same answer as the command-module fuzzysearch on the same file.
    deploy(&c, "fz-local", &std::fs::read(guest("fuzzysearch")).unwrap(),
        json!({"dirs": [{"host": inputs().to_str().unwrap(), "guest": "/data", "read_only": true}]})).await.ok().unwrap();
    let local = c
        .get("/fn/fz-local?file=/data/text/corpus.txt")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(got["matches"], local["matches"], "{got} vs {local}");
    assert_eq!(got["exact"], local["exact"]);
    assert_eq!(got["exact"], 250);
    let r = c.get("/fn/fz?object=missing.txt").await.unwrap();
    assert_eq!(r.status, 502, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_manager_writes_to_a_database_service() {
    let empty = tempfile::tempdir().unwrap();
    let ng = Nginx::start(empty.path());
    let s = Server::start();
    let c = s.client();
    deploy(
        &c,
        "um",
        &component("user-manager"),
        json!({"env": {"DB_URL": format!("{}/db", ng.url())}, "allowed_outbound_hosts": [ng.url()]}),
    )
    .await
    .ok()
    .unwrap();
    let r = c
        .send(Method::POST, "/fn/um?entries=3", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    let v = r.json().unwrap();
    let created = v["created"].as_array().unwrap();
    assert_eq!(created.len(), 3);
    for rec in created {
        let id = rec["id"].as_str().unwrap();
        let stored =
            std::fs::read_to_string(ng.db_dir().join("users").join(format!("{id}.json"))).unwrap();
        let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            &stored, rec,
            "the database holds what the function answered"
        );
        assert!(rec["email"].as_str().unwrap().contains('@'));
    }
    // Deterministic for a seed.
    let again = c
        .send(Method::POST, "/fn/um?entries=3", &[], "")
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(again["created"], v["created"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_http_answers_the_same_on_wasmtime_serve() {
    let Some(wasmtime) = wisp_bench::wasmtime_serve::find() else {
        // .ci/run installs wasmtime-cli 48.0.8; a developer machine may not have it.
        eprintln!("wasmtime not on PATH: skipping the portability comparison");
        assert!(
            std::env::var("CI").is_err(),
            "CI must have wasmtime installed"
        );
        return;
    };
    let wasm = manifest().get("hello-http").unwrap().wasm.clone();
    let port = free_port();
    let mut child = std::process::Command::new(wasmtime)
        .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
        .arg(&wasm)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "wasmtime serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ws = wisp_cli::client::Client::new(&format!("http://127.0.0.1:{port}"), None);
    let s = Server::start();
    let c = s.client();
    deploy(&c, "hh", &component("hello-http"), json!({}))
        .await
        .ok()
        .unwrap();
    for (path, method, body) in [
        ("/", Method::GET, ""),
        ("/status/418", Method::GET, ""),
        ("/echo", Method::POST, "portable body"),
        ("/stream?chunks=3&size=10", Method::GET, ""),
        ("/missing", Method::GET, ""),
    ] {
        let a = ws
            .send(method.clone(), path, &[("content-type", "text/x-p")], body)
            .await
            .unwrap();
        let b = c
            .send(
                method,
                &format!("/fn/hh{path}"),
                &[("content-type", "text/x-p")],
                body,
            )
            .await
            .unwrap();
        assert_eq!(a.status, b.status, "{path}");
        assert_eq!(a.body, b.body, "{path}");
        for h in ["content-type", "x-wisp-test", "x-echo-method"] {
            assert_eq!(a.header(h), b.header(h), "{path}: {h}");
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
