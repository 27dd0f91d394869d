//! Durability: restart without recompiling, kill -9 during deploys,
//! graceful drain on SIGTERM.

use crate::support::*;
use http::Method;
use serde_json::json;
use std::time::Duration;

/// Append a custom section so the module has a new digest (forces a fresh
/// compile and a new version) without changing behaviour.
fn with_custom_section(wasm: &[u8], tag: &str) -> Vec<u8> {
    let name = b"wisp-test";
    let mut payload = vec![name.len() as u8];
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = wasm.to_vec();
    out.push(0);
    let mut n = payload.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(&payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_everything_without_recompiling() {
    let mut s = Server::start();
    let c = s.client();
    deploy_guest(&c, "hello", "hello").await;
    deploy_guest(&c, "counter", "counter").await;
    deploy(
        &c,
        "cgi",
        &read_guest("test-cgi"),
        json!({"env": {"K": "v"}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_guest(&c, "cgi", "hello").await; // v2
    c.send(Method::POST, "/v1/functions/cgi/rollback", &[], "")
        .await
        .unwrap()
        .ok()
        .unwrap(); // back to v1
    assert_eq!(s.metric("wisp_compilations_total").await, 3.0);

    s.restart();
    let c = s.client();
    let l = get_json(&c, "/v1/functions").await;
    assert_eq!(l["functions"].as_array().unwrap().len(), 3);
    let r = c.get("/fn/hello").await.unwrap();
    assert_eq!(r.text(), "Hello, world!\n");
    assert_eq!(
        r.header("wisp-cold"),
        Some("true"),
        "first request after restart maps the artifact"
    );
    assert_eq!(
        c.get("/fn/hello").await.unwrap().header("wisp-cold"),
        Some("false")
    );
    assert_eq!(c.get("/fn/counter").await.unwrap().text().trim(), "1");
    let t = c.get("/fn/cgi").await.unwrap().text();
    assert!(
        t.contains("K=v"),
        "rolled-back version with its config survives restart: {t}"
    );
    assert_eq!(
        s.metric("wisp_compilations_total").await,
        0.0,
        "restart must not recompile"
    );
    assert_eq!(s.metric("wisp_artifact_loads_total").await, 3.0);
    assert_eq!(
        s.metric("wisp_cold_starts_total{function=\"hello\"}").await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_artifacts_are_recompiled_from_the_stored_module() {
    let mut s = Server::start();
    let c = s.client();
    deploy_guest(&c, "hello", "hello").await;
    // Simulate an engine upgrade: the artifact is gone / unreadable.
    s.terminate();
    let compiled = s.home.join("compiled");
    for fp in std::fs::read_dir(&compiled).unwrap().flatten() {
        for a in std::fs::read_dir(fp.path()).unwrap().flatten() {
            std::fs::write(a.path(), b"garbage").unwrap();
        }
    }
    s.restart_after_stop();
    let c = s.client();
    let r = c.get("/fn/hello").await.unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "Hello, world!\n");
    assert_eq!(s.metric("wisp_compilations_total").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_deploys_leaves_a_consistent_store() {
    let mut s = Server::start();
    let base = read_guest("test-cgi");
    for round in 0..6u64 {
        let c = s.client();
        // Several deploys in flight, each a new digest (a real compile).
        let deploys: Vec<_> = (0..3)
            .map(|i| {
                let c = c.clone();
                let wasm = with_custom_section(&base, &format!("{round}-{i}"));
                tokio::spawn(async move { deploy(&c, &format!("f{i}"), &wasm, json!({})).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(5 + round * 17)).await;
        s.kill9_and_restart();
        for d in deploys {
            let _ = d.await; // connection reset or a reply; either is fine
        }
        let c = s.client();
        let l = get_json(&c, "/v1/functions").await;
        for f in l["functions"].as_array().unwrap() {
            let name = f["name"].as_str().unwrap();
            // Every listed function is complete: module, artifact, servable.
            let r = c.get(&format!("/fn/{name}?raw=1")).await.unwrap();
            assert_eq!(
                r.status,
                200,
                "round {round}: {name} listed but not servable: {}",
                r.text()
            );
            let digest = f["digest"].as_str().unwrap().trim_start_matches("sha256:");
            assert!(
                s.home.join("blobs/sha256").join(digest).exists(),
                "round {round}: blob of {name} missing"
            );
        }
        for i in 0..3 {
            let name = format!("f{i}");
            let listed = l["functions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f["name"] == name.as_str());
            let r = c.get(&format!("/fn/{name}?raw=1")).await.unwrap();
            assert_eq!(r.status == 200, listed, "round {round}: {name} half there");
        }
        // No temp files survive a restart.
        let tmp = walk(&s.home)
            .into_iter()
            .filter(|p| p.to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(tmp, 0, "round {round}: temp files left behind");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let mut s = Server::start();
    let c = s.client();
    deploy_guest(&c, "sleep", "sleep").await;
    let inflight = {
        let c = c.clone();
        tokio::spawn(async move { c.get("/fn/sleep?ms=800").await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let st = tokio::task::spawn_blocking(move || {
        let st = s.terminate();
        (st, s)
    })
    .await
    .unwrap();
    assert!(st.0.success(), "exit status {:?}", st.0);
    let r = inflight.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "slept 800 ms\n");
}
