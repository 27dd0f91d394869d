//! (c) Noisy neighbours: `hello` at a fixed modest open-loop rate, alone
//! and while attackers run beside it on the same server — a spinning guest,
//! a memory bomb, a request storm and thousands of slow connections — all
//! together (the target) and each alone (to attribute the damage).
//!
//! The attackers run on their own Tokio runtime (own threads), so the
//! measuring client's timers don't queue behind thousands of attacker tasks.

use crate::Ctx;
use crate::load::{self, LoadResult, LoadSpec, Mode, Target};
use crate::plot;
use crate::report::{Section, num, table};
use crate::scenarios::{bench_config, distinct_module};
use crate::server::{
    MACHINE_CPU_FIELDS, WispServer, cpu_seconds, machine_cores, machine_cpu_fields, tcp_counters,
    tcp_delta,
};
use crate::stats::{Summary, ecdf_thin};
use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `hello`'s offered rate, req/s.
const RATE: f64 = 200.0;
/// Bound: loaded p99 over unloaded p99.
const RATIO_BOUND: f64 = 2.0;
/// Spinning requests in flight at once (each runs to its 1 s timeout).
const SPIN_CLIENTS: usize = 4;
/// Memory bombs in flight at once.
const BOMB_CLIENTS: usize = 2;
/// Storm connections (closed loop, no rate limit).
const STORM_CONNS: usize = 64;
/// What a slow connection sends before stalling: a header never finished.
const PARTIAL: &[u8] = b"GET /fn/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

/// Which attackers run.
#[derive(Clone, Copy, Debug)]
struct Attack {
    spin: bool,
    bomb: bool,
    storm: bool,
    /// Slow connections held open (0: none).
    slow: usize,
}

impl Attack {
    fn label(&self) -> String {
        let mut v = vec![];
        if self.spin {
            v.push(format!("spin ×{SPIN_CLIENTS}"));
        }
        if self.bomb {
            v.push(format!("membomb ×{BOMB_CLIENTS}"));
        }
        if self.storm {
            v.push(format!("storm {STORM_CONNS} conns"));
        }
        if self.slow > 0 {
            v.push(format!("{} slow conns", self.slow));
        }
        v.join(" + ")
    }
}

/// What the attackers did.
#[derive(Clone, Debug, Default, Serialize)]
struct AttackStats {
    spin_statuses: BTreeMap<u16, u64>,
    bomb_statuses: BTreeMap<u16, u64>,
    storm_rps: f64,
    storm_statuses: BTreeMap<u16, u64>,
    slow_opened: u64,
    slow_closed_by_server: u64,
    slow_connect_errors: u64,
    /// Most slow connections open at once.
    slow_peak_open: u64,
    /// Seconds from opening to the server's close (median).
    slow_close_after_s: f64,
}

fn statuses(r: &LoadResult) -> BTreeMap<u16, u64> {
    let mut m = BTreeMap::new();
    for s in &r.samples {
        *m.entry(s.status).or_default() += 1;
    }
    m
}

fn closed(url: String, clients: usize, d: Duration, timeout: Duration) -> LoadSpec {
    LoadSpec {
        targets: vec![Target::get(url)],
        weights: vec![],
        mode: Mode::Closed {
            clients,
            rate_per_client: None,
        },
        duration: d,
        max_requests: None,
        keep_alive: true,
        timeout,
    }
}

#[derive(Default)]
struct SlowCounters {
    opened: AtomicU64,
    closed: AtomicU64,
    errors: AtomicU64,
    open_now: AtomicU64,
    peak: AtomicU64,
}

/// `n` connections that send a partial header and stall, each reopened
/// when the server closes it, until `d` has passed. Opening is spread over
/// the first second.
async fn slow_conns(addr: SocketAddr, n: usize, d: Duration) -> (Arc<SlowCounters>, Vec<f64>) {
    let c = Arc::new(SlowCounters::default());
    let end = Instant::now() + d;
    let mut tasks = vec![];
    for i in 0..n {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut closes = vec![];
            tokio::time::sleep(Duration::from_secs_f64(i as f64 / n.max(1) as f64)).await;
            // Bounded: at most one open per 100 ms per task.
            while Instant::now() < end {
                let s = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::TcpStream::connect(addr),
                )
                .await;
                let mut s = match s {
                    Ok(Ok(s)) => s,
                    _ => {
                        c.errors.fetch_add(1, Relaxed);
                        tokio::time::sleep_until(
                            (Instant::now() + Duration::from_millis(100)).into(),
                        )
                        .await;
                        continue;
                    }
                };
                let opened = Instant::now();
                c.opened.fetch_add(1, Relaxed);
                let now_open = c.open_now.fetch_add(1, Relaxed) + 1;
                c.peak.fetch_max(now_open, Relaxed);
                let _ = s.write_all(PARTIAL).await;
                // Wait for the server to give up on us (EOF, reset, or a
                // 408 then EOF), or for the end.
                let mut buf = [0u8; 256];
                let gone = tokio::time::timeout_at(end.into(), async {
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => continue,
                        }
                    }
                })
                .await
                .is_ok();
                c.open_now.fetch_sub(1, Relaxed);
                if gone {
                    c.closed.fetch_add(1, Relaxed);
                    closes.push(opened.elapsed().as_secs_f64());
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            closes
        }));
    }
    let mut closes = vec![];
    for t in tasks {
        if let Ok(v) = t.await {
            closes.extend(v);
        }
    }
    (c, closes)
}

