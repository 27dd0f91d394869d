//! End to end on a whole single-node cluster (`scripts/k8s-local start
//! --node`): kube-apiserver, the controller manager, the scheduler, a kubelet
//! over CRI to a private containerd whose runtime `wisp` is the Wisp shim,
//! CNI bridge networking and kube-proxy in iptables mode. Nothing is faked:
//! `kubectl apply -k deploy/` with the operator's image built from this
//! workspace (its two replicas run as pods), a WasmApp whose image `wisp
//! image build` wrote, and requests to its Service's ClusterIP from the host.
//!
//! A separate test binary (not in `all`): its cluster has its own state
//! directory and ports, and it runs after the control-plane tests instead of
//! competing with them for the CI machine's two cores.

#[path = "../all/support.rs"]
#[allow(dead_code)]
mod support;

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::{Cluster, ROOT, node_cluster};

/// Pods start in seconds; a loaded CI machine gets slack.
const WAIT: Duration = Duration::from_secs(180);
const APP: &str = "greet";

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `scripts/k8s-local kubectl ARGS` (kubectl 1.20.2, admin), stdin from `input`.
fn kubectl_in(c: &Cluster, args: &[&str], input: Option<&str>) -> Output {
    let mut cmd = c.script(&["kubectl"]);
    cmd.args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run kubectl");
    if let Some(i) = input {
        child.stdin.take().unwrap().write_all(i.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn kubectl(c: &Cluster, args: &[&str]) -> String {
    let o = kubectl_in(c, args, None);
    assert!(
        o.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        text(&o.stderr)
    );
    text(&o.stdout)
}

fn kubectl_json(c: &Cluster, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(c, &a)).unwrap()
}

/// Poll `f` until it returns Ok, or panic with its last error.
fn until<T>(what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let t0 = Instant::now();
    loop {
        match f() {
            Ok(v) => return v,
            Err(e) if t0.elapsed() > WAIT => {
                panic!("timed out after {WAIT:?} waiting for {what}; last: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// A guest of functions/target/manifest.json (`scripts/build-functions`).
fn guest(name: &str) -> PathBuf {
    let manifest = Path::new(ROOT).join("functions/target/manifest.json");
    let m: Value = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_else(|| {
            panic!(
                "{} missing: run scripts/build-functions",
                manifest.display()
            )
        });
    PathBuf::from(
        m[name]["wasm"]
            .as_str()
            .unwrap_or_else(|| panic!("no guest {name}")),
    )
}

/// `GET /` from the host, to `ip:port`; the body, if it answered 200.
fn get(addr: &str) -> Result<String, String> {
    let mut s = std::net::TcpStream::connect_timeout(
        &addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        Duration::from_secs(2),
    )
    .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {APP}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).map_err(|e| format!("read: {e}"))?;
    if !r.starts_with("HTTP/1.1 200") {
        return Err(r);
    }
    Ok(r.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

/// The value of `NAME=` in the test-cgi guest's answer (one `K=V` a line).
fn var<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
}

/// Pids of the Wisp shim processes serving this node's containerd.
fn shim_pids(c: &Cluster) -> Vec<u32> {
    let sock = c
        .admin_kubeconfig()
        .with_file_name("node")
        .join("containerd.sock");
    let sock = sock.to_string_lossy();
    let mut pids = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = text(&cmd);
        if cmd.contains("containerd-shim-wisp-v1") && cmd.contains(&*sock) {
            pids.push(pid);
        }
    }
    pids
}

/// `ctr -n k8s.io task ls -q` on the node's containerd.
fn node_tasks(c: &Cluster) -> Vec<String> {
    let sock = c
        .admin_kubeconfig()
        .with_file_name("node")
        .join("containerd.sock");
    let o = Command::new("ctr")
        .arg("-a")
        .arg(&sock)
        .args(["-n", "k8s.io", "task", "ls", "-q"])
        .output()
        .unwrap();
    assert!(o.status.success(), "ctr task ls: {}", text(&o.stderr));
    text(&o.stdout).lines().map(str::to_string).collect()
}

/// The app's pods: (name, image, ready, deleting).
fn pods(c: &Cluster, ns: &str) -> Vec<(String, String, bool, bool)> {
    let list = kubectl_json(
        c,
        &[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            &format!("wisp.dev/app={APP}"),
        ],
    );
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                ready,
                !p["metadata"]["deletionTimestamp"].is_null(),
            )
        })
        .collect()
}

/// Wait until exactly `n` pods of `image` exist, all Ready, and no other
/// pod (none terminating); and the WasmApp says so.
fn settle(c: &Cluster, ns: &str, n: usize, image: &str) -> Vec<String> {
    until(
        &format!("{n} Ready pods of {image} and nothing else"),
        || {
            let p = pods(c, ns);
            let good = p
                .iter()
                .filter(|(_, i, r, d)| i == image && *r && !*d)
                .count();
            if good != n || p.len() != n {
                return Err(format!("{p:?}"));
            }
            let app = kubectl_json(c, &["-n", ns, "get", "wasmapp", APP]);
            let s = &app["status"];
            if s["readyReplicas"] != n || s["observedGeneration"] != app["metadata"]["generation"] {
                return Err(format!("status {s}"));
            }
            Ok(p.into_iter().map(|(name, ..)| name).collect())
        },
    )
}

fn step(t0: &mut Instant, what: &str) {
    let _ = writeln!(
        std::io::stderr(),
        "  {what}: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    *t0 = Instant::now();
}

#[test]
fn a_wasmapp_serves_scales_rolls_out_and_cleans_up_on_a_node() {
    let Some(c) = node_cluster() else {
        return;
    };
    let total = Instant::now();
    let mut t = Instant::now();

    // Two versions of one function, as `wisp image build` writes them: the
    // test-cgi guest (answers with its environment) marked as an HTTP
    // function; the version is in the image's Env, so the answer changes.
    let work = tempfile::tempdir().unwrap();
    let wisp = support::workspace_bin("wisp").unwrap();
    let cgi = guest("test-cgi");
    let mut images = vec![];
    for v in [1, 2] {
        let name = format!("wisp-e2e/{APP}:{v}");
        let tar = work.path().join(format!("{APP}-{v}.tar"));
        let o = Command::new(&wisp)
            .args(["image", "build"])
            .arg(&cgi)
            .args(["-t", &name, "-o"])
            .arg(&tar)
            .args([
                "--annotation",
                "wisp.abi=http",
                "--env",
                &format!("APP_VERSION={v}"),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "wisp image build: {}", text(&o.stderr));
        let o = c.script(&["import"]).arg(&tar).output().unwrap();
        assert!(o.status.success(), "import: {}", text(&o.stderr));
        images.push(format!("docker.io/{name}"));
    }

    // The operator's image, as scripts/k8s-images builds it: the binary and
    // its libraries, user 65532. deploy/operator.yaml names it.
    let op_image = format!("wisp-operator:{}", env!("CARGO_PKG_VERSION"));
    let op_tar = work.path().join("wisp-operator.tar");
    let o = Command::new(&wisp)
        .args([
            "image",
            "build",
            "--native",
            env!("CARGO_BIN_EXE_wisp-operator"),
        ])
        .args(["-t", &op_image, "--user", "65532", "-o"])
        .arg(&op_tar)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "wisp image build --native: {}",
        text(&o.stderr)
    );
    let o = c.script(&["import"]).arg(&op_tar).output().unwrap();
    assert!(o.status.success(), "import: {}", text(&o.stderr));
    let manifest = std::fs::read_to_string(Path::new(ROOT).join("deploy/operator.yaml")).unwrap();
    assert!(
        manifest.contains(&format!("image: {op_image}")),
        "deploy/operator.yaml runs {op_image}"
    );
    step(&mut t, "images built and imported");

    // The install, exactly as a user does it: the operator's two replicas
    // run as pods (runc) under their ServiceAccount, reaching the API server
    // through the `kubernetes` Service; the node installer's DaemonSet runs
    // nowhere (no node is labelled for it: the shim is installed already).
    let deploy = Path::new(ROOT).join("deploy");
    kubectl(c, &["apply", "-k", deploy.to_str().unwrap()]);
    kubectl(
        c,
        &[
            "-n",
            "wisp-system",
            "rollout",
            "status",
            "deploy/wisp-operator",
            "--timeout",
            "180s",
        ],
    );
    let leader = until("an operator replica holding the Lease", || {
        let l = kubectl_json(c, &["-n", "wisp-system", "get", "lease", "wisp-operator"]);
        l["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| l.to_string())
    });
    let ops = kubectl(c, &["-n", "wisp-system", "get", "pods", "-o", "name"]);
    assert!(
        ops.contains(&format!("pod/{leader}")),
        "{leader} is one of {ops}"
    );
    let ns = "wisp-e2e";
    let o = kubectl_in(c, &["create", "namespace", ns], None);
    assert!(
        o.status.success() || text(&o.stderr).contains("AlreadyExists"),
        "{}",
        text(&o.stderr)
    );
    // What runs besides the app (the operator's pods): compared at the end.
    let before: std::collections::BTreeSet<String> = node_tasks(c).into_iter().collect();
    step(&mut t, "kubectl apply -k deploy/, operator pods Ready");

    // One replica: it runs under the shim and answers through its Service.
    let app = |image: &str, replicas: u32| {
        format!(
            "apiVersion: wisp.dev/v1alpha1\nkind: WasmApp\nmetadata: {{name: {APP}, namespace: {ns}}}\n\
             spec: {{image: \"{image}\", replicas: {replicas}, port: 8080}}\n"
        )
    };
    let o = kubectl_in(c, &["apply", "-f", "-"], Some(&app(&images[0], 1)));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let first = settle(c, ns, 1, &images[0]);
    step(&mut t, "1 replica Ready");
    let pod = kubectl_json(c, &["-n", ns, "get", "pod", &first[0]]);
    assert_eq!(pod["spec"]["runtimeClassName"], "wisp");
    // The shim's default grouping (WISP_SHIM_GROUP=node): one daemon for
    // every pod of the node, sandbox and app container alike.
    assert_eq!(shim_pids(c).len(), 1, "one shim daemon on the node");
    let svc = kubectl_json(c, &["-n", ns, "get", "service", APP]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
    let addr = format!("{ip}:80");
    let body = until("an answer through the Service", || get(&addr));
    assert_eq!(var(&body, "APP_VERSION"), Some("1"), "{body}");
    assert_eq!(var(&body, "HOSTNAME"), Some(first[0].as_str()), "{body}");
    step(&mut t, "answered through the ClusterIP");

    // Five replicas: five pods, still one shim daemon, and the Service
    // spreads requests over them (each pod answers in its own namespace).
    let o = kubectl_in(c, &["apply", "-f", "-"], Some(&app(&images[0], 5)));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let five = settle(c, ns, 5, &images[0]);
    assert_eq!(
        shim_pids(c).len(),
        1,
        "one shim daemon serves all five pods"
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let b = until("an answer through the Service", || get(&addr));
        seen.insert(var(&b, "HOSTNAME").unwrap_or_default().to_string());
        if seen.len() >= 3 {
            break;
        }
    }
    assert!(
        seen.len() >= 3 && seen.iter().all(|h| five.contains(h)),
        "requests through the Service reach several of {five:?}: {seen:?}"
    );
    step(&mut t, "scaled to 5, requests spread");

    // Back to one: the other four pods and their tasks go away.
    let o = kubectl_in(c, &["apply", "-f", "-"], Some(&app(&images[0], 1)));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let one = settle(c, ns, 1, &images[0]);
    until("the four pods' tasks gone", || {
        // The operator's two pods (sandbox + container each) and this one.
        let k = node_tasks(c);
        if k.len() == before.len() + 2 {
            Ok(())
        } else {
            Err(format!("{k:?}"))
        }
    });
    assert_eq!(shim_pids(c).len(), 1, "one shim daemon");
    assert_eq!(var(&get(&addr).unwrap(), "HOSTNAME"), Some(one[0].as_str()));
    step(&mut t, "scaled back to 1");

    // A rolling update to version 2: the answer changes.
    let o = kubectl_in(c, &["apply", "-f", "-"], Some(&app(&images[1], 1)));
    assert!(o.status.success(), "{}", text(&o.stderr));
    settle(c, ns, 1, &images[1]);
    until("version 2 answering", || {
        let b = get(&addr)?;
        match var(&b, "APP_VERSION") {
            Some("2") => Ok(()),
            v => Err(format!("APP_VERSION {v:?}")),
        }
    });
    for _ in 0..5 {
        assert_eq!(var(&get(&addr).unwrap(), "APP_VERSION"), Some("2"));
    }
    step(&mut t, "rolled out version 2");

    // Delete: the garbage collector removes the Deployment and the Service,
    // the kubelet the pods; no task is left on the node, and the shim daemon
    // (idle, lingering WISP_SHIM_LINGER_MS for the next pod) serves nothing.
    kubectl(c, &["-n", ns, "delete", "wasmapp", APP]);
    until("no pods, no shims, no tasks", || {
        let (p, s) = (pods(c, ns), shim_pids(c));
        let k: std::collections::BTreeSet<String> = node_tasks(c).into_iter().collect();
        let objs = kubectl(c, &["-n", ns, "get", "deploy,svc", "-o", "name"]);
        if p.is_empty() && s.len() <= 1 && k == before && objs.trim().is_empty() {
            Ok(())
        } else {
            Err(format!(
                "pods {p:?}, shims {s:?}, tasks {k:?}, objects {objs:?}"
            ))
        }
    });
    assert!(get(&addr).is_err(), "the Service is gone");
    step(&mut t, "deleted, nothing left");

    // Stopping the node leaves nothing on the host.
    let dir = c.admin_kubeconfig().parent().unwrap().to_path_buf();
    let o = c.script(&["stop"]).output().unwrap();
    assert!(o.status.success(), "stop: {}", text(&o.stderr));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    assert!(shim_pids(c).is_empty());
    let bridge = Command::new("ip")
        .args(["link", "show", "wisp-cni0"])
        .output()
        .unwrap();
    assert!(!bridge.status.success(), "the bridge is gone");
    for table in ["filter", "nat", "mangle"] {
        let rules = Command::new("iptables")
            .args(["-t", table, "-S"])
            .output()
            .unwrap();
        let rules = text(&rules.stdout);
        assert!(
            !rules.contains("KUBE-") && !rules.contains("wisp-k8s-local"),
            "iptables {table} still has the node's rules:\n{rules}"
        );
    }
    let netns: Vec<String> = mounts
        .lines()
        .filter(|l| l.contains(" nsfs ") && l.contains("wisp"))
        .map(str::to_string)
        .collect();
    assert!(netns.is_empty(), "network namespaces left: {netns:?}");
    step(&mut t, "node stopped, nothing left");
    let _ = writeln!(
        std::io::stderr(),
        "end to end on the node: {:.1} s",
        total.elapsed().as_secs_f64()
    );
}
