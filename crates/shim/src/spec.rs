//! What the shim reads from an OCI bundle's `config.json`: the module's
//! path, argv, env, memory limit, network namespace, mounts and whether the
//! container is an HTTP function or a pod's sandbox.
//!
//! Parsed from JSON by hand (a few fields of the runtime spec) rather than
//! with a full spec crate: the shim needs ten fields and no validation of
//! the rest, which runc would do and Wasm ignores.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Annotation that marks a command module as an HTTP (CGI) function.
pub const ABI_ANNOTATION: &str = "wisp.abi";
/// Env variable with the same meaning (for `ctr run --env` and images).
pub const ABI_ENV: &str = "WISP_ABI";
/// Env variable: the address an HTTP function listens on.
pub const LISTEN_ENV: &str = "WISP_LISTEN";
/// Default listen address, as containerd-shim-spin's `SPIN_HTTP_LISTEN_ADDR`.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:80";
/// Env variable: outbound hosts an HTTP function may call (comma-separated, Spin syntax).
pub const OUTBOUND_ENV: &str = "WISP_ALLOW_OUTBOUND";
/// CRI annotation naming the container's kind (`sandbox` or `container`).
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
pub use wisp_shim_launcher::start::CRI_SANDBOX_ID;

/// How the container's network namespace is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetNs {
    /// No network namespace in the spec: the host's (`ctr run --net-host`).
    Host,
    /// Join this one (`--with-ns network:PATH`, or a Kubernetes pod's).
    Path(PathBuf),
    /// A new, empty one (runc's behaviour for a namespace without a path).
    New,
}

/// The parts of `config.json` the shim uses.
#[derive(Debug, Clone)]
pub struct BundleSpec {
    /// `process.args`; `args[0]` names the module inside the rootfs.
    pub args: Vec<String>,
    /// `process.env`, split at the first `=`.
    pub env: Vec<(String, String)>,
    /// The root filesystem directory (absolute).
    pub rootfs: PathBuf,
    /// `linux.resources.memory.limit`, if positive.
    pub memory_limit: Option<u64>,
    /// The network namespace.
    pub netns: NetNs,
    /// Bind mounts of host directories: (source, destination in the guest).
    pub bind_dirs: Vec<(PathBuf, String)>,
    /// Annotations.
    pub annotations: Vec<(String, String)>,
}

