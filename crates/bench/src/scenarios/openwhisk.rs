//! Scenario `openwhisk` (opt-in): the WOW edge study's experiments
//! (Gackstatter et al., "Pushing Serverless to the Edge with WebAssembly
//! Runtimes", CCGrid 2022) through Wisp's OpenWhisk API (`/api/v1`),
//! against OpenWhisk's container model in the same run
//! ([`crate::invoker`]: a warm runc container per action serving one
//! activation at a time, created on demand, reused while warm, running the
//! same function's native build).
//!
//! Both sides get the same requests: `POST
//! /api/v1/namespaces/_/actions/{name}?blocking=true&result=true` with the
//! parameters as the JSON body, `Authorization: Basic` on Wisp. The
//! actions are `ow-hash` (BLAKE3, its iterations calibrated so the native
//! build takes about 100 ms, the study's size) and `ow-sleep` (300 ms).
//!
//! - (a) mixed: hash and sleep 50/50 at a rising open-loop rate until
//!   saturation → throughput;
//! - (b) cold starts against concurrency (the study's Fig. 4);
//! - (c) the skewed, Azure-like mix: 90 % of requests to 2 actions, 10 %
//!   over 60, half of them CPU-bound → latency ECDF;
//! - (d) memory per warm action (the study's Table II).

