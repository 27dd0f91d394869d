//! The container baseline of `--scenario openwhisk`: OpenWhisk's container
//! model, with the same function's native build.
//!
//! An HTTP front answers the controller's invoke route
//! (`POST /api/v1/namespaces/_/actions/{name}?blocking=true&result=true`,
//! the request the load generator sends to Wisp) the way OpenWhisk's
//! invoker serves it:
//!
//! - every action has its own containers, each serving **one activation
//!   at a time** (OpenWhisk's default `concurrency` of 1);
//! - an activation takes an idle warm container of its action; with none,
//!   a new one is created on demand (**cold**): `ctr run -d` of the runtime
//!   image (runc through containerd's shim, Docker's stack without
//!   `dockerd`), then `POST /init` until the proxy answers, then `/run`;
//! - a container is kept warm after its activation and reused (OpenWhisk
//!   keeps idle ones for 10 minutes; a run here is shorter);
//! - at most `cap` containers live at once (the invoker's user memory over
//!   the action's memory); past it an idle container of another action is
//!   removed to make room, or the activation waits for one to free up.
//!
//! The containers share the host's network namespace (`--net-host`), each
//! proxy on its own port: no veth pair or bridge per container, which is
//! cheaper than Docker's default network and so favours the baseline.
//! Inside each container runs `ow-proxy` (functions/ow-proxy), which
//! starts the action's native executable once per activation with the
//! parameters on stdin, as OpenWhisk's runtime for native binaries does.

use crate::containerd::Containerd;
use crate::http::Http;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::Method;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One warm container.
#[derive(Debug)]
struct Container {
    id: String,
    port: u16,
}

/// One cold start, as the invoker saw it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ColdStart {
    /// The action.
    pub action: String,
    /// `ctr run -d` until it returned (container and task created, started).
    pub create_ms: f64,
    /// From then until `/init` answered (the proxy listening, init done).
    pub init_ms: f64,
}

struct Inner {
    ctd: Containerd,
    image: String,
    /// Action name → its executable in the image.
    actions: Mutex<HashMap<String, String>>,
    idle: Mutex<HashMap<String, Vec<Container>>>,
    live: AtomicUsize,
    cap: AtomicUsize,
    freed: tokio::sync::Notify,
    http: Http,
    next: AtomicU64,
    colds: Mutex<Vec<ColdStart>>,
    removed: AtomicU64,
}

/// The baseline's front, listening on 127.0.0.1; its containers are
/// removed when it is dropped (with its containerd).
pub struct Invoker {
    inner: Arc<Inner>,
    /// Base URL of the front, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Invoker {
    /// Serve `image` (already imported into `ctd`, its entrypoint the
    /// proxy) with at most `cap` containers. Must be called in a Tokio runtime.
    pub async fn start(ctd: Containerd, image: &str, cap: usize) -> Result<Invoker> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let inner = Arc::new(Inner {
            ctd,
            image: image.into(),
            actions: Default::default(),
            idle: Default::default(),
            live: AtomicUsize::new(0),
            cap: AtomicUsize::new(cap.max(1)),
            freed: tokio::sync::Notify::new(),
            http: Http::new(false),
            next: AtomicU64::new(0),
            colds: Default::default(),
            removed: AtomicU64::new(0),
        });
        let state = inner.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(state.serve(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Ok(Invoker { inner, url, server })
    }

    /// Make `action` invocable, run by `main` (a path in the image).
    pub fn register(&self, action: &str, main: &str) {
        self.inner
            .actions
            .lock()
            .unwrap()
            .insert(action.into(), main.into());
    }

    /// The invoke URL of `action` (blocking, result only), as on Wisp.
    pub fn invoke_url(&self, action: &str) -> String {
        format!(
            "{}/api/v1/namespaces/_/actions/{action}?blocking=true&result=true",
            self.url
        )
    }

    /// Every cold start so far.
    pub fn cold_starts(&self) -> Vec<ColdStart> {
        self.inner.colds.lock().unwrap().clone()
    }

    /// Change the most containers alive at once (from the next activation).
    pub fn set_cap(&self, cap: usize) {
        self.inner.cap.store(cap.max(1), Ordering::SeqCst);
    }

    /// Containers alive now (busy or idle).
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::SeqCst)
    }

    /// Idle containers removed to make room under the cap.
    pub fn evicted(&self) -> u64 {
        self.inner.removed.load(Ordering::Relaxed)
    }

    /// Remove every idle container (a fresh start for the next experiment).
    pub async fn clear(&self) {
        let all: Vec<Container> = self
            .inner
            .idle
            .lock()
            .unwrap()
            .drain()
            .flat_map(|(_, v)| v)
            .collect();
        for c in all {
            self.inner.destroy(c).await;
        }
    }

    /// Memory of every idle container: (container id, its cgroup's
    /// `memory.current`, the RSS of its `containerd-shim-runc-v2`), bytes.
    pub fn memory(&self) -> Result<Vec<(String, u64, u64)>> {
        let ids: Vec<String> = self
            .inner
            .idle
            .lock()
            .unwrap()
            .values()
            .flatten()
            .map(|c| c.id.clone())
            .collect();
        let tasks = self.inner.ctd.ctr_ok(&["task", "ls"])?;
        let mut out = vec![];
        for id in ids {
            let pid: u32 = tasks
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.first() == Some(&id.as_str())).then(|| f.get(1)?.parse().ok())?
                })
                .with_context(|| format!("container {id} is not in `ctr task ls`"))?;
            let cgroup = cgroup_memory(pid)?;
            let shim = parent_pid(pid)
                .and_then(crate::server::rss_bytes)
                .with_context(|| format!("the shim of container {id}"))?;
            out.push((id, cgroup, shim));
        }
        Ok(out)
    }
}

