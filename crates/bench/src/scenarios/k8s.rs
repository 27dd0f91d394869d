//! Scenario `k8s` (opt-in), the orchestration study's Fig. 4–5 on a whole
//! single-node Kubernetes 1.20 cluster: `scripts/k8s-local start --node`
//! (kubelet over CRI to a private containerd whose runtime `wisp` is the
//! Wisp shim, CNI bridge, kube-proxy in iptables mode), started in a state
//! directory of its own and removed at the end.
//!
//! For N replicas, the time from creating the objects to all N pods Ready,
//! and to the first HTTP response through the Service's ClusterIP, three
//! ways in the same run, alternating their order:
//!
//! - **WasmApp**: a `WasmApp` reconciled by `wisp-operator` (a process under
//!   its ServiceAccount's identity) into a Deployment (`runtimeClassName:
//!   wisp`) and a Service;
//! - **Deployment, Wisp shim**: the same Wasm image in a Deployment and a
//!   Service written here (no operator in the path);
//! - **Deployment, runc**: the function's native build in a runc container,
//!   served as CGI by busybox `httpd` (a fresh process per request, as Wisp
//!   runs a fresh instance per request); the image holds the static busybox,
//!   the binary and its `ldd` libraries ([`crate::images::native_layout`]).
//!
//! Times are taken two ways: from the pods' status timestamps, as the study
//! did (the Ready condition's `lastTransitionTime` against the object's
//! `creationTimestamp`; the API server keeps whole seconds), and by this
//! process with millisecond resolution (a `kubectl get pods --watch` stream
//! and an HTTP probe every 10 ms).

use crate::images::{Image, native_image_with, wasm_image_with};
use crate::plot;
use crate::report::{Section, num, pval, table};
use crate::stats::{Summary, mann_whitney, percentile};
use crate::{Ctx, http::Http};
use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use wisp_oci::layout::LayerEntry;

/// The namespace every measured object lives in.
const NS: &str = "wisp-bench";
/// The function measured: a CGI program with a native build.
const FUNCTION: &str = "hello";
/// The study's replica counts.
const REPLICAS: [usize; 3] = [1, 5, 20];
/// How long one run may take to become Ready or to go away.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// The port the pods listen on (the Service's is 80).
const POD_PORT: u16 = 8080;
/// The scenario's cluster: its own state directory (under the scratch
/// directory) and ports, so a `scripts/k8s-local` of the user's is left alone.
const API_PORT: &str = "16643";
const ETCD_PORT: &str = "23990";

/// One way of running N replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Arm {
    WasmApp,
    WispDeployment,
    RuncDeployment,
}

const ARMS: [Arm; 3] = [Arm::WasmApp, Arm::WispDeployment, Arm::RuncDeployment];

impl Arm {
    fn title(self) -> &'static str {
        match self {
            Arm::WasmApp => "WasmApp (operator, Wisp shim)",
            Arm::WispDeployment => "Deployment, Wisp shim",
            Arm::RuncDeployment => "Deployment, runc",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Arm::WasmApp => "wasmapp",
            Arm::WispDeployment => "deployment_wisp",
            Arm::RuncDeployment => "deployment_runc",
        }
    }
    fn short(self) -> &'static str {
        match self {
            Arm::WasmApp => "wa",
            Arm::WispDeployment => "dw",
            Arm::RuncDeployment => "dr",
        }
    }
    /// The URL path that runs the function.
    fn path(self) -> &'static str {
        match self {
            Arm::RuncDeployment => "/cgi-bin/hello",
            _ => "/",
        }
    }
}

