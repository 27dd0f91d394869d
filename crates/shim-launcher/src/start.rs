//! What `start` decides before any daemon is involved: the container's
//! grouping, its daemon's grouping key and, for a shared daemon, the socket
//! address containerd will be handed. Both binaries use this: the launcher
//! to answer `start` when that daemon is alive, the daemon binary to answer
//! the other `start`s (it spawns the daemon under the same [`StartLock`]).
//!
//! [`StartLock`]: crate::group::StartLock

use crate::group::{self, BadGroup, Group};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// CRI annotation naming the pod sandbox a container belongs to.
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Where containerd's shims put their sockets (containerd-shim's
/// `SOCKET_ROOT` on Linux).
pub const SOCKET_ROOT: &str = "/run/containerd";
/// The file in the bundle `start` writes the socket address to (the daemon
/// removes the socket named there when it shuts down).
pub const ADDRESS_FILE: &str = "address";

/// The few fields of a bundle's `config.json` `start` reads: annotations
/// and `process.env`.
#[derive(Debug, Clone, Default)]
pub struct StartSpec {
    annotations: serde_json::Map<String, Value>,
    env: Vec<String>,
}

impl StartSpec {
    /// Read `bundle/config.json`; `None` if it can't be read or parsed (the
    /// node's grouping then holds; `create` reports a bad spec).
    pub fn load(bundle: &Path) -> Option<StartSpec> {
        let text = std::fs::read(bundle.join("config.json")).ok()?;
        let mut v: Value = serde_json::from_slice(&text).ok()?;
        let annotations = match v["annotations"].take() {
            Value::Object(o) => o,
            _ => Default::default(),
        };
        let env = match v["process"]["env"].take() {
            Value::Array(a) => a
                .into_iter()
                .filter_map(|s| match s {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect(),
            _ => vec![],
        };
        Some(StartSpec { annotations, env })
    }

    /// An annotation's value.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).and_then(Value::as_str)
    }

    /// An env variable's value (the last one wins, as in a process).
    pub fn env_var(&self, key: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find_map(|kv| match kv.split_once('=') {
                Some((k, v)) if k == key => Some(v),
                None if kv == key => Some(""),
                _ => None,
            })
    }
}

/// `start`'s decision for one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The container's grouping.
    pub group: Group,
    /// Its daemon's grouping key (containerd-shim's `grouping`).
    pub key: String,
}

impl Plan {
    /// Decide for container `id` from its bundle's spec (`None`: unreadable)
    /// and the node's grouping (`WISP_SHIM_GROUP` of containerd): the
    /// container's own `wisp.shim.group` annotation or `WISP_SHIM_GROUP`
    /// env wins over the node's.
    pub fn new(
        id: &str,
        spec: Option<&StartSpec>,
        node: Result<Group, BadGroup>,
    ) -> Result<Plan, BadGroup> {
        let own = spec.and_then(|s| {
            s.annotation(group::GROUP_ANNOTATION)
                .or_else(|| s.env_var(group::GROUP_ENV))
        });
        let group = match own {
            Some(v) => Group::parse(Some(v))?,
            None => node?,
        };
        let sandbox = spec.and_then(|s| s.annotation(CRI_SANDBOX_ID));
        Ok(Plan {
            key: group.key(id, sandbox),
            group,
        })
    }

    /// The socket of the shared daemon this container goes to, `None` when
    /// its grouping starts a daemon per `start` (`pod`, `container`).
    /// `containerd` and `namespace` are `start`'s `-address` and
    /// `-namespace`.
    pub fn shared_address(&self, containerd: &str, namespace: &str) -> Option<String> {
        self.group
            .lingers()
            .then(|| socket_address(containerd, namespace, &self.key))
    }
}