use super::{distinct_module, raise_nofile};
use crate::Ctx;
use crate::containerd::{Containerd, unavailable};
use crate::http::Http;
use crate::images::native_image_of;
use crate::invoker::Invoker;
use crate::load::{self, LoadSpec, Mode, Target};
use crate::plot;
use crate::report::{Section, bytes, num, table};
use crate::server::WispServer;
use crate::stats::{Summary, ecdf_thin, mean, percentile};
use anyhow::{Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The study's figures (Wasm in OpenWhisk against Docker), for the report.
const PAPER_COLD: &str = "Wasm 47–180 ms vs Docker 869–2,873 ms (Table I, Fig. 4)";
const PAPER_THROUGHPUT: &str = "2.2–4.2× (Fig. 5)";
const PAPER_MEMORY: &str = "3.5–7.6× less (Table II; e.g. Wasmtime 6.34 MiB, Docker 22.28 MiB)";

/// One platform's invoke endpoint.
struct Side {
    name: &'static str,
    base: String,
    headers: Vec<(String, String)>,
}

impl Side {
    fn url(&self, action: &str) -> String {
        format!(
            "{}/api/v1/namespaces/_/actions/{action}?blocking=true&result=true",
            self.base
        )
    }
    fn target(&self, action: &str, params: &Value) -> Target {
        let h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Target::post_json(self.url(action), params, &h)
    }
    /// One blocking invoke: (latency ms, status, body).
    async fn invoke(&self, http: &Http, action: &str, params: &Value) -> Result<(f64, u16, Bytes)> {
        let t = self.target(action, params);
        let h: Vec<(&str, &str)> = t
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let t0 = Instant::now();
        let r = http.send(Method::POST, &t.url, &h, t.body.clone()).await?;
        Ok((t0.elapsed().as_secs_f64() * 1e3, r.status.as_u16(), r.body))
    }
}

/// `POST /v1/namespaces` on a server without a token: the new namespace's
/// `uuid:key`, as an `Authorization: Basic` value.
async fn namespace(wisp: &WispServer, name: &str) -> Result<String> {
    let r = wisp
        .http()
        .send(
            Method::POST,
            &format!("{}/v1/namespaces", wisp.url),
            &[("content-type", "application/json")],
            Bytes::from(json!({ "name": name }).to_string()),
        )
        .await?
        .ok()
        .context("creating the bench namespace")?;
    let v: Value = serde_json::from_slice(&r.body)?;
    let key = v["auth"].as_str().context("no auth in the answer")?;
    Ok(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// `PUT …/actions/{name}?overwrite=true` of a Wasm action.
async fn put_action(wisp: &WispServer, auth: &str, name: &str, wasm: &[u8]) -> Result<()> {
    let body = json!({
        "exec": {"kind": "wasm:0.1", "binary": true,
                 "code": base64::engine::general_purpose::STANDARD.encode(wasm)},
        "limits": {"timeout": 300_000},
    });
    wisp.http()
        .send(
            Method::PUT,
            &format!(
                "{}/api/v1/namespaces/_/actions/{name}?overwrite=true",
                wisp.url
            ),
            &[
                ("authorization", auth),
                ("content-type", "application/json"),
            ],
            Bytes::from(body.to_string()),
        )
        .await?
        .ok()
        .with_context(|| format!("creating the action {name}"))?;
    Ok(())
}

fn wisp_side(wisp: &WispServer, auth: &str) -> Side {
    Side {
        name: "Wisp",
        base: wisp.url.clone(),
        headers: vec![("authorization".into(), auth.into())],
    }
}

/// Iterations of `ow-hash` that take about `target` natively (median of 3).
fn calibrate(exe: &std::path::Path, target: Duration) -> Result<(u64, f64)> {
    let time = |n: u64| -> Result<f64> {
        let body = json!({ "iterations": n }).to_string();
        let mut v = vec![];
        for _ in 0..3 {
            let (d, out) = crate::baseline::run_native_once(exe, "", body.as_bytes())?;
            anyhow::ensure!(
                String::from_utf8_lossy(&out).contains("\"digest\""),
                "ow-hash answered {}",
                String::from_utf8_lossy(&out)
            );
            v.push(d.as_secs_f64() * 1e3);
        }
        Ok(percentile(&v, 50.0))
    };
    let mut n = 1_000_000u64;
    let mut ms = time(n)?;
    for _ in 0..3 {
        n = ((n as f64) * target.as_secs_f64() * 1e3 / ms.max(0.01))
            .round()
            .max(1.0) as u64;
        ms = time(n)?;
    }
    Ok((n, ms))
}

/// The baseline: a private containerd, the runtime image (proxy + both
/// actions' native builds) imported, the invoker in front.
async fn start_baseline(ctx: &Ctx, cap: usize) -> Result<Invoker> {
    let dir = ctx.scratch("ow-containerd");
    let ctd = Containerd::start_runc_only(&dir)?;
    let img_dir = ctx.scratch("ow-image");
    std::fs::create_dir_all(&img_dir)?;
    let exes = [
        ctx.native("ow-proxy")?,
        ctx.native("ow-hash")?,
        ctx.native("ow-sleep")?,
    ];
    let img = native_image_of("wisp-bench/ow-runtime:native", &exes, &img_dir)?;
    ctd.import(&img.tar)?;
    Invoker::start(ctd, &img.name, cap).await
}

/// Rising-rate steps of (a) for one side.
struct Rising {
    rows: Vec<Vec<String>>,
    /// (offered, answered/s).
    curve: Vec<(f64, f64)>,
    steps: Vec<Value>,
    /// Highest answered/s of any step.
    peak: f64,
    /// Highest offered rate not saturated.
    sustained: f64,
}

#[allow(clippy::too_many_arguments)]
async fn rising(
    ctx: &Ctx,
    side: &Side,
    rates: &[f64],
    step: Duration,
    hash: &Value,
    sleep: &Value,
    unloaded_hash: f64,
    containers: Option<&Invoker>,
) -> Rising {
    let targets = vec![side.target("hash", hash), side.target("sleep", sleep)];
    let mut out = Rising {
        rows: vec![],
        curve: vec![],
        steps: vec![],
        peak: 0.0,
        sustained: 0.0,
    };
    for &rate in rates {
        ctx.progress(&format!("openwhisk (a): {} at {rate:.0} req/s", side.name));
        let colds_before = containers.map_or(0, |c| c.cold_starts().len());
        let r = load::run(&LoadSpec {
            targets: targets.clone(),
            weights: vec![1.0, 1.0],
            mode: Mode::Open {
                rate,
                max_in_flight: 5_000,
            },
            duration: step,
            max_requests: None,
            keep_alive: true,
            timeout: Duration::from_secs(60),
        })
        .await;
        let (h, s) = (
            Summary::of(&r.ok_latencies_of(0)),
            Summary::of(&r.ok_latencies_of(1)),
        );
        let offered = (rate * step.as_secs_f64()).floor().max(1.0);
        let answered = (h.n + s.n) as f64 / offered;
        let tp = r.throughput();
        let colds = containers.map_or(0, |c| c.cold_starts().len()) - colds_before;
        // Saturated: errors, under 90 % answered, or the CPU-bound half's
        // median past 5× its unloaded median (it queues).
        let saturated = r.errors() > 0 || answered < 0.9 || h.median > 5.0 * unloaded_hash;
        out.rows.push(vec![
            format!("{rate:.0}"),
            format!("{tp:.1}"),
            num(h.median),
            num(h.p99),
            num(s.median),
            num(s.p99),
            r.errors().to_string(),
            if containers.is_some() {
                colds.to_string()
            } else {
                "–".into()
            },
            if saturated {
                "saturated".into()
            } else {
                "ok".into()
            },
        ]);
        out.curve.push((rate, tp));
        out.peak = out.peak.max(tp);
        if !saturated {
            out.sustained = rate;
        }
        out.steps.push(
            json!({"rate": rate, "throughput": tp, "hash": h, "sleep": s, "errors": r.errors(),
            "cold_starts": colds, "saturated": saturated,
            "hash_ms": r.ok_latencies_of(0), "sleep_ms": r.ok_latencies_of(1)}),
        );
        if saturated {
            break;
        }
    }
    out
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    raise_nofile();
    let mut sec = Section::new(
        "openwhisk",
        "OpenWhisk: the WOW edge study's experiments through /api/v1, against OpenWhisk's container model",
    );
    let quick = ctx.opts.quick;
    let cap = ctx.opts.ow_containers.unwrap_or(8);
    let http = Http::new(true);

    // The actions' sizes: hash calibrated natively, sleep 300 ms.
    let hash_target = ctx.pick(Duration::from_millis(30), Duration::from_millis(100));
    let (iterations, native_hash_ms) = calibrate(ctx.native("ow-hash")?, hash_target)?;
    let hash = json!({ "iterations": iterations });
    let sleep_ms = 300;
    let sleep = json!({ "ms": sleep_ms });
    let hash_wasm = ctx.wasm("ow-hash")?;
    let sleep_wasm = ctx.wasm("ow-sleep")?;

    let mut wisp = ctx.start_wisp(&[])?;
    let auth = namespace(&wisp, "bench").await?;
    put_action(&wisp, &auth, "hash", &hash_wasm).await?;
    put_action(&wisp, &auth, "sleep", &sleep_wasm).await?;

    let baseline: Result<Invoker, String> = match unavailable() {
        Some(why) if ctx.opts.no_container => Err(format!("disabled with --no-container ({why})")),
        _ if ctx.opts.no_container => Err("disabled with --no-container".into()),
        Some(why) => Err(why),
        None => start_baseline(ctx, cap).await.map_err(|e| format!("{e:#}")),
    };
    if let Ok(b) = &baseline {
        b.register("hash", "/ow-hash");
        b.register("sleep", "/ow-sleep");
    }
    let why_not = baseline.as_ref().err().cloned();

    // Unloaded, warm: 5 serial invokes of each after a first one.
    let mut unloaded = json!({});
    let mut unloaded_hash = (f64::NAN, f64::NAN);
    let mut unloaded_rows = vec![];
    {
        let mut sides = vec![wisp_side(&wisp, &auth)];
        if let Ok(b) = &baseline {
            sides.push(Side {
                name: "runc container",
                base: b.url.clone(),
                headers: vec![],
            });
        }
        for (k, side) in sides.iter().enumerate() {
            let mut row = vec![side.name.to_string()];
            for (action, params) in [("hash", &hash), ("sleep", &sleep)] {
                let (first, st, body) = side.invoke(&http, action, params).await?;
                anyhow::ensure!(
                    st == 200,
                    "{} {action}: HTTP {st}: {}",
                    side.name,
                    String::from_utf8_lossy(&body)
                );
                let mut v = vec![];
                for _ in 0..5 {
                    let (ms, st, _) = side.invoke(&http, action, params).await?;
                    anyhow::ensure!(st == 200, "{} {action}: HTTP {st}", side.name);
                    v.push(ms);
                }
                let m = percentile(&v, 50.0);
                if action == "hash" {
                    if k == 0 {
                        unloaded_hash.0 = m;
                    } else {
                        unloaded_hash.1 = m;
                    }
                }
                row.push(num(first));
                row.push(num(m));
                unloaded[side.name][action] = json!({"first_ms": first, "warm_ms": v});
            }
            unloaded_rows.push(row);
        }
    }

    // (b) cold starts against concurrency.
    let levels: Vec<usize> = ctx.pick(vec![1, 2], vec![1, 2, 4, 8, 16]);
    let reps = ctx.pick(1, 3);
    let mut cold_rows = vec![];
    let mut cold_json = vec![];
    let mut cw: Vec<(f64, f64)> = vec![];
    let mut cc: Vec<(f64, f64)> = vec![];
    let trivial = json!({ "ms": 0 });
    if let Ok(b) = &baseline {
        b.clear().await;
        b.set_cap(levels.iter().copied().max().unwrap_or(1).max(cap));
    }
    for &i in &levels {
        let (mut w, mut c, mut inits) = (vec![], vec![], 0usize);
        for rep in 0..reps {
            ctx.progress(&format!(
                "openwhisk (b): {i} cold starts at once (repetition {})",
                rep + 1
            ));
            for k in 0..i {
                let m = distinct_module(&sleep_wasm, &format!("cold-{i}-{rep}-{k}"));
                put_action(&wisp, &auth, &format!("cold-{i}-{rep}-{k}"), &m).await?;
            }
            // A restart: every action must map its artifact (a true cold start).
            wisp.restart()?;
            let side = wisp_side(&wisp, &auth);
            let mut tasks = vec![];
            for k in 0..i {
                let t = side.target(&format!("cold-{i}-{rep}-{k}"), &trivial);
                // The full record (no result=true): its annotations say whether it was cold.
                let url = t.url.replace("&result=true", "");
                let (h, body) = (t.headers.clone(), t.body.clone());
                tasks.push(tokio::spawn(async move {
                    let http = Http::new(false);
                    let hh: Vec<(&str, &str)> =
                        h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                    let t0 = Instant::now();
                    let r = http.send(Method::POST, &url, &hh, body).await.ok()?;
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    let v: Value = serde_json::from_slice(&r.body).ok()?;
                    let cold = v["annotations"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|x| x["key"] == "initTime"));
                    (r.status == 200).then_some((ms, cold))
                }));
            }
            for t in tasks {
                if let Ok(Some((ms, cold))) = t.await {
                    w.push(ms);
                    inits += cold as usize;
                }
            }
            if let Ok(b) = &baseline {
                let mut tasks = vec![];
                for k in 0..i {
                    let name = format!("cold-{i}-{rep}-{k}");
                    b.register(&name, "/ow-sleep");
                    let url = b.invoke_url(&name);
                    let body = Bytes::from(trivial.to_string());
                    tasks.push(tokio::spawn(async move {
                        let http = Http::new(false);
                        let t0 = Instant::now();
                        let r = http
                            .send(
                                Method::POST,
                                &url,
                                &[("content-type", "application/json")],
                                body,
                            )
                            .await
                            .ok()?;
                        let ms = t0.elapsed().as_secs_f64() * 1e3;
                        (r.status == 200 && r.header("wisp-cold") == Some("true")).then_some(ms)
                    }));
                }
                for t in tasks {
                    if let Ok(Some(ms)) = t.await {
                        c.push(ms);
                    }
                }
                b.clear().await;
            }
        }
        anyhow::ensure!(
            w.len() == i * reps,
            "{} of {} concurrent cold invokes on Wisp answered 200",
            w.len(),
            i * reps
        );
        if baseline.is_ok() {
            anyhow::ensure!(
                c.len() == i * reps,
                "{} of {} concurrent cold invokes on the container baseline answered 200 from a new container",
                c.len(),
                i * reps
            );
        }
        cw.push((i as f64, mean(&w)));
        if !c.is_empty() {
            cc.push((i as f64, mean(&c)));
        }
        cold_rows.push(vec![
            i.to_string(),
            num(percentile(&w, 50.0)),
            num(w.iter().copied().fold(f64::NAN, f64::max)),
            format!("{inits} of {}", w.len()),
            num(percentile(&c, 50.0)),
            num(c.iter().copied().fold(f64::NAN, f64::max)),
            format!("{:.1}×", percentile(&c, 50.0) / percentile(&w, 50.0)),
        ]);
        cold_json.push(
            json!({"i": i, "wisp_ms": w, "container_ms": c, "wisp_cold_records": inits,
                              "wisp": Summary::of(&w), "container": Summary::of(&c)}),
        );
    }
    let side = wisp_side(&wisp, &auth);
    let cold_starts_b = baseline
        .as_ref()
        .map(|b| b.cold_starts())
        .unwrap_or_default();
    if let Ok(b) = &baseline {
        b.set_cap(cap);
    }

    // (a) mixed: rising rate until saturation, each side alone.
    let rates: Vec<f64> = ctx.pick(
        vec![4.0, 8.0],
        vec![
            4.0, 8.0, 12.0, 16.0, 20.0, 24.0, 32.0, 40.0, 48.0, 64.0, 80.0, 96.0, 128.0,
        ],
    );
    let step = ctx.pick(Duration::from_millis(2500), Duration::from_secs(15));
    let ra = rising(
        ctx,
        &side,
        &rates,
        step,
        &hash,
        &sleep,
        unloaded_hash.0,
        None,
    )
    .await;
    let rb = match &baseline {
        Ok(b) => {
            let bs = Side {
                name: "runc container",
                base: b.url.clone(),
                headers: vec![],
            };
            Some(
                rising(
                    ctx,
                    &bs,
                    &rates,
                    step,
                    &hash,
                    &sleep,
                    unloaded_hash.1,
                    Some(b),
                )
                .await,
            )
        }
        Err(_) => None,
    };

    // (c) the skewed, Azure-like mix.
    let n_az = 62;
    for k in 0..n_az {
        let wasm = if k % 2 == 0 { &hash_wasm } else { &sleep_wasm };
        put_action(
            &wisp,
            &auth,
            &format!("az{k}"),
            &distinct_module(wasm, &format!("az{k}")),
        )
        .await?;
        if let Ok(b) = &baseline {
            b.register(
                &format!("az{k}"),
                if k % 2 == 0 { "/ow-hash" } else { "/ow-sleep" },
            );
        }
    }
    if let Ok(b) = &baseline {
        b.clear().await;
    }
    let (az_rate, az_dur) = ctx.pick(
        (6.0, Duration::from_secs(4)),
        (10.0, Duration::from_secs(60)),
    );
    let mut weights = vec![45.0, 45.0];
    weights.extend(std::iter::repeat_n(10.0 / (n_az - 2) as f64, n_az - 2));
    let az_targets = |s: &Side| -> Vec<Target> {
        (0..n_az)
            .map(|k| s.target(&format!("az{k}"), if k % 2 == 0 { &hash } else { &sleep }))
            .collect()
    };
    let az_spec = |targets| LoadSpec {
        targets,
        weights: weights.clone(),
        mode: Mode::Open {
            rate: az_rate,
            max_in_flight: 5_000,
        },
        duration: az_dur,
        max_requests: None,
        keep_alive: true,
        timeout: Duration::from_secs(120),
    };
    ctx.progress(&format!(
        "openwhisk (c): Azure-like mix on Wisp, {az_rate:.0} req/s"
    ));
    let az_w = load::run(&az_spec(az_targets(&side))).await;
    let az_c = match &baseline {
        Ok(b) => {
            ctx.progress(&format!(
                "openwhisk (c): Azure-like mix on the container baseline, {az_rate:.0} req/s"
            ));
            let bs = Side {
                name: "runc container",
                base: b.url.clone(),
                headers: vec![],
            };
            let before = b.cold_starts().len();
            let ev = b.evicted();
            let r = load::run(&az_spec(az_targets(&bs))).await;
            Some((r, b.cold_starts().len() - before, b.evicted() - ev))
        }
        Err(_) => None,
    };
    drop(wisp);
    if let Ok(b) = &baseline {
        b.clear().await;
    }

    // (d) memory per warm action: a fresh server, N distinct sleep actions.
    let counts: Vec<usize> = ctx.pick(vec![1, 3, 6], vec![1, 16, 32, 64]);
    let nmax = *counts.iter().max().unwrap();
    let wisp = ctx.start_wisp(&[])?;
    let auth = namespace(&wisp, "bench").await?;
    let side = wisp_side(&wisp, &auth);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss0 = wisp.rss_bytes()? as f64;
    let mut mem_w = vec![(0usize, rss0)];
    let mut deployed = 0;
    for &n in &counts {
        while deployed < n {
            let name = format!("m{deployed}");
            put_action(&wisp, &auth, &name, &distinct_module(&sleep_wasm, &name)).await?;
            let (_, st, body) = side.invoke(&http, &name, &trivial).await?;
            anyhow::ensure!(
                st == 200,
                "memory: {name}: HTTP {st}: {}",
                String::from_utf8_lossy(&body)
            );
            deployed += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        mem_w.push((n, wisp.rss_bytes()? as f64));
    }
    // The marginal cost, as the memory scenario reports it: the slope of a
    // least-squares fit over N ≥ 1 (the first action also pays one-off
    // costs: the first instance, allocator pages).
    let warm: Vec<(f64, f64)> = mem_w.iter().skip(1).map(|(n, b)| (*n as f64, *b)).collect();
    let per_w = crate::stats::linear_fit(&warm).1;
    let first_w = mem_w[1].1 - rss0;
    drop(wisp);
    let mut mem_c: Vec<(String, u64, u64)> = vec![];
    if let Ok(b) = &baseline {
        b.set_cap(nmax.max(cap));
        let mut tasks = vec![];
        for k in 0..nmax {
            let name = format!("m{k}");
            b.register(&name, "/ow-sleep");
            let url = b.invoke_url(&name);
            tasks.push(tokio::spawn(async move {
                Http::new(false)
                    .send(
                        Method::POST,
                        &url,
                        &[("content-type", "application/json")],
                        Bytes::from(json!({"ms": 0}).to_string()),
                    )
                    .await
                    .map(|r| r.status.as_u16())
                    .unwrap_or(0)
            }));
        }
        for t in tasks {
            let st = t.await.unwrap_or(0);
            anyhow::ensure!(
                st == 200,
                "memory: a container baseline invoke answered {st}"
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        mem_c = b.memory()?;
        b.clear().await;
    }
    let per_c_cg = mean(&mem_c.iter().map(|m| m.1 as f64).collect::<Vec<_>>());
    let per_c_all = mean(&mem_c.iter().map(|m| (m.1 + m.2) as f64).collect::<Vec<_>>());

    // ---- Report ----
    sec.para(&format!(
        "The WOW edge study's experiments through Wisp's OpenWhisk API, against OpenWhisk's container model measured in the same run. \
         Every request on both sides is `POST /api/v1/namespaces/_/actions/NAME?blocking=true&result=true` with the parameters as the \
         JSON body (Wisp: a namespace's key as `Authorization: Basic`). **Wisp**: `wisp serve`, the actions created with `PUT` \
         (`exec.kind` `wasm:0.1`, the module in base64). **Container baseline**: OpenWhisk's invoker model in front of a private \
         containerd, runc through `containerd-shim-runc-v2` (Docker's stack without `dockerd`): a container per action serving one \
         activation at a time, created on demand with `ctr run -d` (cold: create, start, `/init` when the proxy answers), kept warm and \
         reused; at most **{cap} containers** (OpenWhisk's deployment default: 2,048 MB of invoker user memory over 256 MB per \
         action; `--ow-containers`), past which an idle container of another action is removed. In each runs `ow-proxy` (OpenWhisk's \
         runtime protocol), which starts the action's **native build** per activation, as OpenWhisk's native-binary runtime does. \
         Its containers use the host's network (no veth per container), which favours the baseline. \
         Actions: `ow-hash` with {iterations} BLAKE3 iterations ({} ms natively, median of 3; the study's ~100 ms hash{}) and \
         `ow-sleep` {sleep_ms} ms. Both on this machine's cores with the load generator.",
        num(native_hash_ms),
        if quick { "; 30 ms in quick mode" } else { "" }
    ));
    if let Some(why) = &why_not {
        sec.para(&format!(
            "**The container baseline is not measured:** {why}."
        ));
    }
    sec.markdown.push_str(&table(
        &[
            "warm, unloaded (ms)",
            "hash first",
            "hash median of 5",
            "sleep first",
            "sleep median of 5",
        ],
        &unloaded_rows,
    ));
    sec.markdown.push('\n');

    // (b)
    sec.para(&format!(
        "(b) **Cold starts against concurrency** (Fig. 4): i distinct actions at once, {reps} repetition(s) per i. Wisp: i new \
         actions (distinct modules), then the server restarted, so each must map its compiled artifact; a record with `initTime` \
         is a cold start. Baseline: i new actions, no container of theirs, so i containers are created at once. The action is \
         `ow-sleep` with `ms: 0`. Client latency in ms."
    ));
    sec.markdown.push_str(&table(
        &[
            "i",
            "Wisp median",
            "Wisp max",
            "Wisp records cold",
            "container median",
            "container max",
            "container / Wisp",
        ],
        &cold_rows,
    ));
    if !cold_starts_b.is_empty() {
        let cr: Vec<f64> = cold_starts_b.iter().map(|c| c.create_ms).collect();
        let ci: Vec<f64> = cold_starts_b.iter().map(|c| c.init_ms).collect();
        sec.para(&format!(
            "Where a container cold start goes (median of {}): `ctr run -d` {} ms, then until `/init` answered {} ms.",
            cr.len(),
            num(percentile(&cr, 50.0)),
            num(percentile(&ci, 50.0))
        ));
    }
    let mut series = vec![("Wisp (Wasm)".to_string(), cw.clone())];
    if !cc.is_empty() {
        series.push(("runc container".to_string(), cc.clone()));
    }
    sec.plot(
        "openwhisk_cold.svg",
        plot::lines(
            "OpenWhisk API: cold starts vs concurrency",
            "concurrent cold starts",
            "mean latency (ms, log)",
            &series,
            plot::LineOpts {
                log_x: true,
                log_y: true,
                markers: true,
                ..Default::default()
            },
        ),
        "Mean client latency of i simultaneous cold starts, Wisp against a container per action",
    );

    // (a)
    sec.para(&format!(
        "(a) **Mixed workload** (Fig. 5): half `hash`, half `sleep` {sleep_ms} ms, open loop, {:.1} s per rate, each side alone, \
         rising until errors, under 90 % answered, or the hash median past 5× its unloaded median. Throughput is 2xx answers \
         per second; latencies in ms; cold = containers created during the step.",
        step.as_secs_f64()
    ));
    let heads = [
        "req/s offered",
        "answered/s",
        "hash median",
        "hash p99",
        "sleep median",
        "sleep p99",
        "errors",
        "cold",
        "state",
    ];
    sec.markdown.push_str("**Wisp**\n\n");
    sec.markdown.push_str(&table(&heads, &ra.rows));
    if let Some(rb) = &rb {
        sec.markdown.push_str("\n**runc container**\n\n");
        sec.markdown.push_str(&table(&heads, &rb.rows));
    }
    sec.markdown.push('\n');
    let mut series = vec![("Wisp (Wasm)".to_string(), ra.curve.clone())];
    if let Some(rb) = &rb {
        series.push(("runc container".to_string(), rb.curve.clone()));
    }
    series.push((
        "offered".to_string(),
        rates
            .iter()
            .take(ra.curve.len().max(rb.as_ref().map_or(0, |r| r.curve.len())))
            .map(|r| (*r, *r))
            .collect(),
    ));
    sec.plot(
        "openwhisk_mixed.svg",
        plot::lines(
            "OpenWhisk API: hash + sleep, throughput vs offered rate",
            "offered rate (req/s, log)",
            "answered (req/s, log)",
            &series,
            plot::LineOpts {
                log_x: true,
                log_y: true,
                markers: true,
                ..Default::default()
            },
        ),
        "Throughput of the mixed workload as the offered rate rises, until saturation",
    );

    // (c)
    let az_lat = |r: &load::LoadResult| r.ok_latencies();
    let aw = az_lat(&az_w);
    let mut az_rows = vec![vec![
        "Wisp".to_string(),
        aw.len().to_string(),
        num(percentile(&aw, 50.0)),
        num(percentile(&aw, 90.0)),
        num(percentile(&aw, 99.0)),
        az_w.errors().to_string(),
        "0 (pre-warmed at deploy)".into(),
    ]];
    let mut series = vec![("Wisp (Wasm)".to_string(), ecdf_thin(&aw, 400))];
    let mut az_json = json!({"rate": az_rate, "duration_s": az_dur.as_secs_f64(), "functions": n_az,
        "wisp": {"latency": Summary::of(&aw), "errors": az_w.errors(), "samples": az_w.samples}});
    let mut ac = vec![];
    if let Some((r, colds, evicted)) = &az_c {
        ac = az_lat(r);
        az_rows.push(vec![
            "runc container".to_string(),
            ac.len().to_string(),
            num(percentile(&ac, 50.0)),
            num(percentile(&ac, 90.0)),
            num(percentile(&ac, 99.0)),
            r.errors().to_string(),
            format!("{colds} ({evicted} idle containers removed for room)"),
        ]);
        series.push(("runc container".to_string(), ecdf_thin(&ac, 400)));
        az_json["container"] = json!({"latency": Summary::of(&ac), "errors": r.errors(), "cold_starts": colds,
                                      "evicted": evicted, "samples": r.samples});
    }
    sec.para(&format!(
        "(c) **Skewed, Azure-like mix** (Fig. 6): {n_az} actions, 90 % of requests to 2 of them, 10 % spread over the other {}; \
         even-numbered ones `hash`, odd ones `sleep` (half CPU-bound; the two hot ones one of each), open loop at {az_rate:.0} req/s \
         for {:.0} s. Latency in ms.",
        n_az - 2,
        az_dur.as_secs_f64()
    ));
    sec.markdown.push_str(&table(
        &[
            "side",
            "answered",
            "median",
            "p90",
            "p99",
            "errors",
            "cold starts",
        ],
        &az_rows,
    ));
    sec.markdown.push('\n');
    sec.plot(
        "openwhisk_azure_ecdf.svg",
        plot::lines(
            "OpenWhisk API: Azure-like mix, latency ECDF",
            "latency (ms, log)",
            "fraction ≤ x",
            &series,
            plot::LineOpts {
                log_x: true,
                step: true,
                ..Default::default()
            },
        ),
        "Latency ECDF of the skewed mix (90 % to 2 actions, 10 % over 60), Wisp against a container per action",
    );

    // (d)
    let mut mem_rows = vec![vec![
        "Wisp: server RSS, slope over N ≥ 1".to_string(),
        nmax.to_string(),
        bytes(per_w),
        format!(
            "idle server {}; the first action {} (one-off costs included)",
            bytes(rss0),
            bytes(first_w)
        ),
    ]];
    if !mem_c.is_empty() {
        mem_rows.push(vec![
            "runc container, cgroup `memory.current` (what `docker stats` shows)".to_string(),
            mem_c.len().to_string(),
            bytes(per_c_cg),
            String::new(),
        ]);
        mem_rows.push(vec![
            "runc container + its `containerd-shim-runc-v2`".to_string(),
            mem_c.len().to_string(),
            bytes(per_c_all),
            String::new(),
        ]);
    }
    sec.para(&format!(
        "(d) **Memory per warm action** (Table II): N distinct `ow-sleep` actions, each invoked once and left warm. Wisp: a fresh \
         server's RSS growth over N (RSS at N = {}). Containers: per container, after N invokes of N actions.",
        mem_w
            .iter()
            .map(|(n, b)| format!("{n}: {}", bytes(*b)))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    sec.markdown
        .push_str(&table(&["what", "N", "per warm action", "note"], &mem_rows));
    sec.markdown.push('\n');
    let mut bars_series = vec![("Wisp".to_string(), vec![(per_w / 1024.0, 0.0)])];
    if !mem_c.is_empty() {
        bars_series.push((
            "runc container (cgroup)".to_string(),
            vec![(per_c_cg / 1024.0, 0.0)],
        ));
        bars_series.push((
            "runc container + shim".to_string(),
            vec![(per_c_all / 1024.0, 0.0)],
        ));
    }
    sec.plot(
        "openwhisk_memory.svg",
        plot::bars(
            "OpenWhisk API: memory per warm action",
            "KiB (log)",
            &["per warm action".to_string()],
            &bars_series,
            true,
        ),
        "Memory per warm action: Wisp's RSS growth against a warm container",
    );

    // Side by side with the paper.
    let c1w = percentile(
        &cold_json[0]["wisp_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default(),
        50.0,
    );
    let c1c = percentile(
        &cold_json[0]["container_ms"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default(),
        50.0,
    );
    let cmax = cold_json.last().unwrap();
    let (cmw, cmc) = (
        cmax["wisp"]["median"].as_f64().unwrap_or(f64::NAN),
        cmax["container"]["median"].as_f64().unwrap_or(f64::NAN),
    );
    let imax = cmax["i"].as_u64().unwrap_or(0);
    let gain = rb.as_ref().map_or(f64::NAN, |rb| ra.peak / rb.peak);
    let mem_ratio = (per_c_cg / per_w, per_c_all / per_w);
    let nm = "not measured".to_string();
    let measured = baseline.is_ok();
    let rows = vec![
        vec![
            "cold start, 1 action".into(),
            format!("{} ms", num(c1w)),
            if measured {
                format!("{} ms", num(c1c))
            } else {
                nm.clone()
            },
            if measured {
                format!("{:.1}× faster", c1c / c1w)
            } else {
                nm.clone()
            },
            PAPER_COLD.into(),
        ],
        vec![
            format!("cold start, {imax} at once (median)"),
            format!("{} ms", num(cmw)),
            if measured {
                format!("{} ms", num(cmc))
            } else {
                nm.clone()
            },
            if measured {
                format!("{:.1}× faster", cmc / cmw)
            } else {
                nm.clone()
            },
            "Fig. 4: Docker grows with concurrency, Wasm stays low".into(),
        ],
        vec![
            "mixed workload, peak throughput".into(),
            format!(
                "{:.1} req/s (sustained to {:.0} offered)",
                ra.peak, ra.sustained
            ),
            rb.as_ref().map_or(nm.clone(), |rb| {
                format!(
                    "{:.1} req/s (sustained to {:.0} offered)",
                    rb.peak, rb.sustained
                )
            }),
            if measured {
                format!("{gain:.2}×")
            } else {
                nm.clone()
            },
            PAPER_THROUGHPUT.into(),
        ],
        vec![
            "Azure-like mix, p99 latency".into(),
            format!("{} ms", num(percentile(&aw, 99.0))),
            if measured {
                format!("{} ms", num(percentile(&ac, 99.0)))
            } else {
                nm.clone()
            },
            if measured {
                format!(
                    "{:.1}× lower",
                    percentile(&ac, 99.0) / percentile(&aw, 99.0)
                )
            } else {
                nm.clone()
            },
            "Fig. 6: ECDF".into(),
        ],
        vec![
            "memory per warm action".into(),
            bytes(per_w),
            if measured {
                format!("{} ({} with the shim)", bytes(per_c_cg), bytes(per_c_all))
            } else {
                nm.clone()
            },
            if measured {
                format!(
                    "{:.1}× less ({:.1}× with the shim)",
                    mem_ratio.0, mem_ratio.1
                )
            } else {
                nm.clone()
            },
            PAPER_MEMORY.into(),
        ],
    ];
    sec.para("**Against the study** (WOW: Wasm executors in OpenWhisk against its Docker containers, on edge hardware):");
    sec.markdown.push_str(&table(
        &[
            "",
            "Wisp",
            "container baseline, same run",
            "Wisp vs container",
            "WOW paper",
        ],
        &rows,
    ));
    sec.markdown.push('\n');
    if measured {
        sec.target(
            "OpenWhisk cold start vs container",
            "at least the study's lower bound, 869 / 180 ≈ 4.8× faster than a container per action",
            format!(
                "1 action: {:.1}×; {imax} at once: {:.1}×",
                c1c / c1w,
                cmc / cmw
            ),
            Some(c1c / c1w >= 4.8),
        );
        sec.target(
            "OpenWhisk mixed-workload throughput vs container",
            "at least the study's 2.2×",
            format!(
                "peak {:.1} vs {:.1} req/s: {gain:.2}×",
                ra.peak,
                rb.as_ref().map_or(f64::NAN, |r| r.peak)
            ),
            Some(gain >= 2.2),
        );
        sec.target(
            "OpenWhisk memory per warm action vs container",
            "at least the study's 3.5× less",
            format!(
                "{:.1}× (cgroup), {:.1}× (with the shim)",
                mem_ratio.0, mem_ratio.1
            ),
            Some(mem_ratio.0 >= 3.5),
        );
    }
    sec.json = json!({
        "container_baseline": baseline.is_ok(),
        "container_not_measured": why_not,
        "container_cap": cap,
        "hash": {"iterations": iterations, "native_ms": native_hash_ms},
        "sleep_ms": sleep_ms,
        "unloaded": unloaded,
        "cold": {"levels": cold_json, "container_cold_starts": cold_starts_b},
        "mixed": {"step_s": step.as_secs_f64(), "wisp": {"peak": ra.peak, "sustained": ra.sustained, "steps": ra.steps},
                  "container": rb.as_ref().map(|r| json!({"peak": r.peak, "sustained": r.sustained, "steps": r.steps})),
                  "throughput_gain": gain},
        "azure": az_json,
        "memory": {"wisp_rss": mem_w, "wisp_per_action": per_w, "wisp_first_action": first_w,
                   "container": mem_c.iter().map(|(id, cg, shim)| json!({"id": id, "cgroup": cg, "shim_rss": shim})).collect::<Vec<_>>(),
                   "container_per_action_cgroup": per_c_cg, "container_per_action_with_shim": per_c_all},
        "paper": {"cold": PAPER_COLD, "throughput": PAPER_THROUGHPUT, "memory": PAPER_MEMORY},
    });
    Ok(sec)
}
