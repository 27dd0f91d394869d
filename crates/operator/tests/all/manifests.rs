//! deploy/: the kustomization lists every manifest, and the node installer's
//! script does its job once and is idempotent (run for real with sh, on a
//! directory standing in for the node's root).

use crate::support::ROOT;
use std::path::Path;
use std::process::Command;

fn docs(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let deploy = Path::new(ROOT).join("deploy");
    let k = &docs(&deploy.join("kustomization.yaml"))[0];
    let mut listed: Vec<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut present: Vec<String> = std::fs::read_dir(&deploy)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    present.sort();
    assert_eq!(listed, present);
    for f in &listed {
        for d in docs(&deploy.join(f)) {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{f}: {d}"
            );
        }
    }
    let rc = &docs(&deploy.join("runtimeclass.yaml"))[0];
    assert_eq!(
        (rc["apiVersion"].as_str(), rc["handler"].as_str()),
        (Some("node.k8s.io/v1"), Some("wisp"))
    );
}

#[test]
fn the_node_installer_installs_once_and_then_changes_nothing() {
    let cm = docs(&Path::new(ROOT).join("deploy/node-installer.yaml"))
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("install.sh");
    std::fs::write(&script, cm["data"]["install.sh"].as_str().unwrap()).unwrap();
    let node = tmp.path().join("node");
    std::fs::create_dir_all(node.join("etc/containerd")).unwrap();
    let cfg = node.join("etc/containerd/config.toml");
    std::fs::write(
        &cfg,
        "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"pause\"\n",
    )
    .unwrap();
    let shim = tmp.path().join("containerd-shim-wisp-v1");
    let daemon = tmp.path().join("containerd-shim-wisp-v1-daemon");
    std::fs::write(&shim, "shim v1").unwrap();
    let restarts = tmp.path().join("restarts");

    let run = || {
        let out = Command::new("sh")
            .arg(&script)
            .env("NODE_ROOT", &node)
            .env("SHIM_SRC", &shim)
            .env(
                "RESTART",
                format!("echo restarted >> {}", restarts.display()),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let restart_count = || {
        std::fs::read_to_string(&restarts)
            .unwrap_or_default()
            .lines()
            .count()
    };

    // The launcher without its daemon: refused, nothing installed.
    let out = Command::new("sh")
        .arg(&script)
        .env("NODE_ROOT", &node)
        .env("SHIM_SRC", &shim)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no shim daemon at") && err.contains("containerd-shim-wisp-v1-daemon"),
        "{err}"
    );
    assert!(!node.join("usr/local/bin").exists());

    std::fs::write(&daemon, "daemon v1").unwrap();
    let out = run();
    let installed = node.join("usr/local/bin/containerd-shim-wisp-v1");
    let installed_daemon = node.join("usr/local/bin/containerd-shim-wisp-v1-daemon");
    assert_eq!(
        std::fs::read_to_string(&installed_daemon).unwrap(),
        "daemon v1",
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&installed).unwrap(),
        "shim v1",
        "{out}"
    );
    use std::os::unix::fs::PermissionsExt;
    for f in [&installed, &installed_daemon] {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    let config = std::fs::read_to_string(&cfg).unwrap();
    assert!(
        config.starts_with("version = 2\n"),
        "the old config is kept: {config}"
    );
    assert!(config.ends_with(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wisp]\n  runtime_type = \"io.containerd.wisp.v1\"\n"
    ));
    assert_eq!(restart_count(), 1);

    // Again: nothing to do, no restart, config unchanged.
    let out = run();
    assert!(out.contains("nothing to do"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), config);
    assert_eq!(restart_count(), 1);

    // A new shim: copied, containerd restarted, the runtime not added twice.
    std::fs::write(&shim, "shim v2").unwrap();
    run();
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), "shim v2");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), config);
    assert_eq!(restart_count(), 2);

    // A new daemon alone: copied too.
    std::fs::write(&daemon, "daemon v2").unwrap();
    let out = run();
    assert!(
        out.contains("installed /usr/local/bin/containerd-shim-wisp-v1-daemon")
            && !out.contains("installed /usr/local/bin/containerd-shim-wisp-v1\n"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&installed_daemon).unwrap(),
        "daemon v2"
    );
    assert_eq!(restart_count(), 3);
}
