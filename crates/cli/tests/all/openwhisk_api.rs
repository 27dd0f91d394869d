//! The OpenWhisk controller API (`/api/v1` on `wisp serve`), driven by the
//! real `openwhisk` npm client (crates/openwhisk/tests/js/client.test.js,
//! run with Node) and, where the client can't reach, over plain HTTP.

use crate::support::*;
use base64::Engine as _;
use http::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wisp_cli::client::{Client, Reply};

const TOKEN: &str = "openwhisk-api-admin-token";

fn js_dir() -> PathBuf {
    repo_root().join("crates/openwhisk/tests/js")
}

/// `npm ci` once when the client's packages are missing (scripts/test
/// installs them up front).
fn npm_ready() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        if js_dir()
            .join("node_modules/openwhisk/package.json")
            .exists()
        {
            return;
        }
        let st = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(js_dir())
            .status()
            .expect("running npm (apt-get install npm)");
        assert!(st.success(), "npm ci in {} failed", js_dir().display());
    });
}

/// A namespace and its `uuid:key`, made through the admin API.
async fn namespace(admin: &Client, name: &str) -> String {
    let r = admin
        .send(
            Method::POST,
            "/v1/namespaces",
            &[],
            json!({ "name": name }).to_string(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    r.json().unwrap()["auth"].as_str().unwrap().to_string()
}

fn node(s: &Server, keys: (&str, &str), phase: &str, extra: &[(&str, &str)]) -> Output {
    npm_ready();
    let mut cmd = Command::new("node");
    cmd.arg("client.test.js")
        .current_dir(js_dir())
        .env("WISP_URL", &s.url)
        .env("WISP_KEY_A", keys.0)
        .env("WISP_KEY_B", keys.1)
        .env("WISP_ACTION", guest("test-action"))
        .env("WISP_PHASE", phase)
        .env_remove("__OW_API_KEY")
        .env_remove("__OW_NAMESPACE")
        .env_remove("__OW_API_HOST");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let o = cmd.output().expect("running node (apt-get install nodejs)");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "the openwhisk client's tests ({phase}) failed:\n{out}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        std::fs::read_to_string(s.home.with_extension("log")).unwrap_or_default()
    );
    // The runner closes with its counts: nothing skipped, something ran.
    assert!(out.contains("# fail 0"), "{out}");
    assert!(!out.contains("# pass 0\n"), "{out}");
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openwhisk_npm_client_drives_the_controller_api() {
    let s = Server::with(&["--token", TOKEN], &[]);
    let admin = s.client_with_token(TOKEN);
    let a = namespace(&admin, "team-a").await;
    let b = namespace(&admin, "team-b").await;
    let o = node(&s, (&a, &b), "api", &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    // Every case of the file ran.
    assert!(out.contains("# pass 8"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_activations_complete_after_a_kill_9_and_after_a_graceful_restart() {
    let mut s = Server::with(&["--token", TOKEN], &[]);
    let admin = s.client_with_token(TOKEN);
    let a = namespace(&admin, "team-a").await;
    let b = namespace(&admin, "team-b").await;
    for graceful in [false, true] {
        let o = node(&s, (&a, &b), "enqueue", &[]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let ids = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("IDS "))
            .unwrap_or_else(|| panic!("no ids in {out}"))
            .to_string();
        // Each sleeps 1.5 s and 64 run at once: none has finished yet.
        if graceful {
            s.terminate();
            s.restart_after_stop();
        } else {
            s.kill9_and_restart();
        }
        node(&s, (&a, &b), "collect", &[("WISP_IDS", &ids)]);
    }
}

fn basic(key: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

async fn ow(c: &Client, key: &str, m: Method, path: &str, body: Value) -> Reply {
    let auth = basic(key);
    c.send(
        m,
        &format!("/api/v1{path}"),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        body.to_string(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_invoke_past_its_wait_turns_into_202_and_errors_have_openwhisk_shape() {
    let s = Server::with(&["--token", TOKEN, "--blocking-wait", "1s"], &[]);
    let admin = s.client_with_token(TOKEN);
    let key = namespace(&admin, "team-a").await;
    let c = s.client();
    let code = base64::engine::general_purpose::STANDARD.encode(read_guest("test-action"));
    let r = ow(&c, &key, Method::PUT, "/namespaces/_/actions/slow",
        json!({"exec": {"kind": "wasm:0.1", "code": code}, "parameters": [{"key": "sleep_ms", "value": 2500}]})).await;
    assert_eq!(r.status, 200, "{}", r.text());

    let t = Instant::now();
    let r = ow(
        &c,
        &key,
        Method::POST,
        "/namespaces/_/actions/slow?blocking=true",
        json!({}),
    )
    .await;
    assert_eq!(r.status, 202, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_millis(2200),
        "answered at the wait limit, not at the end"
    );
    let id = r.json().unwrap()["activationId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(r.header("x-openwhisk-activation-id"), Some(id.as_str()));
    // The activation goes on and is recorded.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rec = loop {
        let r = ow(
            &c,
            &key,
            Method::GET,
            &format!("/namespaces/_/activations/{id}"),
            json!({}),
        )
        .await;
        if r.status == 200 {
            break r.json().unwrap();
        }
        assert_eq!(r.status, 404);
        assert!(Instant::now() < deadline, "the activation was not recorded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(rec["response"]["success"], true);
    assert!(rec["duration"].as_i64().unwrap() >= 2500, "{rec}");

    // Errors: {"error", "code"} with OpenWhisk's statuses and words.
    let shape = |r: &Reply, status: u16, msg: &str| {
        assert_eq!(r.status.as_u16(), status, "{}", r.text());
        let j = r.json().unwrap();
        assert_eq!(j["error"], msg, "{j}");
        assert!(j["code"].as_str().is_some_and(|c| !c.is_empty()), "{j}");
    };
    shape(
        &ow(
            &c,
            &key,
            Method::GET,
            "/namespaces/_/actions/nope",
            json!({}),
        )
        .await,
        404,
        "The requested resource does not exist.",
    );
    shape(
        &ow(&c, "u:k", Method::GET, "/namespaces/_/actions", json!({})).await,
        401,
        "The supplied authentication is invalid.",
    );
    let r = c.get("/api/v1/namespaces/_/actions").await.unwrap();
    shape(&r, 401, "The supplied authentication is invalid.");
    shape(
        &ow(
            &c,
            &key,
            Method::GET,
            "/namespaces/team-b/actions",
            json!({}),
        )
        .await,
        403,
        "The supplied authentication is not authorized to access this resource.",
    );
    shape(
        &ow(
            &c,
            &key,
            Method::PUT,
            "/namespaces/_/actions/slow",
            json!({"exec": {"kind": "wasm:0.1", "code": code}}),
        )
        .await,
        409,
        "Concurrent modification to resource detected.",
    );
    let big = json!({"x": "y".repeat(1 << 20)});
    let r = ow(
        &c,
        &key,
        Method::POST,
        "/namespaces/_/actions/slow?blocking=true",
        big,
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text());
    // The admin token acts on any namespace.
    let r = c
        .send(
            Method::GET,
            "/api/v1/namespaces/team-a/actions",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()[0]["name"], "slow");
    // An action is a function of its namespace on /v1 too.
    let f = get_json(&s.client_with_token(&key), "/v1/functions/slow").await;
    assert_eq!(f["meta"]["openwhisk"]["parameters"][0]["key"], "sleep_ms");
    assert_eq!(f["config"]["private"], true);
}
