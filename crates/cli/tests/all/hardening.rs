//! Hardening: each test defends one finding of a hostile client, guest or
//! operator mistake (issue "a hostile client or guest can't take Wisp
//! down"). Each was written to fail on the code before the fix.

use crate::support::*;
use http::Method;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Run `wisp serve` expecting it to refuse to start: (exit ok?, stderr).
fn serve_refuses(args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(wisp_bin());
    cmd.arg("serve")
        .arg("--home")
        .arg(home.path().join("h"))
        .args(args)
        .env_remove("WISP_TOKEN")
        .env("WISP_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.success(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wisp serve {args:?} did not exit: it started when it should have refused");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw HTTP/1.1 exchange on a fresh connection; returns the status line
/// and the rest.
fn raw(url: &str, request: &str) -> String {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_slots_come_back_when_queued_clients_give_up() {
    let s = Server::start();
    let c = s.client();
    let r = deploy(
        &c,
        "sleep",
        &read_guest("sleep"),
        json!({"limits": {"max_concurrency": 1, "max_queue": 3}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let busy = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/fn/sleep?ms=1500").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Five clients give up while queued (or refused: the queue holds 3).
    for _ in 0..5 {
        let _ = tokio::time::timeout(Duration::from_millis(150), c.get("/fn/sleep?ms=1")).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.metric("wisp_queue_depth{function=\"sleep\"}").await,
        0.0,
        "clients that gave up are still counted in the queue"
    );
    // A request that finds the instance busy waits its turn instead of a 429.
    let queued = c.get("/fn/sleep?ms=1").await.unwrap();
    assert_eq!(queued.status, 200, "{}", queued.text());
    assert_eq!(busy.await.unwrap().status, 200);
    // The ones that left are on record as cancelled.
    let acts = get_json(&c, "/v1/activations?function=sleep").await;
    let cancelled = acts["activations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "cancelled")
        .count();
    assert!(
        cancelled >= 3,
        "expected the queued leavers as cancelled: {acts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_parameters_cannot_override_cgi_variables() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "cgi", "test-cgi").await;
    let r = c
        .send(
            Method::GET,
            "/fn/cgi?HTTP_X_FORWARDED_FOR=6.6.6.6&HTTP_AUTHORIZATION=Bearer+stolen&REMOTE_ADDR=6.6.6.6&n=1",
            &[("x-forwarded-for", "1.1.1.1"), ("proxy", "http://evil:1")],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let env = r.text();
    let lines: Vec<&str> = env.lines().collect();
    assert!(lines.contains(&"HTTP_X_FORWARDED_FOR=1.1.1.1"), "{env}");
    let vars: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("QUERY_STRING="))
        .collect();
    assert!(
        !vars.iter().any(|l| l.contains("6.6.6.6")),
        "a query parameter overrode a CGI variable:\n{env}"
    );
    assert!(
        !vars.iter().any(|l| l.starts_with("HTTP_AUTHORIZATION=")),
        "{env}"
    );
    assert!(
        !vars.iter().any(|l| l.starts_with("HTTP_PROXY=")),
        "httpoxy: {env}"
    );
    assert!(lines.contains(&"REMOTE_ADDR=127.0.0.1"), "{env}");
    assert!(lines.contains(&"n=1"), "plain parameters still pass: {env}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_whose_client_disconnects_still_completes() {
    let s = Server::start();
    let c = s.client();
    // The largest module of the suite: its compile takes a while.
    let wasm = read_guest("whatlang");
    let cfg = serde_json::to_vec(&json!({})).unwrap();
    let (ct, body) = wisp_cli::client::multipart(&[
        ("module", "application/wasm", &wasm),
        ("config", "application/json", &cfg),
    ]);
    let gave_up = tokio::time::timeout(
        Duration::from_millis(30),
        c.send(
            Method::PUT,
            "/v1/functions/lang",
            &[("content-type", &ct)],
            body,
        ),
    )
    .await;
    assert!(
        gave_up.is_err(),
        "the deploy finished before the client gave up; the test needs a slower compile"
    );
    // The table and the store agree at every moment: shown means served.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let shown = c.get("/v1/functions/lang").await.unwrap().status == 200;
        let served = c.get("/fn/lang").await.unwrap().status != 404;
        assert_eq!(
            shown, served,
            "GET /v1/functions/lang and /fn/lang disagree"
        );
        if shown {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the abandoned deploy never completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dir_grants_only_under_allowed_roots_and_never_the_home() {
    let roots = tempfile::tempdir().unwrap();
    let data = roots.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), roots.path().join("link-out")).unwrap();
    let wasm = read_guest("test-cgi");
    let grant = |host: &str| json!({"dirs": [{"host": host, "guest": "/d"}]});

    // No --allow-dir: no grants at all.
    let s = Server::start();
    let c = s.client();
    let r = deploy(&c, "f", &wasm, grant(data.to_str().unwrap())).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("--allow-dir"), "{}", r.text());
    drop(s);

    let s = Server::with(&["--allow-dir", roots.path().to_str().unwrap()], &[]);
    let c = s.client();
    for (host, why) in [
        ("/", "the host's root"),
        (outside.path().to_str().unwrap(), "outside the roots"),
        (
            roots.path().join("link-out").to_str().unwrap(),
            "a symlink out of the roots",
        ),
        (s.home.to_str().unwrap(), "the Wisp home"),
    ] {
        let r = deploy(&c, "f", &wasm, grant(host)).await;
        assert_eq!(r.status, 400, "{why} was granted: {}", r.text());
        assert_eq!(error_code(&r), "bad_request");
    }
    let r = deploy(&c, "f", &wasm, grant(data.to_str().unwrap())).await;
    assert_eq!(r.status, 201, "{}", r.text());
    std::fs::write(data.join("x.txt"), "granted").unwrap();
    let r = c.get("/fn/f?read=/d/x.txt").await.unwrap();
    assert_eq!(r.text(), "granted");

    // A grant stored earlier that the operator no longer allows is not served.
    let mut s = s;
    s.restart_with(&[]);
    let r = s.client().get("/fn/f?read=/d/x.txt").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("--allow-dir"), "{}", r.text());
}

#[test]
fn a_public_address_needs_a_token_and_an_empty_token_is_an_error() {
    let (ok, err) = serve_refuses(&["--listen", "0.0.0.0:0"], &[]);
    assert!(!ok);
    assert!(err.contains("without a token"), "{err}");
    let (ok, err) = serve_refuses(&["--listen", "127.0.0.1:0"], &[("WISP_TOKEN", "")]);
    assert!(!ok);
    assert!(err.contains("token is empty"), "{err}");
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "  \n").unwrap();
    let (ok, err) = serve_refuses(
        &[
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            f.path().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok);
    assert!(err.contains("token is empty"), "{err}");

    // --insecure starts.
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(wisp_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--insecure", "--home"])
        .arg(home.path().join("h"))
        .env_remove("WISP_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        line.starts_with("wisp listening on http://0.0.0.0:"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_a_file_guards_the_api_and_metrics() {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), "s3cret-token\n").unwrap();
    let s = Server::with(&["--token-file", f.path().to_str().unwrap()], &[]);
    let anon = s.client();
    assert_eq!(anon.get("/v1/functions").await.unwrap().status, 401);
    assert_eq!(anon.get("/metrics").await.unwrap().status, 401);
    let wrong = s.client_with_token("s3cret-tokeN");
    assert_eq!(wrong.get("/v1/functions").await.unwrap().status, 401);
    let ok = s.client_with_token("s3cret-token");
    assert_eq!(ok.get("/v1/functions").await.unwrap().status, 200);
    assert_eq!(ok.get("/metrics").await.unwrap().status, 200);
    assert_eq!(anon.get("/healthz").await.unwrap().status, 200);

    let open = Server::with(&["--token", "t", "--public-metrics"], &[]);
    assert_eq!(open.client().get("/metrics").await.unwrap().status, 200);
    assert_eq!(
        open.client().get("/v1/functions").await.unwrap().status,
        401
    );
}

#[test]
fn foreign_host_and_origin_are_refused_on_loopback() {
    let s = Server::with(&["--allow-host", "wisp.test"], &[]);
    let port = port_of(&s.url);
    let get = |host: &str, extra: &str, path: &str| {
        raw(
            &s.url,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    let status = |resp: &str| resp.split(' ').nth(1).unwrap_or("").to_string();
    // DNS rebinding: a page on evil.com resolving to 127.0.0.1.
    let r = get(&format!("evil.com:{port}"), "", "/healthz");
    assert_eq!(status(&r), "403", "{r}");
    assert!(r.contains("\"forbidden\""), "{r}");
    for ok in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "wisp.test".into(),
    ] {
        let r = get(&ok, "", "/healthz");
        assert_eq!(status(&r), "200", "{ok}: {r}");
    }
    // A cross-site request to the management API.
    let r = get(
        &format!("localhost:{port}"),
        "Origin: https://evil.com\r\n",
        "/v1/functions",
    );
    assert_eq!(status(&r), "403", "{r}");
    let r = get(
        &format!("localhost:{port}"),
        &format!("Origin: http://localhost:{port}\r\n"),
        "/v1/functions",
    );
    assert_eq!(status(&r), "200", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_artifact_is_recompiled_not_loaded() {
    let mut s = Server::start();
    let c = s.client();
    deploy_guest(&c, "hello", "hello").await;
    s.terminate();
    let compiled = s.home.join("compiled");
    let fp_dir = std::fs::read_dir(&compiled)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let art = std::fs::read_dir(&fp_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .unwrap();
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&art, &bytes).unwrap();
    s.restart_after_stop();
    let c = s.client();
    let r = c.get("/fn/hello").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Hello"));
    assert_eq!(
        s.metric("wisp_compilations_total").await,
        1.0,
        "the modified artifact was loaded instead of recompiled"
    );
    assert_ne!(
        std::fs::read(&art).unwrap(),
        bytes,
        "the artifact was rewritten"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_whose_client_left_releases_its_slots() {
    // An upstream that accepts and never answers: the guest waits on it.
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let s = Server::start();
    let c = s.client();
    let r = deploy(
        &c,
        "h",
        &read_guest("hello-http"),
        json!({"allowed_outbound_hosts": [format!("http://{up}")],
               "limits": {"max_concurrency": 1, "max_queue": 0, "timeout_ms": 20000}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let gave_up = tokio::time::timeout(
        Duration::from_millis(400),
        c.get(&format!("/fn/h/fetch?url=http://{up}/slow")),
    )
    .await;
    assert!(gave_up.is_err());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        s.metric("wisp_instances_running{function=\"h\"}").await,
        0.0
    );
    assert_eq!(s.metric("wisp_node_instances").await, 0.0);
    // The one slot is free again: a new request is served, not refused.
    let r = c.get("/fn/h/").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let acts = get_json(&c, "/v1/activations?function=h").await;
    assert!(
        acts["activations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["status"] == "cancelled"),
        "{acts}"
    );
    drop(upstream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_after_admission_within_a_node_budget() {
    let s = Server::with(&["--max-buffered-body", "1MiB"], &[]);
    let c = s.client();
    let r = deploy(
        &c,
        "sleep",
        &read_guest("sleep"),
        json!({"limits": {"max_concurrency": 4, "max_body_bytes": 1048576}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let body = vec![b'x'; 700 << 10];
    let post = |c: wisp_cli::client::Client, body: Vec<u8>| {
        tokio::spawn(async move {
            c.send(Method::POST, "/fn/sleep?ms=800", &[], body)
                .await
                .unwrap()
        })
    };
    let a = post(c.clone(), body.clone());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.metric("wisp_node_buffered_body_bytes").await,
        (700 << 10) as f64
    );
    // A second 700 KiB body does not fit in the 1 MiB budget beside it.
    let b = post(c.clone(), body.clone()).await.unwrap();
    assert_eq!(b.status, 503, "{}", b.text());
    assert!(b.text().contains("request-buffer budget"), "{}", b.text());
    assert!(b.header("retry-after").is_some());
    assert_eq!(a.await.unwrap().status, 200);
    assert_eq!(s.metric("wisp_node_buffered_body_bytes").await, 0.0);

    // Queued requests hold no body bytes: only admitted ones read theirs.
    let r = deploy(
        &c,
        "one",
        &read_guest("sleep"),
        json!({"limits": {"max_concurrency": 1, "max_body_bytes": 1048576}}),
    )
    .await;
    assert_eq!(r.status, 201);
    let running = post_to(&c, "/fn/one?ms=800", vec![b'y'; 100 << 10]);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let queued: Vec<_> = (0..5)
        .map(|_| post_to(&c, "/fn/one?ms=1", vec![b'z'; 300 << 10]))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.metric("wisp_queue_depth{function=\"one\"}").await, 5.0);
    assert_eq!(
        s.metric("wisp_node_buffered_body_bytes").await,
        (100 << 10) as f64
    );
    assert_eq!(running.await.unwrap().status, 200);
    for q in queued {
        assert_eq!(q.await.unwrap().status, 200);
    }
}

fn post_to(
    c: &wisp_cli::client::Client,
    path: &str,
    body: Vec<u8>,
) -> tokio::task::JoinHandle<wisp_cli::client::Reply> {
    let (c, path) = (c.clone(), path.to_string());
    tokio::spawn(async move { c.send(Method::POST, &path, &[], body).await.unwrap() })
}

#[test]
fn slow_and_idle_connections_are_cut_and_capped() {
    let s = Server::with(
        &[
            "--header-timeout",
            "300ms",
            "--idle-timeout",
            "500ms",
            "--max-connections",
            "40",
        ],
        &[],
    );
    let addr = s.url.trim_start_matches("http://").to_string();
    // 30 slowloris connections: a partial header, then nothing.
    let slow: Vec<TcpStream> = (0..30)
        .map(|_| {
            let mut t = TcpStream::connect(&addr).unwrap();
            t.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            t
        })
        .collect();
    // A well-behaved client is served meanwhile.
    let t = Instant::now();
    for _ in 0..20 {
        let r = raw(
            &s.url,
            "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "starved: {:?}",
        t.elapsed()
    );
    // The slow ones are closed after the header timeout.
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        assert_eq!(
            n, 0,
            "a slowloris connection got an answer instead of being closed"
        );
    }
    // An idle keep-alive connection is closed after the idle timeout.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut all = Vec::new();
    let t = Instant::now();
    let _ = idle.read_to_end(&mut all);
    assert!(String::from_utf8_lossy(&all).starts_with("HTTP/1.1 200"));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "idle connection kept {:?}",
        t.elapsed()
    );

    // Past the cap, new connections get a 503 at the edge.
    let held: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let r = raw(&s.url, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    assert!(r.contains("connection limit"), "{r}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_values_are_bounded_with_errors_naming_the_bound() {
    let s = Server::start();
    let c = s.client();
    let wasm = read_guest("hello");
    for (limits, field) in [
        (json!({"max_log_bytes": 2147483648u64}), "max_log_bytes"),
        (json!({"max_queue": 4000000000u64}), "max_queue"),
        (
            json!({"max_response_bytes": 8589934592u64}),
            "max_response_bytes",
        ),
        (json!({"queue_timeout_ms": 86400000}), "queue_timeout_ms"),
    ] {
        let r = deploy(&c, "f", &wasm, json!({ "limits": limits })).await;
        assert_eq!(r.status, 400, "{field}: {}", r.text());
        let msg = r.json().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains(field) && msg.contains("between"), "{msg}");
    }
    let env: serde_json::Map<String, serde_json::Value> =
        (0..300).map(|i| (format!("K{i}"), json!("v"))).collect();
    let r = deploy(&c, "f", &wasm, json!({ "env": env })).await;
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_one_home_exits_with_a_clear_message() {
    let s = Server::start();
    deploy_guest(&s.client(), "hello", "hello").await;
    let out = Command::new(wisp_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--home"])
        .arg(&s.home)
        .env_remove("WISP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another wisp server is using"), "{err}");
    // The first server's files survived the second's start.
    assert_eq!(s.client().get("/fn/hello").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_and_stored_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    deploy_guest(&s.client(), "hello", "hello").await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&s.home), 0o700);
    assert_eq!(mode(&s.home.join("wisp.db")), 0o600);
    let blob = std::fs::read_dir(s.home.join("blobs/sha256"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(mode(&blob), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_config_that_no_longer_parses_is_not_served_with_defaults() {
    let mut s = Server::start();
    let c = s.client();
    let r = deploy(
        &c,
        "hello",
        &read_guest("hello"),
        json!({"limits": {"timeout_ms": 700}}),
    )
    .await;
    assert_eq!(r.status, 201);
    s.terminate();
    {
        let db = rusqlite::Connection::open(s.home.join("wisp.db")).unwrap();
        db.execute(
            "UPDATE versions SET config = '{\"limits\":{\"timeout_msec\":700}}'",
            [],
        )
        .unwrap();
    }
    s.restart_after_stop();
    let c = s.client();
    let r = c.get("/fn/hello").await.unwrap();
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("does not parse"), "{}", r.text());
    let f = get_json(&c, "/v1/functions/hello").await;
    assert!(
        f["broken"].as_str().unwrap().contains("does not parse"),
        "{f}"
    );
    // A redeploy mends it.
    let r = deploy(&c, "hello", &read_guest("hello"), json!({})).await;
    assert!(r.status.is_success(), "{}", r.text());
    assert_eq!(c.get("/fn/hello").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_forget_removed_functions() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "gone", "hello").await;
    assert_eq!(c.get("/fn/gone").await.unwrap().status, 200);
    let before = c.get("/metrics").await.unwrap().text();
    assert!(before.contains("function=\"gone\""));
    assert_eq!(
        c.send(Method::DELETE, "/v1/functions/gone", &[], Vec::new())
            .await
            .unwrap()
            .status,
        204
    );
    let after = c.get("/metrics").await.unwrap().text();
    assert!(!after.contains("function=\"gone\""), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_get_sockets_only_for_granted_addresses() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = target.local_addr().unwrap();
    let s = Server::start();
    let c = s.client();
    // Outbound HTTP to the same address is not a socket grant.
    let r = deploy(
        &c,
        "nosock",
        &read_guest("hello-http"),
        json!({"allowed_outbound_hosts": [format!("http://{addr}"), "*://*:*"]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.get(&format!("/fn/nosock/tcp?addr={addr}")).await.unwrap();
    assert_eq!(
        r.status,
        502,
        "a component opened a socket it was not granted: {}",
        r.text()
    );
    let r = deploy(
        &c,
        "sock",
        &read_guest("hello-http"),
        json!({"allowed_outbound_hosts": [format!("tcp://{addr}")]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.get(&format!("/fn/sock/tcp?addr={addr}")).await.unwrap();
    assert_eq!(r.text(), "connected\n");
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = c
        .get(&format!(
            "/fn/sock/tcp?addr={}",
            other.local_addr().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(r.status, 502, "only the granted address: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_past_its_bound_fails_the_deploy_and_stores_nothing() {
    let s = Server::with(&["--compile-timeout", "1ms"], &[]);
    let c = s.client();
    let r = deploy(&c, "lang", &read_guest("whatlang"), json!({})).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("--compile-timeout"), "{}", r.text());
    assert_eq!(c.get("/v1/functions/lang").await.unwrap().status, 404);
    assert_eq!(c.get("/fn/lang").await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_documents_itself_and_every_error_is_json() {
    let s = Server::with(&["--token", "t"], &[]);
    assert_eq!(
        s.client().get("/v1/openapi.json").await.unwrap().status,
        401
    );
    let c = s.client_with_token("t");
    let doc = get_json(&c, "/v1/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    for path in [
        "/v1/functions",
        "/v1/functions/{name}",
        "/v1/activations/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    // Rejections that axum would answer in plain text are JSON errors too.
    let r = c.get("/v1/activations?limit=abc").await.unwrap();
    assert_eq!(
        (r.status.as_u16(), error_code(&r).as_str()),
        (400, "bad_request")
    );
    let r = c.get("/v1/activations?limit=20000").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    let r = c
        .send(Method::POST, "/v1/functions", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), error_code(&r).as_str()),
        (405, "method_not_allowed")
    );
    assert!(r.header("allow").is_some());
    deploy_guest(&c, "hello", "hello").await;
    let r = c
        .send(
            Method::POST,
            "/v1/functions/hello/rollback",
            &[],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(
        (r.status.as_u16(), error_code(&r).as_str()),
        (409, "conflict")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_output_counts_against_the_memory_limit() {
    let s = Server::start();
    let c = s.client();
    // 4 MiB of memory in all; the guest writes 6 MiB in 64 KiB chunks, so
    // its own memory stays small while the host buffers its stdout.
    let r = deploy(
        &c,
        "cgi",
        &read_guest("test-cgi"),
        json!({"limits": {"memory_bytes": 4194304, "max_response_bytes": 16777216}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = c.get("/fn/cgi?big=6291456").await.unwrap();
    assert_eq!(
        r.status, 500,
        "6 MiB of output buffered for a 4 MiB instance"
    );
    let msg = r.json().unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.contains("out of memory"), "{msg}");
    // Within the budget it is served.
    let r = c.get("/fn/cgi?big=1048576").await.unwrap();
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 1 << 20));
}

/// The kernel's listen queue: `ss` shows a listening socket's backlog in
/// its Send-Q column.
fn listen_backlog(url: &str) -> u32 {
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", port_of(url))])
        .output()
        .expect("running ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let cols: Vec<&str> = text.split_whitespace().collect();
    assert!(cols.len() >= 3 && cols[0] == "LISTEN", "ss said: {text:?}");
    cols[2].parse().unwrap()
}

#[test]
fn a_burst_of_connections_queues_instead_of_dropping_syns() {
    // tokio's bind listens with 1024; a burst past it dropped SYNs and each
    // dropped client waited a 1 s retransmit (the soak run's p99).
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let s = Server::start();
    assert_eq!(listen_backlog(&s.url), somaxconn.min(4096));
    let s = Server::with(&["--backlog", "333"], &[]);
    assert_eq!(listen_backlog(&s.url), 333.min(somaxconn));
    let (ok, msg) = serve_refuses(&["--backlog", "0"], &[]);
    assert!(!ok && msg.contains("--backlog"), "{msg}");
}