/// The cluster of this scenario, removed (`scripts/k8s-local clean`) on drop.
struct Node {
    script: PathBuf,
    env: Vec<(&'static str, String)>,
    dir: PathBuf,
    sock: PathBuf,
}

impl Node {
    fn start(ctx: &Ctx, shim: &Path) -> Result<Node> {
        let root = repo_root(ctx)?;
        let script = root.join("scripts/k8s-local");
        anyhow::ensure!(script.is_file(), "{} is missing", script.display());
        let dir = std::path::absolute(ctx.scratch("k8s"))?;
        let env = vec![
            ("WISP_K8S_DIR", dir.display().to_string()),
            ("WISP_K8S_PORT", API_PORT.to_string()),
            ("WISP_K8S_ETCD_PORT", ETCD_PORT.to_string()),
            ("WISP_SHIM", shim.display().to_string()),
            ("WISP_BIN", ctx.opts.wisp_bin.display().to_string()),
        ];
        let node = Node {
            script,
            env,
            sock: dir.join("node/containerd.sock"),
            dir,
        };
        ctx.progress("k8s: scripts/k8s-local build (cached after the first time, ~15 min then)");
        node.run(&["build"])?;
        ctx.progress("k8s: starting a single-node cluster (scripts/k8s-local start --node)");
        node.run(&["start", "--node"])?;
        Ok(node)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.script);
        c.args(args).envs(self.env.iter().map(|(k, v)| (*k, v)));
        c
    }

