//! The test cluster (scripts/k8s-local, started once per test run) and helpers:
//! clients, applying deploy/ manifests, operator processes, waiting.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::{Client, Config};
use std::future::Future;
use std::io::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/k8s-local");

/// The running control plane.
pub struct Cluster {
    admin: PathBuf,
    operator: PathBuf,
    /// The environment scripts/k8s-local runs with (its state directory, ports).
    #[allow(dead_code)] // used by tests/node
    env: &'static [(&'static str, &'static str)],
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
#[allow(dead_code)] // used by tests/node
static NODE_CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

#[allow(dead_code)] // used by tests/node
/// The single-node cluster's own state directory and ports: it never shares
/// etcd with the control-plane tests, which may run at the same time.
pub const NODE_ENV: &[(&str, &str)] = &[
    ("WISP_K8S_DIR", "/tmp/wisp-k8s-node-test"),
    ("WISP_K8S_PORT", "16543"),
    ("WISP_K8S_ETCD_PORT", "23890"),
];

fn script(env: &[(&str, &str)]) -> Command {
    let mut c = Command::new(SCRIPT);
    c.envs(env.iter().copied());
    c
}

extern "C" fn stop_cluster() {
    let _ = script(&[]).arg("stop").stdout(Stdio::null()).status();
}

#[allow(dead_code)] // used by tests/node
extern "C" fn clean_node_cluster() {
    let _ = script(NODE_ENV).arg("clean").stdout(Stdio::null()).status();
}

/// Fail (WISP_TEST_STRICT=1, WISP_K8S_REQUIRED=1) or skip loudly.
fn unavailable(msg: String) {
    // scripts/test sets WISP_TEST_STRICT=1 (shared with the other suites).
    for var in ["WISP_TEST_STRICT", "WISP_K8S_REQUIRED"] {
        if std::env::var(var).is_ok_and(|v| v == "1") {
            panic!("{msg} ({var}=1)");
        }
    }
    // Straight to stderr: the test harness captures eprintln! of passing tests.
    let bar = "!".repeat(100);
    let _ = writeln!(std::io::stderr(), "\n{bar}\n!!! SKIPPED: {msg}\n{bar}\n");
}

#[allow(dead_code)] // used by tests/node
/// A binary of this workspace, next to the test binary (`cargo test
/// --workspace` builds them all; with `-p wisp-operator`, build them first).
pub fn workspace_bin(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?; // target/<profile>/deps/x → target/<profile>
    let p = dir.join(name);
    p.is_file().then_some(p)
}

#[allow(dead_code)] // used by tests/node
/// The single-node cluster (`scripts/k8s-local start --node`: scheduler,
/// kubelet, kube-proxy, a private containerd with the Wisp shim as runtime
/// `wisp`), started on first use and removed (`clean`) when the test binary
/// exits. `None` (after a loud message) when it can't run here: not root, or
/// the Kubernetes binaries can't be built; WISP_TEST_STRICT=1 fails instead.
pub fn node_cluster() -> Option<&'static Cluster> {
    NODE_CLUSTER
        .get_or_init(|| {
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                unavailable("the single-node cluster needs root: its end-to-end tests were NOT RUN".into());
                return None;
            }
            let (Some(shim), Some(wisp)) = (
                workspace_bin("containerd-shim-wisp-v1"),
                workspace_bin("wisp"),
            ) else {
                panic!(
                    "containerd-shim-wisp-v1 and wisp must be built next to this test \
                     (cargo build -p wisp-shim -p wisp-cli)"
                );
            };
            let build = script(NODE_ENV).arg("build").status();
            if !build.as_ref().is_ok_and(|s| s.success()) {
                unavailable(format!(
                    "scripts/k8s-local build failed ({build:?}): the end-to-end tests on a node were NOT RUN"
                ));
                return None;
            }
            let t0 = Instant::now();
            let out = script(NODE_ENV)
                .args(["start", "--node"])
                .env("WISP_SHIM", &shim)
                .env("WISP_BIN", &wisp)
                .output()
                .expect("run scripts/k8s-local start --node");
            unsafe { libc::atexit(clean_node_cluster) };
            assert!(
                out.status.success(),
                "scripts/k8s-local start --node failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = writeln!(
                std::io::stderr(),
                "single-node cluster up in {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            let admin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            let operator = admin.with_file_name("operator.kubeconfig");
            Some(Cluster {
                admin,
                operator,
                env: NODE_ENV,
            })
        })
        .as_ref()
}

