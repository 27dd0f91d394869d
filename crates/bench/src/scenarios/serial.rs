//! Scenario 1, serial: one client, no keep-alive, one function at a time
//! for a fixed duration, on Wisp and on each per-request baseline.

use super::{Baselines, arm_json, bench_config, mw};
use crate::load::{LoadSpec, Target};
use crate::plot;
use crate::report::{Section, num, pval, summary_cells, table};
use crate::stats::Summary;
use crate::{Ctx, load};
use anyhow::Result;
use serde_json::json;
use std::time::Duration;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let funcs: Vec<(&str, &str)> = ctx.pick(
        vec![("hello", ""), ("fibonacci", "n=25")],
        vec![
            ("hello", ""),
            ("echo", ""),
            ("fibonacci", ""),
            ("hash", ""),
            ("prime-numbers", ""),
            ("n-body", ""),
            ("matmul", ""),
            ("aes", ""),
            ("whatlang", ""),
            ("audio-sine-wave", ""),
        ],
    );
    let dur = ctx
        .opts
        .duration
        .unwrap_or(ctx.pick(Duration::from_millis(400), Duration::from_secs(10)));
    let mut sec = Section::new("serial", "Serial: one client, no keep-alive");
    let wisp = ctx.start_wisp(&[])?;
    for (f, _) in &funcs {
        wisp.deploy(f, &ctx.wasm(f)?, &bench_config()).await?;
    }
    let names: Vec<&str> = funcs.iter().map(|f| f.0).collect();
    let bl = Baselines::start(ctx, &names, true)?;
    let mut data = serde_json::Map::new();
    let mut rows = Vec::new();
    let mut bar_series: Vec<(String, Vec<(f64, f64)>)> = vec![("Wisp".into(), vec![])];
    for (p, _) in bl.list() {
        bar_series.push((p.into(), vec![]));
    }
    let mut hello_boxes = Vec::new();
    for (f, q) in &funcs {
        ctx.progress(&format!(
            "serial: {f} for {:.1} s per platform",
            dur.as_secs_f64()
        ));
        let mut targets = vec![("Wisp", wisp.fn_url(f, q))];
        for (p, s) in bl.list() {
            targets.push((p, s.fn_url(f, q)));
        }
        let mut wisp_samples = vec![];
        let mut fdata = serde_json::Map::new();
        for (i, (p, url)) in targets.iter().enumerate() {
            // Warm up: one request.
            let _ = crate::http::Http::new(false).get(url).await;
            let r = load::run(&LoadSpec::serial(Target::get(url.clone()), dur, false)).await;
            let lat = r.ok_latencies();
            let test = if i == 0 {
                None
            } else {
                mw(&wisp_samples, &lat)
            };
            let s = Summary::of(&lat);
            let mut row = vec![
                format!(
                    "{f}{}",
                    if q.is_empty() {
                        String::new()
                    } else {
                        format!(" ({q})")
                    }
                ),
                p.to_string(),
            ];
            row.extend(summary_cells(&s));
            row.push(r.errors().to_string());
            row.push(if i == 0 { "–".into() } else { pval(&test) });
            rows.push(row);
            bar_series[i].1.push((s.mean, s.sd));
            fdata.insert(p.to_string(), arm_json(&lat, r.errors(), test.as_ref()));
            if *f == "hello" {
                hello_boxes.push((p.to_string(), lat.clone()));
            }
            if i == 0 {
                wisp_samples = lat;
            }
        }
        data.insert(f.to_string(), fdata.into());
    }
    let missing = match &bl.container {
        Ok(_) => String::new(),
        Err(e) => format!(" The runc container column is **not measured**: {e}."),
    };
    sec.para(&format!(
        "Each function is requested by one client in a loop for {:.1} s per platform, a new TCP connection per request (no keep-alive). \
         Baselines run the function's native build as a new process per request (CGI), and in a new runc container per request, behind \
         an HTTP front in the bench process.{missing}",
        dur.as_secs_f64()
    ));
    sec.markdown.push_str(&table(
        &[
            "function",
            "platform",
            "n",
            "mean",
            "median",
            "p95",
            "p99",
            "SD",
            "CV",
            "errors",
            "p vs Wisp",
        ],
        &rows,
    ));
    let cats: Vec<String> = funcs.iter().map(|f| f.0.to_string()).collect();
    sec.plot(
        "serial_mean.svg",
        plot::bars(
            "Serial latency (mean ± SD)",
            "latency (ms, log)",
            &cats,
            &bar_series,
            true,
        ),
        "Serial latency per function and platform, mean ± SD",
    );
    if !hello_boxes.is_empty() {
        sec.plot(
            "serial_hello_box.svg",
            plot::boxes(
                "hello: serial latency",
                "latency (ms, log)",
                &hello_boxes,
                true,
            ),
            "hello, serial: latency distribution per platform",
        );
        let w = Summary::of(&hello_boxes[0].1);
        if let Some((_, n)) = hello_boxes.get(1) {
            let ns = Summary::of(n);
            let t = mw(&hello_boxes[0].1, n);
            let met = w.median < ns.median && t.as_ref().is_some_and(|t| t.p < 0.05);
            sec.target(
                "warm serial hello latency",
                "below native process per request",
                format!(
                    "median {} ms vs {} ms native (p {})",
                    num(w.median),
                    num(ns.median),
                    pval(&t)
                ),
                Some(met),
            );
        }
    }
    sec.json = json!({"duration_s": dur.as_secs_f64(), "keep_alive": false, "container": bl.container.as_ref().err(), "functions": data});
    Ok(sec)
}
