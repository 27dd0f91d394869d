//! Deploy, invoke, CGI conventions, isolation, management API, auth.

use crate::support::*;
use http::Method;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_invoke_roundtrip_and_headers() {
    let s = Server::start();
    let c = s.client();
    let v = deploy_guest(&c, "hello", "hello").await;
    assert_eq!(v["name"], "hello");
    assert_eq!(v["version"], 1);
    assert_eq!(v["abi"], "command");
    assert!(v["digest"].as_str().unwrap().starts_with("sha256:"));
    assert!(v["wasm_size"].as_u64().unwrap() > 0);
    assert!(v["compiled_size"].as_u64().unwrap() > 0);
    assert_eq!(v["created"], true);

    let r = c.get("/fn/hello").await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "Hello, world!\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    let id = r.header("wisp-activation-id").unwrap().to_string();
    assert_eq!(id.len(), 32);
    // Deploy pre-warms the template: the first request is already warm.
    assert_eq!(r.header("wisp-cold"), Some("false"));
    let timing = r.header("server-timing").unwrap();
    assert!(
        timing.contains("init;dur=") && timing.contains("run;dur="),
        "{timing}"
    );

    // The activation is recorded with its timings.
    let a = get_json(&c, &format!("/v1/activations/{id}")).await;
    assert_eq!(a["function"], "hello");
    assert_eq!(a["status"], "success");
    assert_eq!(a["http_status"], 200);
    assert_eq!(a["bytes_out"], 14);
    assert_eq!(a["cold"], false);

    // Same bytes again: a no-op, same version.
    let again = deploy_guest(&c, "hello", "hello").await;
    assert_eq!(again["version"], 1);
    assert_eq!(again["created"], false);

    // Listing and details.
    let l = get_json(&c, "/v1/functions").await;
    assert_eq!(l["functions"].as_array().unwrap().len(), 1);
    let f = get_json(&c, "/v1/functions/hello").await;
    assert_eq!(f["versions"], json!([1]));
    assert_eq!(f["warm"], true);

    // Unknown function / route: JSON errors.
    let r = c.get("/fn/nope").await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "not_found");
    let r = c.get("/nowhere").await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(error_code(&r), "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cgi_status_headers_env_query_and_body() {
    let s = Server::start();
    let c = s.client();
    let r = deploy(
        &c,
        "cgi",
        &read_guest("test-cgi"),
        json!({"env": {"GREETING": "hi", "MODE": "configured"}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());

    let r = c
        .send(
            Method::POST,
            "/fn/cgi/users/7?name=Ada+L&MODE=from-query&x=%2F",
            &[
                ("content-type", "text/csv"),
                ("x-trace-id", "abc"),
                ("authorization", "Bearer secret"),
            ],
            "a,b\n1,2\n",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let t = r.text();
    for want in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/users/7",
        "QUERY_STRING=name=Ada+L&MODE=from-query&x=%2F",
        "CONTENT_TYPE=text/csv",
        "CONTENT_LENGTH=8",
        "HTTP_X_TRACE_ID=abc",
        "SCRIPT_NAME=/fn/cgi",
        "SERVER_NAME=127.0.0.1",
        "REMOTE_ADDR=127.0.0.1",
        "GATEWAY_INTERFACE=CGI/1.1",
        "name=Ada L",
        "x=/",
        "GREETING=hi",
        "MODE=configured",
        "--- body ---\na,b\n1,2\n",
    ] {
        assert!(t.contains(want), "missing {want:?} in:\n{t}");
    }
    assert!(
        !t.contains("\nMODE=from-query"),
        "query must not override configured env:\n{t}"
    );
    assert!(
        !t.contains("HTTP_AUTHORIZATION"),
        "credentials must not reach the guest:\n{t}"
    );
    assert!(
        !t.contains("\nPATH=") && !t.contains("\nHOME="),
        "host env must not leak:\n{t}"
    );

    // Status and custom headers from CGI output.
    let r = c
        .get("/fn/cgi?status=404&header=X-Custom:%20yes")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-custom"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));

    // No CGI header block: the whole output is the body, 200 text/plain.
    let r = c.get("/fn/cgi?raw=1").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.text().starts_with("CONTENT_LENGTH=0\n"), "{}", r.text());

    // stderr becomes the activation log; non-zero exit is a 500 naming the cause.
    let r = c
        .get("/fn/cgi?stderr=something%20went%20wrong&exit=3")
        .await
        .unwrap();
    assert_eq!(r.status, 500);
    assert_eq!(error_code(&r), "nonzero_exit");
    assert!(
        r.json().unwrap()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("status 3")
    );
    let id = r.header("wisp-activation-id").unwrap();
    let a = activation_of(&c, &r).await;
    assert_eq!(a["status"], "error");
    assert_eq!(a["log"], "something went wrong\n");

    // Logs listing by function, newest first.
    let l = get_json(&c, "/v1/activations?function=cgi&limit=2").await;
    let acts = l["activations"].as_array().unwrap();
    assert_eq!(acts.len(), 2);
    assert_eq!(acts[0]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_gets_a_fresh_instance() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "counter", "counter").await;
    for _ in 0..5 {
        let r = c.get("/fn/counter").await.unwrap();
        assert_eq!(r.text().trim(), "1");
    }
    let futs = (0..50).map(|_| {
        let c = c.clone();
        async move { c.get("/fn/counter").await.unwrap() }
    });
    let rs = futures::future::join_all(futs).await;
    for r in rs {
        assert_eq!(r.status, 200);
        assert_eq!(r.text().trim(), "1", "state leaked between requests");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_rollback_and_delete() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "f", "hello").await;
    let v2 = deploy_guest(&c, "f", "counter").await;
    assert_eq!(v2["version"], 2);
    assert_eq!(c.get("/fn/f").await.unwrap().text().trim(), "1");

    let r = c
        .send(Method::POST, "/v1/functions/f/rollback", &[], "")
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["version"], 1);
    assert_eq!(c.get("/fn/f").await.unwrap().text(), "Hello, world!\n");
    let r = c
        .send(Method::POST, "/v1/functions/f/rollback?version=2", &[], "")
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(r["version"], 2);
    assert_eq!(c.get("/fn/f").await.unwrap().text().trim(), "1");
    let r = c
        .send(Method::POST, "/v1/functions/f/rollback?version=9", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    let r = c
        .send(Method::DELETE, "/v1/functions/f", &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(c.get("/fn/f").await.unwrap().status, 404);
    assert_eq!(
        c.send(Method::DELETE, "/v1/functions/f", &[], "")
            .await
            .unwrap()
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rejects_bad_modules_with_a_message() {
    let s = Server::start();
    let c = s.client();
    let bad = |r: &wisp_cli::client::Reply| {
        (
            r.status.as_u16(),
            error_code(r),
            r.json().unwrap()["error"]["message"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    };

    // Garbage.
    let r = c
        .send(
            Method::PUT,
            "/v1/functions/x",
            &[("content-type", "application/wasm")],
            "not wasm at all",
        )
        .await
        .unwrap();
    let (st, code, msg) = bad(&r);
    assert_eq!((st, code.as_str()), (400, "bad_request"));
    assert!(msg.contains("not a WebAssembly binary"), "{msg}");

    // Valid header, truncated body.
    let mut trunc = read_guest("hello");
    trunc.truncate(trunc.len() / 2);
    let (st, _, msg) = bad(&c
        .send(Method::PUT, "/v1/functions/x", &[], trunc)
        .await
        .unwrap());
    assert_eq!(st, 400);
    assert!(msg.contains("invalid WebAssembly module"), "{msg}");

    // Imports a host function Wisp does not provide.
    let m = wat::parse_str(
        r#"(module (import "env" "launch_missiles" (func)) (func (export "_start")))"#,
    )
    .unwrap();
    let (st, _, msg) = bad(&c
        .send(Method::PUT, "/v1/functions/x", &[], m)
        .await
        .unwrap());
    assert_eq!(st, 400);
    assert!(msg.contains("env::launch_missiles"), "{msg}");

    // A WASI import that does not exist.
    let m = wat::parse_str(r#"(module (import "wasi_snapshot_preview1" "no_such_call" (func)) (func (export "_start")))"#).unwrap();
    let (st, _, msg) = bad(&c
        .send(Method::PUT, "/v1/functions/x", &[], m)
        .await
        .unwrap());
    assert_eq!(st, 400);
    assert!(msg.contains("no_such_call"), "{msg}");

    // Not a command.
    let m = wat::parse_str(r#"(module (func (export "main")))"#).unwrap();
    let (st, _, msg) = bad(&c
        .send(Method::PUT, "/v1/functions/x", &[], m)
        .await
        .unwrap());
    assert_eq!(st, 400);
    assert!(msg.contains("_start"), "{msg}");

    // Bad name, bad config, unknown config field, missing dir.
    let (st, _, msg) = bad(&c
        .send(Method::PUT, "/v1/functions/-bad", &[], read_guest("hello"))
        .await
        .unwrap());
    assert_eq!(st, 400);
    assert!(msg.contains("invalid function name"), "{msg}");
    let (st, _, msg) = bad(&deploy(
        &c,
        "x",
        &read_guest("hello"),
        json!({"limits": {"memory_bytes": 1u64 << 40}}),
    )
    .await);
    assert_eq!(st, 400);
    assert!(msg.contains("memory_bytes"), "{msg}");
    let (st, _, msg) = bad(&deploy(&c, "x", &read_guest("hello"), json!({"limitz": {}})).await);
    assert_eq!(st, 400);
    assert!(msg.contains("limitz"), "{msg}");
    let (st, _, msg) = bad(&deploy(
        &c,
        "x",
        &read_guest("hello"),
        json!({"dirs": [{"host": "/definitely/not/here", "guest": "/d"}]}),
    )
    .await);
    assert_eq!(st, 400);
    assert!(msg.contains("not usable on the host"), "{msg}");

    // Nothing of the failed deploys was kept.
    let l = get_json(&c, "/v1/functions").await;
    assert_eq!(l["functions"], json!([]));
    assert_eq!(c.get("/fn/x").await.unwrap().status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_protects_the_management_api_and_metrics() {
    let s = Server::with(&[], &[("WISP_TOKEN", "s3cret")]);
    let anon = s.client();
    let r = anon.get("/v1/functions").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(error_code(&r), "unauthorized");
    let wrong = s.client_with_token("nope");
    assert_eq!(wrong.get("/v1/functions").await.unwrap().status, 401);
    let r = deploy(&anon, "hello", &read_guest("hello"), json!({})).await;
    assert_eq!(r.status, 401);

    let ok = s.client_with_token("s3cret");
    assert_eq!(ok.get("/v1/functions").await.unwrap().status, 200);
    deploy_guest(&ok, "hello", "hello").await;
    // Invoke routes and health stay open; metrics follow the API's token.
    assert_eq!(anon.get("/fn/hello").await.unwrap().status, 200);
    assert_eq!(anon.get("/healthz").await.unwrap().status, 200);
    assert_eq!(anon.get("/metrics").await.unwrap().status, 401);
    assert_eq!(ok.get("/metrics").await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn granted_dirs_read_only_and_read_write() {
    let s = Server::allowing_dirs();
    let c = s.client();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("in.txt"), "granted content").unwrap();
    let host = data.path().to_str().unwrap();
    let r = deploy(
        &c,
        "ro",
        &read_guest("test-cgi"),
        json!({"dirs": [{"host": host, "guest": "/data", "read_only": true}]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = deploy(
        &c,
        "rw",
        &read_guest("test-cgi"),
        json!({"dirs": [{"host": host, "guest": "/data"}]}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    deploy_guest(&c, "none", "test-cgi").await;

    assert_eq!(
        c.get("/fn/ro?read=/data/in.txt").await.unwrap().text(),
        "granted content"
    );
    let r = c
        .send(Method::POST, "/fn/ro?write=/data/out.txt", &[], "x")
        .await
        .unwrap();
    assert_eq!(
        r.status,
        500,
        "read-only grant must refuse writes: {}",
        r.text()
    );
    assert!(!data.path().join("out.txt").exists());
    let r = c
        .send(
            Method::POST,
            "/fn/rw?write=/data/out.txt",
            &[],
            "written by guest",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).unwrap(),
        "written by guest"
    );
    // No grant: nothing to see, not even through `..`.
    assert_eq!(
        c.get("/fn/none?read=/data/in.txt").await.unwrap().status,
        404
    );
    assert_eq!(
        c.get("/fn/ro?read=/data/../../etc/passwd")
            .await
            .unwrap()
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_invocations_cold_starts_and_errors() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "hello", "hello").await;
    for _ in 0..3 {
        c.get("/fn/hello").await.unwrap();
    }
    c.get("/fn/missing").await.unwrap();
    assert_eq!(
        s.metric("wisp_invocations_total{function=\"hello\",status=\"success\"}")
            .await,
        3.0
    );
    assert_eq!(
        s.metric("wisp_request_duration_seconds_count{function=\"hello\"}")
            .await,
        3.0
    );
    assert_eq!(s.metric("wisp_errors_total{kind=\"not_found\"}").await, 1.0);
    assert_eq!(s.metric("wisp_warm_functions").await, 1.0);
    assert_eq!(s.metric("wisp_compilations_total").await, 1.0);
    assert_eq!(
        s.metric("wisp_cold_starts_total{function=\"hello\"}").await,
        0.0
    );
}
