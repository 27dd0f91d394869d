//! Test harness: guest fixtures built once, and a `wisp serve` child process.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wisp_cli::client::Client;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One built guest program, from `functions/target/manifest.json`.
#[derive(Clone, Debug)]
pub struct Built {
    pub wasm: PathBuf,
    pub native: Option<PathBuf>,
    /// "command" (wasm32-wasip1 module) or "http" (wasi:http component).
    pub abi: String,
}

/// Build every guest (wasm + native) once per test run with
/// `scripts/build-functions` (a cargo no-op when up to date, as in CI where
/// `.ci/run` built them already) and read the manifest.
pub fn manifest() -> &'static std::collections::HashMap<String, Built> {
    static M: OnceLock<std::collections::HashMap<String, Built>> = OnceLock::new();
    M.get_or_init(|| {
        let root = repo_root();
        let st = Command::new(root.join("scripts/build-functions"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .stdout(Stdio::null())
            .status()
            .expect("running scripts/build-functions");
        assert!(st.success(), "scripts/build-functions failed");
        let text = std::fs::read_to_string(root.join("functions/target/manifest.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, e)| {
                let wasm = PathBuf::from(e["wasm"].as_str().unwrap());
                let native = e["native"].as_str().map(PathBuf::from);
                let abi = e["abi"].as_str().unwrap_or("command").to_string();
                (k.clone(), Built { wasm, native, abi })
            })
            .collect()
    })
}

/// The deterministic inputs (`scripts/gen-inputs`), generated once.
pub fn inputs() -> &'static Path {
    static I: OnceLock<PathBuf> = OnceLock::new();
    I.get_or_init(|| {
        let root = repo_root();
        let dir = root.join("functions/target/inputs");
        let st = Command::new(root.join("scripts/gen-inputs"))
            .arg(&dir)
            .stdout(Stdio::null())
            .status()
            .expect("running scripts/gen-inputs");
        assert!(st.success(), "scripts/gen-inputs failed");
        dir
    })
}

/// Path of a guest built for wasm32-wasip1.
pub fn guest(name: &str) -> PathBuf {
    let b = manifest()
        .get(name)
        .unwrap_or_else(|| panic!("guest {name} is not in functions/target/manifest.json"));
    b.wasm.clone()
}

pub fn read_guest(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).unwrap()
}

pub fn wisp_bin() -> &'static str {
    env!("CARGO_BIN_EXE_wisp")
}