impl Drop for Invoker {
    fn drop(&mut self) {
        self.server.abort();
        // The containerd (and with it every container) goes when the last
        // reference to `inner` does: on drop of `Containerd`.
    }
}

/// The memory of the cgroup of process `pid` as `docker stats` counts it:
/// usage less the inactive file cache (cgroup v2 `memory.current` less
/// `inactive_file`; v1 `memory.usage_in_bytes` less `total_inactive_file`).
fn cgroup_memory(pid: u32) -> Result<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let v1 = cg.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrl, path) = (f.next()?, f.next()?, f.next()?);
        ctrl.split(',')
            .any(|c| c == "memory")
            .then(|| path.to_string())
    });
    let (dir, usage, inactive) = match v1 {
        Some(p) => (
            format!("/sys/fs/cgroup/memory{p}"),
            "memory.usage_in_bytes",
            "total_inactive_file",
        ),
        None => {
            let p = cg
                .lines()
                .find_map(|l| l.strip_prefix("0::"))
                .context("no memory cgroup in /proc/PID/cgroup")?;
            (
                format!("/sys/fs/cgroup{}", p.trim()),
                "memory.current",
                "inactive_file",
            )
        }
    };
    let read = |f: &str| {
        std::fs::read_to_string(format!("{dir}/{f}")).with_context(|| format!("reading {dir}/{f}"))
    };
    let used: u64 = read(usage)?.trim().parse()?;
    let stat = read("memory.stat")?;
    let cache: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix(inactive)?.trim().parse().ok())
        .unwrap_or(0);
    Ok(used.saturating_sub(cache))
}

fn parent_pid(pid: u32) -> Result<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = s.rsplit_once(')').context("bad stat")?.1;
    Ok(rest.split_whitespace().nth(1).context("no ppid")?.parse()?)
}

/// A free local port (bound and released; the proxy binds it next).
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

type Resp = hyper::Response<Full<Bytes>>;

