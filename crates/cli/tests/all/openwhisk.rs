//! `wisp openwhisk-runtime`, driven as OpenWhisk's invoker drives an action
//! container: the documented /init and /run bodies, the log sentinels, a
//! second /init, a missed deadline, a trapping action.

use crate::support::*;
use base64::Engine as _;
use http::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use wisp_cli::client::{Client, Reply};

const END: &str = "XXX_THE_END_OF_A_WHISK_ACTIVATION_XXX";
const START: &str = "XXX_THE_START_OF_A_WHISK_ACTIVATION_XXX";

/// A running action container: the proxy, its stdout and stderr in files.
struct ActionContainer {
    child: Child,
    client: Client,
    dir: tempfile::TempDir,
}

impl ActionContainer {
    fn start(args: &[&str]) -> ActionContainer {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(wisp_bin())
            .args([
                "openwhisk-runtime",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(args)
            .env("__OW_API_HOST", "http://openwhisk.invalid")
            .env("WISP_LOG", "warn")
            .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "the proxy did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        ActionContainer {
            child,
            client: Client::new(&url, None),
            dir,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.client
            .send(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap()
    }

    /// The invoker's /init body for a binary action.
    async fn init(&self, wasm: &[u8], env: Value) -> Reply {
        let code = base64::engine::general_purpose::STANDARD.encode(wasm);
        self.post(
            "/init",
            json!({"value": {"name": "echo", "main": "main", "code": code, "binary": true, "env": env}}),
        )
        .await
    }

    /// The invoker's /run body.
    async fn run(&self, value: Value, id: &str, deadline_in: Duration) -> Reply {
        let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + deadline_in;
        self.post(
            "/run",
            json!({
                "value": value,
                "namespace": "guest",
                "action_name": "/guest/echo",
                "activation_id": id,
                "transaction_id": "tid-1",
                "api_key": "uuid:key",
                "deadline": deadline.as_millis().to_string(),
            }),
        )
        .await
    }

    fn log(&self, stream: &str) -> String {
        std::fs::read_to_string(self.path(stream)).unwrap()
    }

    fn path(&self, stream: &str) -> PathBuf {
        self.dir.path().join(stream)
    }
}

impl Drop for ActionContainer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openwhisk_runtime_inits_once_then_runs_with_the_activation_context() {
    // Results over 1 MB need a higher limit than OpenWhisk's default.
    let c = ActionContainer::start(&["--max-result", "4MiB"]);
    let r = c.run(json!({}), "a0", Duration::from_secs(60)).await;
    assert_eq!(r.status, 500, "/run before /init: {}", r.text());
    assert!(r.json().unwrap()["error"].is_string());

    let wasm = read_guest("test-action");
    let r = c
        .init(&wasm, json!({"ACTION_GREETING": "hi", "ACTION_N": 3}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = c.init(&wasm, json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.json().unwrap()["error"],
        "Cannot initialize the action more than once."
    );

    // Unicode parameters, the context as __OW_* variables, init's env.
    let params = json!({"name": "Jöhn Dœ ☃ 🎉", "nested": {"a": [1, 2]}});
    let r = c
        .run(
            json!({"name": "Jöhn Dœ ☃ 🎉", "nested": {"a": [1, 2]}, "log": "hello from the action"}),
            "a1",
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let out = r.json().unwrap();
    assert_eq!(out["params"]["name"], params["name"]);
    assert_eq!(out["params"]["nested"], params["nested"]);
    let ctx = &out["context"];
    assert_eq!(ctx["__OW_NAMESPACE"], "guest");
    assert_eq!(ctx["__OW_ACTION_NAME"], "/guest/echo");
    assert_eq!(ctx["__OW_ACTIVATION_ID"], "a1");
    assert_eq!(ctx["__OW_TRANSACTION_ID"], "tid-1");
    assert_eq!(ctx["__OW_API_KEY"], "uuid:key");
    assert_eq!(ctx["__OW_API_HOST"], "http://openwhisk.invalid");
    assert!(
        ctx["__OW_DEADLINE"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );
    assert_eq!(
        out["env"],
        json!({"ACTION_GREETING": "hi", "ACTION_N": "3"})
    );

    // The log frame: written before the response, on both streams.
    let err = c.log("stderr");
    let frame = format!("{START} with id a1\nhello from the action\n{END}\n");
    assert!(
        err.contains(&frame),
        "stderr lacks the frame {frame:?}:\n{err}"
    );
    let out = c.log("stdout");
    assert!(
        out.contains(&format!("{START} with id a1\n{END}\n")),
        "stdout: {out}"
    );

    // A payload over 1 MB both ways.
    let big = "x".repeat(1_200_000);
    let r = c
        .run(json!({"big": big}), "a2", Duration::from_secs(60))
        .await;
    assert_eq!(r.status, 200, "{}", &r.text()[..200.min(r.text().len())]);
    assert_eq!(
        r.json().unwrap()["params"]["big"].as_str().unwrap().len(),
        1_200_000
    );
    // Each activation is framed once.
    assert_eq!(
        c.log("stderr").matches(END).count(),
        2,
        "{}",
        c.log("stderr")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openwhisk_runtime_reports_failures_as_the_invoker_expects() {
    let c = ActionContainer::start(&["--max-result", "4MiB"]);
    assert_eq!(
        c.init(&read_guest("test-action"), json!({})).await.status,
        200
    );
    let long = Duration::from_secs(60);

    // Application errors are results (200) with an `error` field.
    let r = c.run(json!({"error": {"why": "nope"}}), "e1", long).await;
    assert_eq!(
        (r.status.as_u16(), r.json().unwrap()),
        (200, json!({"error": {"why": "nope"}}))
    );
    let r = c.run(json!({"fail": "n is too large"}), "e2", long).await;
    assert_eq!(
        (r.status.as_u16(), r.json().unwrap()),
        (200, json!({"error": "n is too large"}))
    );

    // Developer errors: 502 with {"error": ...}.
    let r = c.run(json!({"array": true}), "e3", long).await;
    assert_eq!(r.status, 502);
    assert_eq!(
        r.json().unwrap()["error"],
        "The action did not return a dictionary."
    );
    let r = c
        .run(json!({"trap": true, "log": "about to abort"}), "e4", long)
        .await;
    assert_eq!(r.status, 502);
    let e = r.json().unwrap()["error"].as_str().unwrap().to_string();
    assert!(e.contains("trap"), "{e}");
    let r = c.run(json!({"exit": 3}), "e5", long).await;
    assert_eq!(r.status, 502);
    assert!(r.text().contains("status 3"), "{}", r.text());

    // A missed deadline: the run is cut at the deadline, not at the limit.
    let t = Instant::now();
    let r = c
        .run(json!({"sleep_ms": 5000}), "e6", Duration::from_millis(400))
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("time limit"), "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    // A deadline already past: refused without running.
    let r = c.run(json!({}), "e7", Duration::ZERO).await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("deadline"), "{}", r.text());

    // Every activation, failed or not, is framed; the trap's log is kept.
    let err = c.log("stderr");
    for id in ["e1", "e2", "e3", "e4", "e5", "e6", "e7"] {
        assert!(
            err.contains(&format!("{START} with id {id}\n")),
            "{id}: {err}"
        );
    }
    assert!(err.contains("about to abort\n"), "{err}");
    assert_eq!(err.matches(END).count(), 7, "{err}");
    assert_eq!(c.log("stdout").matches(END).count(), 7);

    // Still serving.
    assert_eq!(c.run(json!({"n": 1}), "e8", long).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openwhisk_runtime_refuses_bad_code_with_a_clear_error_and_can_retry() {
    let c = ActionContainer::start(&[]);
    let bad = |code: &str, binary: bool, main: &str| json!({"value": {"name": "x", "main": main, "code": code, "binary": binary}});
    let wasm = base64::engine::general_purpose::STANDARD.encode(read_guest("test-action"));
    for (body, needle) in [
        (json!({"value": {"name": "x"}}), "no code"),
        (bad("%%% not base64", true, "main"), "base64"),
        (
            bad(
                &base64::engine::general_purpose::STANDARD.encode(b"PK\x03\x04rest"),
                true,
                "",
            ),
            "zip",
        ),
        (
            bad(
                &base64::engine::general_purpose::STANDARD.encode(b"\0asm\x01\0\0\0garbage"),
                true,
                "",
            ),
            "compile",
        ),
        (
            bad("(module (func $f (export \"_start\") (bad)))", false, ""),
            "text",
        ),
        (bad(&wasm, true, "handler"), "main \"handler\""),
    ] {
        let r = c.post("/init", body.clone()).await;
        assert_eq!(r.status, 502, "{body}: {}", r.text());
        let e = r.json().unwrap()["error"].as_str().unwrap().to_string();
        assert!(e.contains(needle), "{needle:?} not in {e:?}");
    }
    // Not initialized by any of those: a good one still can.
    assert_eq!(c.post("/init", bad(&wasm, true, "main")).await.status, 200);
    let r = c
        .run(json!({"add": 2, "n": 40}), "r1", Duration::from_secs(60))
        .await;
    assert_eq!(r.json().unwrap(), json!({"n": 42}));
}
