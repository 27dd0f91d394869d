//! Scenario `workflow`: the experiment of "Serverless Everywhere" (Colosi et
//! al.): one Wasm workflow, unchanged, in a browser, on an edge node and on
//! a cloud node. The workflow is the frame pipeline of docs/workflows.md,
//! decode → gray → edges → summary (4 steps, a chain), on the generated
//! frames of 16 KiB to 16 MiB.
//!
//! Arms, all in one run on this machine:
//! - **cloud**: `wisp serve` as it is (both cores, no memory cap), AOT
//!   (compiled at deploy), warm;
//! - **cold**: the same server restarted, so the first run maps the four
//!   artifacts (no compile);
//! - **JIT**: restarted with its compiled artifacts deleted, so the first run
//!   compiles the four modules (Wisp's one compiler, Cranelift, at first use
//!   instead of at deploy); warm runs are then the AOT ones;
//! - **edge**: `wisp serve` in a cgroup of 1 CPU and 512 MiB ([`EdgeNode`]);
//! - **browser**: the browser runner in headless Chromium (`web/bench/workflow.mjs`),
//!   cold (fresh runner: fetch, hash, compile) and warm; and **hybrid**:
//!   decode and gray in the page, edges and summary on the cloud server.
//!
//! Figures: makespan by payload, per-step delay and run, workflows/s at a
//! fixed concurrency with CPU % and RSS sampled (`/proc` for the servers and
//! Chromium's process tree, `performance.memory` in the page).

use super::server_timing;
use crate::Ctx;
use crate::edge::EdgeNode;
use crate::http::Http;
use crate::plot;
use crate::report::{Section, bytes, num, table};
use crate::server::{WispServer, cpu_seconds, rss_bytes};
use crate::stats::{Summary, percentile};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wisp_workflow::WorkflowActivation;

const NAME: &str = "frames";
const STEPS: [&str; 4] = ["decode", "gray", "edges", "summary"];
const FUNCTIONS: [&str; 4] = ["frame-decode", "frame-gray", "frame-edges", "frame-summary"];
const CHAIN: &str = "description: the frame pipeline of the workflow scenario
steps:
  - {name: decode, function: frame-decode}
  - {name: gray, function: frame-gray, inputs: decode}
  - {name: edges, function: frame-edges, inputs: gray}
  - {name: summary, function: frame-summary, inputs: edges}
";
const ALL_PAYLOADS: [&str; 6] = ["16k", "64k", "256k", "1m", "4m", "16m"];
const CONCURRENCY: usize = 4;

fn config() -> Value {
    json!({"limits": {"max_concurrency": 1000, "max_queue": 10000, "timeout_ms": 120000, "queue_timeout_ms": 60000,
                      "memory_bytes": 268435456u64, "max_body_bytes": 67108864u64, "max_response_bytes": 67108864u64}})
}

/// The workflow's repetitions per payload (smaller for the big frames).
fn runs(ctx: &Ctx, p: &str) -> usize {
    let full = match p {
        "16k" | "64k" => 30,
        "256k" => 20,
        "1m" => 10,
        "4m" => 5,
        _ => 3,
    };
    ctx.pick(3, full)
}

/// One run as the client saw it.
#[derive(Clone, Debug)]
struct Sample {
    client_ms: f64,
    makespan_ms: f64,
    id: String,
}

async fn deploy_all(ctx: &Ctx, wisp: &WispServer) -> Result<()> {
    for f in FUNCTIONS {
        wisp.deploy(f, &ctx.wasm(f)?, &config()).await?;
    }
    let r = wisp
        .http()
        .send(
            Method::PUT,
            &format!("{}/v1/workflows/{NAME}", wisp.url),
            &[("content-type", "application/yaml")],
            Bytes::from_static(CHAIN.as_bytes()),
        )
        .await?;
    r.ok().context("deploying the workflow")?;
    Ok(())
}