fn reply(status: u16, body: &Value, cold: bool) -> Resp {
    let mut r = hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if cold {
        r = r.header("wisp-cold", "true");
    }
    r.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

impl Inner {
    async fn serve(self: &Arc<Self>, req: hyper::Request<hyper::body::Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        let Some(action) = path
            .strip_prefix("/api/v1/namespaces/_/actions/")
            .map(String::from)
        else {
            return reply(
                404,
                &json!({"error": "The requested resource does not exist."}),
                false,
            );
        };
        if req.method() != Method::POST {
            return reply(405, &json!({"error": "only invokes"}), false);
        }
        let body = match req.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return reply(400, &json!({"error": e.to_string()}), false),
        };
        let params: Value = if body.is_empty() {
            json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    return reply(
                        400,
                        &json!({"error": "the body must be a JSON object"}),
                        false,
                    );
                }
            }
        };
        match self.activate(&action, params).await {
            Ok((result, cold)) => {
                let status = if result.get("error").is_some() {
                    502
                } else {
                    200
                };
                reply(status, &result, cold)
            }
            Err(e) => reply(502, &json!({"error": format!("{e:#}")}), false),
        }
    }

    /// One activation: a container of the action (warm or new), `/run`, the
    /// container back to the idle pool (or removed if it failed).
    async fn activate(self: &Arc<Self>, action: &str, params: Value) -> Result<(Value, bool)> {
        let main = self
            .actions
            .lock()
            .unwrap()
            .get(action)
            .cloned()
            .with_context(|| format!("no action {action}"))?;
        let (c, cold) = self.acquire(action, &main).await?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let run = json!({"value": params, "namespace": "_", "action_name": action,
                         "activation_id": format!("{id:032x}"), "deadline": 0});
        let r = self
            .http
            .send(
                Method::POST,
                &format!("http://127.0.0.1:{}/run", c.port),
                &[("content-type", "application/json")],
                Bytes::from(run.to_string()),
            )
            .await;
        match r {
            Ok(r) if r.status == 200 || r.status == 502 => {
                let v: Value =
                    serde_json::from_slice(&r.body).unwrap_or(json!({"error": r.text()}));
                self.release(action, c);
                Ok((v, cold))
            }
            Ok(r) => {
                self.destroy(c).await;
                bail!("/run answered {}: {}", r.status, r.text())
            }
            Err(e) => {
                self.destroy(c).await;
                Err(e.context("/run"))
            }
        }
    }

    async fn acquire(self: &Arc<Self>, action: &str, main: &str) -> Result<(Container, bool)> {
        loop {
            if let Some(c) = self.idle.lock().unwrap().get_mut(action).and_then(Vec::pop) {
                return Ok((c, false));
            }
            if self.live.fetch_add(1, Ordering::SeqCst) < self.cap.load(Ordering::SeqCst) {
                return match self.create(action, main).await {
                    Ok(c) => Ok((c, true)),
                    Err(e) => {
                        self.live.fetch_sub(1, Ordering::SeqCst);
                        self.freed.notify_waiters();
                        Err(e)
                    }
                };
            }
            self.live.fetch_sub(1, Ordering::SeqCst);
            // Full: remove an idle container of another action, or wait.
            let victim = {
                let mut idle = self.idle.lock().unwrap();
                idle.iter_mut()
                    .filter(|(a, _)| a.as_str() != action)
                    .find_map(|(_, v)| v.pop())
            };
            match victim {
                Some(v) => {
                    self.removed.fetch_add(1, Ordering::Relaxed);
                    self.destroy(v).await;
                }
                None => {
                    let _ = tokio::time::timeout(Duration::from_millis(20), self.freed.notified())
                        .await;
                }
            }
        }
    }

    fn release(&self, action: &str, c: Container) {
        self.idle
            .lock()
            .unwrap()
            .entry(action.into())
            .or_default()
            .push(c);
        self.freed.notify_waiters();
    }

    /// A new container of `action`: `ctr run -d`, then `/init` until the
    /// proxy answers.
    async fn create(&self, action: &str, main: &str) -> Result<Container> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!(
            "ow-{n}-{}",
            action.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        );
        let port = free_port()?;
        let t0 = Instant::now();
        let out = self
            .ctd
            .ctr_async(&[
                "run".into(),
                "-d".into(),
                "--net-host".into(),
                "--env".into(),
                format!("PORT={port}"),
                self.image.clone(),
                id.clone(),
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .context("running ctr")?;
        anyhow::ensure!(
            out.status.success(),
            "ctr run -d {id} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let create_ms = t0.elapsed().as_secs_f64() * 1e3;
        let c = Container { id, port };
        let t1 = Instant::now();
        let init = json!({"value": {"name": action, "main": main, "binary": true, "code": ""}});
        loop {
            match self
                .http
                .send(
                    Method::POST,
                    &format!("http://127.0.0.1:{port}/init"),
                    &[("content-type", "application/json")],
                    Bytes::from(init.to_string()),
                )
                .await
            {
                Ok(r) if r.status == 200 => break,
                Ok(r) => {
                    let msg = format!("/init of {} answered {}: {}", c.id, r.status, r.text());
                    self.kill(&c).await;
                    bail!(msg);
                }
                Err(_) if t1.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => {
                    let msg = format!("the proxy of {} did not answer in 30 s: {e:#}", c.id);
                    self.kill(&c).await;
                    bail!(msg);
                }
            }
        }
        self.colds.lock().unwrap().push(ColdStart {
            action: action.into(),
            create_ms,
            init_ms: t1.elapsed().as_secs_f64() * 1e3,
        });
        Ok(c)
    }

    /// Remove a live container and free its place under the cap.
    async fn destroy(&self, c: Container) {
        self.kill(&c).await;
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.freed.notify_waiters();
    }

    /// Kill and remove a container (its task, then it and its snapshot).
    async fn kill(&self, c: &Container) {
        let _ = self
            .ctd
            .ctr_async(&["task".into(), "delete".into(), "-f".into(), c.id.clone()])
            .output()
            .await;
        let _ = self
            .ctd
            .ctr_async(&["container".into(), "rm".into(), c.id.clone()])
            .output()
            .await;
    }
}
