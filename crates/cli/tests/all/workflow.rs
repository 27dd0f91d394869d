//! Workflows against the real `wisp serve`: definitions and their
//! validation, DAG semantics (chains, fan-out, fan-in), failures, the
//! workflow timeout, cancellation of the steps still running (permits and
//! gauges back, no guest left burning CPU), records, streaming between
//! components, hybrid runs, durability and the CLI.

use crate::support::*;
use http::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use wisp_cli::client::{Client, Reply};

async fn put_workflow(c: &Client, name: &str, def: &str) -> Reply {
    let ct = if def.trim_start().starts_with('{') {
        "application/json"
    } else {
        "application/yaml"
    };
    c.send(
        Method::PUT,
        &format!("/v1/workflows/{name}"),
        &[("content-type", ct)],
        def.as_bytes().to_vec(),
    )
    .await
    .unwrap()
}

async fn deploy_workflow(c: &Client, name: &str, def: &str) -> Value {
    let r = put_workflow(c, name, def).await;
    assert!(
        r.status.is_success(),
        "deploy workflow {name}: {} {}",
        r.status,
        r.text()
    );
    r.json().unwrap()
}

async fn run(c: &Client, name: &str, body: &[u8]) -> Reply {
    c.send(Method::POST, &format!("/wf/{name}"), &[], body.to_vec())
        .await
        .unwrap()
}