/// Run `a` against `server` for `d` on a runtime of its own thread.
fn attack(
    base: String,
    addr: SocketAddr,
    a: Attack,
    d: Duration,
) -> std::thread::JoinHandle<AttackStats> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("bench-attack")
            .build()
            .expect("attack runtime");
        rt.block_on(async move {
            let spin = async {
                if a.spin {
                    // Each spinning request runs to its 1 s timeout (504).
                    Some(
                        load::run(&closed(
                            format!("{base}/fn/spin"),
                            SPIN_CLIENTS,
                            d,
                            Duration::from_secs(10),
                        ))
                        .await,
                    )
                } else {
                    None
                }
            };
            let bomb = async {
                if a.bomb {
                    Some(
                        load::run(&closed(
                            format!("{base}/fn/membomb"),
                            BOMB_CLIENTS,
                            d,
                            Duration::from_secs(10),
                        ))
                        .await,
                    )
                } else {
                    None
                }
            };
            let storm = async {
                if a.storm {
                    Some(
                        load::run(&closed(
                            format!("{base}/fn/storm"),
                            STORM_CONNS,
                            d,
                            Duration::from_secs(10),
                        ))
                        .await,
                    )
                } else {
                    None
                }
            };
            let slow = async {
                if a.slow > 0 {
                    Some(slow_conns(addr, a.slow, d).await)
                } else {
                    None
                }
            };
            let (spin, bomb, storm, slow) = tokio::join!(spin, bomb, storm, slow);
            let mut st = AttackStats::default();
            if let Some(r) = spin {
                st.spin_statuses = statuses(&r);
            }
            if let Some(r) = bomb {
                st.bomb_statuses = statuses(&r);
            }
            if let Some(r) = storm {
                st.storm_rps = r.throughput();
                st.storm_statuses = statuses(&r);
            }
            if let Some((c, closes)) = slow {
                st.slow_opened = c.opened.load(Relaxed);
                st.slow_closed_by_server = c.closed.load(Relaxed);
                st.slow_connect_errors = c.errors.load(Relaxed);
                st.slow_peak_open = c.peak.load(Relaxed);
                st.slow_close_after_s = Summary::of(&closes).median;
            }
            st
        })
    })
}

/// One measured phase.
struct Phase {
    label: String,
    hello: LoadResult,
    attack: Option<AttackStats>,
    /// Cores used by the server, this bench process, and the whole machine.
    server_cores: f64,
    bench_cores: f64,
    machine_busy: f64,
    /// Cores used by everything but the server and this process.
    other_cores: f64,
    /// Fraction of all CPU time per `/proc/stat` field.
    machine_split: BTreeMap<String, f64>,
    /// Kernel TCP counters over the measurement.
    tcp: BTreeMap<String, u64>,
}

impl Phase {
    fn p99(&self) -> f64 {
        Summary::of(&self.hello.ok_latencies()).p99
    }
}

struct Cpu {
    server: f64,
    bench: f64,
    machine: [u64; 8],
    at: Instant,
}

fn cpu_now(server: &WispServer) -> Cpu {
    Cpu {
        server: cpu_seconds(server.pid()).unwrap_or(f64::NAN),
        bench: cpu_seconds(std::process::id()).unwrap_or(f64::NAN),
        machine: machine_cpu_fields().unwrap_or([0; 8]),
        at: Instant::now(),
    }
}

