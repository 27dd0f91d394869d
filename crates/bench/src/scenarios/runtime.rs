//! Scenario 6, runtime: CPU-bound functions, native vs Wasm, in-process
//! (the engine Wisp uses, no HTTP) and end to end (HTTP, keep-alive).

use super::{bench_config, mw};
use crate::Ctx;
use crate::baseline::{cgi_env, run_native_once};
use crate::http::Http;
use crate::plot;
use crate::report::{Section, num, pval, table};
use crate::stats::{Summary, geo_mean};
use anyhow::{Context, Result};
use bytes::Bytes;
use serde_json::json;
use std::time::Instant;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let set: Vec<(&str, &str)> = ctx.pick(
        vec![
            ("fibonacci", "n=25"),
            ("hash", "iterations=100"),
            ("prime-numbers", ""),
            ("n-body", "steps=100"),
            ("float-operation", "n=100000"),
            ("matmul", "dimensions=100"),
            ("linear-equations", "unknowns=100"),
            ("aes", "iterations=10"),
        ],
        // The papers' defaults, except where they finish in well under a
        // millisecond natively: then the native figure would be mostly the
        // process start it is corrected for, and the ratio mostly noise.
        vec![
            ("fibonacci", ""),
            ("hash", "iterations=1000000"),
            ("prime-numbers", "n=300000"),
            ("n-body", "steps=200000"),
            ("float-operation", "n=1000000"),
            ("matmul", ""),
            ("linear-equations", ""),
            ("aes", ""),
        ],
    );
    let reps = ctx.pick(3, 20);
    let mut sec = Section::new("runtime", "Runtime: CPU-bound, Wasm vs native");
    let rt = ctx.runtime()?;
    // The same engine without epoch checks compiled in: how fast the guest
    // code runs under Cranelift alone (as the papers ran Wasmtime), which
    // splits the gap to native into code generation and the cost of being
    // able to stop a guest (timeouts, yields). Measurement only.
    let bare = wisp_runtime::Runtime::new(wisp_runtime::EngineOptions {
        pool_instances: 4,
        deadline_checks: false,
        ..Default::default()
    })
    .context("starting an engine without deadline checks")?;
    let wisp = ctx.start_wisp(&[])?;
    let http = Http::new(true);
    let limits = wisp_core::Limits {
        timeout_ms: 120_000,
        ..Default::default()
    };
    // The cost of starting a native process at all (included in every native figure).
    let hello = ctx.native("hello")?.to_path_buf();
    let spawn_ms: Vec<f64> = (0..reps)
        .filter_map(|_| run_native_once(&hello, "", b"").ok())
        .map(|(d, _)| d.as_secs_f64() * 1e3)
        .collect();
    let mut rows = vec![];
    let mut data = serde_json::Map::new();
    let spawn = crate::stats::percentile(&spawn_ms, 50.0);
    let (mut r_in, mut r_e2e, mut r_raw, mut r_bare) = (vec![], vec![], vec![], vec![]);
    for (f, q) in &set {
        ctx.progress(&format!("runtime: {f} {q} × {reps}"));
        let wasm = ctx.wasm(f)?;
        let loaded = load(&rt, &wasm, &ctx.scratch(&format!("{f}.cwasm")))?;
        let loaded_bare = load(&bare, &wasm, &ctx.scratch(&format!("{f}.bare.cwasm")))?;
        wisp.deploy(f, &wasm, &bench_config()).await?;
        let exe = ctx.native(f)?.to_path_buf();
        let env = cgi_env("GET", q, 0, f);
        let args = vec![f.to_string()];
        let url = wisp.fn_url(f, q);
        // Warm-up of each.
        let _ = run_native_once(&exe, q, b"");
        let _ = http.get(&url).await?.ok()?;
        let (mut nat, mut inp, mut e2e, mut unchecked) = (vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            let (d, _) = run_native_once(&exe, q, b"")?;
            nat.push(d.as_secs_f64() * 1e3);
            let inv = || wisp_runtime::Invocation {
                args: &args,
                env: &env,
                stdin: Bytes::new(),
                dirs: &[],
                limits: &limits,
            };
            let (ms, out) = timed(&rt, &loaded, inv())
                .await
                .with_context(|| format!("running {f} in process"))?;
            inp.push(ms);
            anyhow::ensure!(!out.stdout.is_empty(), "{f} printed nothing");
            let (ms, out_bare) = timed(&bare, &loaded_bare, inv())
                .await
                .with_context(|| format!("running {f} in process without deadline checks"))?;
            unchecked.push(ms);
            anyhow::ensure!(
                out_bare.stdout == out.stdout,
                "{f} answered differently without deadline checks"
            );
            let t1 = Instant::now();
            http.get(&url).await?.ok()?;
            e2e.push(t1.elapsed().as_secs_f64() * 1e3);
        }
        let (sn, si, se, su) = (
            Summary::of(&nat),
            Summary::of(&inp),
            Summary::of(&e2e),
            Summary::of(&unchecked),
        );
        // Compare compute with compute: the native median less the cost of
        // starting a process at all (hello's median), floored at 5 % of it.
        let native_compute = (sn.median - spawn).max(sn.median * 0.05);
        let (ri, re) = (si.median / native_compute, se.median / sn.median);
        r_in.push(ri);
        r_e2e.push(re);
        r_raw.push(si.median / sn.median);
        let rb = su.median / native_compute;
        r_bare.push(rb);
        let (ti, te) = (mw(&inp, &nat), mw(&e2e, &nat));
        rows.push(vec![
            format!(
                "{f}{}",
                if q.is_empty() {
                    String::new()
                } else {
                    format!(" ({q})")
                }
            ),
            num(sn.median),
            num(native_compute),
            num(su.median),
            num(si.median),
            num(se.median),
            format!("{rb:.2}×"),
            format!("{ri:.2}×"),
            format!("{re:.2}×"),
            pval(&ti),
            pval(&te),
        ]);
        data.insert(
            f.to_string(),
            json!({"query": q, "native_ms": nat, "in_process_ms": inp, "end_to_end_ms": e2e, "no_checks_ms": unchecked, "native": sn, "in_process": si, "no_checks": su, "ratio_no_checks": rb,
                   "end_to_end": se, "native_compute_ms": native_compute, "ratio_in_process": ri, "ratio_in_process_raw": si.median / sn.median, "ratio_end_to_end": re, "mw_in_process_vs_native": ti, "mw_end_to_end_vs_native": te}),
        );
    }
    let (gi, ge) = (geo_mean(&r_in), geo_mean(&r_e2e));
    let graw = geo_mean(&r_raw);
    let gb = geo_mean(&r_bare);
    rows.push(vec![
        "**geometric mean**".into(),
        "".into(),
        "".into(),
        "".into(),
        "".into(),
        "".into(),
        format!("**{gb:.2}×**"),
        format!("**{gi:.2}×**"),
        format!("**{ge:.2}×**"),
        "".into(),
        "".into(),
    ]);
    sec.para(&format!(
        "Median of {reps} runs each, ms. *native*: the native build run as a process with the CGI environment (wall time, including \
         process start: {} ms for `hello`); *native compute* subtracts that start cost. *in-process*: a fresh instance from the precompiled module in this process (Wisp's engine, \
         no HTTP). *no checks*: the same, from an engine compiled without epoch checks, which Wisp needs to stop a guest at its \
         timeout: it isolates Cranelift's code from the checks' cost and is the configuration the papers measured; measurement only. \
         *end-to-end*: `GET /fn/…` on `wisp serve` over a kept-alive connection. *in-process / native* is in-process over native \
         compute (papers: Wasmtime 1.31–1.41× native); *end-to-end / native* compares two whole requests (HTTP + instance vs process \
         start). Against the raw native wall time the in-process geometric mean is {graw:.2}×. p-values compare each Wasm arm with the \
         native wall times.",
        num(crate::stats::percentile(&spawn_ms, 50.0))
    ));
    sec.markdown.push_str(&table(
        &[
            "function",
            "native",
            "native compute",
            "no checks",
            "in-process",
            "end-to-end",
            "no checks / native",
            "in-process / native",
            "end-to-end / native",
            "p in-process",
            "p end-to-end",
        ],
        &rows,
    ));
    let cats: Vec<String> = set.iter().map(|s| s.0.to_string()).collect();
    sec.plot(
        "runtime_ratio.svg",
        plot::bars(
            "Wasm / native time (median)",
            "ratio to native",
            &cats,
            &[
                (
                    "no deadline checks".into(),
                    r_bare.iter().map(|r| (*r, 0.0)).collect(),
                ),
                (
                    "in-process".into(),
                    r_in.iter().map(|r| (*r, 0.0)).collect(),
                ),
                (
                    "end-to-end".into(),
                    r_e2e.iter().map(|r| (*r, 0.0)).collect(),
                ),
            ],
            false,
        ),
        "CPU-bound functions: Wasm time relative to the native process (1 = native)",
    );
    sec.target(
        "CPU-bound geo-mean vs native",
        "≤ 1.2× native",
        format!("{gi:.2}× in-process, {ge:.2}× end-to-end ({gb:.2}× without deadline checks)"),
        Some(gi <= 1.2),
    );
    sec.json = json!({"reps": reps, "native_spawn_hello_ms": spawn_ms, "functions": data, "geo_mean_in_process": gi, "geo_mean_end_to_end": ge, "geo_mean_in_process_raw": graw, "geo_mean_no_checks": gb});
    Ok(sec)
}

/// Compile `wasm` with `rt`, store the artifact at `art`, load it: what a
/// deploy does, without the server.
fn load(
    rt: &wisp_runtime::Runtime,
    wasm: &[u8],
    art: &std::path::Path,
) -> Result<wisp_runtime::Loaded> {
    std::fs::write(art, &rt.compile(wasm)?.artifact)?;
    Ok(rt.load(art)?)
}

/// One fresh instance of `loaded` in process: wall time in ms, and its output.
async fn timed(
    rt: &wisp_runtime::Runtime,
    loaded: &wisp_runtime::Loaded,
    inv: wisp_runtime::Invocation<'_>,
) -> Result<(f64, wisp_runtime::Output)> {
    let t0 = Instant::now();
    let out = rt.invoke(loaded, inv).await?;
    Ok((t0.elapsed().as_secs_f64() * 1e3, out))
}