    /// Run the script; fail with its stderr.
    fn run(&self, args: &[&str]) -> Result<String> {
        let o = self
            .cmd(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", self.script.display()))?;
        if !o.status.success() {
            bail!(
                "scripts/k8s-local {} failed ({}):\n{}",
                args.join(" "),
                o.status,
                tail(&o.stderr, 3000)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    /// `kubectl ARGS` as the admin, `input` on stdin.
    async fn kubectl(&self, args: &[&str], input: Option<&str>) -> Result<String> {
        let mut c = tokio::process::Command::from(self.cmd(&["kubectl"]));
        c.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn().context("spawning kubectl")?;
        if let Some(i) = input {
            use tokio::io::AsyncWriteExt;
            let mut stdin = child.stdin.take().context("kubectl's stdin")?;
            stdin.write_all(i.as_bytes()).await?;
        }
        let o = child.wait_with_output().await?;
        if !o.status.success() {
            bail!(
                "kubectl {} failed: {}",
                args.join(" "),
                tail(&o.stderr, 2000)
            );
        }
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    }

    async fn json(&self, args: &[&str]) -> Result<Value> {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        let out = self.kubectl(&a, None).await?;
        serde_json::from_str(&out).with_context(|| format!("kubectl {}: not JSON", args.join(" ")))
    }

    /// Tasks on the node's containerd (every pod's sandbox and containers).
    fn tasks(&self) -> Result<usize> {
        let o = Command::new("ctr")
            .arg("-a")
            .arg(&self.sock)
            .args(["-n", "k8s.io", "task", "ls", "-q"])
            .output()
            .context("running ctr")?;
        anyhow::ensure!(
            o.status.success(),
            "ctr task ls: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(String::from_utf8_lossy(&o.stdout).lines().count())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self
            .cmd(&["clean"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn tail(b: &[u8], n: usize) -> String {
    let s = String::from_utf8_lossy(b);
    s[s.len().saturating_sub(n)..].trim().to_string()
}

/// The repository: the manifest is `<repo>/functions/target/manifest.json`.
fn repo_root(ctx: &Ctx) -> Result<PathBuf> {
    let m = std::path::absolute(&ctx.opts.manifest)?;
    m.ancestors()
        .nth(3)
        .filter(|r| r.join("scripts/k8s-local").is_file())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "scripts/k8s-local not found from the manifest {} (run from a clone of the repository)",
                m.display()
            )
        })
}

/// Why this scenario can't run here (`None` when it can).
fn unavailable(ctx: &Ctx) -> Option<String> {
    if let Some(why) = crate::containerd::unavailable() {
        return Some(why);
    }
    if repo_root(ctx).is_err() {
        return Some("scripts/k8s-local is not next to the manifest".into());
    }
    let bb = Path::new(BUSYBOX);
    if !bb.is_file() || !crate::runc::ldd_libs(bb).is_empty() {
        return Some(format!(
            "a static {BUSYBOX} is needed for the runc side's HTTP server (apt-get install busybox-static)"
        ));
    }
    None
}

/// Static busybox: the runc side's CGI server (`httpd`).
const BUSYBOX: &str = "/bin/busybox";

/// The objects of one run, as YAML for `kubectl apply -f -`.
fn manifest(arm: Arm, name: &str, n: usize, image: &str) -> String {
    let labels = format!("{{wisp.dev/app: {name}, app.kubernetes.io/name: {name}}}");
    match arm {
        Arm::WasmApp => format!(
            "apiVersion: wisp.dev/v1alpha1\nkind: WasmApp\nmetadata: {{name: {name}, namespace: {NS}}}\n\
             spec: {{image: \"{image}\", replicas: {n}, port: {POD_PORT}}}\n"
        ),
        Arm::WispDeployment | Arm::RuncDeployment => {
            // As the operator writes it for the Wisp side (a TCP readiness
            // probe on the port, no service account token, no service
            // links), so the two Deployments differ only in the runtime.
            let runtime = if arm == Arm::WispDeployment {
                "      runtimeClassName: wisp\n"
            } else {
                ""
            };
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {NS}, labels: {labels}}}\n\
                 spec:\n  replicas: {n}\n  selector: {{matchLabels: {{wisp.dev/app: {name}}}}}\n  template:\n    \
                 metadata: {{labels: {labels}}}\n    spec:\n{runtime}      automountServiceAccountToken: false\n      \
                 enableServiceLinks: false\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: app\n        \
                 image: \"{image}\"\n        imagePullPolicy: IfNotPresent\n        env: [{{name: WISP_LISTEN, value: \"0.0.0.0:{POD_PORT}\"}}]\n        \
                 ports: [{{name: http, containerPort: {POD_PORT}}}]\n        \
                 readinessProbe: {{tcpSocket: {{port: http}}, periodSeconds: 1}}\n\
                 ---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {NS}, labels: {labels}}}\n\
                 spec:\n  selector: {{wisp.dev/app: {name}}}\n  ports: [{{name: http, port: 80, targetPort: http}}]\n"
            )
        }
    }
}

/// `kubectl get pods --watch -o json` for one app: when each pod was first
/// seen Ready, by this process's clock.
struct Watch {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<(Instant, Value)>,
}

impl Watch {
    fn start(node: &Node, name: &str) -> Result<Watch> {
        let mut child = node
            .cmd(&["kubectl"])
            .args(["-n", NS, "get", "pods", "--watch", "-o", "json", "-l"])
            .arg(format!("wisp.dev/app={name}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning kubectl get pods --watch")?;
        let out = child.stdout.take().context("kubectl's stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let stream = serde_json::Deserializer::from_reader(std::io::BufReader::new(out));
            for v in stream.into_iter::<Value>() {
                let Ok(v) = v else { break };
                if tx.send((Instant::now(), v)).is_err() {
                    break;
                }
            }
        });
        Ok(Watch { child, rx })
    }

    /// Drain what arrived: pod name → first time seen with its container
    /// running, and Ready.
    fn poll(&self, running: &mut BTreeMap<String, Instant>, ready: &mut BTreeMap<String, Instant>) {
        while let Ok((at, pod)) = self.rx.try_recv() {
            let Some(n) = pod["metadata"]["name"].as_str() else {
                continue;
            };
            if is_running(&pod) {
                running.entry(n.to_string()).or_insert(at);
            }
            if is_ready(&pod) {
                ready.entry(n.to_string()).or_insert(at);
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_running(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["containerStatuses"]
            .as_array()
            .is_some_and(|cs| {
                !cs.is_empty() && cs.iter().all(|c| c["state"]["running"].is_object())
            })
}

fn is_ready(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// An RFC 3339 time of the API server (whole seconds, UTC), as Unix seconds.
fn api_time(v: &Value) -> Option<f64> {
    let s = v.as_str()?;
    // 2026-12-03T09:10:11Z
    let (d, t) = s.trim_end_matches('Z').split_once('T')?;
    let mut d = d.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = t.split(':');
    let (hh, mm): (i64, i64) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?);
    let ss: f64 = t.next()?.parse().ok()?;
    // Days since 1970-01-01 (civil calendar, Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
}

/// One measured run.
#[derive(Debug, Clone)]
struct RunResult {
    arm: Arm,
    n: usize,
    /// Created → first 200 with the function's answer through the ClusterIP, ms.
    first_response_ms: f64,
    /// Created → all N pods' containers seen running (watch), ms.
    all_running_ms: f64,
    /// Created → all N pods seen Ready (watch), ms.
    all_ready_ms: f64,
    /// Created → each pod seen Ready, ms.
    pod_ready_ms: Vec<f64>,
    /// From the status timestamps: object created → last pod Ready, s.
    all_ready_status_s: f64,
    /// From the status timestamps: each pod's creation → its Ready, s.
    pod_startup_status_s: Vec<f64>,
}

/// Create, measure, delete; the node is idle again when this returns.
async fn one_run(
    node: &Node,
    http: &Http,
    arm: Arm,
    n: usize,
    name: &str,
    image: &str,
    expect: &str,
) -> Result<RunResult> {
    let watch = Watch::start(node, name)?;
    // Give the watch its initial (empty) list before the clock starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t0 = Instant::now();
    node.kubectl(&["apply", "-f", "-"], Some(&manifest(arm, name, n, image)))
        .await?;
    let result = measure(node, http, &watch, arm, n, name, expect, t0).await;
    drop(watch);
    let kind = if arm == Arm::WasmApp {
        "wasmapp"
    } else {
        "deployment,service"
    };
    node.kubectl(&["-n", NS, "delete", kind, name, "--wait=false"], None)
        .await?;
    let t1 = Instant::now();
    loop {
        let pods = node
            .kubectl(
                &[
                    "-n",
                    NS,
                    "get",
                    "pods",
                    "-o",
                    "name",
                    "-l",
                    &format!("wisp.dev/app={name}"),
                ],
                None,
            )
            .await?;
        if pods.trim().is_empty() && node.tasks()? == 0 {
            break;
        }
        if t1.elapsed() > RUN_LIMIT {
            bail!("{name}: pods or tasks still there {RUN_LIMIT:?} after delete: {pods}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    node: &Node,
    http: &Http,
    watch: &Watch,
    arm: Arm,
    n: usize,
    name: &str,
    expect: &str,
    t0: Instant,
) -> Result<RunResult> {
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1e3;
    let mut ready: BTreeMap<String, Instant> = BTreeMap::new();
    let mut running: BTreeMap<String, Instant> = BTreeMap::new();
    let mut cluster_ip: Option<String> = None;
    let mut first: Option<Instant> = None;
    let mut last_ip_check = Instant::now() - Duration::from_secs(1);
    let mut last_err = String::new();
    while first.is_none() || ready.len() < n {
        if t0.elapsed() > RUN_LIMIT {
            bail!(
                "{name}: after {RUN_LIMIT:?}, {} of {n} pods Ready, first response {}; last: {last_err}",
                ready.len(),
                if first.is_some() { "seen" } else { "not seen" }
            );
        }
        watch.poll(&mut running, &mut ready);
        if cluster_ip.is_none() && last_ip_check.elapsed() > Duration::from_millis(200) {
            // The operator makes the WasmApp's Service; ask until it exists.
            last_ip_check = Instant::now();
            if let Ok(ip) = node
                .kubectl(
                    &[
                        "-n",
                        NS,
                        "get",
                        "service",
                        name,
                        "-o",
                        "jsonpath={.spec.clusterIP}",
                    ],
                    None,
                )
                .await
                && !ip.trim().is_empty()
            {
                cluster_ip = Some(ip.trim().to_string());
            }
        }
        if first.is_none()
            && let Some(ip) = &cluster_ip
        {
            let url = format!("http://{ip}{}", arm.path());
            match tokio::time::timeout(Duration::from_millis(300), http.get(&url)).await {
                Ok(Ok(r)) if r.status == 200 && r.text().contains(expect) => {
                    first = Some(Instant::now())
                }
                Ok(Ok(r)) => last_err = format!("{url}: {} {}", r.status, r.text()),
                Ok(Err(e)) => last_err = format!("{e:#}"),
                Err(_) => last_err = format!("{url}: no answer in 300 ms"),
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = first.expect("loop ends with a response");
    let all_ready = ready.values().max().copied().unwrap_or(t0);
    // A pod seen Ready in one event may never have been seen merely running.
    for (pod, at) in &ready {
        running.entry(pod.clone()).or_insert(*at);
    }
    let all_running = running.values().max().copied().unwrap_or(t0);

    // The status timestamps, as the study read them.
    let pods = node
        .json(&[
            "-n",
            NS,
            "get",
            "pods",
            "-l",
            &format!("wisp.dev/app={name}"),
        ])
        .await?;
    let obj = if arm == Arm::WasmApp {
        node.json(&["-n", NS, "get", "wasmapp", name]).await?
    } else {
        node.json(&["-n", NS, "get", "deployment", name]).await?
    };
    let created = api_time(&obj["metadata"]["creationTimestamp"])
        .context("the object's creationTimestamp")?;
    let mut startup = vec![];
    let mut last_ready = created;
    let want_runtime = if arm == Arm::RuncDeployment {
        Value::Null
    } else {
        json!("wisp")
    };
    for p in pods["items"].as_array().into_iter().flatten() {
        anyhow::ensure!(
            p["spec"]["runtimeClassName"] == want_runtime,
            "{name}: pod {} has runtimeClassName {}",
            p["metadata"]["name"],
            p["spec"]["runtimeClassName"]
        );
        let Some(r) = p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready" && c["status"] == "True")
            .and_then(|c| api_time(&c["lastTransitionTime"]))
        else {
            continue;
        };
        if let Some(c) = api_time(&p["metadata"]["creationTimestamp"]) {
            startup.push(r - c);
        }
        last_ready = last_ready.max(r);
    }
    Ok(RunResult {
        arm,
        n,
        first_response_ms: ms(first),
        all_running_ms: ms(all_running),
        all_ready_ms: ms(all_ready),
        pod_ready_ms: ready.values().map(|t| ms(*t)).collect(),
        all_ready_status_s: last_ready - created,
        pod_startup_status_s: startup,
    })
}

/// Both images of the function, built here.
fn images(ctx: &Ctx, dir: &Path) -> Result<(Image, Image)> {
    let wasm = ctx.wasm(FUNCTION)?;
    let mut ann = BTreeMap::new();
    ann.insert("wisp.abi".to_string(), "http".to_string());
    let w = wasm_image_with(&format!("wisp-bench/{FUNCTION}:wasm"), &wasm, ann, dir)?;
    let mut config = serde_json::Map::new();
    config.insert(
        "Entrypoint".into(),
        json!([
            BUSYBOX,
            "httpd",
            "-f",
            "-p",
            POD_PORT.to_string(),
            "-h",
            "/www"
        ]),
    );
    let busybox = std::fs::read(BUSYBOX).with_context(|| format!("reading {BUSYBOX}"))?;
    let native = native_image_with(
        &format!("wisp-bench/{FUNCTION}:httpd"),
        ctx.native(FUNCTION)?,
        vec![
            LayerEntry::File(BUSYBOX.into(), busybox, 0o755),
            LayerEntry::Symlink(format!("/www/cgi-bin/{FUNCTION}"), format!("/{FUNCTION}")),
        ],
        config,
        dir,
    )?;
    Ok((w, native))
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let mut sec = Section::new(
        "k8s",
        "Kubernetes: N replicas to Ready and to a first response, Wisp shim against runc",
    );
    if let Some(why) = unavailable(ctx) {
        sec.para(&format!("**Not measured:** {why}."));
        sec.json = json!({"available": false, "why": why});
        return Ok(sec);
    }
    let shim = ctx.opts.shim_bin.clone().context(
        "no containerd-shim-wisp-v1 given (build it with cargo build --release -p wisp-shim)",
    )?;
    let operator =
        ctx.opts.operator_bin.clone().context(
            "no wisp-operator given (build it with cargo build --release -p wisp-operator)",
        )?;
    for (p, pkg) in [(&shim, "wisp-shim"), (&operator, "wisp-operator")] {
        anyhow::ensure!(
            p.is_file(),
            "{} is missing: build it with cargo build --release -p {pkg}",
            p.display()
        );
    }
    let counts: Vec<usize> = ctx
        .opts
        .k8s_replicas
        .clone()
        .unwrap_or_else(|| ctx.pick(vec![1], REPLICAS.to_vec()));
    let reps = ctx.opts.k8s_runs.unwrap_or(ctx.pick(1, 5)).max(1);

    let img_dir = ctx.scratch("k8s-images");
    std::fs::create_dir_all(&img_dir)?;
    ctx.progress("k8s: building the images");
    let (wasm_img, native_img) = images(ctx, &img_dir)?;
    let node = Node::start(ctx, &shim)?;
    node.run(&[
        "import",
        &wasm_img.tar.display().to_string(),
        &native_img.tar.display().to_string(),
    ])?;

    let deploy = repo_root(ctx)?.join("deploy");
    let mut apply: Vec<String> = vec!["apply".into()];
    for f in [
        "namespace.yaml",
        "crd.yaml",
        "rbac.yaml",
        "runtimeclass.yaml",
    ] {
        apply.push("-f".into());
        apply.push(deploy.join(f).display().to_string());
    }
    node.kubectl(&apply.iter().map(String::as_str).collect::<Vec<_>>(), None)
        .await?;
    node.kubectl(
        &[
            "wait",
            "--for",
            "condition=established",
            "--timeout",
            "60s",
            "crd/wasmapps.wisp.dev",
        ],
        None,
    )
    .await?;
    let _ = node.kubectl(&["create", "namespace", NS], None).await;
    let op_log = std::fs::File::create(ctx.scratch("wisp-operator.log"))?;
    let op_kubeconfig = node.dir.join("operator.kubeconfig");
    let mut op = tokio::process::Command::new(&operator)
        .args(["run", "--namespace", NS, "--metrics-addr", "127.0.0.1:0"])
        .args([
            "--lease-namespace",
            "wisp-system",
            "--lease-name",
            "wisp-bench",
        ])
        .env("KUBECONFIG", &op_kubeconfig)
        .stdout(Stdio::null())
        .stderr(op_log)
        .kill_on_drop(true)
        .spawn()
        .context("starting wisp-operator")?;

    let http = Http::new(false);
    let expect = "Hello, world!";
    let image = |arm: Arm| match arm {
        Arm::RuncDeployment => native_img.name.clone(),
        _ => wasm_img.name.clone(),
    };
    // Warm-up, not counted: the shim compiles the module into the node's
    // cache, and every image's files get into the page cache.
    for arm in ARMS {
        ctx.progress(&format!("k8s: warm-up, {}", arm.title()));
        one_run(
            &node,
            &http,
            arm,
            1,
            &format!("warm-{}", arm.short()),
            &image(arm),
            expect,
        )
        .await
        .with_context(|| format!("warm-up of {}", arm.title()))?;
    }
    let total_runs = (counts.len() * ARMS.len() * reps) as u64;
    let bar = crate::progress::counter(
        &format!("k8s: {} replica counts × 3 ways × {reps}", counts.len()),
        total_runs,
    );
    let mut results = vec![];
    for rep in 0..reps {
        for &n in &counts {
            let mut order = ARMS.to_vec();
            order.rotate_left(rep % ARMS.len());
            for arm in order {
                bar.inc();
                let name = format!("{}-{n}-{rep}", arm.short());
                let r = one_run(&node, &http, arm, n, &name, &image(arm), expect)
                    .await
                    .with_context(|| {
                        format!("{} with {n} replicas (repetition {})", arm.title(), rep + 1)
                    })?;
                results.push(r);
            }
        }
    }
    let _ = op.start_kill();
    let _ = op.wait().await;
    drop(node);
    write_report(&mut sec, &results, &counts, reps, &wasm_img, &native_img);
    Ok(sec)
}

fn select(rs: &[RunResult], arm: Arm, n: usize) -> Vec<&RunResult> {
    rs.iter().filter(|r| r.arm == arm && r.n == n).collect()
}

fn write_report(
    sec: &mut Section,
    rs: &[RunResult],
    counts: &[usize],
    reps: usize,
    wasm: &Image,
    native: &Image,
) {
    sec.para(&format!(
        "A single-node Kubernetes 1.20.2 cluster on this machine (`scripts/k8s-local start --node`: kube-apiserver, \
         controller manager, scheduler, kubelet with the cgroupfs driver over CRI to containerd 1.6, CNI bridge, \
         kube-proxy in iptables mode), started for this run. The function is `{FUNCTION}`: its Wasm image \
         (`wisp image build`, {}) runs under the Wisp shim (RuntimeClass `wisp`); its native build runs in a runc \
         container, served as CGI by a static busybox `httpd` (image {}, the binary with its `ldd` libraries). \
         Both images are imported beforehand, as pre-pulled images. Three ways, in the same run, rotating their order \
         each repetition: a **WasmApp** (wisp-operator makes the Deployment and the Service), the same **Deployment \
         with the Wisp shim** written directly, and a **Deployment with runc**; each Deployment has a TCP readiness \
         probe every second, as the operator writes it. A warm-up run of each (1 replica) comes first and is not counted \
         (the shim compiles the module into the node's cache then). {reps} repetition(s) per replica count; between \
         runs everything is deleted and the node is idle (no pod, no task). **Running**: from `kubectl apply` to the \
         last pod's container seen running by a `kubectl get pods --watch` (the runtimes' start, without the probe); \
         **Ready**: to the last pod seen Ready (the readiness probe, every second, passed); **first response**: to the first `200` with the function's \
         answer through the Service's ClusterIP (kube-proxy, whose rules follow endpoints at most once a second); \
         **status**: the same from the pods' status timestamps (Ready's `lastTransitionTime` − the object's \
         `creationTimestamp`; whole seconds), as the study measured. Times in ms (status in s), median and p95 over \
         the repetitions; ratios are of the medians; p from Mann–Whitney U.",
        crate::report::bytes(wasm.content_bytes as f64),
        crate::report::bytes(native.content_bytes as f64),
    ));
    let med = |xs: &[f64]| percentile(xs, 50.0);
    let p95 = |xs: &[f64]| percentile(xs, 95.0);
    let field =
        |v: &[&RunResult], f: fn(&RunResult) -> f64| v.iter().map(|r| f(r)).collect::<Vec<f64>>();
    let mut rows = vec![];
    let mut arms_json = serde_json::Map::new();
    for &n in counts {
        let get = |arm| select(rs, arm, n);
        let (wa, dw, dr) = (
            get(Arm::WasmApp),
            get(Arm::WispDeployment),
            get(Arm::RuncDeployment),
        );
        for (what, f) in [
            (
                "all running",
                (|r: &RunResult| r.all_running_ms) as fn(&RunResult) -> f64,
            ),
            ("all Ready", |r: &RunResult| r.all_ready_ms),
            ("first response", |r: &RunResult| r.first_response_ms),
        ] {
            let (a, b, c) = (field(&wa, f), field(&dw, f), field(&dr, f));
            rows.push(vec![
                n.to_string(),
                what.to_string(),
                format!("{} / {}", num(med(&a)), num(p95(&a))),
                format!("{} / {}", num(med(&b)), num(p95(&b))),
                format!("{} / {}", num(med(&c)), num(p95(&c))),
                format!("{:.2}", med(&b) / med(&c)),
                pval(&mann_whitney(&b, &c)),
                format!("{:.2}", med(&a) / med(&b)),
            ]);
        }
        let s = |v: &[&RunResult]| field(v, |r| r.all_ready_status_s);
        rows.push(vec![
            n.to_string(),
            "all Ready (status, s)".into(),
            format!("{} / {}", num(med(&s(&wa))), num(p95(&s(&wa)))),
            format!("{} / {}", num(med(&s(&dw))), num(p95(&s(&dw)))),
            format!("{} / {}", num(med(&s(&dr))), num(p95(&s(&dr)))),
            format!("{:.2}", med(&s(&dw)) / med(&s(&dr))),
            pval(&mann_whitney(&s(&dw), &s(&dr))),
            format!("{:.2}", med(&s(&wa)) / med(&s(&dw))),
        ]);
        for (arm, v) in [
            (Arm::WasmApp, &wa),
            (Arm::WispDeployment, &dw),
            (Arm::RuncDeployment, &dr),
        ] {
            let pods: Vec<f64> = v.iter().flat_map(|r| r.pod_ready_ms.clone()).collect();
            let startup: Vec<f64> = v
                .iter()
                .flat_map(|r| r.pod_startup_status_s.clone())
                .collect();
            let e = arms_json.entry(arm.key()).or_insert_with(|| json!({}));
            e[n.to_string()] = json!({
                "all_running_ms": field(v, |r| r.all_running_ms),
                "all_ready_ms": field(v, |r| r.all_ready_ms),
                "first_response_ms": field(v, |r| r.first_response_ms),
                "all_ready_status_s": field(v, |r| r.all_ready_status_s),
                "all_ready": Summary::of(&field(v, |r| r.all_ready_ms)),
                "first_response": Summary::of(&field(v, |r| r.first_response_ms)),
                "pod_ready_ms": pods,
                "pod_startup_status_s": startup,
            });
        }
    }
    sec.markdown.push_str(&table(
        &[
            "replicas",
            "time to",
            "WasmApp median / p95",
            "Deployment, Wisp shim",
            "Deployment, runc",
            "Wisp / runc",
            "p",
            "WasmApp / Deployment (Wisp)",
        ],
        &rows,
    ));
    let cats: Vec<String> = counts.iter().map(|n| format!("{n} replica(s)")).collect();
    for (file, what, f) in [
        (
            "k8s_ready.svg",
            "all pods Ready",
            (|r: &RunResult| r.all_ready_ms) as fn(&RunResult) -> f64,
        ),
        (
            "k8s_first_response.svg",
            "first response through the Service",
            |r: &RunResult| r.first_response_ms,
        ),
    ] {
        let series: Vec<plot::BarSeries> = ARMS
            .iter()
            .map(|&arm| {
                (
                    arm.title().to_string(),
                    counts
                        .iter()
                        .map(|&n| {
                            let v = field(&select(rs, arm, n), f);
                            (med(&v), p95(&v) - med(&v))
                        })
                        .collect(),
                )
            })
            .collect();
        sec.plot(
            file,
            plot::bars(&format!("Time to {what}"), "ms (median, bar to p95)", &cats, &series, false),
            &format!("Time from `kubectl apply` to {what}, per replica count and way; median with a bar up to the p95."),
        );
    }
    let pods_seen: BTreeSet<usize> = rs.iter().map(|r| r.pod_ready_ms.len()).collect();
    sec.json = json!({
        "available": true,
        "function": FUNCTION,
        "replicas": counts,
        "repetitions": reps,
        "arms": arms_json,
        "images": {"wasm": {"name": wasm.name, "content": wasm.content_bytes},
                   "native": {"name": native.name, "content": native.content_bytes}},
        "pods_per_run_seen": pods_seen,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_times_parse_to_unix_seconds() {
        assert_eq!(api_time(&json!("1970-01-01T00:00:00Z")), Some(0.0));
        assert_eq!(
            api_time(&json!("2000-03-01T00:00:01Z")),
            Some(951_868_801.0)
        );
        assert_eq!(
            api_time(&json!("2026-12-03T09:10:11Z")),
            Some(1_796_289_011.0)
        );
        assert_eq!(api_time(&json!("nonsense")), None);
        assert_eq!(api_time(&Value::Null), None);
    }

    #[test]
    fn the_two_deployments_differ_only_in_the_runtime() {
        let w = manifest(Arm::WispDeployment, "x", 5, "img");
        let r = manifest(Arm::RuncDeployment, "x", 5, "img");
        assert_eq!(w.replace("      runtimeClassName: wisp\n", ""), r);
        assert_eq!(w.matches("---\n").count(), 1, "a Deployment and a Service");
        assert!(manifest(Arm::WasmApp, "x", 5, "img").contains("replicas: 5"));
    }
}