/// The cluster, started on first use. `None` (after a loud message) only when
/// kube-apiserver cannot be built here; with WISP_TEST_STRICT=1 (scripts/test) or
/// WISP_K8S_REQUIRED=1 that fails instead.
pub fn cluster() -> Option<&'static Cluster> {
    CLUSTER
        .get_or_init(|| {
            let build = Command::new(SCRIPT).arg("build").status();
            if !build.as_ref().is_ok_and(|s| s.success()) {
                unavailable(format!(
                    "scripts/k8s-local build failed ({build:?}): the operator's integration tests \
                     against a real API server were NOT RUN"
                ));
                return None;
            }
            let was_running = Command::new(SCRIPT)
                .arg("status")
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let out = Command::new(SCRIPT)
                .arg("start")
                .output()
                .expect("run scripts/k8s-local start");
            assert!(
                out.status.success(),
                "scripts/k8s-local start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            if !was_running {
                // Stop what we started when the test binary exits.
                unsafe { libc::atexit(stop_cluster) };
            }
            let admin = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
            let operator = admin.with_file_name("operator.kubeconfig");
            Some(Cluster {
                admin,
                operator,
                env: &[],
            })
        })
        .as_ref()
        .or_else(|| {
            let _ = writeln!(
                std::io::stderr(),
                "!!! SKIPPED (no local Kubernetes control plane): {}",
                std::thread::current().name().unwrap_or("a test")
            );
            None
        })
}

async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).expect("read kubeconfig");
    let cfg = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig");
    Client::try_from(cfg).expect("client")
}

impl Cluster {
    #[allow(dead_code)] // used by tests/node
    /// `scripts/k8s-local ARGS` for this cluster.
    pub fn script(&self, args: &[&str]) -> Command {
        let mut c = script(self.env);
        c.args(args);
        c
    }

    #[allow(dead_code)] // used by tests/node
    /// The admin kubeconfig.
    pub fn admin_kubeconfig(&self) -> &Path {
        &self.admin
    }

    /// A client in group system:masters.
    pub async fn admin(&self) -> Client {
        client_from(&self.admin).await
    }

    /// Everything a test needs before an operator can run: the namespace, the
    /// CRD, the RBAC and the RuntimeClass from deploy/, applied as an admin.
    pub async fn setup(&self) -> Client {
        let client = self.admin().await;
        for file in [
            "namespace.yaml",
            "crd.yaml",
            "rbac.yaml",
            "runtimeclass.yaml",
        ] {
            apply_file(&client, &Path::new(ROOT).join("deploy").join(file)).await;
        }
        let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
            Api::all(client.clone());
        eventually(
            "the WasmApp CRD to be established",
            Duration::from_secs(30),
            || async {
                let crd = crds
                    .get("wasmapps.wisp.dev")
                    .await
                    .map_err(|e| e.to_string())?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established
                    .then_some(())
                    .ok_or_else(|| "not established".to_string())
            },
        )
        .await;
        client
    }

    /// A fresh namespace for one test.
    pub async fn namespace(&self, client: &Client, prefix: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!(
            "{prefix}-{:x}{:x}",
            std::process::id() % 0xfff,
            nanos % 0xfffff
        );
        let ns: k8s_openapi::api::core::v1::Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        name
    }
}

/// Server-side apply every document of a YAML file, as `kubectl apply --server-side` would.
pub async fn apply_file(client: &Client, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value.clone()).unwrap();
        let tm = obj.types.clone().expect("apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&tm).unwrap();
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
            .await
            .unwrap_or_else(|e| panic!("discover {gvk:?}: {e}"));
        let api: Api<DynamicObject> = match caps.scope {
            kube::discovery::Scope::Namespaced => Api::namespaced_with(
                client.clone(),
                obj.metadata.namespace.as_deref().unwrap(),
                &ar,
            ),
            kube::discovery::Scope::Cluster => Api::all_with(client.clone(), &ar),
        };
        let name = obj.metadata.name.clone().unwrap();
        api.patch(
            &name,
            &PatchParams::apply("wisp-tests").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {} {name} from {}: {e}", tm.kind, path.display()));
    }
}

/// Poll `f` until it returns Ok, or panic after `timeout` with its last error.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if start.elapsed() > timeout => {
                panic!("timed out after {timeout:?} waiting for {what}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// A `wisp-operator run` process under the operator's ServiceAccount identity.
pub struct Operator {
    child: Child,
    pub identity: String,
    pub metrics_addr: String,
    log: Arc<Mutex<String>>,
}

impl Operator {
    /// Start one that watches `namespace` and campaigns for `wisp-system/<lease>`.
    pub fn start(cluster: &Cluster, namespace: &str, lease: &str, identity: &str) -> Operator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wisp-operator"))
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                "wisp-system",
            ])
            .args(["--lease-name", lease, "--identity", identity])
            .args([
                "--metrics-addr",
                "127.0.0.1:0",
                "--lease-duration",
                "3s",
                "--renew-every",
                "500ms",
            ])
            .env("KUBECONFIG", &cluster.operator)
            .env("WISP_LOG", "info,kube=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wisp-operator");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(i) = line.find("metrics listening on http://") {
                    let addr = line[i + "metrics listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send(addr);
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let metrics_addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                panic!("wisp-operator did not start:\n{}", log.lock().unwrap());
            }
        };
        Operator {
            child,
            identity: identity.to_string(),
            metrics_addr,
            log,
        }
    }

    /// The value of an unlabelled metric.
    pub async fn metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(&self.metrics_addr)
            .await
            .expect("connect to /metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).await.unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in\n{body}"))
    }

    /// Still running?
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("wisp-operator did not stop on SIGTERM:\n{}", self.log());
    }

    /// SIGKILL: no chance to release the Lease.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- wisp-operator {} log ---\n{}",
                self.identity,
                self.log()
            );
        }
    }
}