/// `Server-Timing` as (metric, ms) pairs.
fn timings(r: &Reply) -> Vec<(String, f64)> {
    r.header("server-timing")
        .expect("a Server-Timing header")
        .split(", ")
        .map(|p| {
            let (k, v) = p.split_once(";dur=").expect("name;dur=ms");
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

fn frame_png(label: &str) -> Vec<u8> {
    std::fs::read(inputs().join(format!("frames/frame-{label}.png"))).unwrap()
}

async fn invoke_fn(c: &Client, name: &str, query: &str, body: Vec<u8>) -> Reply {
    let path = if query.is_empty() {
        format!("/fn/{name}")
    } else {
        format!("/fn/{name}?{query}")
    };
    let r = c.send(Method::POST, &path, &[], body).await.unwrap();
    assert_eq!(r.status, 200, "{name}: {}", r.text());
    r
}

const FRAMES: &str = "
description: decode, gray, edges, summary
steps:
  - name: decode
    function: frame-decode
  - name: gray
    function: frame-gray
    inputs: decode
  - name: edges
    function: frame-edges
    inputs: gray
  - name: summary
    function: frame-summary
    inputs: edges
";

async fn deploy_frames(c: &Client) {
    for f in [
        "frame-decode",
        "frame-gray",
        "frame-edges",
        "frame-summary",
        "frame-resize",
    ] {
        deploy_guest(c, f, f).await;
    }
}

/// Poll `/metrics` until the node and every function have nothing running.
async fn wait_idle(s: &Server) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = s.client().get("/metrics").await.unwrap().text();
        let busy: Vec<&str> = text
            .lines()
            .filter(|l| {
                (l.starts_with("wisp_instances_running{")
                    || l.starts_with("wisp_node_instances ")
                    || l.starts_with("wisp_node_buffered_body_bytes "))
                    && !l.ends_with(" 0")
            })
            .collect();
        if busy.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "still busy after 5 s: {busy:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// User + system CPU of the server process, in clock ticks.
fn cpu_ticks(s: &Server) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.child.id())).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_hands_each_output_to_the_next_step_in_memory() {
    let s = Server::start();
    let c = s.client();
    deploy_frames(&c).await;
    let v = deploy_workflow(&c, "frames", FRAMES).await;
    assert_eq!(v["version"], 1);
    assert_eq!(v["created"], true);
    let steps: Vec<&str> = v["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["decode", "gray", "edges", "summary"]);

    let png = frame_png("64k");
    let r = run(&c, "frames", &png).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));

    // The same functions called one by one over /fn give the same bytes.
    let decoded = invoke_fn(&c, "frame-decode", "", png.clone()).await;
    let gray = invoke_fn(&c, "frame-gray", "", decoded.body.to_vec()).await;
    let edges = invoke_fn(&c, "frame-edges", "", gray.body.to_vec()).await;
    let summary = invoke_fn(&c, "frame-summary", "", edges.body.to_vec()).await;
    assert_eq!(r.body, summary.body, "workflow output = the chain by hand");
    let out: Value = r.json().unwrap();
    assert_eq!(out["frames"][0]["format"], "P5");

    // Server-Timing: each step's delay and run, in order, then the makespan.
    let t = timings(&r);
    let names: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "decode.delay",
            "decode.run",
            "gray.delay",
            "gray.run",
            "edges.delay",
            "edges.run",
            "summary.delay",
            "summary.run",
            "makespan"
        ]
    );
    let makespan = t.last().unwrap().1;
    let sum: f64 = t[..8].iter().map(|(_, v)| v).sum();
    assert!(
        sum <= makespan * 1.001 + 0.01,
        "delays + runs {sum} ms within the makespan {makespan} ms"
    );

    // The run's record, and each step's own activation record tied to it.
    let id = r.header("wisp-activation-id").unwrap().to_string();
    let rec = get_json(&c, &format!("/v1/activations/{id}")).await;
    assert_eq!(rec["workflow"], "frames");
    assert_eq!(rec["status"], "success");
    assert_eq!(rec["bytes_in"], png.len());
    assert_eq!(rec["bytes_out"], r.body.len());
    let rsteps = rec["steps"].as_array().unwrap();
    assert_eq!(rsteps.len(), 4);
    let mut prev_end = 0;
    for (st, name) in rsteps.iter().zip(["decode", "gray", "edges", "summary"]) {
        assert_eq!(st["step"], name);
        assert_eq!(st["status"], "success");
        let (ready, start, end) = (
            st["ready_us"].as_u64().unwrap(),
            st["start_us"].as_u64().unwrap(),
            st["end_us"].as_u64().unwrap(),
        );
        assert!(ready >= prev_end && start >= ready && end >= start, "{st}");
        assert_eq!(st["delay_us"].as_u64().unwrap(), start - ready);
        prev_end = end;
        let a = get_json(
            &c,
            &format!("/v1/activations/{}", st["activation_id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(a["parent"], id.as_str());
        assert_eq!(a["step"], name);
        assert_eq!(a["function"], st["function"]);
    }
    assert_eq!(
        rsteps[1]["bytes_in"],
        decoded.body.len(),
        "gray read decode's whole output"
    );
    assert_eq!(rec["activations"].as_array().unwrap().len(), 4);
    let runs = get_json(&c, "/v1/workflows/frames/runs").await;
    assert_eq!(runs["runs"][0]["id"], id.as_str());

    // Each later step's instance is made while the step before it runs
    // (warm command modules): gray, edges and summary, every run. Whether
    // it is ready in time depends on the machine's load; it is at least
    // some of the time, and either way the output is the same.
    let made = "wisp_workflow_instances_made_ahead_total";
    let missed = "wisp_workflow_instances_not_ready_total";
    let (made0, missed0) = (s.metric(made).await, s.metric(missed).await);
    let mut n = 0.0;
    loop {
        let again = run(&c, "frames", &png).await;
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.body, r.body, "a run in instances made ahead differs");
        n += 1.0;
        let used = s.metric(made).await - made0;
        if used > 0.0 && n >= 5.0 {
            break;
        }
        assert!(
            n < 50.0,
            "50 runs and no step ran in an instance made ahead"
        );
    }
    let (used, not_ready) = (
        s.metric(made).await - made0,
        s.metric(missed).await - missed0,
    );
    assert_eq!(
        used + not_ready,
        3.0 * n,
        "made ahead: {used} used, {not_ready} not ready in {n} runs"
    );
}

/// An instance made ahead holds one of the node's instance slots, as a
/// request does, and hands it to its step's admission; it takes one only
/// while at most half the node's slots are in use, so it never takes the
/// slot a step or a request needs next. With a pool of one slot (a
/// node-wide cap of one instance), a run of the four-step chain makes
/// nothing ahead, no step is refused, and every slot comes back. (Before,
/// instances made ahead were not counted at all: up to three more
/// instances than the cap, and a step could find the pool taken.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_made_ahead_take_node_instance_slots_like_requests() {
    let s = Server::with(&["--pool-instances", "1"], &[]);
    let c = s.client();
    deploy_frames(&c).await;
    deploy_workflow(&c, "frames", FRAMES).await;
    let png = frame_png("16k");
    let first = run(&c, "frames", &png).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let made = "wisp_workflow_instances_made_ahead_total";
    let missed = "wisp_workflow_instances_not_ready_total";
    let (made0, missed0) = (s.metric(made).await, s.metric(missed).await);
    let n = 20;
    for _ in 0..n {
        let r = run(&c, "frames", &png).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, first.body);
    }
    let (used, not_ready) = (
        s.metric(made).await - made0,
        s.metric(missed).await - missed0,
    );
    assert_eq!(
        (used, not_ready),
        (0.0, 0.0),
        "with one instance slot nothing is made ahead ({n} runs)"
    );
    wait_idle(&s).await;
    // Instances that used more than 4 MiB (1 MiB frames) are torn down
    // after the answer when the node has slots to spare, holding their
    // slot until then; with one slot they are torn down before it, so
    // the next step is never refused for a slot being reset.
    let big = frame_png("1m");
    let want = run(&c, "frames", &big).await;
    assert_eq!(want.status, 200, "{}", want.text());
    for _ in 0..3 {
        let r = run(&c, "frames", &big).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, want.body);
    }
    wait_idle(&s).await;
    // With room to spare, the same run makes its instances ahead again.
    let s = Server::with(&["--pool-instances", "8"], &[]);
    let c = s.client();
    deploy_frames(&c).await;
    deploy_workflow(&c, "frames", FRAMES).await;
    for _ in 0..3 {
        let r = run(&c, "frames", &png).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, first.body);
    }
    let asked = s.metric(made).await + s.metric(missed).await;
    assert_eq!(
        asked, 9.0,
        "three instances made ahead per run with 8 slots"
    );
    wait_idle(&s).await;
    for _ in 0..3 {
        let r = run(&c, "frames", &big).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.body, want.body);
    }
    wait_idle(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_runs_branches_at_once_and_fan_in_merges_by_the_rules() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "echo", "echo").await;
    deploy_guest(&c, "sleep", "sleep").await;
    deploy_workflow(
        &c,
        "fan",
        "
steps:
  - {name: src, function: echo, path: /src}
  - {name: left, function: echo, inputs: src, query: side=left}
  - {name: right, function: echo, inputs: src, query: side=right}
  - {name: cat, function: echo, inputs: [right, left]}
  - {name: obj, function: echo, inputs: [left, $input, right], merge: json}
  - {name: both, function: echo, inputs: [cat, obj], merge: json}
",
    )
    .await;
    let input = br#"{"msg": "hello"}"#;
    let r = c
        .send(
            Method::POST,
            "/wf/fan",
            &[("content-type", "text/x-json")],
            input.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let both: Value = r.json().unwrap();
    let body = |v: &Value| -> Value { serde_json::from_str(v["body"].as_str().unwrap()).unwrap() };
    let inner = body(&both);
    let cat = &inner["cat"];
    let obj = &inner["obj"];
    // src saw the workflow's input and its content type, as a POST to its path.
    // left and right saw src's answer, with their own queries.
    let obj_in = body(obj);
    let left = &obj_in["left"];
    let right = &obj_in["right"];
    assert_eq!(
        obj_in["$input"],
        json!({"msg": "hello"}),
        "the input spliced in as written"
    );
    assert_eq!(left["query"]["side"], "left");
    assert_eq!(right["query"]["side"], "right");
    let src = body(left);
    assert_eq!(
        (src["method"].as_str(), src["path"].as_str()),
        (Some("POST"), Some("/src"))
    );
    assert_eq!(src["body"].as_str().unwrap().as_bytes(), input);
    assert_eq!(src["headers"]["content-type"], "text/x-json");
    // concat: the bytes of right then left, exactly.
    let cat_body = cat["body"].as_str().unwrap();
    let (r_json, l_json) = (
        serde_json::to_string(right).unwrap(),
        serde_json::to_string(left).unwrap(),
    );
    assert_eq!(
        cat_body,
        format!("{r_json}\n{l_json}\n"),
        "echo ends its JSON with a newline"
    );
    assert_eq!(
        cat["headers"]["content-type"], "application/json",
        "common type kept"
    );
    assert_eq!(obj["headers"]["content-type"], "application/json");

    // A json merge of an input that isn't JSON fails that step.
    deploy_workflow(
        &c,
        "badjson",
        "steps: [{name: j, function: echo, inputs: [$input], merge: json}]",
    )
    .await;
    let r = run(&c, "badjson", b"not json").await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains(r#"step \"j\""#) && r.text().contains("is not JSON"),
        "{}",
        r.text()
    );

    // Independent branches run at the same time: two 300 ms sleeps in parallel.
    deploy_workflow(
        &c,
        "par",
        "steps:
  - {name: a, function: sleep, query: ms=300}
  - {name: b, function: sleep, query: ms=300}
  - {name: join, function: echo, inputs: [a, b]}
",
    )
    .await;
    let t0 = Instant::now();
    let r = run(&c, "par", b"").await;
    let took = t0.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        took < Duration::from_millis(550),
        "branches ran one after the other: {took:?}"
    );
    let joined: Value = r.json().unwrap();
    assert_eq!(joined["body"], "slept 300 ms\nslept 300 ms\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_are_400s_that_name_the_step() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "echo", "echo").await;
    deploy(
        &c,
        "small",
        &read_guest("echo"),
        json!({"limits": {"memory_bytes": 33554432}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_guest(&c, "hello-http", "hello-http").await;
    let cases: &[(&str, &str)] = &[
        (
            "steps: [{name: a, function: nope}]",
            r#"step \"a\": function \"nope\" not found"#,
        ),
        (
            "steps: [{name: a, function: echo, version: 7}]",
            r#"step \"a\": function \"echo\" version 7 not found"#,
        ),
        (
            "steps: [{name: a, function: echo, inputs: b}, {name: b, function: echo, inputs: a}]",
            r#"step \"a\": is part of a cycle: a -> b -> a"#,
        ),
        (
            "steps: [{name: a, function: echo}, {name: b, function: echo, inputs: a}, {name: c, function: echo, inputs: a}]\noutput: b",
            r#"step \"c\": unreachable"#,
        ),
        (
            "steps: [{name: a, function: hello-http, abi: command}]",
            r#"step \"a\": expects a command module but function \"hello-http\" (v1) is a wasi:http component"#,
        ),
        (
            "steps: [{name: a, function: echo}, {name: b, function: hello-http, inputs: a, stream: true}]",
            r#"step \"b\": stream: true needs wasi:http components at both ends, but step \"a\" runs function \"echo\""#,
        ),
        (
            "steps: [{name: a, function: small, limits: {memory_bytes: 64MiB}}]",
            r#"step \"a\": limits.memory_bytes 67108864 is above the limit 33554432 of function \"small\""#,
        ),
        (
            "steps: [{name: a, function: echo, limits: {timeout_ms: 0}}]",
            r#"step \"a\": limits.timeout_ms must be between 1"#,
        ),
        (
            "steps: [{name: a, functon: echo}]",
            "unknown field `functon`",
        ),
        ("{\"steps\": [", "not valid JSON"),
    ];
    for (def, want) in cases {
        let r = put_workflow(&c, "w", def).await;
        assert_eq!(r.status, 400, "{def}: {}", r.text());
        assert_eq!(error_code(&r), "bad_request");
        assert!(
            r.text().contains(want),
            "{def}:\n  want {want}\n  got  {}",
            r.text()
        );
    }
    assert_eq!(
        c.get("/v1/workflows/w").await.unwrap().status,
        404,
        "nothing was stored"
    );
    let r = put_workflow(&c, "-bad", "steps: [{name: a, function: echo}]").await;
    assert_eq!(r.status, 400);
    // The management API needs the token like the rest of /v1.
    let s2 = Server::with(&["--token", "sekrit"], &[]);
    let r = put_workflow(&s2.client(), "w", "steps: [{name: a, function: echo}]").await;
    assert_eq!(r.status, 401);
    assert_eq!(s2.client().get("/v1/workflows").await.unwrap().status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_run_and_stops_every_other_step() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "echo", "echo").await;
    deploy_guest(&c, "test-cgi", "test-cgi").await;
    deploy(
        &c,
        "spin",
        &read_guest("test-spin"),
        json!({"limits": {"timeout_ms": 60000}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_workflow(
        &c,
        "boom",
        "steps:
  - {name: spin1, function: spin}
  - {name: spin2, function: spin}
  - {name: fail, function: test-cgi, query: exit=3&stderr=dying}
  - {name: join, function: echo, inputs: [spin1, spin2, fail]}
",
    )
    .await;
    let t0 = Instant::now();
    let r = run(&c, "boom", b"").await;
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "the spinners were waited for"
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(error_code(&r), "nonzero_exit");
    assert!(
        r.text()
            .contains(r#"step \"fail\" (function \"test-cgi\" v1): function exited with status 3"#),
        "{}",
        r.text()
    );
    let id = r.header("wisp-activation-id").unwrap().to_string();
    // Everything given back, and no guest still burning CPU.
    wait_idle(&s).await;
    let before = cpu_ticks(&s);
    tokio::time::sleep(Duration::from_millis(600)).await;
    let burnt = cpu_ticks(&s) - before;
    assert!(
        burnt < 20,
        "the server used {burnt} ticks in 600 ms after the run: a spinner kept running"
    );

    let rec = get_json(&c, &format!("/v1/activations/{id}")).await;
    assert_eq!(rec["status"], "error");
    assert_eq!(rec["failed_step"], "fail");
    let failed = rec["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "fail")
        .unwrap();
    assert_eq!(failed["status"], "error");
    let acts = rec["activations"].as_array().unwrap();
    for spin in ["spin1", "spin2"] {
        let a = acts
            .iter()
            .find(|a| a["step"] == spin)
            .unwrap_or_else(|| panic!("{spin}: {acts:?}"));
        assert_eq!(a["status"], "cancelled");
        assert_eq!(a["error"], r#"the workflow failed at step "fail""#);
    }
    let f = acts.iter().find(|a| a["step"] == "fail").unwrap();
    let log = get_json(
        &c,
        &format!("/v1/activations/{}", f["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(log["log"], "dying\n");

    // A step that answers an error status fails the run too (502).
    deploy_workflow(
        &c,
        "notfound",
        "steps: [{name: lookup, function: test-cgi, query: status=404&big=3}]",
    )
    .await;
    let r = run(&c, "notfound", b"").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(error_code(&r), "step_failed");
    assert!(
        r.text()
            .contains(r#"step \"lookup\" (function \"test-cgi\" v1): answered 404: xxx"#),
        "{}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workflow_timeout_stops_every_step_and_gives_everything_back() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "echo", "echo").await;
    deploy(
        &c,
        "spin",
        &read_guest("test-spin"),
        json!({"limits": {"timeout_ms": 60000, "max_concurrency": 2}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_workflow(
        &c,
        "slow",
        "timeout_ms: 400
steps:
  - {name: a, function: spin}
  - {name: b, function: spin}
  - {name: join, function: echo, inputs: [a, b]}
",
    )
    .await;
    let t0 = Instant::now();
    let r = run(&c, "slow", b"").await;
    let took = t0.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        r.text()
            .contains(r#"ran past its 400ms timeout; still running: \"a\", \"b\""#),
        "{}",
        r.text()
    );
    wait_idle(&s).await;
    // The spinners' permits are back: both slots of max_concurrency 2 are free again.
    let r = run(&c, "slow", b"").await;
    assert_eq!(r.status, 504, "{}", r.text(),);
    assert!(r.text().contains("still running"), "{}", r.text());
    let id = r.header("wisp-activation-id").unwrap();
    let rec = get_json(&c, &format!("/v1/activations/{id}")).await;
    assert_eq!(rec["status"], "timeout");
    for a in rec["activations"].as_array().unwrap() {
        assert_eq!(a["status"], "cancelled", "{a}");
        assert_eq!(a["error"], "the workflow ran past its 400ms timeout");
    }
    // A step's own limit, lower than its function's, applies.
    deploy_workflow(
        &c,
        "steplimit",
        "steps: [{name: a, function: spin, limits: {timeout_ms: 200}}]",
    )
    .await;
    let t0 = Instant::now();
    let r = run(&c, "steplimit", b"").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(t0.elapsed() < Duration::from_secs(2));
    assert!(
        r.text()
            .contains(r#"step \"a\" (function \"spin\" v1): function exceeded its 200ms timeout"#),
        "{}",
        r.text()
    );
    wait_idle(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_the_run() {
    let s = Server::start();
    let c = s.client();
    deploy(
        &c,
        "spin",
        &read_guest("test-spin"),
        json!({"limits": {"timeout_ms": 60000}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_workflow(&c, "forever", "steps: [{name: a, function: spin}]").await;
    let c2 = c.clone();
    let gave_up = tokio::spawn(async move {
        tokio::time::timeout(Duration::from_millis(400), run(&c2, "forever", b"")).await
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(s.metric("wisp_node_instances").await, 1.0, "the step runs");
    assert!(gave_up.await.unwrap().is_err(), "the client gave up");
    wait_idle(&s).await;
    let runs = get_json(&c, "/v1/workflows/forever/runs").await;
    assert_eq!(runs["runs"][0]["status"], "cancelled");
    let id = runs["runs"][0]["id"].as_str().unwrap();
    let rec = get_json(&c, &format!("/v1/activations/{id}")).await;
    assert_eq!(rec["activations"][0]["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_stream_to_each_other_and_mix_with_command_modules() {
    let s = Server::start();
    let c = s.client();
    deploy_guest(&c, "hello-http", "hello-http").await;
    deploy_guest(&c, "frame-summary", "frame-summary").await;
    deploy_workflow(
        &c,
        "pipe",
        "steps:
  - {name: first, function: hello-http, path: /echo}
  - {name: second, function: hello-http, path: /echo, inputs: first, stream: true}
  - {name: third, function: hello-http, path: /echo, inputs: second}
  - {name: sum, function: frame-summary, inputs: third}
",
    )
    .await;
    let input: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    let r = run(&c, "pipe", &input).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v: Value = r.json().unwrap();
    assert_eq!(v["bytes"], input.len(), "every byte went through");
    assert_eq!(v["trailing_bytes"], input.len());
    let id = r.header("wisp-activation-id").unwrap();
    let rec = get_json(&c, &format!("/v1/activations/{id}")).await;
    let st = |n: &str| {
        rec["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == n)
            .unwrap()
            .clone()
    };
    let (first, second, third) = (st("first"), st("second"), st("third"));
    // The streamed reader started before its producer ended; the collected
    // one only after.
    assert!(
        second["start_us"].as_u64() < first["end_us"].as_u64(),
        "second started at {} µs, first ended at {} µs",
        second["start_us"],
        first["end_us"]
    );
    assert!(third["ready_us"].as_u64() >= second["end_us"].as_u64());
    assert_eq!(rec["activations"].as_array().unwrap().len(), 4);
    wait_idle(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_runs_pick_up_after_a_step_and_inputs_are_bounded() {
    let s = Server::start();
    let c = s.client();
    deploy_frames(&c).await;
    deploy_workflow(&c, "frames", FRAMES).await;
    let png = frame_png("16k");
    let full = run(&c, "frames", &png).await;
    assert_eq!(full.status, 200);
    // The first two steps elsewhere (here: by hand), the rest on the server.
    let decoded = invoke_fn(&c, "frame-decode", "", png.clone()).await;
    let gray = invoke_fn(&c, "frame-gray", "", decoded.body.to_vec()).await;
    let r = c
        .send(
            Method::POST,
            "/wf/frames?after=gray",
            &[],
            gray.body.to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body, full.body);
    let names: Vec<String> = timings(&r).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        names,
        [
            "edges.delay",
            "edges.run",
            "summary.delay",
            "summary.run",
            "makespan"
        ]
    );
    let r = c
        .send(Method::POST, "/wf/frames?after=nope", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = c
        .send(Method::POST, "/wf/frames?after=summary", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.text().contains("nothing left to run"), "{}", r.text());

    // The input is bounded by the max_body_bytes of the steps reading it.
    deploy(
        &c,
        "tiny",
        &read_guest("echo"),
        json!({"limits": {"max_body_bytes": 1000}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_workflow(&c, "bounded", "steps: [{name: a, function: tiny}]").await;
    let r = run(&c, "bounded", &[b'x'; 1001]).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("at most 1000"), "{}", r.text());
    assert_eq!(run(&c, "bounded", &[b'x'; 1000]).await.status, 200);
    assert_eq!(c.get("/wf/bounded").await.unwrap().status, 405);
    assert_eq!(run(&c, "missing", b"").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_survive_kill_9_and_follow_their_functions() {
    let mut s = Server::start();
    let c = s.client();
    deploy(
        &c,
        "echo",
        &read_guest("echo"),
        json!({"env": {"V": "one"}}),
    )
    .await
    .ok()
    .unwrap();
    deploy(
        &c,
        "echo",
        &read_guest("test-cgi"),
        json!({"env": {"V": "two"}}),
    )
    .await
    .ok()
    .unwrap();
    deploy_workflow(
        &c,
        "pinned",
        "steps:\n  - {name: old, function: echo, version: 1}\n  - {name: new, function: echo, inputs: old}\n",
    )
    .await;
    let r = run(&c, "pinned", b"in").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // v2 (test-cgi) printed its env and then v1's (echo's) JSON answer.
    let text = r.text();
    assert!(
        text.contains("V=two") && text.contains("--- body ---\n{\"body\":\"in\""),
        "{text}"
    );
    let v1 = get_json(&c, "/v1/functions/echo").await;
    let digest1 = {
        let m = c.get("/v1/functions/echo/module?version=1").await.unwrap();
        m.header("etag").unwrap().trim_matches('"').to_string()
    };
    assert_eq!(v1["version"], 2);
    deploy_workflow(
        &c,
        "bydigest",
        &format!("steps: [{{name: a, function: echo, digest: '{digest1}'}}]"),
    )
    .await;
    let r = run(&c, "bydigest", b"x").await;
    assert_eq!(
        r.json().unwrap()["body"],
        "x",
        "the digest pins echo's module"
    );

    s.kill9_and_restart();
    let c = s.client();
    let ls = get_json(&c, "/v1/workflows").await;
    let names: Vec<&str> = ls["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bydigest", "pinned"]);
    assert_eq!(
        run(&c, "pinned", b"in").await.status,
        200,
        "served again after kill -9"
    );
    let shown = get_json(&c, "/v1/workflows/pinned").await;
    assert!(
        shown["source"].as_str().unwrap().contains("version: 1"),
        "the source as uploaded"
    );

    // A function the workflow needs goes away: it can't run, and says why.
    assert_eq!(
        c.send(Method::DELETE, "/v1/functions/echo", &[], Vec::new())
            .await
            .unwrap()
            .status,
        204
    );
    let r = run(&c, "pinned", b"in").await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains(r#"step \"old\": function \"echo\""#),
        "{}",
        r.text()
    );
    let shown = get_json(&c, "/v1/workflows/pinned").await;
    assert!(
        shown["broken"].as_str().unwrap().contains("not found"),
        "{shown}"
    );
    // Redeployed, it runs again (versions start over at 1).
    deploy(&c, "echo", &read_guest("echo"), json!({}))
        .await
        .ok()
        .unwrap();
    let r = run(&c, "pinned", b"again").await;
    assert_eq!(r.status, 200, "{}", r.text());
    // Replacing the definition bumps its version; the same one doesn't.
    let v = deploy_workflow(&c, "pinned", "steps: [{name: only, function: echo}]").await;
    assert_eq!(
        (v["version"].as_u64(), v["created"].as_bool()),
        (Some(2), Some(true))
    );
    let v = deploy_workflow(&c, "pinned", "steps: [{name: only, function: echo}]").await;
    assert_eq!(
        (v["version"].as_u64(), v["created"].as_bool()),
        (Some(2), Some(false))
    );
    assert_eq!(
        c.send(Method::DELETE, "/v1/workflows/pinned", &[], Vec::new())
            .await
            .unwrap()
            .status,
        204
    );
    assert_eq!(
        c.send(Method::DELETE, "/v1/workflows/pinned", &[], Vec::new())
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(run(&c, "pinned", b"").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_deploys_runs_lists_shows_and_removes_workflows() {
    let s = Server::start();
    let c = s.client();
    deploy_frames(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let def = dir.path().join("frames.yaml");
    std::fs::write(&def, FRAMES).unwrap();
    let png = inputs().join("frames/frame-16k.png");
    let out = dir.path().join("out.json");
    let wisp = |args: &[&str]| {
        let o = std::process::Command::new(wisp_bin())
            .args(args)
            .env("WISP_SERVER", &s.url)
            .env_remove("WISP_TOKEN")
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = wisp(&["workflow", "deploy", "frames", def.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.starts_with("frames v1 deployed: 4 steps"),
        "{stdout}"
    );
    assert!(
        stdout.contains("summary") && stdout.contains("[output]"),
        "{stdout}"
    );
    let (code, _, stderr) = wisp(&[
        "workflow",
        "run",
        "frames",
        "-d",
        &format!("@{}", png.display()),
        "-o",
        out.to_str().unwrap(),
        "-v",
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("edges.delay") && stderr.contains("makespan"),
        "{stderr}"
    );
    let v: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(v["frames"][0]["format"], "P5");
    let (code, stdout, _) = wisp(&["workflow", "ls"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("frames") && l.ends_with("ready")),
        "{stdout}"
    );
    let (code, stdout, _) = wisp(&["workflow", "logs", "frames"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains("success") && stdout.contains("decode") && stdout.contains("summary"),
        "{stdout}"
    );
    let (code, stdout, _) = wisp(&["workflow", "show", "frames"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("function: frame-edges"), "{stdout}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "steps: [{name: a, function: nope}]").unwrap();
    let (code, _, stderr) = wisp(&["workflow", "deploy", "x", bad.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(r#"step "a": function "nope" not found"#),
        "{stderr}"
    );
    let (code, _, _) = wisp(&["workflow", "rm", "frames"]);
    assert_eq!(code, Some(0));
    let (code, stdout, _) = wisp(&["workflow", "ls"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("no workflows"), "{stdout}");
}

/// A workflow belongs to a namespace: its steps are that namespace's
/// functions, it runs at `/ns/{ns}/wf/{name}`, it is managed under the
/// caller's namespace or `/v1/namespaces/{ns}/workflows`, and a namespace's
/// key sees only its namespace's workflows and runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workflows_belong_to_a_namespace_and_a_key_sees_only_its_own() {
    const TOKEN: &str = "admin-token-for-workflow-namespaces";
    let s = Server::with(&["--token", TOKEN], &[]);
    let admin = s.client_with_token(TOKEN);
    let mut keys = Vec::new();
    for ns in ["team-a", "team-b"] {
        let r = admin
            .send(
                Method::POST,
                "/v1/namespaces",
                &[("content-type", "application/json")],
                format!(r#"{{"name":"{ns}"}}"#),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
        keys.push(r.json().unwrap()["auth"].as_str().unwrap().to_string());
    }
    let (a, b) = (s.client_with_token(&keys[0]), s.client_with_token(&keys[1]));
    // `echo` only in team-a, `hello` only in default.
    let r = deploy(&a, "echo", &read_guest("echo"), json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    deploy_guest(&admin, "hello", "hello").await;
    let one = |f: &str| format!("steps:\n  - {{name: only, function: {f}}}\n");

    // Steps name functions of the workflow's own namespace.
    let r = put_workflow(&a, "w", &one("hello")).await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("only"), "names the step: {}", r.text());
    let r = put_workflow(&admin, "w", &one("echo")).await;
    assert_eq!(r.status, 400, "default has no echo: {}", r.text());
    let v = deploy_workflow(&a, "w", &one("echo")).await;
    assert_eq!(v["namespace"], "team-a");
    // The admin reaches team-a's through the namespaced route; default's
    // `w` is another workflow.
    let v = get_json(&admin, "/v1/namespaces/team-a/workflows/w").await;
    assert_eq!(v["plan"][0]["function"], "echo");
    deploy_workflow(&admin, "w", &one("hello")).await;

    // Runs: /wf/{name} is default's, /ns/{ns}/wf/{name} another namespace's.
    let r = s
        .client()
        .send(Method::POST, "/ns/team-a/wf/w", &[], "ping")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().unwrap()["body"], "ping");
    let run_a = r.header("wisp-activation-id").unwrap().to_string();
    let r = run(&s.client(), "w", b"").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Hello"), "{}", r.text());
    let r = s
        .client()
        .send(Method::POST, "/ns/team-b/wf/w", &[], "ping")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "team-b has no w");

    // Listings are per namespace.
    let names = |v: Value| -> Vec<String> {
        v["workflows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                format!(
                    "{}/{}",
                    w["namespace"].as_str().unwrap(),
                    w["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(get_json(&a, "/v1/workflows").await), ["team-a/w"]);
    assert_eq!(
        names(get_json(&admin, "/v1/workflows").await),
        ["default/w"]
    );
    assert_eq!(
        names(get_json(&b, "/v1/workflows").await),
        Vec::<String>::new()
    );
    let runs = get_json(&a, "/v1/workflows/w/runs").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    assert_eq!(runs["runs"][0]["id"], run_a.as_str());
    assert_eq!(runs["runs"][0]["namespace"], "team-a");
    // The run's record (with its step's) is team-a's: B gets a 404 as for
    // an id that never was.
    let rec = get_json(&a, &format!("/v1/activations/{run_a}")).await;
    assert_eq!(rec["activations"][0]["namespace"], "team-a", "{rec}");
    assert_eq!(
        b.get(&format!("/v1/activations/{run_a}"))
            .await
            .unwrap()
            .status,
        404
    );

    // B can neither see nor change A's workflow.
    for (m, path) in [
        (Method::GET, "/v1/namespaces/team-a/workflows/w"),
        (Method::DELETE, "/v1/namespaces/team-a/workflows/w"),
        (Method::GET, "/v1/namespaces/team-a/workflows"),
        (Method::GET, "/v1/namespaces/team-a/workflows/w/runs"),
        (Method::PUT, "/v1/namespaces/team-a/workflows/x"),
    ] {
        let r = b
            .send(
                m.clone(),
                path,
                &[("content-type", "application/yaml")],
                one("echo"),
            )
            .await
            .unwrap();
        assert_eq!(
            (r.status.as_u16(), error_code(&r)),
            (403, "forbidden".into()),
            "{m} {path}"
        );
    }
    assert_eq!(b.get("/v1/workflows/w").await.unwrap().status, 404);
    assert_eq!(
        b.send(Method::DELETE, "/v1/workflows/w", &[], Vec::new())
            .await
            .unwrap()
            .status,
        404
    );

    // Removing the namespace removes its workflows, and a restart brings
    // back the others keyed as they were.
    let r = admin
        .send(Method::DELETE, "/v1/namespaces/team-a", &[], Vec::new())
        .await
        .unwrap();
    assert!(r.status.is_success(), "{}", r.text());
    let r = s
        .client()
        .send(Method::POST, "/ns/team-a/wf/w", &[], "ping")
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let mut s = s;
    s.kill9_and_restart();
    let admin = s.client_with_token(TOKEN);
    assert_eq!(
        names(get_json(&admin, "/v1/workflows").await),
        ["default/w"]
    );
    let b = s.client_with_token(&keys[1]);
    let r = deploy(&b, "echo", &read_guest("echo"), json!({})).await;
    assert_eq!(r.status, 201, "{}", r.text());
    deploy_workflow(&b, "w", &one("echo")).await;
    let r = s
        .client()
        .send(Method::POST, "/ns/team-b/wf/w", &[], "pong")
        .await
        .unwrap();
    assert_eq!(r.json().unwrap()["body"], "pong");
}
