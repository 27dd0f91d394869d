//! Scenario 4, mixed: (a) equal CPU-bound `hash` and I/O-bound `sleep`
//! (300 ms) requests at a rising open-loop rate until saturation; (b) the
//! I/O-bound function alone with C requests in flight against the ideal
//! C / 0.3 s; (c) a skewed, Azure-like mix: 90 % of requests to 2
//! functions, 10 % spread over 60 others (latency ECDF).

use super::concurrent::P99_BOUND_MS;
use super::{bench_config, raise_nofile};
use crate::Ctx;
use crate::load::{self, LoadSpec, Mode, Target};
use crate::plot;
use crate::report::{Section, num, table};
use crate::stats::{Summary, ecdf_thin};
use anyhow::Result;
use serde_json::json;
use std::time::Duration;

pub async fn run(ctx: &Ctx) -> Result<Section> {
    raise_nofile();
    let mut sec = Section::new("mixed", "Mixed workloads");
    let inflight: Vec<usize> = ctx.pick(vec![50], vec![100, 1000, 5000]);
    let max_c = *inflight.iter().max().unwrap();
    let pool = (max_c + 1000).to_string();
    let wisp = ctx.start_wisp(&["--pool-instances", &pool])?;
    let mut cfg = bench_config();
    cfg["limits"]["max_concurrency"] = (max_c as u64 + 100).into();
    wisp.deploy("hash", &ctx.wasm("hash")?, &cfg).await?;
    wisp.deploy("sleep", &ctx.wasm("sleep")?, &cfg).await?;

    // (a) hash + sleep at rising rates.
    let rates: Vec<f64> = ctx.pick(
        vec![10.0, 40.0],
        (0..10).map(|k| 25.0 * 2f64.powi(k)).collect(),
    );
    let step = ctx.pick(Duration::from_millis(800), Duration::from_secs(10));
    let hash_q = ctx.pick("iterations=100", "");
    let targets = vec![
        Target::get(wisp.fn_url("hash", hash_q)),
        Target::get(wisp.fn_url("sleep", "ms=300")),
    ];
    let mut rows = vec![];
    let mut steps = vec![];
    let (mut c_hash, mut c_sleep) = (vec![], vec![]);
    let mut base_hash = f64::NAN;
    for &rate in &rates {
        ctx.progress(&format!("mixed: hash + sleep at {rate:.0} req/s"));
        let r = load::run(&LoadSpec {
            targets: targets.clone(),
            weights: vec![1.0, 1.0],
            mode: Mode::Open {
                rate,
                max_in_flight: 20_000,
            },
            duration: step,
            max_requests: None,
            keep_alive: true,
            timeout: Duration::from_secs(30),
        })
        .await;
        let (h, s) = (
            Summary::of(&r.ok_latencies_of(0)),
            Summary::of(&r.ok_latencies_of(1)),
        );
        if base_hash.is_nan() {
            base_hash = h.median;
        }
        let offered = (rate * step.as_secs_f64()).floor().max(1.0);
        let answered = (h.n + s.n) as f64 / offered;
        // Saturated: the CPU-bound half queues past the latency bound of the
        // concurrent scenario's open loop, errors, or answers fall behind.
        let saturated = h.p99 > P99_BOUND_MS || r.errors() > 0 || answered < 0.95;
        rows.push(vec![
            format!("{rate:.0}"),
            num(h.median),
            num(h.p99),
            num(s.median),
            num(s.p99),
            format!("{:.1}", r.throughput()),
            r.errors().to_string(),
            if saturated {
                "saturated".into()
            } else {
                "ok".into()
            },
        ]);
        c_hash.push((rate, h.p99));
        c_sleep.push((rate, s.p99));
        steps.push(json!({"rate": rate, "hash": h, "sleep": s, "throughput": r.throughput(), "errors": r.errors(), "saturated": saturated,
                          "hash_ms": r.ok_latencies_of(0), "sleep_ms": r.ok_latencies_of(1)}));
        if saturated {
            break;
        }
    }
    sec.para(&format!(
        "(a) Open loop, half `hash`{} (CPU-bound), half `sleep` 300 ms (I/O-bound), {:.1} s per rate, until the CPU-bound p99 passes {P99_BOUND_MS} ms \
         (the `concurrent` scenario's bound), errors appear, or under 95 % is answered. Unloaded, `hash` answers in {} ms (median). \
         Latencies in ms.",
        if hash_q.is_empty() { String::new() } else { format!(" ({hash_q})") },
        step.as_secs_f64(),
        num(base_hash)
    ));
    sec.markdown.push_str(&table(
        &[
            "req/s offered",
            "hash median",
            "hash p99",
            "sleep median",
            "sleep p99",
            "answered/s",
            "errors",
            "state",
        ],
        &rows,
    ));
    sec.plot(
        "mixed_rate.svg",
        plot::lines(
            "hash + sleep: p99 vs rate",
            "offered rate (req/s, log)",
            "p99 (ms, log)",
            &[("hash".into(), c_hash), ("sleep 300 ms".into(), c_sleep)],
            plot::LineOpts {
                log_x: true,
                log_y: true,
                markers: true,
                ..Default::default()
            },
        ),
        "p99 of the CPU-bound and I/O-bound halves as the rate rises",
    );

    // (b) I/O-bound concurrency.
    let dur = ctx.pick(Duration::from_millis(1500), Duration::from_secs(10));
    let mut io_rows = vec![];
    let mut io = vec![];
    let mut worst: f64 = f64::INFINITY;
    for &c in &inflight {
        ctx.progress(&format!("mixed: {c} sleep requests in flight"));
        let r = load::run(&LoadSpec {
            targets: vec![Target::get(wisp.fn_url("sleep", "ms=300"))],
            weights: vec![],
            mode: Mode::Closed {
                clients: c,
                rate_per_client: None,
            },
            duration: dur,
            max_requests: None,
            keep_alive: true,
            timeout: Duration::from_secs(30),
        })
        .await;
        let ideal = c as f64 / 0.3;
        let frac = r.throughput() / ideal;
        worst = worst.min(frac);
        let s = Summary::of(&r.ok_latencies());
        io_rows.push(vec![
            c.to_string(),
            format!("{:.0}", r.throughput()),
            format!("{ideal:.0}"),
            format!("{:.1}%", frac * 100.0),
            num(s.median),
            num(s.p99),
            r.errors().to_string(),
        ]);
        io.push(json!({"in_flight": c, "throughput": r.throughput(), "ideal": ideal, "fraction": frac, "latency": s, "errors": r.errors()}));
    }
    sec.para(&format!(
        "(b) `sleep` 300 ms alone, C clients in a closed loop (keep-alive) for {:.1} s: throughput against the ideal C / 0.3 s \
         (the tail of the run, where clients stop, slightly lowers it in short runs).",
        dur.as_secs_f64()
    ));
    sec.markdown.push_str(&table(
        &[
            "in flight",
            "req/s",
            "ideal",
            "of ideal",
            "median ms",
            "p99 ms",
            "errors",
        ],
        &io_rows,
    ));
    sec.target(
        "I/O-bound throughput",
        &format!("≥ 90 % of C / 0.3 s up to {} in flight", 5000),
        format!("worst {:.1}% (C up to {max_c})", worst * 100.0),
        if max_c >= 5000 {
            Some(worst >= 0.9)
        } else if worst < 0.9 {
            Some(false)
        } else {
            None // not taken up to 5000 in flight in this run
        },
    );

    // (c) skewed mix.
    let others = 60;
    let hello = ctx.wasm("hello")?;
    for k in 0..others + 2 {
        wisp.deploy(&format!("s{k}"), &hello, &bench_config())
            .await?;
    }
    let (rate, sdur) = ctx.pick(
        (100.0, Duration::from_secs(1)),
        (500.0, Duration::from_secs(30)),
    );
    ctx.progress(&format!("mixed: skewed mix at {rate:.0} req/s"));
    let targets: Vec<Target> = (0..others + 2)
        .map(|k| Target::get(wisp.fn_url(&format!("s{k}"), "")))
        .collect();
    let mut weights = vec![45.0, 45.0];
    weights.extend(std::iter::repeat_n(10.0 / others as f64, others));
    let r = load::run(&LoadSpec {
        targets,
        weights,
        mode: Mode::Open {
            rate,
            max_in_flight: 20_000,
        },
        duration: sdur,
        max_requests: None,
        keep_alive: true,
        timeout: Duration::from_secs(30),
    })
    .await;
    let ok = |s: &&load::Sample| (200..300).contains(&s.status);
    let hot: Vec<f64> = r
        .samples
        .iter()
        .filter(ok)
        .filter(|s| s.target < 2)
        .map(|s| s.ms)
        .collect();
    let rest: Vec<f64> = r
        .samples
        .iter()
        .filter(ok)
        .filter(|s| s.target >= 2)
        .map(|s| s.ms)
        .collect();
    let (sh, sr) = (Summary::of(&hot), Summary::of(&rest));
    sec.para(&format!(
        "(c) Skewed mix, Azure-like: 90 % of requests to 2 functions, 10 % spread over {others} others (all `hello`), open loop at \
         {rate:.0} req/s for {:.0} s. Hot: n {}, median {} ms, p99 {} ms. Others: n {}, median {} ms, p99 {} ms. Errors: {}.",
        sdur.as_secs_f64(),
        sh.n,
        num(sh.median),
        num(sh.p99),
        sr.n,
        num(sr.median),
        num(sr.p99),
        r.errors()
    ));
    sec.plot(
        "mixed_skew_ecdf.svg",
        plot::lines(
            "Skewed mix: latency ECDF",
            "latency (ms, log)",
            "fraction ≤ x",
            &[
                ("2 hot functions (90%)".into(), ecdf_thin(&hot, 400)),
                (format!("{others} others (10%)"), ecdf_thin(&rest, 400)),
            ],
            plot::LineOpts {
                log_x: true,
                step: true,
                ..Default::default()
            },
        ),
        "Latency ECDF of the skewed mix, hot vs rarely called functions",
    );
    sec.json = json!({"rising": {"step_s": step.as_secs_f64(), "steps": steps}, "io_bound": io,
                      "skewed": {"rate": rate, "duration_s": sdur.as_secs_f64(), "hot": sh, "others": sr, "hot_ms": hot, "others_ms": rest, "errors": r.errors()}});
    Ok(sec)
}
