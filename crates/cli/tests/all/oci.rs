//! OCI artifacts against a real registry (Debian's `docker-registry`, v2.8,
//! started here on 127.0.0.1 with a temp storage dir): push/pull, tags and
//! digests, tampered blobs, the older Wasm layer and plain images, basic
//! auth through a Docker config, the plain-HTTP policy, size bounds, and
//! `wisp deploy NAME oci://REF` on a real server.

use crate::support::*;
use base64::Engine;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use wisp_oci::layout::LayerEntry;

/// A `docker-registry` child process, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::spawn(None)
    }

    /// With htpasswd basic auth for one user.
    pub fn with_basic_auth(user: &str, password: &str) -> Registry {
        Registry::spawn(Some((user, password)))
    }

    fn spawn(auth: Option<(&str, &str)>) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.exists(),
            "docker-registry is not installed (apt-get install docker-registry; scripts/test does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut auth_conf = String::new();
        if let Some((user, password)) = auth {
            let hash = bcrypt::hash_with_result(password, 4)
                .unwrap()
                .format_for_version(bcrypt::Version::TwoY);
            let htpasswd = dir.path().join("htpasswd");
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            auth_conf = format!(
                "auth:\n  htpasswd:\n    realm: wisp-test\n    path: {}\n",
                htpasswd.display()
            );
        }
        let conf = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_conf}",
            dir.path().join("data").display()
        );
        let conf_path = dir.path().join("config.yml");
        std::fs::write(&conf_path, conf).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawning docker-registry");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not start: {}",
                std::fs::read_to_string(dir.path().join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Registry { child, port, dir }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Where the registry keeps the blob `digest` on disk.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.dir
            .path()
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `wisp ARGS` with no server, no Docker config and no registry
/// credentials from the environment (unless `envs` sets them).
fn wisp(args: &[&str], envs: &[(&str, &str)], stdin: Option<&str>) -> Output {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(wisp_bin());
    cmd.args(args)
        .env("DOCKER_CONFIG", empty.path())
        .env_remove("WISP_REGISTRY_USERNAME")
        .env_remove("WISP_REGISTRY_PASSWORD")
        .env_remove("WISP_REGISTRY_TOKEN")
        .env_remove("WISP_TOKEN")
        .env_remove("WISP_JSON");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn ok_json(o: &Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "wisp failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

fn err(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn push(file: &Path, reference: &str) -> serde_json::Value {
    ok_json(&wisp(
        &["push", file.to_str().unwrap(), reference, "--json"],
        &[],
        None,
    ))
}

fn pull(reference: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["pull", reference, "-o", out.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    wisp(&args, &[], None)
}

#[test]
fn push_pull_round_trip_by_tag_and_digest() {
    let reg = Registry::start();
    let hello = guest("hello");
    let out = tempfile::tempdir().unwrap();
    let r = format!("{}/fns/hello:v1", reg.host());
    let pushed = push(&hello, &r);
    let digest = pushed["digest"].as_str().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(pushed["reference"], r.as_str());

    let file = out.path().join("a.wasm");
    let p = ok_json(&pull(&r, &file, &[]));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(&hello).unwrap()
    );
    assert_eq!(p["digest"], digest.as_str());
    assert_eq!(p["format"], "wasm_artifact");
    assert_eq!(
        p["config_media_type"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(p["layer_media_types"][0], "application/wasm");

    // A second tag of other bytes; each tag keeps its own module.
    let cgi = guest("test-cgi");
    let r2 = format!("{}/fns/hello:v2", reg.host());
    let d2 = push(&cgi, &r2)["digest"].as_str().unwrap().to_string();
    assert_ne!(d2, digest);
    let file2 = out.path().join("b.wasm");
    ok_json(&pull(&format!("oci://{r2}"), &file2, &[]));
    assert_eq!(std::fs::read(&file2).unwrap(), std::fs::read(&cgi).unwrap());

    // By digest: the v1 bytes, whatever the tags say now.
    let by_digest = format!("{}/fns/hello@{digest}", reg.host());
    let file3 = out.path().join("c.wasm");
    let p = ok_json(&pull(&by_digest, &file3, &[]));
    assert_eq!(p["digest"], digest.as_str());
    assert_eq!(
        std::fs::read(&file3).unwrap(),
        std::fs::read(&hello).unwrap()
    );

    // The config blob follows the CNCF Wasm format.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.blob_file(&digest)).unwrap()).unwrap();
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(reg.blob_file(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    assert_eq!(config["architecture"], "wasm");
    assert_eq!(config["os"], "wasip1");
    assert_eq!(config["layerDigests"][0], manifest["layers"][0]["digest"]);
    assert!(config["created"].as_str().unwrap().ends_with('Z'));

    // Missing tag, unknown digest: a clear error, nothing written.
    let missing = out.path().join("missing.wasm");
    let e = err(&pull(
        &format!("{}/fns/hello:nope", reg.host()),
        &missing,
        &[],
    ));
    assert!(
        e.contains(&format!(
            "{}/fns/hello:nope: not found in registry",
            reg.host()
        )),
        "{e}"
    );
    let zero = format!("{}/fns/hello@sha256:{}", reg.host(), "0".repeat(64));
    assert!(err(&pull(&zero, &missing, &[])).contains("not found in registry"));
    assert!(!missing.exists());
}

#[test]
fn tampered_blobs_are_rejected_with_both_digests() {
    let reg = Registry::start();
    let hello = guest("hello");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let r = format!("{}/fns/t:v1", reg.host());
    let digest = push(&hello, &r)["digest"].as_str().unwrap().to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reg.blob_file(&digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();

    // Flip one byte of the module as the registry stores it: same size,
    // served under the same digest.
    let path = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let file = out.join("t.wasm");
    let e = err(&pull(&r, &file, &[]));
    assert!(
        e.contains(&format!("digest mismatch: expected {layer}, got sha256:")),
        "{e}"
    );
    assert!(!file.exists(), "nothing is written from a bad pull");

    // A manifest that doesn't hash to the digest asked for.
    let mpath = reg.blob_file(&digest);
    let mut m = std::fs::read(&mpath).unwrap();
    m.push(b' ');
    std::fs::write(&mpath, &m).unwrap();
    let e = err(&pull(&format!("{}/fns/t@{digest}", reg.host()), &file, &[]));
    assert!(
        e.contains(&format!("digest mismatch: expected {digest}, got sha256:")),
        "{e}"
    );
}

/// Push a manifest of our own making with oci-client directly.
async fn push_raw(
    host: &str,
    repo: &str,
    config: (&str, Vec<u8>),
    layers: Vec<(&str, Vec<u8>)>,
) -> String {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::secrets::RegistryAuth;
    wisp_oci::tls_init();
    let client = oci_client::Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let reference: oci_client::Reference = format!("{host}/{repo}").parse().unwrap();
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|(mt, data)| ImageLayer::new(data, mt.to_string(), None))
        .collect();
    let config = Config::new(config.1, config.0.to_string(), None);
    let manifest = oci_client::manifest::OciImageManifest::build(&layers, &config, None);
    let m = serde_json::to_vec(&manifest).unwrap();
    client
        .push(
            &reference,
            &layers,
            config,
            &RegistryAuth::Anonymous,
            Some(manifest),
        )
        .await
        .unwrap();
    wisp_oci::sha256_digest(&m)
}

fn tar_layer(files: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
    let entries: Vec<LayerEntry> = files
        .iter()
        .map(|(p, d)| LayerEntry::File(p.to_string(), d.to_vec(), 0o755))
        .collect();
    wisp_oci::layout::build_layer(&entries, gzip).unwrap().blob
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_wasm_layers_and_plain_images_are_read() {
    let reg = Registry::start();
    let host = reg.host();
    let hello = read_guest("hello");
    let cgi = read_guest("test-cgi");
    let out = tempfile::tempdir().unwrap();

    // The older format: application/vnd.wasm.content.layer.v1+wasm.
    push_raw(
        &host,
        "old/hello:1",
        ("application/vnd.wasm.config.v1+json", b"{}".to_vec()),
        vec![("application/vnd.wasm.content.layer.v1+wasm", hello.clone())],
    )
    .await;
    let f = out.path().join("old.wasm");
    let p = ok_json(&pull(&format!("{host}/old/hello:1"), &f, &[]));
    assert_eq!(p["format"], "legacy_wasm");
    assert_eq!(std::fs::read(&f).unwrap(), hello);

    // An ordinary image: the entrypoint is in two layers; the top one wins.
    let bottom = tar_layer(&[("app/fn.wasm", &cgi), ("etc/motd", b"hi")], true);
    let top = tar_layer(&[("app/fn.wasm", &hello)], false);
    let config = serde_json::json!({
        "architecture": "wasm", "os": "wasip1",
        "config": { "Entrypoint": ["/app/fn.wasm"] },
        "rootfs": { "type": "layers", "diff_ids": [] }
    });
    push_raw(
        &host,
        "img/hello:1",
        (
            "application/vnd.oci.image.config.v1+json",
            serde_json::to_vec(&config).unwrap(),
        ),
        vec![
            ("application/vnd.oci.image.layer.v1.tar+gzip", bottom),
            ("application/vnd.oci.image.layer.v1.tar", top),
        ],
    )
    .await;
    let f = out.path().join("img.wasm");
    let p = ok_json(&pull(&format!("{host}/img/hello:1"), &f, &[]));
    assert_eq!(p["format"], "image");
    assert_eq!(
        std::fs::read(&f).unwrap(),
        hello,
        "the topmost layer's file"
    );

    // Cmd when there is no Entrypoint; Docker's media types.
    let config = serde_json::json!({"config": {"Cmd": ["/cgi.wasm"]}});
    push_raw(
        &host,
        "img/cgi:1",
        (
            "application/vnd.docker.container.image.v1+json",
            serde_json::to_vec(&config).unwrap(),
        ),
        vec![(
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            tar_layer(&[("cgi.wasm", &cgi)], true),
        )],
    )
    .await;
    let f = out.path().join("cgi.wasm");
    ok_json(&pull(&format!("{host}/img/cgi:1"), &f, &[]));
    assert_eq!(std::fs::read(&f).unwrap(), cgi);

    // Not a Wasm image: the media types seen are named.
    push_raw(
        &host,
        "helm/chart:1",
        ("application/vnd.cncf.helm.config.v1+json", b"{}".to_vec()),
        vec![(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            b"x".to_vec(),
        )],
    )
    .await;
    let e = err(&pull(&format!("{host}/helm/chart:1"), &f, &[]));
    assert!(e.contains("is not a Wasm image"), "{e}");
    assert!(
        e.contains("application/vnd.cncf.helm.config.v1+json"),
        "{e}"
    );
    assert!(
        e.contains("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
        "{e}"
    );
}

#[test]
fn basic_auth_from_docker_config_and_flags() {
    let reg = Registry::with_basic_auth("wisp", "s3cret");
    let hello = guest("hello");
    let out = tempfile::tempdir().unwrap();
    let r = format!("{}/private/hello:v1", reg.host());
    let file = out.path().join("p.wasm");

    // Anonymous: refused.
    let e = err(&wisp(&["push", hello.to_str().unwrap(), &r], &[], None));
    assert!(e.contains("unauthorized"), "{e}");

    // Credentials from $DOCKER_CONFIG/config.json (`auth`: base64 user:pass).
    let cfg = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode("wisp:s3cret");
    std::fs::write(
        cfg.path().join("config.json"),
        format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, reg.host()),
    )
    .unwrap();
    let docker = [("DOCKER_CONFIG", cfg.path().to_str().unwrap())];
    let o = wisp(
        &["push", hello.to_str().unwrap(), &r, "--json"],
        &docker,
        None,
    );
    let digest = ok_json(&o)["digest"].as_str().unwrap().to_string();
    let o = wisp(
        &["pull", &r, "-o", file.to_str().unwrap(), "--json"],
        &docker,
        None,
    );
    assert_eq!(ok_json(&o)["digest"], digest.as_str());
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(&hello).unwrap()
    );

    // --username with --password-stdin: right and wrong.
    std::fs::remove_file(&file).unwrap();
    let args = [
        "pull",
        r.as_str(),
        "-o",
        file.to_str().unwrap(),
        "--username",
        "wisp",
        "--password-stdin",
    ];
    let o = wisp(&args, &[], Some("s3cret\n"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(file.exists());
    let e = err(&wisp(&args, &[], Some("wrong\n")));
    assert!(e.contains("unauthorized") && e.contains("\"wisp\""), "{e}");
}

#[test]
fn plain_http_only_to_loopback_or_named_registries() {
    let reg = Registry::start();
    let hello = guest("hello");
    let out = tempfile::tempdir().unwrap();
    push(&hello, &format!("{}/fns/h:1", reg.host()));
    // 0.0.0.0 reaches this host's loopback but is no loopback name: Wisp
    // speaks HTTPS to it, the plain-HTTP registry can't answer that.
    let other = format!("0.0.0.0:{}", reg.port);
    let f = out.path().join("h.wasm");
    let e = err(&pull(&format!("{other}/fns/h:1"), &f, &[]));
    assert!(
        e.contains(&format!("pass --insecure-registry {other}")),
        "{e}"
    );
    ok_json(&pull(
        &format!("{other}/fns/h:1"),
        &f,
        &["--insecure-registry", &other],
    ));
    assert_eq!(std::fs::read(&f).unwrap(), std::fs::read(&hello).unwrap());
}

#[test]
fn modules_over_the_size_bound_are_refused() {
    let reg = Registry::start();
    let hello = guest("hello");
    let r = format!("{}/fns/big:1", reg.host());
    let e = err(&wisp(
        &["push", hello.to_str().unwrap(), &r, "--max-module", "1KiB"],
        &[],
        None,
    ));
    assert!(e.contains("the limit is 1024"), "{e}");
    push(&hello, &r);
    let out = tempfile::tempdir().unwrap();
    let f = out.path().join("big.wasm");
    let e = err(&pull(&r, &f, &["--max-module", "1KiB"]));
    assert!(e.contains("the limit is 1024"), "{e}");
    assert!(!f.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_from_a_registry_records_the_digest() {
    let reg = Registry::start();
    let s = Server::start();
    let hello = guest("hello");
    let r = format!("{}/fns/hello:v1", reg.host());
    let digest = push(&hello, &r)["digest"].as_str().unwrap().to_string();

    let o = Command::new(wisp_bin())
        .args(["deploy", "greet", &format!("oci://{r}")])
        .env("WISP_SERVER", &s.url)
        .env_remove("WISP_TOKEN")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("from: {r}@{digest}")), "{text}");

    let c = s.client();
    let reply = c.get("/fn/greet").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(reply.text().contains("Hello"), "{}", reply.text());

    let info = get_json(&c, "/v1/functions/greet").await;
    assert_eq!(info["oci"]["reference"], r.as_str());
    assert_eq!(info["oci"]["digest"], digest.as_str());
    assert_eq!(
        info["digest"].as_str().unwrap(),
        wisp_oci::sha256_digest(&std::fs::read(&hello).unwrap())
    );
    let o = Command::new(wisp_bin())
        .args(["ls"])
        .env("WISP_SERVER", &s.url)
        .env_remove("WISP_TOKEN")
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&o.stdout);
    assert!(ls.contains(&format!("oci://{r}@{digest}")), "{ls}");

    // The same over the API; a missing tag and a non-Wasm body are 400s
    // that name the problem, and nothing is deployed.
    let put = |name: &str, body: serde_json::Value| {
        let c = c.clone();
        let path = format!("/v1/functions/{name}");
        async move {
            c.send(
                http::Method::PUT,
                &path,
                &[("content-type", "application/json")],
                serde_json::to_vec(&body).unwrap(),
            )
            .await
            .unwrap()
        }
    };
    let by_digest = format!("{}/fns/hello@{digest}", reg.host());
    let ok = put(
        "pinned",
        serde_json::json!({"oci": by_digest, "config": {"env": {"A": "1"}}}),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    let v = ok.json().unwrap();
    assert_eq!(v["oci"]["digest"], digest.as_str());
    assert_eq!(v["config"]["env"]["A"], "1");

    let missing = put(
        "nope",
        serde_json::json!({"oci": format!("oci://{}/fns/hello:gone", reg.host())}),
    )
    .await;
    assert_eq!(missing.status, 400);
    let m = missing.json().unwrap();
    assert!(
        m["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fns/hello:gone: not found in registry"),
        "{m}"
    );
    let gone = c.get("/v1/functions/nope").await.unwrap();
    assert_eq!(gone.status, 404);
    // Uploaded versions carry no `oci` field.
    let up = deploy_guest(&c, "uploaded", "hello").await;
    assert!(up.get("oci").is_none(), "{up}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_pull_only_from_allowed_registries() {
    let reg = Registry::start();
    let s = Server::with(&["--allow-registry", "127.0.0.1:1"], &[]);
    let r = format!("oci://{}/fns/hello:v1", reg.host());
    let reply = s
        .client()
        .send(
            http::Method::PUT,
            "/v1/functions/f",
            &[("content-type", "application/json")],
            serde_json::to_vec(&serde_json::json!({ "oci": r })).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert!(
        reply
            .text()
            .contains(&format!("registry {} is not allowed", reg.host())),
        "{}",
        reply.text()
    );
}

#[test]
fn image_build_is_deterministic_and_consistent() {
    let hello = guest("hello");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.tar");
    let b = dir.path().join("b.tar");
    for out in [&a, &b] {
        let o = wisp(
            &[
                "image",
                "build",
                hello.to_str().unwrap(),
                "-t",
                "hello:1",
                "-o",
                out.to_str().unwrap(),
                "--env",
                "K=V",
                "--annotation",
                "wisp.abi=command",
                "--label",
                "team=fns",
            ],
            &[],
            None,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    // `tar` itself reads it, and index.json points at a manifest blob whose
    // name is its digest.
    let list = Command::new("tar").arg("tf").arg(&a).output().unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(names.lines().any(|l| l == "oci-layout"), "{names}");
    assert!(names.lines().any(|l| l == "index.json"), "{names}");
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .arg("xf")
        .arg(&a)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(x.join("index.json")).unwrap()).unwrap();
    let d = index["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(
        index["manifests"][0]["annotations"]["io.containerd.image.name"],
        "docker.io/library/hello:1"
    );
    let m = std::fs::read(
        x.join("blobs/sha256")
            .join(d.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    assert_eq!(wisp_oci::sha256_digest(&m), d);
    let (wasm, digest) =
        wisp_oci::layout::read_image(&std::fs::read(&a).unwrap(), 64 << 20).unwrap();
    assert_eq!(wasm, std::fs::read(&hello).unwrap());
    assert_eq!(digest, d);
    // Bad input: a clear error and no file.
    let c = dir.path().join("c.tar");
    let e = err(&wisp(
        &[
            "image",
            "build",
            a.to_str().unwrap(),
            "-t",
            "x",
            "-o",
            c.to_str().unwrap(),
        ],
        &[],
        None,
    ));
    assert!(e.contains("not a WebAssembly binary"), "{e}");
    assert!(!c.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_a_deployed_function_by_name_and_version() {
    let reg = Registry::start();
    let s = Server::with(&["--token", "t0k"], &[]);
    let c = s.client_with_token("t0k");
    deploy_guest(&c, "greet", "hello").await; // v1
    deploy_guest(&c, "greet", "echo").await; // v2, active

    // The module route: the bytes as deployed, with digest, version and
    // ABI; it needs the token like the rest of /v1.
    let m = c.get("/v1/functions/greet/module?version=1").await.unwrap();
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.header("content-type"), Some("application/wasm"));
    assert_eq!(m.body.as_ref(), read_guest("hello").as_slice());
    let hello_digest = wisp_oci::sha256_digest(&read_guest("hello"));
    assert_eq!(
        m.header("etag"),
        Some(format!("\"{hello_digest}\"").as_str())
    );
    assert_eq!(m.header("x-wisp-version"), Some("1"));
    assert_eq!(m.header("x-wisp-abi"), Some("command"));
    assert_eq!(
        s.client()
            .get("/v1/functions/greet/module")
            .await
            .unwrap()
            .status,
        401
    );
    let none = c.get("/v1/functions/greet/module?version=9").await.unwrap();
    assert_eq!(none.status, 404);
    assert!(none.text().contains("no version 9"), "{}", none.text());
    assert_eq!(
        c.get("/v1/functions/nope/module").await.unwrap().status,
        404
    );

    let server = [("WISP_SERVER", s.url.as_str()), ("WISP_TOKEN", "t0k")];
    let pushed = |src: &str, tag: &str| {
        let r = format!("{}/fns/greet:{tag}", reg.host());
        let v = ok_json(&wisp(&["push", src, &r, "--json"], &server, None));
        (r, v)
    };
    // By name: the active version; by NAME@VERSION: that one.
    let (active, v) = pushed("greet", "active");
    let (first, _) = pushed("greet@1", "first");
    let tmp = tempfile::tempdir().unwrap();
    for (r, guest_name) in [(&active, "echo"), (&first, "hello")] {
        let out = tmp.path().join(format!("{guest_name}.wasm"));
        ok_json(&pull(r, &out, &[]));
        assert_eq!(std::fs::read(&out).unwrap(), read_guest(guest_name), "{r}");
    }
    // The manifest says where it came from; the shim reads wisp.abi.
    let manifest = Command::new("curl")
        .args([
            "-fsS",
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg(format!(
            "http://{}/v2/fns/greet/manifests/{}",
            reg.host(),
            v["digest"].as_str().unwrap()
        ))
        .output()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.title"],
        "greet"
    );
    assert_eq!(manifest["annotations"]["wisp.abi"], "http");
    assert_eq!(manifest["annotations"]["wisp.function.version"], "2");

    // A name the server doesn't have, a bad version, no token: clear errors.
    let e = err(&wisp(&["push", "ghost", &active], &server, None));
    assert!(
        e.contains("no such file, and the server has no such function"),
        "{e}"
    );
    assert!(e.contains("\"ghost\" not found"), "{e}");
    let e = err(&wisp(&["push", "greet@x", &active], &server, None));
    assert!(e.contains("must be a number"), "{e}");
    let e = err(&wisp(
        &["push", "greet", &active],
        &[("WISP_SERVER", s.url.as_str())],
        None,
    ));
    assert!(
        e.contains("401") || e.to_lowercase().contains("unauthorized"),
        "{e}"
    );
    let e = err(&wisp(
        &["push", "no/such/file.wasm", &active],
        &server,
        None,
    ));
    assert!(e.contains("no such file"), "{e}");
}

/// `wisp image build`'s tarball, imported by `ctr image import` into a real
/// containerd and run by the shim with `ctr run`: the whole user path of
/// docs/containerd.md, through the CLI rather than the library.
#[test]
fn an_image_from_wisp_image_build_imports_and_runs_under_ctr() {
    if !containerd_can_run() {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("wisp-ctd")
        .tempdir_in("/tmp")
        .unwrap();
    let tar = dir.path().join("argv.tar");
    let o = wisp(
        &[
            "image",
            "build",
            guest("test-argv").to_str().unwrap(),
            "-t",
            "wisp.test/argv:1",
            "-o",
            tar.to_str().unwrap(),
            "-e",
            "GREETING=from the image",
        ],
        &[],
        None,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cache = dir.path().join("cache").display().to_string();
    let ctd = wisp_bench::containerd::Containerd::start(
        &dir.path().join("ctd"),
        &shim_bin(),
        &[("WISP_SHIM_CACHE_DIR", cache)],
    )
    .unwrap_or_else(|e| panic!("starting containerd: {e:#}"));
    ctd.import(&tar)
        .unwrap_or_else(|e| panic!("ctr image import: {e:#}"));
    let images = ctd.ctr_ok(&["image", "ls", "-q"]).unwrap();
    let image = images
        .lines()
        .find(|l| l.ends_with("wisp.test/argv:1"))
        .unwrap_or_else(|| panic!("the image is not in `ctr image ls`: {images}"))
        .to_string();

    let run = |id: &str, args: &[&str]| {
        let mut a = vec![
            "run",
            "--rm",
            "--runtime",
            "io.containerd.wisp.v1",
            "--env",
            "EXIT=3",
            &image,
            id,
        ];
        a.extend_from_slice(args);
        ctd.ctr(&a).unwrap()
    };
    // The image's entrypoint and env; the exit code comes back through ctr.
    let o = run("argv-entry", &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(3), "{out}\n{}", ctd.log_tail());
    assert!(out.contains("GREETING=from the image\n"), "{out}");
    assert!(
        out.contains("argv[0]=/argv.wasm\n"),
        "named after the repository: {out}"
    );
    // Arguments given to ctr replace the entrypoint's.
    let o = run("argv-args", &["/argv.wasm", "x", "y z"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("argv[1]=x\nargv[2]=y z\n"),
        "{out}\n{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        ctd.log_tail()
    );
    // Nothing is left behind.
    assert_eq!(ctd.ctr_ok(&["task", "ls", "-q"]).unwrap().trim(), "");
    assert_eq!(ctd.ctr_ok(&["container", "ls", "-q"]).unwrap().trim(), "");
}
