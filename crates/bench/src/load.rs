//! The built-in load generator: closed loop (N clients, optionally each
//! rate-limited) and open loop (requests at a fixed rate regardless of
//! responses), keep-alive on or off, every latency kept.
//!
//! Open-loop latency is measured from the request's *scheduled* send time,
//! so a server that falls behind is charged for the queueing it causes (no
//! coordinated omission).

use crate::http::Http;
use bytes::Bytes;
use http::Method;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request to send.
#[derive(Clone, Debug)]
pub struct Target {
    /// Absolute URL.
    pub url: String,
    /// Method.
    pub method: Method,
    /// Body.
    pub body: Bytes,
}

impl Target {
    /// A GET of `url`.
    pub fn get(url: impl Into<String>) -> Target {
        Target {
            url: url.into(),
            method: Method::GET,
            body: Bytes::new(),
        }
    }
}

/// How requests are issued.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// `clients` loops, each sending its next request when the previous one
    /// answered; with `rate_per_client`, no faster than that (req/s).
    Closed {
        /// Concurrent clients.
        clients: usize,
        /// Cap on each client's rate.
        rate_per_client: Option<f64>,
    },
    /// Requests at `rate` per second, each on its own task.
    Open {
        /// Offered rate (req/s).
        rate: f64,
        /// Requests outstanding past which new ones are dropped (counted).
        max_in_flight: usize,
    },
}

/// A load run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// What to send; with several, each request picks one by `weights`.
    pub targets: Vec<Target>,
    /// Relative weights (empty = uniform).
    pub weights: Vec<f64>,
    /// Closed or open loop.
    pub mode: Mode,
    /// How long to send for.
    pub duration: Duration,
    /// Stop after this many requests (whichever comes first).
    pub max_requests: Option<u64>,
    /// Reuse connections.
    pub keep_alive: bool,
    /// Give up on one request after this long (counted as an error).
    pub timeout: Duration,
}

impl LoadSpec {
    /// One target, closed loop with one client.
    pub fn serial(target: Target, duration: Duration, keep_alive: bool) -> LoadSpec {
        LoadSpec {
            targets: vec![target],
            weights: vec![],
            mode: Mode::Closed {
                clients: 1,
                rate_per_client: None,
            },
            duration,
            max_requests: None,
            keep_alive,
            timeout: Duration::from_secs(60),
        }
    }
}

/// One request's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Send time since the run started, ms (the scheduled time in open loop).
    pub t_ms: f64,
    /// Latency in ms.
    pub ms: f64,
    /// HTTP status, 0 for a transport error or timeout.
    pub status: u16,
    /// The `Wisp-Cold` header was `true`.
    pub cold: bool,
    /// Index into `targets`.
    pub target: usize,
}

/// What a run produced.
#[derive(Clone, Debug, Serialize)]
pub struct LoadResult {
    /// Every request, in completion order.
    pub samples: Vec<Sample>,
    /// Open loop: requests not sent because `max_in_flight` were outstanding.
    pub dropped: u64,
    /// Wall time of the run, s (until the last response).
    pub elapsed_s: f64,
}

impl LoadResult {
    /// Latencies (ms) of the 2xx answers.
    pub fn ok_latencies(&self) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .map(|s| s.ms)
            .collect()
    }
    /// Latencies (ms) of the 2xx answers of one target.
    pub fn ok_latencies_of(&self, target: usize) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.target == target && (200..300).contains(&s.status))
            .map(|s| s.ms)
            .collect()
    }
    /// Requests that did not get a 2xx (plus dropped ones).
    pub fn errors(&self) -> u64 {
        self.samples
            .iter()
            .filter(|s| !(200..300).contains(&s.status))
            .count() as u64
            + self.dropped
    }
    /// 2xx answers per second.
    pub fn throughput(&self) -> f64 {
        let ok = self
            .samples
            .iter()
            .filter(|s| (200..300).contains(&s.status))
            .count() as f64;
        if self.elapsed_s > 0.0 {
            ok / self.elapsed_s
        } else {
            0.0
        }
    }
}

