//! Scenario 2, cold: remove + redeploy + first request, N times (deploy
//! time and first-response time apart); and i concurrent true cold starts
//! (server restarted, so every function must map its artifact) against as
//! many native processes and runc containers started at once.

use super::{bench_config, distinct_module, mw, server_timing};
use crate::Ctx;
use crate::baseline::{Launcher, cgi_env};
use crate::http::Http;
use crate::plot;
use crate::report::{Section, num, pval, summary_cells, table};
use crate::stats::{Summary, mean};
use anyhow::Result;
use serde_json::json;
use std::process::Stdio;
use std::time::Instant;

/// Start `n` processes of `l` at once; latency of each (ms).
async fn spawn_many(l: &Launcher, n: usize) -> Vec<f64> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let l = l.clone();
        tasks.push(tokio::spawn(async move {
            let env = cgi_env("GET", "", 0, "hello");
            let mut cmd = match &l {
                Launcher::Native(exe) => {
                    let mut c = tokio::process::Command::new(exe);
                    c.env_clear().envs(env);
                    c
                }
                Launcher::Runc(r, exe) => r.command(exe, &env).ok()?,
                Launcher::NaiveWasm(m) => {
                    let m = m.clone();
                    let t0 = Instant::now();
                    tokio::task::spawn_blocking(move || {
                        crate::baseline::run_naive_wasm(&m, &env, b"")
                    })
                    .await
                    .ok()?
                    .ok()?;
                    return Some(t0.elapsed().as_secs_f64() * 1e3);
                }
            };
            let t0 = Instant::now();
            let out = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .output()
                .await
                .ok()?;
            out.status
                .success()
                .then(|| t0.elapsed().as_secs_f64() * 1e3)
        }));
    }
    let mut v = Vec::new();
    for t in tasks {
        if let Ok(Some(x)) = t.await {
            v.push(x);
        }
    }
    v
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let n = ctx.opts.cold_runs.unwrap_or(ctx.pick(5, 100));
    let levels: Vec<usize> = ctx.pick(vec![1, 2, 4], vec![1, 2, 4, 8, 16, 32, 64]);
    let reps = ctx.pick(2, 5);
    let mut sec = Section::new("cold", "Cold start");
    let wasm = ctx.wasm("hello")?;
    let mut wisp = ctx.start_wisp(&[])?;

    // (a) remove, redeploy, first request.
    let bar = crate::progress::counter("cold: remove + deploy + first request", n as u64);
    let http = Http::new(false);
    let (mut deploy_ms, mut first_ms, mut floor_ms, mut first_cold) = (vec![], vec![], vec![], 0);
    let health = format!("{}/healthz", wisp.url);
    for k in 0..n {
        bar.inc();
        wisp.remove("cold").await?;
        // A new hash each time, so every deploy compiles (no artifact cache hit).
        let module = distinct_module(&wasm, &format!("cold-{k}"));
        let t0 = Instant::now();
        wisp.deploy("cold", &module, &bench_config()).await?;
        deploy_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        let t1 = Instant::now();
        let r = http.get(&wisp.fn_url("cold", "")).await?.ok()?;
        first_ms.push(t1.elapsed().as_secs_f64() * 1e3);
        first_cold += (r.header("wisp-cold") == Some("true")) as usize;
        // The HTTP floor: the same client and server, a new connection, no guest.
        let t2 = Instant::now();
        http.get(&health).await?.ok()?;
        floor_ms.push(t2.elapsed().as_secs_f64() * 1e3);
    }

    // (b) true cold starts after a restart, i at once.
    let native = Launcher::Native(ctx.native("hello")?.to_path_buf());
    let runc = ctx.runc();
    let mut conc = Vec::new(); // (level, wisp, native, container)
    let mut init_ms = vec![];
    let mut cold_seen = 0usize;
    let mut cold_total = 0usize;
    for &i in &levels {
        for k in 0..i {
            // Distinct modules: i different functions, not one under i names.
            wisp.deploy(
                &format!("c{i}-{k}"),
                &distinct_module(&wasm, &format!("c{i}-{k}")),
                &bench_config(),
            )
            .await?;
        }
        let (mut w, mut nat, mut con) = (vec![], vec![], vec![]);
        let bar = crate::progress::counter(
            &format!("cold: {i} at once (restart each time)"),
            reps as u64,
        );
        for _ in 0..reps {
            bar.inc();
            wisp.restart()?;
            let mut tasks = Vec::new();
            for k in 0..i {
                let url = wisp.fn_url(&format!("c{i}-{k}"), "");
                tasks.push(tokio::spawn(async move {
                    let h = Http::new(false);
                    let t0 = Instant::now();
                    let r = h.get(&url).await.ok()?;
                    let ms = t0.elapsed().as_secs_f64() * 1e3;
                    r.status.is_success().then(|| {
                        (
                            ms,
                            r.header("wisp-cold") == Some("true"),
                            server_timing(r.header("server-timing"), "init"),
                        )
                    })
                }));
            }
            for t in tasks {
                if let Ok(Some((ms, cold, init))) = t.await {
                    w.push(ms);
                    cold_total += 1;
                    cold_seen += cold as usize;
                    if let Some(x) = init {
                        init_ms.push(x);
                    }
                }
            }
            nat.extend(spawn_many(&native, i).await);
            if let Ok(r) = &runc {
                con.extend(
                    spawn_many(
                        &Launcher::Runc(r.clone(), ctx.native("hello")?.to_path_buf()),
                        i,
                    )
                    .await,
                );
            }
        }
        conc.push((i, w, nat, con));
    }

    let ds = Summary::of(&deploy_ms);
    let fs = Summary::of(&first_ms);
    let hs = Summary::of(&floor_ms);
    let mut rows = vec![];
    let mut r1 = vec!["deploy (PUT: validate, compile, store, link)".to_string()];
    r1.extend(summary_cells(&ds));
    rows.push(r1);
    let mut r2 = vec!["first request after deploy".to_string()];
    r2.extend(summary_cells(&fs));
    rows.push(r2);
    let mut r3 = vec!["HTTP floor: `GET /healthz`, new connection, no guest".to_string()];
    r3.extend(summary_cells(&hs));
    rows.push(r3);
    sec.para(&format!(
        "(a) {n} times: `DELETE` the function, `PUT` it again, then request it once (new connection). A deploy installs a pre-warmed \
         template, so that first request is warm by design ({first_cold} of {n} answered `Wisp-Cold: true`); the deploy time is the cost \
         that moved there. The HTTP floor is what any request to the server costs this client on this machine; the first request's \
         excess over it is the guest's share. Latencies in ms."
    ));
    sec.markdown.push_str(&table(
        &["what", "n", "mean", "median", "p95", "p99", "SD", "CV"],
        &rows,
    ));
    let mut crow = vec![];
    let mut series: Vec<(String, Vec<(f64, f64)>)> = vec![
        ("Wisp".into(), vec![]),
        ("native process".into(), vec![]),
        ("runc container".into(), vec![]),
    ];
    for (i, w, nat, con) in &conc {
        crow.push(vec![
            i.to_string(),
            num(crate::stats::percentile(w, 50.0)),
            num(w.iter().copied().fold(f64::NAN, f64::max)),
            num(crate::stats::percentile(nat, 50.0)),
            if runc.is_ok() {
                num(crate::stats::percentile(con, 50.0))
            } else {
                "not measured".into()
            },
            pval(&mw(w, nat)),
            if runc.is_ok() {
                pval(&mw(w, con))
            } else {
                "–".into()
            },
        ]);
        series[0].1.push((*i as f64, mean(w)));
        series[1].1.push((*i as f64, mean(nat)));
        if runc.is_ok() {
            series[2].1.push((*i as f64, mean(con)));
        }
    }
    if runc.is_err() {
        series.pop();
    }
    let why = match &runc {
        Ok(_) => String::new(),
        Err(e) => format!(" The container column is **not measured**: {e}."),
    };
    sec.para(&format!(
        "(b) i distinct functions are deployed, the server is restarted (so each must map its precompiled artifact: a true cold start, \
         {cold_seen} of {cold_total} answered `Wisp-Cold: true`; median server-side `init` {} ms), and all i are requested at once; \
         {reps} repetitions per i. Against it, i native `hello` processes and i runc containers started at once.{why}",
        num(crate::stats::percentile(&init_ms, 50.0))
    ));
    sec.markdown.push_str(&table(
        &[
            "i",
            "Wisp median",
            "Wisp max",
            "native median",
            "container median",
            "p vs native",
            "p vs container",
        ],
        &crow,
    ));
    sec.plot(
        "cold_concurrency.svg",
        plot::lines(
            "Cold start vs concurrency",
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
        "Mean time to first response of i simultaneous cold starts",
    );
    let w1 = conc
        .first()
        .map(|c| crate::stats::percentile(&c.1, 50.0))
        .unwrap_or(f64::NAN);
    match &runc {
        Ok(_) => {
            let c1 = conc
                .first()
                .map(|c| crate::stats::percentile(&c.3, 50.0))
                .unwrap_or(f64::NAN);
            // As the issue defines it: deploy done -> first response, (a).
            // (b)'s single cold start after a restart is shown beside it.
            sec.target(
                "cold start vs container",
                "≥ 100× faster than a runc container start",
                format!(
                    "deploy → first response {} ms vs {} ms: {:.0}× (HTTP floor alone {} ms: {:.0}×; after a restart {} ms: {:.0}×)",
                    num(fs.median),
                    num(c1),
                    c1 / fs.median,
                    num(hs.median),
                    c1 / hs.median,
                    num(w1),
                    c1 / w1
                ),
                Some(c1 / fs.median >= 100.0),
            );
        }
        Err(e) => sec.target(
            "cold start vs container",
            "≥ 100× faster than a runc container start",
            format!("not measured: {e}"),
            None,
        ),
    }
    sec.json = json!({
        "redeploy": {"runs": n, "deploy_ms": deploy_ms, "first_response_ms": first_ms, "first_cold": first_cold,
                     "deploy": ds, "first_response": fs, "http_floor_ms": floor_ms, "http_floor": hs},
        "concurrent": conc.iter().map(|(i, w, nat, con)| json!({"i": i, "wisp_ms": w, "native_ms": nat, "container_ms": con,
            "wisp": Summary::of(w), "native": Summary::of(nat), "container": Summary::of(con)})).collect::<Vec<_>>(),
        "server_init_ms": init_ms,
        "container": runc.as_ref().err(),
    });
    Ok(sec)
}