/// Measure `hello` for `d` at [`RATE`], with `a` (if any) running from
/// `warm` before to the end.
async fn phase(
    server: &WispServer,
    label: &str,
    a: Option<Attack>,
    warm: Duration,
    d: Duration,
) -> Result<Phase> {
    let addr: SocketAddr = server
        .url
        .trim_start_matches("http://")
        .parse()
        .context("server address")?;
    let attacker = a.map(|a| attack(server.url.clone(), addr, a, warm + d));
    if attacker.is_some() {
        tokio::time::sleep(warm).await;
    }
    let c0 = cpu_now(server);
    let n0 = tcp_counters();
    let hello = load::run(&LoadSpec {
        targets: vec![Target::get(server.fn_url("hello", ""))],
        weights: vec![],
        mode: Mode::Open {
            rate: RATE,
            max_in_flight: 10_000,
        },
        duration: d,
        max_requests: None,
        keep_alive: true,
        timeout: Duration::from_secs(10),
    })
    .await;
    let c1 = cpu_now(server);
    let tcp = tcp_delta(&n0, &tcp_counters());
    let stats = match attacker {
        Some(h) => Some(
            tokio::task::spawn_blocking(move || h.join())
                .await
                .context("joining the attackers")?
                .map_err(|_| anyhow::anyhow!("an attacker panicked"))?,
        ),
        None => None,
    };
    let secs = (c1.at - c0.at).as_secs_f64();
    let d: Vec<u64> = (0..8)
        .map(|i| c1.machine[i].saturating_sub(c0.machine[i]))
        .collect();
    let dt: u64 = d.iter().sum();
    let db = dt - d[3] - d[4];
    let p = Phase {
        label: label.to_string(),
        hello,
        attack: stats,
        server_cores: (c1.server - c0.server) / secs,
        bench_cores: (c1.bench - c0.bench) / secs,
        machine_busy: if dt > 0 {
            db as f64 / dt as f64
        } else {
            f64::NAN
        },
        other_cores: (machine_cores(&c0.machine, &c1.machine).0
            - (c1.server - c0.server) / secs
            - (c1.bench - c0.bench) / secs)
            .max(0.0),
        machine_split: MACHINE_CPU_FIELDS
            .iter()
            .zip(&d)
            .map(|(k, v)| (k.to_string(), *v as f64 / dt.max(1) as f64))
            .collect(),
        tcp,
    };
    // Let the last spins time out and the server settle before the next phase.
    if a.is_some() {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    Ok(p)
}

pub(super) async fn run(ctx: &Ctx, sec: &mut Section) -> Result<Value> {
    let d = ctx.pick(Duration::from_secs(3), Duration::from_secs(10));
    let warm = ctx.pick(Duration::from_secs(1), Duration::from_secs(2));
    let slow: usize = ctx.pick(500, 5000);
    let server = ctx.start_wisp(&[])?;
    let hello = ctx.wasm("hello")?;
    server.deploy("hello", &hello, &bench_config()).await?;
    server
        .deploy("storm", &distinct_module(&hello, "storm"), &bench_config())
        .await?;
    server
        .deploy(
            "spin",
            &ctx.wasm("test-spin")?,
            &json!({"limits": {"timeout_ms": 1000}}),
        )
        .await?;
    server
        .deploy("membomb", &ctx.wasm("test-membomb")?, &json!({}))
        .await?;
    for f in ["hello", "storm"] {
        server.http().get(&server.fn_url(f, "")).await?.ok()?;
    }
    let all = Attack {
        spin: true,
        bomb: true,
        storm: true,
        slow,
    };
    let alone = [
        Attack {
            spin: true,
            bomb: false,
            storm: false,
            slow: 0,
        },
        Attack {
            spin: false,
            bomb: true,
            storm: false,
            slow: 0,
        },
        Attack {
            spin: false,
            bomb: false,
            storm: true,
            slow: 0,
        },
        Attack {
            spin: false,
            bomb: false,
            storm: false,
            slow,
        },
    ];
    let mut phases = vec![];
    ctx.progress(&format!("chaos noisy: hello alone, {RATE:.0} req/s"));
    phases.push(phase(&server, "unloaded", None, warm, d).await?);
    ctx.progress(&format!("chaos noisy: hello beside {}", all.label()));
    phases.push(
        phase(
            &server,
            &format!("all attackers: {}", all.label()),
            Some(all),
            warm,
            d,
        )
        .await?,
    );
    // Attribution and recovery: full mode only (the quick run stays short).
    if !ctx.opts.quick {
        for a in alone {
            ctx.progress(&format!("chaos noisy: hello beside {} alone", a.label()));
            phases.push(phase(&server, &format!("{} alone", a.label()), Some(a), warm, d).await?);
        }
        ctx.progress("chaos noisy: hello alone again");
        phases.push(phase(&server, "unloaded, after", None, warm, d).await?);
    }
    drop(server);

    let base = Summary::of(&phases[0].hello.ok_latencies());
    let loaded = Summary::of(&phases[1].hello.ok_latencies());
    let ratio = loaded.p99 / base.p99;
    let hello_errors = phases[1].hello.errors();
    sec.para(&format!(
        "**(c) Noisy neighbours.** `hello` (the well-behaved function) gets {RATE:.0} req/s open loop (keep-alive, latency from the \
         scheduled send) for {:.0} s per phase. Attackers, on their own client threads, start {:.0} s before and run to the end of \
         the phase: `spin` (`test-spin`, `timeout_ms` 1000) with {SPIN_CLIENTS} requests always in flight; `membomb` (`test-membomb`, \
         default 128 MiB limit) with {BOMB_CLIENTS}; a storm of {STORM_CONNS} kept-alive connections in a closed loop against `storm` \
         (a copy of `hello`); and {slow} slow connections that send `GET /fn/hello HTTP/1.1` and part of a header, then stall (the \
         server's header timeout, 10 s by default, closes them; each is reopened). The target compares the all-attackers phase \
         with the first unloaded one; in full mode each attacker alone is measured too, to say which one does the damage, and \
         `hello` alone once more at the end (recovery). CPU columns are cores \
         in use during the phase (of {}): the server, this bench process (client and attackers), and everything else \
         (other jobs on a shared machine, the kernel's own work); \
         *listen overflows* are connection attempts the kernel dropped because the server's accept queue was full (machine-wide \
         counter).",
        d.as_secs_f64(),
        warm.as_secs_f64(),
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    ));
    let rows: Vec<Vec<String>> = phases
        .iter()
        .map(|p| {
            let s = Summary::of(&p.hello.ok_latencies());
            vec![
                p.label.clone(),
                s.n.to_string(),
                num(s.median),
                num(s.p99),
                format!("{}×", num(s.p99 / base.p99)),
                num(s.max),
                p.hello.errors().to_string(),
                num(p.server_cores),
                num(p.bench_cores),
                num(p.other_cores),
                p.tcp
                    .get("ListenOverflows")
                    .copied()
                    .unwrap_or(0)
                    .to_string(),
            ]
        })
        .collect();
    sec.markdown.push_str(&table(
        &[
            "phase",
            "n",
            "p50 ms",
            "p99 ms",
            "p99 / unloaded",
            "max ms",
            "hello errors",
            "server cores",
            "bench cores",
            "other cores",
            "listen overflows",
        ],
        &rows,
    ));
    if let Some(st) = &phases[1].attack {
        sec.para(&format!(
            "Attackers during the all-attackers phase: spin answered {:?}, membomb {:?}, storm {:.0} req/s {:?}; slow connections: \
             {} opened ({} at once at most), {} closed by the server after a median {} s, {} connect errors.",
            st.spin_statuses,
            st.bomb_statuses,
            st.storm_rps,
            st.storm_statuses,
            st.slow_opened,
            st.slow_peak_open,
            st.slow_closed_by_server,
            num(st.slow_close_after_s),
            st.slow_connect_errors
        ));
    }
    let mut ecdfs = vec![];
    for p in &phases {
        ecdfs.push((p.label.clone(), ecdf_thin(&p.hello.ok_latencies(), 400)));
    }
    sec.plot(
        "chaos_noisy_ecdf.svg",
        plot::lines(
            "Noisy neighbours: hello latency ECDF",
            "latency (ms, log)",
            "fraction ≤ x",
            &ecdfs,
            plot::LineOpts {
                log_x: true,
                step: true,
                ..Default::default()
            },
        ),
        "Latency of `hello` at a fixed rate, alone and beside each set of attackers",
    );
    sec.target(
        "noisy neighbours: hello p99",
        &format!("loaded p99 ≤ {RATIO_BOUND:.0}× unloaded, no hello errors"),
        format!(
            "{} ms vs {} ms unloaded: {}× ({hello_errors} hello errors)",
            num(loaded.p99),
            num(base.p99),
            num(ratio)
        ),
        ratio
            .is_finite()
            .then_some(ratio <= RATIO_BOUND && hello_errors == 0),
    );
    Ok(json!({
        "rate": RATE, "duration_s": d.as_secs_f64(), "warmup_s": warm.as_secs_f64(), "slow_connections": slow,
        "unloaded": base, "loaded": loaded, "p99_ratio": ratio, "hello_errors": hello_errors,
        "phases": phases.iter().map(|p| {
            let lat = p.hello.ok_latencies();
            json!({"label": p.label, "summary": Summary::of(&lat), "p99_ratio": p.p99() / base.p99,
                   "errors": p.hello.errors(), "dropped": p.hello.dropped, "statuses": statuses(&p.hello),
                   "attack": p.attack, "server_cores": p.server_cores, "bench_cores": p.bench_cores,
                   "machine_busy": p.machine_busy, "other_cores": p.other_cores, "machine_split": p.machine_split, "tcp": p.tcp, "samples_ms": lat})
        }).collect::<Vec<_>>(),
    }))
}