async fn run_once(http: &Http, url: &str, body: &Bytes) -> Result<Sample> {
    let t0 = Instant::now();
    let r = http
        .send(
            Method::POST,
            url,
            &[("content-type", "image/png")],
            body.clone(),
        )
        .await?;
    let client_ms = t0.elapsed().as_secs_f64() * 1e3;
    if r.status != 200 {
        bail!("workflow answered {}: {}", r.status, r.text());
    }
    Ok(Sample {
        client_ms,
        makespan_ms: server_timing(r.header("server-timing"), "makespan").unwrap_or(f64::NAN),
        id: r.header("wisp-activation-id").unwrap_or("").to_string(),
    })
}

/// The run records of `ids`, from the server.
async fn records(wisp: &WispServer, ids: &[String]) -> Result<Vec<WorkflowActivation>> {
    let r = wisp
        .http()
        .get(&format!(
            "{}/v1/workflows/{NAME}/runs?limit=10000",
            wisp.url
        ))
        .await?
        .ok()?;
    let v: Value = serde_json::from_slice(&r.body)?;
    let all: Vec<WorkflowActivation> = serde_json::from_value(v["runs"].clone())?;
    Ok(all.into_iter().filter(|a| ids.contains(&a.id)).collect())
}

/// Warm runs of each payload on a server: samples and records.
async fn sweep(
    ctx: &Ctx,
    wisp: &WispServer,
    frames: &BTreeMap<String, Bytes>,
    arm: &str,
) -> Result<BTreeMap<String, (Vec<Sample>, Vec<WorkflowActivation>)>> {
    let http = Http::new(true);
    let url = format!("{}/wf/{NAME}", wisp.url);
    let mut out = BTreeMap::new();
    for (p, body) in frames {
        let n = runs(ctx, p);
        let bar = crate::progress::counter(&format!("workflow: {arm} warm {p}"), n as u64 + 2);
        for _ in 0..2 {
            bar.inc();
            run_once(&http, &url, body).await?;
        }
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            bar.inc();
            samples.push(run_once(&http, &url, body).await?);
        }
        let ids: Vec<String> = samples.iter().map(|s| s.id.clone()).collect();
        let recs = records(wisp, &ids).await?;
        out.insert(p.clone(), (samples, recs));
    }
    Ok(out)
}