/// The address of the daemon with grouping key `key`: containerd-shim's
/// `socket_address`, so both binaries and a daemon spawned by
/// containerd-shim's `spawn` agree on it.
pub fn socket_address(containerd: &str, namespace: &str, key: &str) -> String {
    let path = PathBuf::from(containerd)
        .join(namespace)
        .join(key)
        .display()
        .to_string();
    let hash = Sha256::digest(path.as_bytes());
    format!("unix://{SOCKET_ROOT}/s/{hash:x}")
}

/// Write the socket address into `bundle/address` (a temp file renamed
/// over it, as containerd-shim does).
pub fn write_address(bundle: &Path, address: &str) -> io::Result<()> {
    let path = bundle.join(ADDRESS_FILE);
    let tmp = bundle.join(format!(".{ADDRESS_FILE}"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| group::context(e, "creating", &tmp))?;
    f.write_all(address.as_bytes())
        .map_err(|e| group::context(e, "writing", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(|e| group::context(e, "renaming", &path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_containerd_shims() {
        for (a, ns, key) in [
            (
                "/run/containerd/containerd.sock",
                "default",
                group::NODE_KEY,
            ),
            ("/tmp/wisp-ctd1/c.sock", "k8s.io", "3f2a9c"),
            ("relative.sock", "ns", "a/b"),
        ] {
            assert_eq!(
                socket_address(a, ns, key),
                containerd_shim::socket_address(a, ns, key)
            );
        }
    }

    fn spec(json: &str) -> StartSpec {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        StartSpec::load(dir.path()).unwrap()
    }

    #[test]
    fn the_container_chooses_else_the_node() {
        let plain = spec(r#"{"process":{"env":["PATH=/bin"]}}"#);
        let p = Plan::new("c1", Some(&plain), Ok(Group::Node)).unwrap();
        assert_eq!((p.group, p.key.as_str()), (Group::Node, group::NODE_KEY));
        assert!(p.shared_address("/c.sock", "ns").is_some());

        let p = Plan::new("c1", Some(&plain), Ok(Group::Container)).unwrap();
        assert_eq!((p.group, p.key.as_str()), (Group::Container, "c1"));
        assert_eq!(p.shared_address("/c.sock", "ns"), None);

        // The env's last value wins; the annotation wins over the env.
        let env =
            spec(r#"{"process":{"env":["WISP_SHIM_GROUP=node","WISP_SHIM_GROUP=container"]}}"#);
        let p = Plan::new("c1", Some(&env), Ok(Group::Node)).unwrap();
        assert_eq!(p.group, Group::Container);
        let pod = spec(
            r#"{"annotations":{"wisp.shim.group":"pod","io.kubernetes.cri.sandbox-id":"sb"},
                "process":{"env":["WISP_SHIM_GROUP=container"]}}"#,
        );
        let p = Plan::new("c1", Some(&pod), Ok(Group::Node)).unwrap();
        assert_eq!((p.group, p.key.as_str()), (Group::Pod, "sb"));

        // A bad setting of the container's is its error; the node's only
        // matters when the container has none.
        let bad = spec(r#"{"annotations":{"wisp.shim.group":"pods"}}"#);
        let e = Plan::new("c1", Some(&bad), Ok(Group::Node)).unwrap_err();
        assert!(e.to_string().contains("\"pods\""), "{e}");
        let node_bad = Group::parse(Some("nodes"));
        assert!(Plan::new("c1", Some(&pod), node_bad.clone()).is_ok());
        assert!(Plan::new("c1", None, node_bad).is_err());
    }

    #[test]
    fn an_unreadable_spec_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(StartSpec::load(dir.path()).is_none());
        std::fs::write(dir.path().join("config.json"), "{").unwrap();
        assert!(StartSpec::load(dir.path()).is_none());
    }

    #[test]
    fn the_address_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        write_address(dir.path(), "unix:///a").unwrap();
        write_address(dir.path(), "unix:///b").unwrap();
        let got = std::fs::read_to_string(dir.path().join(ADDRESS_FILE)).unwrap();
        assert_eq!(got, "unix:///b");
    }
}