impl BundleSpec {
    /// Read `bundle/config.json`.
    pub fn load(bundle: &Path) -> Result<BundleSpec> {
        let path = bundle.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("parsing {} as JSON", path.display()))?;
        BundleSpec::from_json(&v, bundle)
    }

    /// From an already parsed spec.
    pub fn from_json(v: &Value, bundle: &Path) -> Result<BundleSpec> {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let args = strings(&v["process"]["args"]);
        let env = strings(&v["process"]["env"])
            .into_iter()
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect();
        let root = v["root"]["path"].as_str().unwrap_or("rootfs");
        let rootfs = bundle.join(root);
        let memory_limit = v["linux"]["resources"]["memory"]["limit"]
            .as_i64()
            .filter(|l| *l > 0)
            .map(|l| l as u64);
        let mut netns = NetNs::Host;
        for ns in v["linux"]["namespaces"].as_array().into_iter().flatten() {
            if ns["type"].as_str() == Some("network") {
                netns = match ns["path"].as_str() {
                    Some(p) if !p.is_empty() => NetNs::Path(p.into()),
                    _ => NetNs::New,
                };
            }
        }
        let mut bind_dirs = Vec::new();
        for m in v["mounts"].as_array().into_iter().flatten() {
            let opts = strings(&m["options"]);
            let is_bind = m["type"].as_str() == Some("bind")
                || opts.iter().any(|o| o == "bind" || o == "rbind");
            let (Some(src), Some(dst)) = (m["source"].as_str(), m["destination"].as_str()) else {
                continue;
            };
            // Only directories can be preopened; files such as the CRI's
            // /etc/hosts are left out.
            if is_bind && Path::new(src).is_dir() {
                bind_dirs.push((PathBuf::from(src), dst.to_string()));
            }
        }
        let annotations = v["annotations"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        Ok(BundleSpec {
            args,
            env,
            rootfs,
            memory_limit,
            netns,
            bind_dirs,
            annotations,
        })
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// An env variable's value (the last one wins, as in a process).
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the annotation or env marks the module as an HTTP function.
    pub fn marked_http(&self) -> bool {
        self.annotation(ABI_ANNOTATION)
            .or_else(|| self.env_var(ABI_ENV))
            .is_some_and(|v| v.eq_ignore_ascii_case("http"))
    }

    /// Whether this is a Kubernetes pod's sandbox ("pause") container.
    pub fn is_sandbox(&self) -> bool {
        self.annotation(CRI_CONTAINER_TYPE) == Some("sandbox")
    }

    /// The network namespace to serve in, for a container of a Kubernetes pod.
    ///
    /// The CRI (containerd 1.6 and 1.7, `WithPodNamespaces`) gives a pod's
    /// containers its sandbox's namespaces as `/proc/<sandbox task pid>/ns/net`.
    /// Under this shim that pid is a shim process, which lives in the host's
    /// namespace: taken as it is, every replica's server would bind on the
    /// host (the second one failing with "address in use") and none would be
    /// reachable at its pod IP. Such a path is replaced by the namespace the
    /// sandbox itself was given (the one the CRI pinned and CNI configured),
    /// which `sandbox` looks up by the sandbox's id. Anything else is kept.
    pub fn pod_netns(&self, sandbox: impl FnOnce(&str) -> Result<NetNs>) -> Result<NetNs> {
        let NetNs::Path(p) = &self.netns else {
            return Ok(self.netns.clone());
        };
        let from_a_process = p
            .to_str()
            .and_then(|s| s.strip_prefix("/proc/"))
            .and_then(|s| s.strip_suffix("/ns/net"))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()));
        let sandbox_id = self.annotation(CRI_SANDBOX_ID);
        match sandbox_id {
            Some(id) if from_a_process && !self.is_sandbox() => sandbox(id)
                .with_context(|| format!("finding the network namespace of pod sandbox {id}")),
            _ => Ok(self.netns.clone()),
        }
    }

    /// The module's path on the host: `args[0]` resolved inside the rootfs
    /// (never outside it: `..` components are refused).
    pub fn module_path(&self) -> Result<PathBuf> {
        let Some(arg0) = self.args.first().filter(|a| !a.is_empty()) else {
            bail!(
                "the container has no command: set the image's Entrypoint (or pass one) \
                 to the .wasm file's path, e.g. /app.wasm"
            );
        };
        let rel = Path::new(arg0.trim_start_matches('/'));
        if rel
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            bail!("the module path {arg0:?} must be a plain path inside the image (no `..`)");
        }
        Ok(self.rootfs.join(rel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_what_the_shim_needs() {
        let v = json!({
            "process": {"args": ["/hello.wasm", "a"], "env": ["PATH=/bin", "WISP_ABI=http", "X"]},
            "root": {"path": "rootfs"},
            "linux": {
                "resources": {"memory": {"limit": 1048576}},
                "namespaces": [{"type": "pid"}, {"type": "network", "path": "/var/run/netns/x"}]
            },
            "mounts": [{"destination": "/data", "type": "bind", "source": "/tmp", "options": ["rbind"]},
                       {"destination": "/proc", "type": "proc", "source": "proc"}],
            "annotations": {"wisp.abi": "command"}
        });
        let s = BundleSpec::from_json(&v, Path::new("/b")).unwrap();
        assert_eq!(s.module_path().unwrap(), Path::new("/b/rootfs/hello.wasm"));
        assert_eq!(s.memory_limit, Some(1 << 20));
        assert_eq!(s.netns, NetNs::Path("/var/run/netns/x".into()));
        assert_eq!(s.env[2], ("X".into(), String::new()));
        assert_eq!(
            s.bind_dirs,
            vec![(PathBuf::from("/tmp"), "/data".to_string())]
        );
        assert!(!s.marked_http(), "the annotation wins over the env");
        assert!(!s.is_sandbox());

        let v = json!({"process": {"args": ["../../etc/passwd"]}, "linux": {"namespaces": [{"type": "network"}]}});
        let s = BundleSpec::from_json(&v, Path::new("/b")).unwrap();
        assert!(s.module_path().is_err());
        assert_eq!(s.netns, NetNs::New);
        let s = BundleSpec::from_json(&json!({}), Path::new("/b")).unwrap();
        assert!(
            s.module_path()
                .unwrap_err()
                .to_string()
                .contains("Entrypoint")
        );
        assert_eq!(s.netns, NetNs::Host);
    }

    #[test]
    fn pod_containers_take_the_sandboxs_network_namespace() {
        let container = |netns: &str, kind: &str| {
            BundleSpec::from_json(
                &json!({
                    "linux": {"namespaces": [{"type": "network", "path": netns}]},
                    "annotations": {
                        "io.kubernetes.cri.container-type": kind,
                        "io.kubernetes.cri.sandbox-id": "sb1"
                    }
                }),
                Path::new("/b"),
            )
            .unwrap()
        };
        let pinned = NetNs::Path("/run/netns/cni-1234".into());
        let lookup = |id: &str| -> Result<NetNs> {
            assert_eq!(id, "sb1");
            Ok(NetNs::Path("/run/netns/cni-1234".into()))
        };
        // What the CRI gives a container of a pod whose sandbox task is a shim.
        let c = container("/proc/4242/ns/net", "container");
        assert_eq!(c.pod_netns(lookup).unwrap(), pinned);
        // A namespace named by path is kept, and so is the sandbox's own.
        let c = container("/run/netns/other", "container");
        assert_eq!(
            c.pod_netns(|_| panic!("not looked up")).unwrap(),
            NetNs::Path("/run/netns/other".into())
        );
        let s = container("/run/netns/cni-1234", "sandbox");
        assert_eq!(s.pod_netns(|_| panic!("not looked up")).unwrap(), pinned);
        // Not a pod (`ctr run --with-ns network:/proc/PID/ns/net`): kept.
        let v = json!({"linux": {"namespaces": [{"type": "network", "path": "/proc/1/ns/net"}]}});
        let plain = BundleSpec::from_json(&v, Path::new("/b")).unwrap();
        assert_eq!(
            plain.pod_netns(|_| panic!("not looked up")).unwrap(),
            NetNs::Path("/proc/1/ns/net".into())
        );
        // An unknown sandbox is an error naming it.
        let c = container("/proc/4242/ns/net", "container");
        let e = c
            .pod_netns(|_| anyhow::bail!("no such sandbox"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("pod sandbox sb1"), "{e:#}");
    }
}