/// `CONCURRENCY` clients in a closed loop for `d` on `body`; CPU % and RSS
/// of the server sampled every 100 ms from /proc.
async fn load(wisp: &WispServer, body: &Bytes, d: Duration, arm: &str) -> Result<Value> {
    let url = format!("{}/wf/{NAME}", wisp.url);
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let pid = wisp.pid();
    let _bar = crate::progress::timed(&format!("workflow: {arm} load, {CONCURRENCY} at a time"), d);
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (url, body, done, errors, stop) = (
            url.clone(),
            body.clone(),
            done.clone(),
            errors.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = Http::new(true);
            while !stop.load(Ordering::Relaxed) {
                match run_once(&http, &url, &body).await {
                    Ok(_) => done.fetch_add(1, Ordering::Relaxed),
                    Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    let t0 = Instant::now();
    let mut samples = Vec::new();
    let mut last = (cpu_seconds(pid)?, Instant::now());
    while t0.elapsed() < d {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (cpu, now) = (cpu_seconds(pid)?, Instant::now());
        let pct = (cpu - last.0) / now.duration_since(last.1).as_secs_f64() * 100.0;
        samples.push(
            json!({"t_s": t0.elapsed().as_secs_f64(), "cpu_percent": pct, "rss": rss_bytes(pid)?}),
        );
        last = (cpu, now);
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    Ok(
        json!({"concurrency": CONCURRENCY, "seconds": secs, "runs": n, "errors": errors.load(Ordering::Relaxed),
              "per_second": n as f64 / secs, "samples": samples}),
    )
}

/// Mean CPU % and peak RSS of load samples.
fn cpu_rss(load: &Value) -> (f64, f64) {
    let s = load["samples"].as_array().cloned().unwrap_or_default();
    let cpu: Vec<f64> = s.iter().filter_map(|x| x["cpu_percent"].as_f64()).collect();
    let rss = s
        .iter()
        .filter_map(|x| x["rss"].as_f64())
        .fold(0.0, f64::max);
    (crate::stats::mean(&cpu), rss)
}

/// First runs after restarts: `jit` deletes the compiled artifacts first.
async fn first_runs(
    wisp: &mut WispServer,
    body: &Bytes,
    reps: usize,
    jit: bool,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for _ in 0..reps {
        wisp.stop();
        if jit {
            let compiled = wisp.home.join("compiled");
            for fp in std::fs::read_dir(&compiled)?.flatten() {
                for a in std::fs::read_dir(fp.path())?.flatten() {
                    std::fs::remove_file(a.path())?;
                }
            }
        }
        wisp.respawn()?;
        let http = Http::new(true);
        let s = run_once(&http, &format!("{}/wf/{NAME}", wisp.url), body).await?;
        let recs = records(wisp, std::slice::from_ref(&s.id)).await?;
        let metrics = http.get(&format!("{}/metrics", wisp.url)).await?.text();
        let compilations = metrics
            .lines()
            .find_map(|l| l.strip_prefix("wisp_compilations_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let cold_steps = recs
            .first()
            .map_or(0, |r| r.steps.iter().filter(|s| s.cold).count());
        out.push(json!({"client_ms": s.client_ms, "makespan_ms": s.makespan_ms, "compilations": compilations,
                        "cold_steps": cold_steps,
                        "init_ms": recs.first().map_or(0.0, |r| r.steps.iter().map(|s| s.init_us as f64).sum::<f64>() / 1e3)}));
    }
    Ok(out)
}

fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// Per step of a set of records: (delay, hand-off, run, instantiate) samples, µs.
fn step_samples(recs: &[WorkflowActivation]) -> BTreeMap<String, [Vec<f64>; 4]> {
    let mut m: BTreeMap<String, [Vec<f64>; 4]> = BTreeMap::new();
    for r in recs {
        for s in &r.steps {
            let e = m.entry(s.step.clone()).or_default();
            e[0].push(s.delay_us as f64);
            e[1].push(s.handoff_us as f64);
            e[2].push(s.run_us as f64);
            e[3].push(s.instantiate_us as f64);
        }
    }
    m
}

/// The browser arm: `node web/bench/workflow.mjs CONFIG`.
async fn browser(
    ctx: &Ctx,
    wisp_port: u16,
    payloads: &[&str],
    def: &Value,
) -> Result<Value, String> {
    let root = ctx
        .opts
        .manifest
        .canonicalize()
        .ok()
        .and_then(|m| m.parent()?.parent()?.parent().map(|p| p.to_path_buf()))
        .ok_or("can't find the repository from the manifest's path")?;
    let script = root.join("web/bench/workflow.mjs");
    if !script.exists() {
        return Err(format!("{} is missing", script.display()));
    }
    if !root.join("web/node_modules/playwright-core").exists() {
        return Err("web/node_modules is missing (cd web && npm ci)".into());
    }
    let runs: BTreeMap<&str, usize> = payloads.iter().map(|p| (*p, runs(ctx, p))).collect();
    let c = &config()["limits"];
    let cfg = json!({"wispPort": wisp_port, "workflow": NAME, "def": def, "payloads": payloads, "runs": runs,
                     "coldRuns": ctx.pick(1, 5), "concurrency": CONCURRENCY, "seconds": ctx.pick(2, 10),
                     "hybridUntil": "gray",
                     // The functions' limits on the servers (config()), in the runner's names.
                     "limits": {"memoryBytes": c["memory_bytes"], "timeoutMs": c["timeout_ms"],
                                "maxBodyBytes": c["max_body_bytes"], "maxResponseBytes": c["max_response_bytes"]}});
    ctx.progress("workflow: browser arm (headless Chromium)");
    let out = tokio::time::timeout(
        Duration::from_secs(ctx.pick(300, 1800)),
        tokio::process::Command::new("node")
            .arg(&script)
            .arg(cfg.to_string())
            .current_dir(root.join("web"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| "the browser arm timed out".to_string())?
    .map_err(|e| format!("running node: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "node {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("the browser arm's output is not JSON: {e}"))
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut sec = Section::new("workflow", "Workflows: browser, edge and cloud");
    let inputs = ctx
        .opts
        .manifest
        .parent()
        .context("the manifest has no directory")?
        .join("inputs/frames");
    let payloads: Vec<&str> = if ctx.opts.quick {
        vec!["16k", "256k"]
    } else {
        ALL_PAYLOADS.to_vec()
    };
    let mut frames = BTreeMap::new();
    for p in &payloads {
        let f = inputs.join(format!("frame-{p}.png"));
        let b = std::fs::read(&f)
            .with_context(|| format!("reading {} (run scripts/gen-inputs)", f.display()))?;
        frames.insert(p.to_string(), Bytes::from(b));
    }
    // Keep the sweep in payload order.
    let order = |m: &BTreeMap<String, (Vec<Sample>, Vec<WorkflowActivation>)>| -> Vec<String> {
        payloads
            .iter()
            .filter(|p| m.contains_key(**p))
            .map(|p| p.to_string())
            .collect()
    };
    let small = frames[payloads[0]].clone();
    let load_for = Duration::from_secs(ctx.pick(2, 10));

    // Cloud: AOT, warm.
    let mut cloud = ctx.start_wisp(&[])?;
    deploy_all(ctx, &cloud).await?;
    let cloud_sweep = sweep(ctx, &cloud, &frames, "cloud").await?;
    let cloud_load = load(&cloud, &small, load_for, "cloud").await?;
    let def = {
        let r = cloud
            .http()
            .get(&format!("{}/v1/workflows/{NAME}", cloud.url))
            .await?
            .ok()?;
        serde_json::from_slice::<Value>(&r.body)?["definition"].clone()
    };

    // Browser and hybrid, against the cloud server.
    let port = crate::server::url_port(&cloud.url).context("the server's port")?;
    let browser = browser(ctx, port, &payloads, &def).await;
    if let Err(e) = &browser {
        ctx.progress(&format!("workflow: browser arm not run: {e}"));
    }

    // Cold (AOT artifacts mapped) and JIT (compiled at first use).
    let reps = ctx.pick(1, 5);
    let cold = first_runs(&mut cloud, &small, reps, false).await?;
    let jit = first_runs(&mut cloud, &small, ctx.pick(1, 3), true).await?;
    drop(cloud);

    // Edge: 1 CPU, 512 MiB.
    let edge_node = EdgeNode::create(&format!("bench-{}", std::process::id()), "0", 512 << 20);
    let edge = match edge_node {
        Ok(node) => {
            let node = Arc::new(node);
            let wisp = WispServer::start_in(
                &ctx.opts.wisp_bin,
                &ctx.scratch("home-edge"),
                &[],
                Some(node.clone()),
            )?;
            let check = node.check(wisp.pid()).map_err(anyhow::Error::msg)?;
            deploy_all(ctx, &wisp).await?;
            let sw = sweep(ctx, &wisp, &frames, "edge").await?;
            let ld = load(&wisp, &small, load_for, "edge").await?;
            let peak = node.peak_memory();
            drop(wisp);
            Ok((sw, ld, check, peak))
        }
        Err(why) => {
            ctx.progress(&format!("workflow: edge arm not run: {why}"));
            Err(why)
        }
    };

    // ---- Report ----
    let makespans =
        |m: &BTreeMap<String, (Vec<Sample>, Vec<WorkflowActivation>)>, p: &str| -> Vec<f64> {
            m.get(p)
                .map(|(s, _)| s.iter().map(|x| x.makespan_ms).collect())
                .unwrap_or_default()
        };
    let browser_warm = |p: &str| -> Vec<f64> {
        browser
            .as_ref()
            .ok()
            .and_then(|b| b["payloads"][p]["warm"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["makespanMs"].as_f64())
            .collect()
    };
    let browser_hybrid = |p: &str| -> Vec<f64> {
        browser
            .as_ref()
            .ok()
            .and_then(|b| b["payloads"][p]["hybrid"].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|r| r["makespanMs"].as_f64())
            .collect()
    };
    let edge_sweep = edge.as_ref().ok().map(|e| &e.0);
    let mut rows = Vec::new();
    let mut series: Vec<(String, Vec<(f64, f64)>)> = vec![
        ("cloud (AOT, warm)".into(), vec![]),
        ("edge: 1 CPU, 512 MiB".into(), vec![]),
        ("browser (warm)".into(), vec![]),
        ("hybrid: browser → cloud".into(), vec![]),
    ];
    for p in order(&cloud_sweep) {
        let size = frames[&p].len() as f64;
        let raw = cloud_sweep[&p]
            .1
            .first()
            .map_or(0.0, |r| r.steps.first().map_or(0.0, |s| s.bytes_out as f64));
        let c = median(&makespans(&cloud_sweep, &p));
        let e = edge_sweep.map_or(f64::NAN, |m| median(&makespans(m, &p)));
        let b = median(&browser_warm(&p));
        let h = median(&browser_hybrid(&p));
        let hand: Vec<f64> = cloud_sweep[&p]
            .1
            .iter()
            .flat_map(|r| r.steps.iter().skip(1).map(|s| s.handoff_us as f64))
            .collect();
        for (i, v) in [c, e, b, h].into_iter().enumerate() {
            if v.is_finite() {
                series[i].1.push((raw.max(1.0) / 1024.0, v));
            }
        }
        rows.push(vec![
            p.clone(),
            bytes(size),
            bytes(raw),
            num(c),
            num(e),
            num(b),
            if c > 0.0 {
                format!("{}×", num(b / c))
            } else {
                "–".into()
            },
            num(h),
            num(median(&hand)),
        ]);
    }
    sec.para(&format!(
        "The workflow is the frame pipeline `decode → gray → edges → summary` (four command modules, a chain; \
         docs/workflows.md), on the PNG frames of `scripts/gen-inputs`. Each arm deploys the same modules and the same \
         definition. *Cloud*: `wisp serve` on this machine ({} cores). *Edge*: `wisp serve` in a cgroup holding it to \
         CPU 0 and 512 MiB ({}). *Browser*: the browser runner in headless Chromium {} on the same machine, each step in a \
         Web Worker, buffers transferred. *Hybrid*: decode and gray in the page, the gray frame POSTed to the cloud \
         server's `/wf/{NAME}?after=gray` (edges and summary there). Makespans are the engines' own (server: \
         `Server-Timing: makespan`, from the input read to the output step's end; browser: the runner's, from the call to \
         the output), medians over the warm runs (after 2 unmeasured ones). *Cloud hand-off*: the engine's part of \
         each step's delay after the first (the last input's end → the step called), median over steps 2–4: a step's \
         input is the producer's output buffer, shared, so it should not grow with the frame.",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        match &edge {
            Ok((_, _, c, _)) => format!("checked: `Cpus_allowed_list` {}, memory limit {}", c.cpus_allowed, bytes(c.memory_limit as f64)),
            Err(why) => format!("**not run here: {why}**"),
        },
        browser.as_ref().ok().and_then(|b| b["chromium"].as_str()).unwrap_or("(not run)"),
    ));
    sec.markdown.push_str(&table(
        &[
            "frame",
            "PNG",
            "raw frame",
            "cloud ms",
            "edge ms",
            "browser ms",
            "browser / cloud",
            "hybrid ms",
            "cloud hand-off µs",
        ],
        &rows,
    ));
    sec.plot(
        "workflow_makespan.svg",
        plot::lines(
            "Workflow makespan by frame size",
            "raw frame (KiB)",
            "makespan (ms, median)",
            &series
                .iter()
                .filter(|s| !s.1.is_empty())
                .cloned()
                .collect::<Vec<_>>(),
            plot::LineOpts {
                log_x: true,
                log_y: true,
                markers: true,
                ..Default::default()
            },
        ),
        "Makespan of the 4-step frame workflow against the frame size, per placement (log-log)",
    );

    // Per step at the smallest payload.
    let p0 = payloads[0];
    let cloud_steps = step_samples(&cloud_sweep[p0].1);
    let edge_steps = edge_sweep.map(|m| step_samples(&m[p0].1));
    let mut step_rows = Vec::new();
    let mut box_items = Vec::new();
    let bsteps: Vec<Value> = browser
        .as_ref()
        .ok()
        .and_then(|b| b["payloads"][p0]["warm"].as_array().cloned())
        .unwrap_or_default();
    for st in STEPS {
        let c = &cloud_steps.get(st).cloned().unwrap_or_default();
        let e = edge_steps
            .as_ref()
            .and_then(|m| m.get(st).cloned())
            .unwrap_or_default();
        let b_delay: Vec<f64> = bsteps
            .iter()
            .filter_map(|r| {
                r["steps"].as_array()?.iter().find(|s| s["step"] == st)?["delayMs"].as_f64()
            })
            .map(|v| v * 1e3)
            .collect();
        let b_run: Vec<f64> = bsteps
            .iter()
            .filter_map(|r| {
                r["steps"].as_array()?.iter().find(|s| s["step"] == st)?["runMs"].as_f64()
            })
            .map(|v| v * 1e3)
            .collect();
        step_rows.push(vec![
            st.to_string(),
            num(median(&c[1])),
            num(median(&c[0])),
            num(median(&c[2])),
            num(median(&e[0])),
            num(median(&e[2])),
            num(median(&b_delay)),
            num(median(&b_run)),
        ]);
        box_items.push((
            format!("{st} cloud"),
            c[0].iter().map(|v| v / 1e3).collect::<Vec<_>>(),
        ));
        box_items.push((format!("{st} edge"), e[0].iter().map(|v| v / 1e3).collect()));
        box_items.push((
            format!("{st} browser"),
            b_delay.iter().map(|v| v / 1e3).collect(),
        ));
    }
    sec.para(&format!(
        "Per step, frame {p0}, medians in µs. *Hand-off* is the engine's own part of the delay (the last input's end → the \
         executor called); *delay* is the last input's end → the step's guest code starts (hand-off, admission, template, \
         instantiation; on the server it also holds the wake-ups between the I/O and guest threads); *run* is the guest code."
    ));
    sec.markdown.push_str(&table(
        &[
            "step",
            "cloud hand-off",
            "cloud delay",
            "cloud run",
            "edge delay",
            "edge run",
            "browser delay",
            "browser run",
        ],
        &step_rows,
    ));
    sec.plot(
        "workflow_delay.svg",
        plot::boxes(
            &format!("Per-step delay, frame {p0}"),
            "delay (ms)",
            &box_items
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .collect::<Vec<_>>(),
            true,
        ),
        "Delay of each step (last input's end → guest code starts), per placement",
    );

    // Start: cold, JIT, warm.
    let cold_ms: Vec<f64> = cold
        .iter()
        .filter_map(|c| c["makespan_ms"].as_f64())
        .collect();
    let jit_ms: Vec<f64> = jit
        .iter()
        .filter_map(|c| c["makespan_ms"].as_f64())
        .collect();
    let warm_ms = makespans(&cloud_sweep, p0);
    let bcold: Vec<Value> = browser
        .as_ref()
        .ok()
        .and_then(|b| b["cold"].as_array().cloned())
        .unwrap_or_default();
    let bcold_total: Vec<f64> = bcold.iter().filter_map(|c| c["totalMs"].as_f64()).collect();
    let bcold_load: Vec<f64> = bcold.iter().filter_map(|c| c["loadMs"].as_f64()).collect();
    let bcached: Vec<Value> = browser
        .as_ref()
        .ok()
        .and_then(|b| b["coldCached"].as_array().cloned())
        .unwrap_or_default();
    let bcached_total: Vec<f64> = bcached
        .iter()
        .filter_map(|c| c["totalMs"].as_f64())
        .collect();
    let bcached_load: Vec<f64> = bcached
        .iter()
        .filter_map(|c| c["loadMs"].as_f64())
        .collect();
    let bwarm = browser_warm(p0);
    let jit_compiles = jit
        .first()
        .and_then(|j| j["compilations"].as_u64())
        .unwrap_or(0);
    sec.para(&format!(
        "Starts, frame {p0}: the first run after a restart (*cold*: each step maps its artifact), after a restart with the \
         artifacts deleted (*JIT*: each step compiles its module at first use; `wisp_compilations_total` was {jit_compiles} \
         after it), and warm. Wisp has one compiler, so a JIT's warm runs are the AOT ones. The browser's cold run is a \
         fresh runner: fetch, SHA-256, memory cap and `WebAssembly.compileStreaming` of the four modules, workers started; \
         with the IndexedDB cache filled, the memory cap is skipped but the module is still compiled (Chromium refuses to \
         store a `WebAssembly.Module` in IndexedDB, so the cache holds the capped bytes)."
    ));
    sec.markdown.push_str(&table(
        &["arm", "n", "makespan ms (median)", "of which loading ms"],
        &[
            vec![
                "cloud, warm (AOT)".into(),
                warm_ms.len().to_string(),
                num(median(&warm_ms)),
                "0".into(),
            ],
            vec![
                "cloud, cold (AOT artifacts)".into(),
                cold_ms.len().to_string(),
                num(median(&cold_ms)),
                num(median(
                    &cold
                        .iter()
                        .filter_map(|c| c["init_ms"].as_f64())
                        .collect::<Vec<_>>(),
                )),
            ],
            vec![
                "cloud, JIT (compile at first use)".into(),
                jit_ms.len().to_string(),
                num(median(&jit_ms)),
                num(median(
                    &jit.iter()
                        .filter_map(|c| c["init_ms"].as_f64())
                        .collect::<Vec<_>>(),
                )),
            ],
            vec![
                "browser, warm".into(),
                bwarm.len().to_string(),
                num(median(&bwarm)),
                "0".into(),
            ],
            vec![
                "browser, cold (fresh runner)".into(),
                bcold_total.len().to_string(),
                num(median(&bcold_total)),
                num(median(&bcold_load)),
            ],
            vec![
                "browser, cold, IndexedDB cache filled".into(),
                bcached_total.len().to_string(),
                num(median(&bcached_total)),
                num(median(&bcached_load)),
            ],
        ],
    ));

    // Throughput, CPU, RSS.
    let (ccpu, crss) = cpu_rss(&cloud_load);
    let mut tp_rows = vec![vec![
        "cloud".into(),
        num(cloud_load["per_second"].as_f64().unwrap_or(f64::NAN)),
        cloud_load["errors"].to_string(),
        num(ccpu),
        bytes(crss),
    ]];
    let mut tp_bars = vec![(
        "cloud".to_string(),
        cloud_load["per_second"].as_f64().unwrap_or(0.0),
    )];
    if let Ok((_, ld, _, peak)) = &edge {
        let (ecpu, erss) = cpu_rss(ld);
        tp_rows.push(vec![
            format!(
                "edge (cgroup peak {})",
                peak.map_or("–".into(), |p| bytes(p as f64))
            ),
            num(ld["per_second"].as_f64().unwrap_or(f64::NAN)),
            ld["errors"].to_string(),
            num(ecpu),
            bytes(erss),
        ]);
        tp_bars.push(("edge".into(), ld["per_second"].as_f64().unwrap_or(0.0)));
    }
    if let Ok(b) = &browser {
        let l = &b["load"];
        let s = l["samples"].as_array().cloned().unwrap_or_default();
        let cpu: Vec<f64> = s.iter().filter_map(|x| x["cpuPercent"].as_f64()).collect();
        let rss = s
            .iter()
            .filter_map(|x| x["rss"].as_f64())
            .fold(0.0, f64::max);
        tp_rows.push(vec![
            format!(
                "browser (JS heap {})",
                l["jsHeapBytes"].as_f64().map_or("–".into(), bytes)
            ),
            num(l["perSecond"].as_f64().unwrap_or(f64::NAN)),
            l["errors"].to_string(),
            num(crate::stats::mean(&cpu)),
            bytes(rss),
        ]);
        tp_bars.push(("browser".into(), l["perSecond"].as_f64().unwrap_or(0.0)));
    }
    sec.para(&format!(
        "Throughput: {CONCURRENCY} runs at a time in a closed loop for {} s on frame {p0}; CPU % (100 % = one core) and \
         RSS sampled every 100 ms from `/proc` (the server process; Chromium's whole process tree, renderer and workers \
         included).",
        load_for.as_secs()
    ));
    sec.markdown.push_str(&table(
        &["arm", "workflows/s", "errors", "CPU % (mean)", "RSS (peak)"],
        &tp_rows,
    ));
    let cats: Vec<String> = tp_bars.iter().map(|b| b.0.clone()).collect();
    sec.plot(
        "workflow_throughput.svg",
        plot::bars(
            &format!("Workflows/s at concurrency {CONCURRENCY}, frame {p0}"),
            "workflows/s",
            &cats,
            &[(
                "runs/s".into(),
                tp_bars.iter().map(|b| (b.1, 0.0)).collect(),
            )],
            false,
        ),
        "Throughput of the 4-step workflow per placement",
    );

    // Targets.
    let handoffs: Vec<f64> = cloud_sweep[p0]
        .1
        .iter()
        .flat_map(|r| r.steps.iter().skip(1).map(|s| s.handoff_us as f64))
        .collect();
    let hand_med = median(&handoffs);
    sec.target(
        "server per-step hand-off (engine, no HTTP), warm, frame 16k",
        "≤ 50 µs plus the payload copy (none: readers share the output)",
        format!(
            "{} µs median, {} µs p95 (n={})",
            num(hand_med),
            num(percentile(&handoffs, 95.0)),
            handoffs.len()
        ),
        Some(hand_med <= 50.0),
    );
    let ratios: Vec<f64> = cloud_sweep[p0]
        .1
        .iter()
        .map(|r| r.makespan_us as f64 / r.steps.iter().map(|s| s.run_us as f64).sum::<f64>())
        .collect();
    let ratios_inst: Vec<f64> = cloud_sweep[p0]
        .1
        .iter()
        .map(|r| {
            r.makespan_us as f64
                / r.steps
                    .iter()
                    .map(|s| (s.run_us + s.instantiate_us) as f64)
                    .sum::<f64>()
        })
        .collect();
    let rmed = median(&ratios);
    sec.target(
        "warm makespan of the 4-step workflow, frame 16k, against the sum of its steps' run times",
        "≤ 1.2×",
        format!(
            "{}× median (guest code only); {}× against instantiation + run",
            num(rmed),
            num(median(&ratios_inst))
        ),
        Some(rmed <= 1.2),
    );

    // Findings against the paper.
    let last = order(&cloud_sweep).last().cloned().unwrap_or_default();
    let (bs, cs) = (
        median(&browser_warm(p0)),
        median(&makespans(&cloud_sweep, p0)),
    );
    let (bl, cl) = (
        median(&browser_warm(&last)),
        median(&makespans(&cloud_sweep, &last)),
    );
    let el = edge_sweep.map_or(f64::NAN, |m| median(&makespans(m, &last)));
    sec.para(&format!(
        "**Against the paper's finding** (small payloads: the browser keeps up, data passing in memory; growing payloads: \
         AOT on edge and cloud pulls ahead). Here, at frame {p0} the browser's warm makespan is {}× the cloud's ({} ms vs \
         {} ms); at frame {last} it is {}× ({} ms vs {} ms; edge {} ms). {}",
        num(bs / cs), num(bs), num(cs), num(bl / cl), num(bl), num(cl), num(el),
        if bl / cl > bs / cs {
            "The gap grows with the payload, as in the paper."
        } else {
            "The gap does not grow with the payload here, unlike the paper."
        }
    ));
    sec.json = json!({
        "payloads": payloads,
        "cloud": {"sweep": sweep_json(&cloud_sweep), "load": cloud_load, "cold": cold, "jit": jit},
        "edge": match &edge {
            Ok((sw, ld, check, peak)) => json!({"sweep": sweep_json(sw), "load": ld, "check": check, "peak_memory": peak}),
            Err(why) => json!({"not_run": why}),
        },
        "browser": match &browser { Ok(b) => b.clone(), Err(why) => json!({"not_run": why}) },
        "handoff_us": Summary::of(&handoffs),
        "makespan_over_run": Summary::of(&ratios),
        "makespan_over_instantiate_and_run": Summary::of(&ratios_inst),
    });
    Ok(sec)
}

fn sweep_json(m: &BTreeMap<String, (Vec<Sample>, Vec<WorkflowActivation>)>) -> Value {
    m.iter()
        .map(|(p, (s, r))| {
            let mk: Vec<f64> = s.iter().map(|x| x.makespan_ms).collect();
            let cl: Vec<f64> = s.iter().map(|x| x.client_ms).collect();
            (p.clone(), json!({"makespan_ms": Summary::of(&mk), "client_ms": Summary::of(&cl), "records": r}))
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