/// A tiny deterministic PRNG (xorshift64*), so mixes are reproducible.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded generator.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Index drawn by `weights` (uniform over `n` when empty).
    pub fn pick(&mut self, weights: &[f64], n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        if weights.is_empty() {
            return ((self.next_f64() * n as f64) as usize).min(n - 1);
        }
        let total: f64 = weights.iter().sum();
        let mut x = self.next_f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

/// "32 clients → /fn/hello" for progress output.
fn describe(spec: &LoadSpec) -> String {
    let path = spec.targets[0].url.splitn(4, '/').nth(3).unwrap_or("");
    let more = if spec.targets.len() > 1 {
        format!(" +{}", spec.targets.len() - 1)
    } else {
        String::new()
    };
    match spec.mode {
        Mode::Closed {
            clients,
            rate_per_client: None,
        } => format!("{clients} clients → /{path}{more}"),
        Mode::Closed {
            clients,
            rate_per_client: Some(r),
        } => format!("{clients}×{r:.0}/s → /{path}{more}"),
        Mode::Open { rate, .. } => format!("open {rate:.0}/s → /{path}{more}"),
    }
}

async fn one(http: &Http, t: &Target, timeout: Duration) -> (u16, bool) {
    match tokio::time::timeout(
        timeout,
        http.send(t.method.clone(), &t.url, &[], t.body.clone()),
    )
    .await
    {
        Ok(Ok(r)) => (r.status.as_u16(), r.header("wisp-cold") == Some("true")),
        _ => (0, false),
    }
}

/// Run a load. Must be called inside a Tokio runtime.
pub async fn run(spec: &LoadSpec) -> LoadResult {
    assert!(!spec.targets.is_empty(), "a load needs at least one target");
    let _bar = (spec.duration >= Duration::from_secs(2))
        .then(|| crate::progress::timed(&describe(spec), spec.duration));
    let http = Http::new(spec.keep_alive);
    let start = Instant::now();
    let end = start + spec.duration;
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let max = spec.max_requests.unwrap_or(u64::MAX);
    let mut dropped = 0;
    match spec.mode {
        Mode::Closed {
            clients,
            rate_per_client,
        } => {
            let mut tasks = Vec::new();
            for c in 0..clients.max(1) {
                let (http, spec, samples, sent) =
                    (http.clone(), spec.clone(), samples.clone(), sent.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rng = Rng::new(0x9E37_79B9 ^ ((c as u64 + 1) * 0x1234_5678_9ABC));
                    let interval =
                        rate_per_client.map(|r| Duration::from_secs_f64(1.0 / r.max(1e-9)));
                    let mut local = Vec::new();
                    let mut k: u32 = 0;
                    loop {
                        if let Some(iv) = interval {
                            // Stagger the clients over one interval.
                            let at = start + iv.mul_f64(c as f64 / clients.max(1) as f64) + iv * k;
                            if at >= end {
                                break;
                            }
                            tokio::time::sleep_until(at.into()).await;
                        }
                        let now = Instant::now();
                        if now >= end
                            || sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= max
                        {
                            break;
                        }
                        let ti = rng.pick(&spec.weights, spec.targets.len());
                        let (status, cold) = one(&http, &spec.targets[ti], spec.timeout).await;
                        local.push(Sample {
                            t_ms: (now - start).as_secs_f64() * 1e3,
                            ms: now.elapsed().as_secs_f64() * 1e3,
                            status,
                            cold,
                            target: ti,
                        });
                        k += 1;
                    }
                    samples.lock().unwrap().extend(local);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
        Mode::Open {
            rate,
            max_in_flight,
        } => {
            let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let interval = Duration::from_secs_f64(1.0 / rate.max(1e-9));
            let mut rng = Rng::new(0x0C0F_FEE1_2345_6789);
            let mut tasks = Vec::new();
            let mut k: u64 = 0;
            loop {
                let at = start + interval.mul_f64(k as f64);
                if at >= end || k >= max {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                k += 1;
                if in_flight.load(std::sync::atomic::Ordering::Relaxed) >= max_in_flight {
                    dropped += 1;
                    continue;
                }
                in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let ti = rng.pick(&spec.weights, spec.targets.len());
                let (http, target, samples, in_flight, timeout) = (
                    http.clone(),
                    spec.targets[ti].clone(),
                    samples.clone(),
                    in_flight.clone(),
                    spec.timeout,
                );
                tasks.push(tokio::spawn(async move {
                    let (status, cold) = one(&http, &target, timeout).await;
                    let s = Sample {
                        t_ms: (at - start).as_secs_f64() * 1e3,
                        ms: at.elapsed().as_secs_f64() * 1e3,
                        status,
                        cold,
                        target: ti,
                    };
                    in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    samples.lock().unwrap().push(s);
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    LoadResult {
        samples,
        dropped,
        elapsed_s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A local HTTP server answering 200 after `delay`; returns its base URL.
    async fn tiny_server(delay: Duration) -> String {
        use http_body_util::Full;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |_req| async move {
                        tokio::time::sleep(delay).await;
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from("ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_and_open_loops_measure() {
        let url = tiny_server(Duration::from_millis(20)).await;
        // Closed loop, 4 clients, keep-alive off: about 4 / 20 ms = 200 req/s.
        let mut spec =
            LoadSpec::serial(Target::get(url.clone()), Duration::from_millis(500), false);
        spec.mode = Mode::Closed {
            clients: 4,
            rate_per_client: None,
        };
        let r = run(&spec).await;
        assert_eq!(r.errors(), 0);
        let lat = r.ok_latencies();
        assert!(
            lat.len() >= 40 && lat.len() <= 110,
            "{} requests",
            lat.len()
        );
        assert!(lat.iter().all(|ms| *ms >= 19.0), "{lat:?}");
        // Rate-limited: 2 clients × 10 req/s for 0.5 s → about 10 requests.
        spec.mode = Mode::Closed {
            clients: 2,
            rate_per_client: Some(10.0),
        };
        spec.keep_alive = true;
        let r = run(&spec).await;
        assert!((8..=12).contains(&r.samples.len()), "{}", r.samples.len());
        // Open loop at 100 req/s for 0.5 s → 50 requests, not limited by the 20 ms latency.
        spec.mode = Mode::Open {
            rate: 100.0,
            max_in_flight: 1000,
        };
        let r = run(&spec).await;
        assert_eq!(r.samples.len(), 50);
        assert_eq!(r.errors(), 0);
        // max_requests caps it.
        spec.max_requests = Some(7);
        assert_eq!(run(&spec).await.samples.len(), 7);
        // A dead port is an error (status 0), not a panic.
        let mut dead = LoadSpec::serial(
            Target::get("http://127.0.0.1:1/"),
            Duration::from_millis(100),
            false,
        );
        dead.max_requests = Some(3);
        let r = run(&dead).await;
        assert_eq!(r.errors(), 3);
        assert!(r.samples.iter().all(|s| s.status == 0));
    }

    #[test]
    fn rng_picks_by_weight() {
        let mut r = Rng::new(7);
        let mut counts = [0usize; 3];
        for _ in 0..30_000 {
            counts[r.pick(&[8.0, 1.0, 1.0], 3)] += 1;
        }
        assert!((23_000..25_000).contains(&counts[0]), "{counts:?}");
        assert!((2_400..3_600).contains(&counts[1]), "{counts:?}");
        let mut u = [0usize; 4];
        for _ in 0..40_000 {
            u[r.pick(&[], 4)] += 1;
        }
        assert!(u.iter().all(|c| (9_000..11_000).contains(c)), "{u:?}");
    }
}