/// A running `wisp serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Server {
    pub fn start() -> Server {
        Server::with(&[], &[])
    }

    /// A server that lets functions be granted dirs under the temp dir and
    /// the guests' build outputs (inputs). `Server::start` allows none.
    pub fn allowing_dirs() -> Server {
        let tmp = std::env::temp_dir();
        let _ = inputs();
        let built = repo_root().join("functions/target");
        Server::with(
            &[
                "--allow-dir",
                tmp.to_str().unwrap(),
                "--allow-dir",
                built.to_str().unwrap(),
            ],
            &[],
        )
    }

    pub fn with(args: &[&str], envs: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (child, url) = spawn(&home, &args, &envs);
        Server {
            child,
            url,
            home,
            _tmp: Some(tmp),
            args,
            envs,
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.url, None)
    }

    pub fn client_with_token(&self, t: &str) -> Client {
        Client::new(&self.url, Some(t.to_string()))
    }

    /// SIGKILL the server and start a new one on the same home.
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        let (child, url) = spawn(&self.home, &self.args, &self.envs);
        self.child = child;
        self.url = url;
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for exit (graceful).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same home after `terminate`/`kill9`.
    pub fn restart_after_stop(&mut self) {
        let (child, url) = spawn(&self.home, &self.args, &self.envs);
        self.child = child;
        self.url = url;
    }

    /// Stop gracefully and start again on the same home with other flags.
    pub fn restart_with(&mut self, args: &[&str]) {
        self.terminate();
        self.args = args.iter().map(|s| s.to_string()).collect();
        let (child, url) = spawn(&self.home, &self.args, &self.envs);
        self.child = child;
        self.url = url;
    }

    pub fn restart(&mut self) {
        self.terminate();
        let (child, url) = spawn(&self.home, &self.args, &self.envs);
        self.child = child;
        self.url = url;
    }

    /// A metric's value (first series whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let r = self.client().get("/metrics").await.unwrap();
        let text = r.text();
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .unwrap_or_else(|| panic!("metric {prefix} not found in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }
}

fn spawn(home: &Path, args: &[String], envs: &[(String, String)]) -> (Child, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.with_extension("log"))
        .unwrap();
    let mut cmd = Command::new(wisp_bin());
    cmd.arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--home")
        .arg(home)
        .args(args);
    cmd.env_remove("WISP_TOKEN").env("WISP_LOG", "warn");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("spawning wisp serve");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let url = line
        .trim()
        .strip_prefix("wisp listening on ")
        .unwrap_or_else(|| {
            let log = std::fs::read_to_string(home.with_extension("log")).unwrap_or_default();
            panic!("unexpected first line {line:?}; server log:\n{log}")
        })
        .to_string();
    (child, url)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deploy raw bytes with a config JSON; returns the reply.
pub async fn deploy(
    c: &Client,
    name: &str,
    wasm: &[u8],
    config: serde_json::Value,
) -> wisp_cli::client::Reply {
    let cfg = serde_json::to_vec(&config).unwrap();
    let (ct, body) = wisp_cli::client::multipart(&[
        ("module", "application/wasm", wasm),
        ("config", "application/json", &cfg),
    ]);
    c.send(
        http::Method::PUT,
        &format!("/v1/functions/{name}"),
        &[("content-type", &ct)],
        body,
    )
    .await
    .unwrap()
}

/// GET `path` and parse the JSON answer; panics unless 2xx.
pub async fn get_json(c: &Client, path: &str) -> serde_json::Value {
    c.get(path).await.unwrap().ok().unwrap().json().unwrap()
}

/// The activation record of the request that got `r` (its `Wisp-Activation-Id`).
pub async fn activation_of(c: &Client, r: &wisp_cli::client::Reply) -> serde_json::Value {
    let id = r
        .header("wisp-activation-id")
        .expect("the reply has a Wisp-Activation-Id");
    get_json(c, &format!("/v1/activations/{id}")).await
}

/// Deploy a fixture with default config; panics unless 201/200.
pub async fn deploy_guest(c: &Client, name: &str, guest_name: &str) -> serde_json::Value {
    let r = deploy(c, name, &read_guest(guest_name), serde_json::json!({})).await;
    assert!(
        r.status.is_success(),
        "deploy {name}: {} {}",
        r.status,
        r.text()
    );
    r.json().unwrap()
}

pub fn error_code(r: &wisp_cli::client::Reply) -> String {
    r.json()
        .ok()
        .and_then(|j| j["error"]["code"].as_str().map(String::from))
        .unwrap_or_else(|| format!("<not an error body: {}>", r.text()))
}

/// A real nginx on 127.0.0.1 (Debian's nginx-light), serving `root` for GET
/// and accepting WebDAV PUTs under `/db/` into `root/db/`. Killed on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _tmp: tempfile::TempDir,
}

impl Nginx {
    pub fn start(root: &Path) -> Nginx {
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let root = root.canonicalize().unwrap();
        std::fs::create_dir_all(tmp.path().join("db")).unwrap();
        // As root, nginx workers would drop to `nobody` and could not write
        // into our private temp dir.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let conf = format!(
            r#"daemon off;
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ root {root}; }}
        location /db/ {{
            root {tmp};
            dav_methods PUT DELETE;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
        }}
    }}
}}
"#,
            tmp = tmp.path().display(),
            root = root.display()
        );
        let conf_path = tmp.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed (apt-get install nginx-light)");
        let child = Command::new(nginx)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                std::fs::read_to_string(tmp.path().join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            _tmp: tmp,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Where WebDAV PUTs under /db/ land.
    pub fn db_dir(&self) -> PathBuf {
        self._tmp.path().join("db")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether the containerd scenario can run here (root, containerd, runc);
/// if not, say why loudly, or fail under scripts/test (WISP_TEST_STRICT).
pub fn containerd_can_run() -> bool {
    let Some(why) = wisp_bench::containerd::unavailable() else {
        return true;
    };
    if std::env::var_os("WISP_TEST_STRICT").is_some() {
        panic!("containerd tests can't run (WISP_TEST_STRICT is set): {why}");
    }
    eprintln!("\n!!!!!!!!\n!!!!!!!! SKIPPED: containerd tests need {why}\n!!!!!!!!\n");
    false
}

/// The shim binary next to `wisp` (`cargo test --workspace` builds it,
/// since wisp-shim has integration tests).
pub fn shim_bin() -> std::path::PathBuf {
    let p = std::path::Path::new(wisp_bin()).with_file_name("containerd-shim-wisp-v1");
    assert!(
        p.is_file(),
        "{} is missing: build it with cargo build -p wisp-shim (cargo test --workspace does)",
        p.display()
    );
    p
}
