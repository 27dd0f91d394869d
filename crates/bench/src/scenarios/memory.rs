//! Scenario 5, memory: RSS of `wisp serve` with 0, 1, 10, 100, 1000 warm
//! idle functions (each a distinct module, deployed and invoked once).

use super::{bench_config, distinct_module};
use crate::Ctx;
use crate::http::Http;
use crate::plot;
use crate::report::{Section, bytes, num, table};
use crate::stats::linear_fit;
use anyhow::Result;
use serde_json::json;
use std::time::Duration;

const MIB: f64 = (1u64 << 20) as f64;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let counts = ctx
        .opts
        .memory_counts
        .clone()
        .unwrap_or(ctx.pick(vec![1, 5, 20], vec![1, 10, 100, 1000]));
    let mut sec = Section::new("memory", "Memory per warm idle function");
    let wasm = ctx.wasm("hello")?;
    let wisp = ctx.start_wisp(&[])?;
    let http = Http::new(true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = wisp.rss_bytes()? as f64;
    let mut points = vec![(0.0, rss0)];
    let mut deployed = 0;
    for &c in &counts {
        let bar = crate::progress::counter(
            &format!("memory: deploy + invoke up to {c}"),
            c.saturating_sub(deployed) as u64,
        );
        while deployed < c {
            bar.inc();
            let name = format!("m{deployed}");
            // A distinct module per function: its own digest, artifact,
            // code mapping and template, as n different functions have.
            let module = distinct_module(&wasm, &name);
            wisp.deploy(&name, &module, &bench_config()).await?;
            http.get(&wisp.fn_url(&name, "")).await?.ok()?;
            deployed += 1;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        points.push((c as f64, wisp.rss_bytes()? as f64));
    }
    // The marginal cost: fit over the points with at least one function (the
    // first function also pays one-off costs: first instance, pool pages).
    let warm: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.0 >= 1.0).collect();
    let (_, slope) = linear_fit(if warm.len() >= 2 { &warm } else { &points });
    let first = points.get(1).map(|p| p.1 - rss0).unwrap_or(f64::NAN);
    let rows: Vec<Vec<String>> = points
        .iter()
        .map(|(c, r)| {
            vec![
                format!("{c:.0}"),
                bytes(*r),
                bytes(r - rss0),
                if *c > 0.0 {
                    format!("{} MiB", num((r - rss0) / c / MIB))
                } else {
                    "–".into()
                },
            ]
        })
        .collect();
    sec.para(
        "n distinct modules (`hello` with a custom section naming the copy, so each has its own digest, compiled artifact, code \
         mapping and template) are deployed and each is invoked once (warm: its template is loaded and linked), then \
         the server's resident set (VmRSS) is read after 300 ms idle. *Per function* is (RSS(n) − RSS(0)) / n; the slope is a \
         least-squares fit over the points with n ≥ 1 (the marginal cost of one more warm function; the first one also pays one-off \
         costs such as the first instance and allocator pages).",
    );
    sec.markdown.push_str(&table(
        &["warm functions", "RSS", "Δ vs none", "per function"],
        &rows,
    ));
    let slope_mib = slope / MIB;
    sec.markdown.push_str(&table(
        &["platform", "MiB per warm function"],
        &[
            vec!["Wisp (this run, slope over n ≥ 1)".into(), num(slope_mib)],
            vec![
                "Wisp (this run, first function incl. one-off costs)".into(),
                num(first / MIB),
            ],
            vec!["Wasmtime (paper)".into(), "6.34".into()],
            vec!["Docker (paper)".into(), "22.28".into()],
        ],
    ));
    sec.plot(
        "memory_rss.svg",
        plot::lines(
            "Server RSS vs warm functions",
            "warm idle functions",
            "RSS (MiB)",
            &[("Wisp".into(), points.iter().map(|(c, r)| (c.max(0.5), r / MIB)).collect())],
            plot::LineOpts { log_x: true, markers: true, ..Default::default() },
        ),
        "Resident memory of `wisp serve` against the number of warm idle functions (0 drawn at 0.5)",
    );
    sec.target(
        "memory per warm idle function",
        "≤ 0.5 MiB",
        format!("{} MiB (slope)", num(slope_mib)),
        Some(slope_mib <= 0.5),
    );
    sec.json = json!({"counts": counts, "rss_bytes": points.iter().map(|p| json!({"functions": p.0, "rss": p.1})).collect::<Vec<_>>(),
                      "mib_per_function_slope": slope_mib, "first_function_bytes": first, "paper_mib_per_function": {"wasmtime": 6.34, "docker": 22.28}});
    Ok(sec)
}
