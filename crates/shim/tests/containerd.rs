//! `containerd-shim-wisp-v1` under a real containerd (no mocks).
//!
//! Each test starts a private `containerd` (root, state and sockets under a
//! temp dir, no CRI plugin) whose PATH holds the shim under its runtime
//! name, imports a small OCI image layout built here, and drives it with
//! `ctr`. Needs root and containerd (`scripts/test` installs it); without
//! them every test says so loudly and passes.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const RUNTIME: &str = "io.containerd.wisp.v1";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A guest from `functions/target/manifest.json`, built by
/// `scripts/build-functions` unless `scripts/test` already did.
fn guest(name: &str) -> PathBuf {
    static M: OnceLock<serde_json::Value> = OnceLock::new();
    let m = M.get_or_init(|| {
        let root = repo_root();
        let manifest = root.join("functions/target/manifest.json");
        let built = std::fs::read_to_string(&manifest)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .filter(|m| {
                m["test-argv"]["wasm"]
                    .as_str()
                    .is_some_and(|p| Path::new(p).exists())
            });
        if let Some(m) = built {
            return m;
        }
        let st = Command::new(root.join("scripts/build-functions"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_BUILD_TARGET")
            .stdout(Stdio::null())
            .status()
            .expect("running scripts/build-functions");
        assert!(st.success(), "scripts/build-functions failed");
        let text = std::fs::read_to_string(root.join("functions/target/manifest.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    });
    PathBuf::from(
        m[name]["wasm"]
            .as_str()
            .unwrap_or_else(|| panic!("guest {name} is not in the manifest")),
    )
}

/// Whether these tests can run here; if not, say why, loudly.
fn can_run() -> bool {
    let Some(why) = wisp_bench::containerd::unavailable() else {
        return true;
    };
    // scripts/test (CI) installs containerd and runs as root: there a skip
    // would hide a broken setup, so it fails instead.
    if std::env::var_os("WISP_TEST_STRICT").is_some() {
        panic!("containerd shim tests can't run (WISP_TEST_STRICT is set): {why}");
    }
    eprintln!(
        "\n!!!!!!!!\n!!!!!!!! SKIPPED: containerd shim tests need root and containerd: {why}\n!!!!!!!!\n"
    );
    false
}

/// A private containerd (the benchmark's, `wisp_bench::containerd`) with
/// the shim under test on its PATH; stopped, cleaned up and removed on drop.
struct Containerd(wisp_bench::containerd::Containerd);

impl Containerd {
    fn start() -> Containerd {
        Containerd::with_env(&[])
    }

    fn with_env(env: &[(&str, &str)]) -> Containerd {
        // Short paths: unix socket addresses are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("wisp-ctd")
            .tempdir_in("/tmp")
            .unwrap()
            .keep();
        let mut env: Vec<(&str, String)> = env.iter().map(|(k, v)| (*k, v.to_string())).collect();
        env.push((
            "WISP_SHIM_CACHE_DIR",
            dir.join("cache").display().to_string(),
        ));
        let shim = Path::new(env!("CARGO_BIN_EXE_containerd-shim-wisp-v1"));
        Containerd(
            wisp_bench::containerd::Containerd::start(&dir, shim, &env)
                .unwrap_or_else(|e| panic!("starting containerd: {e:#}")),
        )
    }

    fn dir(&self) -> &Path {
        self.0.dir()
    }

    fn log(&self) -> String {
        self.0.log()
    }

    fn ctr_cmd(&self, args: &[&str]) -> Command {
        self.0.ctr_cmd(args)
    }

    fn ctr(&self, args: &[&str]) -> Output {
        self.0.ctr(args).unwrap()
    }

    /// `ctr run --rm --runtime io.containerd.wisp.v1 [opts] IMAGE ID [args]`.
    fn run(&self, opts: &[&str], image: &str, id: &str, args: &[&str]) -> Output {
        let mut a = vec!["run", "--rm", "--runtime", RUNTIME];
        a.extend_from_slice(opts);
        a.extend_from_slice(&[image, id]);
        a.extend_from_slice(args);
        self.ctr(&a)
    }

    /// Import a one-layer image holding `files` (path in image, contents),
    /// named `wisp.test/NAME:latest`, entrypoint `entry`.
    fn import(&self, name: &str, files: &[(&str, &[u8])], entry: &str) -> String {
        self.import_with_links(name, files, &[], entry)
    }

    /// As `import`, plus symlinks (path in image, target).
    fn import_with_links(
        &self,
        name: &str,
        files: &[(&str, &[u8])],
        links: &[(&str, &Path)],
        entry: &str,
    ) -> String {
        let image = format!("wisp.test/{name}:latest");
        let tar = build_image(self.dir(), &image, files, links, entry);
        self.0
            .import(&tar)
            .unwrap_or_else(|e| panic!("import: {e:#}"));
        image
    }

    fn tasks(&self) -> String {
        text(&self.ctr(&["task", "ls", "-q"]).stdout)
    }

    fn containers(&self) -> String {
        text(&self.ctr(&["container", "ls", "-q"]).stdout)
    }

    /// Nothing of any container is left: no task, no container, no mount.
    fn assert_clean(&self) {
        let t0 = Instant::now();
        loop {
            let (tasks, containers) = (self.tasks(), self.containers());
            let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
            let ours: Vec<&str> = mounts
                .lines()
                .filter(|l| l.contains(self.dir().to_str().unwrap()))
                .collect();
            if tasks.trim().is_empty() && containers.trim().is_empty() && ours.is_empty() {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(5),
                "left behind: tasks {tasks:?}, containers {containers:?}, mounts {ours:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Wait until task `id` is RUNNING.
    fn wait_running(&self, id: &str) {
        let t0 = Instant::now();
        loop {
            let ls = text(&self.ctr(&["task", "ls"]).stdout);
            if ls
                .lines()
                .any(|l| l.starts_with(id) && l.contains("RUNNING"))
            {
                return;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "{id} never ran: {ls}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An OCI image layout tarball with one tar layer holding `files` and
/// `links`, config `os: wasip1, architecture: wasm`: the shape `wisp image
/// build` writes, built by the same code.
fn build_image(
    work: &Path,
    name: &str,
    files: &[(&str, &[u8])],
    links: &[(&str, &Path)],
    entry: &str,
) -> PathBuf {
    use wisp_oci::layout::LayerEntry;
    let mut dirs = std::collections::BTreeSet::new();
    let paths = files
        .iter()
        .map(|(p, _)| *p)
        .chain(links.iter().map(|(p, _)| *p));
    for p in paths {
        let mut d = Path::new(p.trim_start_matches('/')).parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            dirs.insert(x.to_string_lossy().into_owned());
            d = x.parent();
        }
    }
    let mut entries: Vec<LayerEntry> = dirs.into_iter().map(LayerEntry::Dir).collect();
    entries.extend(
        files
            .iter()
            .map(|(p, b)| LayerEntry::File(p.to_string(), b.to_vec(), 0o644)),
    );
    entries.extend(
        links
            .iter()
            .map(|(p, t)| LayerEntry::Symlink(p.to_string(), t.display().to_string())),
    );
    let mut config = serde_json::Map::new();
    config.insert("Entrypoint".into(), serde_json::json!([entry]));
    let built = wisp_oci::layout::build_layout(&wisp_oci::layout::LayoutSpec {
        name,
        os: "wasip1",
        architecture: "wasm",
        entries,
        gzip: false,
        config,
        annotations: Default::default(),
    })
    .unwrap();
    let out = work.join(format!("img-{}.tar", name.replace(['/', ':'], "_")));
    std::fs::write(&out, built.tar).unwrap();
    out
}

fn argv_image(c: &Containerd) -> String {
    c.import(
        "argv",
        &[(
            "/test-argv.wasm",
            &std::fs::read(guest("test-argv")).unwrap(),
        )],
        "/test-argv.wasm",
    )
}

#[test]
fn output_args_env_stdin_and_exit_code_pass_through() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let img = argv_image(&c);

    let o = c.run(
        &[
            "--env",
            "GREETING=hi there",
            "--env",
            "EXIT=7",
            "--env",
            "STDERR=to stderr",
        ],
        &img,
        "argv1",
        &["/test-argv.wasm", "one", "two words"],
    );
    let out = text(&o.stdout);
    assert_eq!(o.status.code(), Some(7), "{out}\n{}", text(&o.stderr));
    assert!(out.contains("argv[0]=/test-argv.wasm\n"), "{out}");
    assert!(out.contains("argv[1]=one\nargv[2]=two words\n"), "{out}");
    assert!(out.contains("GREETING=hi there\n"), "{out}");
    assert!(
        !out.contains("WISP_SHIM_CACHE_DIR"),
        "no host env leaks in: {out}"
    );
    assert!(text(&o.stderr).contains("to stderr"), "{}", text(&o.stderr));

    // The image's entrypoint when no command is given; exit 0.
    let o = c.run(&[], &img, "argv2", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("argv[0]=/test-argv.wasm\n"));

    // stdin reaches the guest; the image's files are its `/`.
    let mut child = c
        .ctr_cmd(&[
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--env",
            "READ_STDIN=1",
            "--env",
            "LIST=/",
            &img,
            "argv3",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"piped in").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("stdin=piped in\n"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        text(&o.stdout).contains("list=test-argv.wasm\n"),
        "{}",
        text(&o.stdout)
    );

    // A CGI guest's output is passed through untouched.
    let hello = c.import(
        "hello",
        &[("/hello.wasm", &std::fs::read(guest("hello")).unwrap())],
        "/hello.wasm",
    );
    let o = c.run(&[], &hello, "hello1", &[]);
    assert_eq!(
        text(&o.stdout),
        "Content-Type: text/plain\n\nHello, world!\n"
    );
    c.assert_clean();
}

/// Start `ctr run --rm` of a spinning guest in the background.
fn spin(c: &Containerd, img: &str, id: &str) -> Child {
    let child = c
        .ctr_cmd(&["run", "--rm", "--runtime", RUNTIME, img, id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.wait_running(id);
    child
}

fn wait_child(mut child: Child, limit: Duration) -> (Option<i32>, Duration, String) {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (st.code(), t0.elapsed(), err);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            panic!("ctr run did not return within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill_stops_a_spinning_guest_within_a_second() {
    if !can_run() {
        return;
    }
    let c = Containerd::with_env(&[("WISP_SHIM_STOP_GRACE_MS", "300")]);
    let img = c.import(
        "spin",
        &[("/spin.wasm", &std::fs::read(guest("test-spin")).unwrap())],
        "/spin.wasm",
    );

    let child = spin(&c, &img, "spin-kill");
    let t0 = Instant::now();
    let o = c.ctr(&["task", "kill", "-s", "SIGKILL", "spin-kill"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (code, _, err) = wait_child(child, Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(code, Some(137), "128 + SIGKILL: {err}");
    assert!(took < Duration::from_secs(1), "SIGKILL took {took:?}");

    // SIGTERM: the guest can't handle it; after the grace period it is stopped.
    let child = spin(&c, &img, "spin-term");
    let t0 = Instant::now();
    let o = c.ctr(&["task", "kill", "spin-term"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let (code, _, err) = wait_child(child, Duration::from_secs(10));
    let took = t0.elapsed();
    assert_eq!(code, Some(143), "128 + SIGTERM: {err}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1300),
        "SIGTERM with a 300 ms grace took {took:?}"
    );
    c.assert_clean();
}

#[test]
fn twenty_containers_at_once() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let img = argv_image(&c);
    // Compile once first so the 20 measure starting, not 20 compiles.
    let o = c.run(&[], &img, "warm", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));

    let t0 = Instant::now();
    let children: Vec<(usize, Child)> = (0..20)
        .map(|i| {
            let id = format!("many-{i}");
            let env = format!("EXIT={}", i % 5);
            let arg = format!("n{i}");
            let child = c
                .ctr_cmd(&[
                    "run",
                    "--rm",
                    "--runtime",
                    RUNTIME,
                    "--env",
                    &env,
                    &img,
                    &id,
                    "/test-argv.wasm",
                    &arg,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (i, child)
        })
        .collect();
    for (i, child) in children {
        let o = child.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some((i % 5) as i32),
            "{i}: {}",
            text(&o.stderr)
        );
        assert!(
            text(&o.stdout).contains(&format!("argv[1]=n{i}\n")),
            "{i}: {}",
            text(&o.stdout)
        );
    }
    eprintln!("20 containers at once: {:?}", t0.elapsed());
    c.assert_clean();
}

/// The shim daemon's pid of running task `id` (a task's pid is its shim's).
fn task_pid(c: &Containerd, id: &str) -> u32 {
    let ls = text(&c.ctr(&["task", "ls"]).stdout);
    ls.lines()
        .find(|l| l.starts_with(id))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid for {id} in {ls}"))
}

fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Stop and remove the running `ids` (started with `spin`).
fn kill_all(c: &Containerd, children: Vec<(String, Child)>) {
    for (id, _) in &children {
        let o = c.ctr(&["task", "kill", "-s", "SIGKILL", id]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
    for (_, child) in children {
        let (code, _, err) = wait_child(child, Duration::from_secs(10));
        assert_eq!(code, Some(137), "{err}");
    }
}

/// `WISP_SHIM_GROUP=node` (the default): every container is served by one
/// daemon (the start of a container spawns no process), which outlives the
/// last one by the linger and then leaves; the next container starts a new
/// one. `container` gives each its own daemon.
#[test]
fn containers_share_one_daemon_that_lingers_then_leaves() {
    if !can_run() {
        return;
    }
    let c = Containerd::with_env(&[("WISP_SHIM_LINGER_MS", "1500")]);
    let img = c.import(
        "spin",
        &[("/spin.wasm", &std::fs::read(guest("test-spin")).unwrap())],
        "/spin.wasm",
    );
    let hello = c.import(
        "hello",
        &[("/hello.wasm", &std::fs::read(guest("hello")).unwrap())],
        "/hello.wasm",
    );
    let ids = ["grp-a", "grp-b", "grp-c"];
    let children: Vec<(String, Child)> = ids
        .iter()
        .map(|id| (id.to_string(), spin(&c, &img, id)))
        .collect();
    let pids: Vec<u32> = ids.iter().map(|id| task_pid(&c, id)).collect();
    assert!(pids.iter().all(|p| *p == pids[0]), "one daemon: {pids:?}");
    let daemon = pids[0];
    // A command run meanwhile is served by it too, and its output is whole.
    let o = c.run(&[], &hello, "grp-hello", &[]);
    assert_eq!(
        text(&o.stdout),
        "Content-Type: text/plain\n\nHello, world!\n"
    );
    kill_all(&c, children);
    c.assert_clean();
    // No container left: it lingers (1.5 s), then leaves.
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(daemon), "the daemon left before its linger");
    let t0 = Instant::now();
    while process_alive(daemon) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the idle daemon {daemon} never left\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The next container starts a new one, and runs as before.
    let child = spin(&c, &img, "grp-d");
    let again = task_pid(&c, "grp-d");
    assert_ne!(again, daemon);
    kill_all(&c, vec![("grp-d".into(), child)]);
    c.assert_clean();
    drop(c);
    // containerd gone: the lingering daemon leaves at once, not after the linger.
    let t0 = Instant::now();
    while process_alive(again) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the daemon outlived containerd"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let c = Containerd::with_env(&[("WISP_SHIM_GROUP", "container")]);
    let img = c.import(
        "spin",
        &[("/spin.wasm", &std::fs::read(guest("test-spin")).unwrap())],
        "/spin.wasm",
    );
    let children: Vec<(String, Child)> = ["own-a", "own-b"]
        .iter()
        .map(|id| (id.to_string(), spin(&c, &img, id)))
        .collect();
    let (a, b) = (task_pid(&c, "own-a"), task_pid(&c, "own-b"));
    assert_ne!(a, b, "a daemon per container");
    kill_all(&c, children);
    c.assert_clean();
    // A daemon of its own leaves with its container.
    let t0 = Instant::now();
    while process_alive(a) || process_alive(b) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "per-container daemons stayed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // A wrong setting is refused at start with a clear error.
    let c = Containerd::with_env(&[("WISP_SHIM_GROUP", "cluster")]);
    let img = c.import(
        "hello",
        &[("/hello.wasm", &std::fs::read(guest("hello")).unwrap())],
        "/hello.wasm",
    );
    let o = c.run(&[], &img, "bad-group", &[]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("WISP_SHIM_GROUP") && err.contains("node, pod or container"),
        "{err}"
    );
    c.assert_clean();
}

/// The daemon's pool is shared by its containers: with every slot held by
/// a running guest, the next container waits for a slot (it does not fail
/// to instantiate) and runs as soon as one is free.
#[test]
fn a_container_waits_for_a_free_slot_of_the_shared_pool() {
    if !can_run() {
        return;
    }
    let c = Containerd::with_env(&[("WISP_SHIM_POOL_INSTANCES", "2")]);
    let img = c.import(
        "spin",
        &[("/spin.wasm", &std::fs::read(guest("test-spin")).unwrap())],
        "/spin.wasm",
    );
    let hello = c.import(
        "hello",
        &[("/hello.wasm", &std::fs::read(guest("hello")).unwrap())],
        "/hello.wasm",
    );
    let a = spin(&c, &img, "slot-a");
    let b = spin(&c, &img, "slot-b");
    let waiting = c
        .ctr_cmd(&["run", "--rm", "--runtime", RUNTIME, &hello, "slot-hello"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.wait_running("slot-hello");
    std::thread::sleep(Duration::from_millis(500));
    let ls = text(&c.ctr(&["task", "ls"]).stdout);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("slot-hello") && l.contains("RUNNING")),
        "hello should wait for a slot: {ls}"
    );
    kill_all(&c, vec![("slot-a".into(), a)]);
    let o = waiting.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    assert_eq!(
        text(&o.stdout),
        "Content-Type: text/plain\n\nHello, world!\n"
    );
    kill_all(&c, vec![("slot-b".into(), b)]);
    c.assert_clean();
}

fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = String::new();
    s.read_to_string(&mut r)?;
    Ok(r)
}

/// Retry until the server is up (it binds during `start`, but `ctr run -d`
/// may return a moment before).
fn get_retrying(addr: &str, path: &str) -> String {
    let t0 = Instant::now();
    loop {
        match http_get(addr, path) {
            Ok(r) => return r,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("GET {addr}{path}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stop a detached task gracefully (SIGTERM) and remove it; returns its
/// exit status (`ctr task delete` exits with it).
fn stop_and_remove(c: &Containerd, id: &str) -> Option<i32> {
    let o = c.ctr(&["task", "kill", id]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let t0 = Instant::now();
    loop {
        let ls = text(&c.ctr(&["task", "ls"]).stdout);
        if ls
            .lines()
            .any(|l| l.starts_with(id) && l.contains("STOPPED"))
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "{id} did not stop: {ls}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = c.ctr(&["task", "delete", id]).status.code();
    let o = c.ctr(&["container", "rm", id]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    status
}

#[test]
fn http_functions_answer_in_their_network_namespace() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let hh = c.import(
        "hello-http",
        &[("/hello.wasm", &std::fs::read(guest("hello-http")).unwrap())],
        "/hello.wasm",
    );

    // Host networking: the component answers on 127.0.0.1:PORT.
    let port = free_port();
    let listen = format!("WISP_LISTEN=127.0.0.1:{port}");
    let o = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--net-host",
        "--env",
        &listen,
        &hh,
        "http-host",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = get_retrying(&format!("127.0.0.1:{port}"), "/");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    let r2 = get_retrying(&format!("127.0.0.1:{port}"), "/status/201");
    assert!(
        r2.starts_with("HTTP/1.1 201"),
        "a fresh instance per request: {r2}"
    );
    assert_eq!(
        stop_and_remove(&c, "http-host"),
        Some(0),
        "a drained server exits 0"
    );
    assert!(
        http_get(&format!("127.0.0.1:{port}"), "/").is_err(),
        "the listener is gone after delete"
    );

    // A command module marked HTTP speaks CGI, as under `wisp serve`.
    let cgi = c.import(
        "cgi",
        &[("/cgi.wasm", &std::fs::read(guest("test-cgi")).unwrap())],
        "/cgi.wasm",
    );
    let port2 = free_port();
    let listen2 = format!("WISP_LISTEN=127.0.0.1:{port2}");
    let o = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--net-host",
        "--env",
        &listen2,
        "--annotation",
        "wisp.abi=http",
        "--env",
        "FROM_SPEC=yes",
        &cgi,
        "http-cgi",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let r = get_retrying(&format!("127.0.0.1:{port2}"), "/p?status=404");
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = get_retrying(&format!("127.0.0.1:{port2}"), "/x/y?a=1");
    assert!(
        r.contains("PATH_INFO=/x/y") && r.contains("FROM_SPEC=yes"),
        "{r}"
    );
    assert_eq!(stop_and_remove(&c, "http-cgi"), Some(0));

    // A real network namespace: reachable inside it, not from the host.
    let ns = format!("wisp-test-{}", std::process::id());
    let netns = NetNs::add(&ns);
    let o = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        "--with-ns",
        &format!("network:/var/run/netns/{ns}"),
        "--env",
        "WISP_LISTEN=127.0.0.1:8080",
        &hh,
        "http-ns",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let inside = get_in_netns(&netns.0);
    assert!(
        inside.starts_with("HTTP/1.1 200"),
        "from inside the namespace: {inside:?}"
    );
    let host = http_get("127.0.0.1:8080", "/");
    assert!(
        host.as_ref()
            .map_or(true, |r| !r.starts_with("HTTP/1.1 200")),
        "the host's loopback must not reach it: {host:?}"
    );
    assert_eq!(stop_and_remove(&c, "http-ns"), Some(0));
    drop(netns);
    c.assert_clean();
}

/// `GET http://127.0.0.1:8080/` from inside network namespace `ns` (curl
/// under `ip netns exec`), retried for up to 10 s until it connects: the
/// whole response, or what the last try printed.
fn get_in_netns(ns: &str) -> String {
    let t0 = Instant::now();
    loop {
        let o = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-s", "-i"])
            .arg("http://127.0.0.1:8080/")
            .output()
            .unwrap();
        if o.status.success() || t0.elapsed() > Duration::from_secs(10) {
            return text(&o.stdout);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the CRI (containerd 1.6) does with a pod under RuntimeClass `wisp`,
/// replayed with `ctr`: the sandbox container gets the pod's network
/// namespace by path, and each container of the pod gets
/// `/proc/<sandbox task pid>/ns/net`, where that pid is the shim's own
/// (a host-namespace process). Two pods, each serving on 127.0.0.1:8080 in
/// its own namespace: both answer there, and the host's loopback doesn't.
/// Before the shim mapped that path to the sandbox's namespace, both
/// servers bound on the host and the second failed with "address in use".
#[test]
fn pod_containers_serve_in_their_sandboxs_network_namespace() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let hh = c.import(
        "hello-http",
        &[("/hello.wasm", &std::fs::read(guest("hello-http")).unwrap())],
        "/hello.wasm",
    );
    let pause = c.import("pause", &[("/pause", b"not run")], "/pause");
    let mut pods = vec![];
    for i in 0..2 {
        let ns = NetNs::add(&format!("wisp-pod{i}-{}", std::process::id()));
        let sandbox = format!("sandbox{i}");
        let o = c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--with-ns",
            &format!("network:/var/run/netns/{}", ns.0),
            "--annotation",
            "io.kubernetes.cri.container-type=sandbox",
            "--annotation",
            &format!("io.kubernetes.cri.sandbox-id={sandbox}"),
            &pause,
            &sandbox,
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        c.wait_running(&sandbox);
        // The sandbox task's pid, as the CRI reads it.
        let ls = text(&c.ctr(&["task", "ls"]).stdout);
        let pid = ls
            .lines()
            .find(|l| l.starts_with(&sandbox))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("no pid for {sandbox}: {ls}"))
            .to_string();
        let app = format!("app{i}");
        let o = c.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--with-ns",
            &format!("network:/proc/{pid}/ns/net"),
            "--annotation",
            "io.kubernetes.cri.container-type=container",
            "--annotation",
            &format!("io.kubernetes.cri.sandbox-id={sandbox}"),
            "--env",
            "WISP_LISTEN=127.0.0.1:8080",
            &hh,
            &app,
        ]);
        assert!(o.status.success(), "{}\n{}", text(&o.stderr), c.log());
        c.wait_running(&app);
        pods.push((ns, sandbox, app));
    }
    for (ns, _, app) in &pods {
        let inside = get_in_netns(&ns.0);
        assert!(
            inside.starts_with("HTTP/1.1 200"),
            "{app} from inside its pod's namespace: {inside:?}\n{}",
            c.log()
        );
    }
    let host = http_get("127.0.0.1:8080", "/");
    assert!(
        host.as_ref()
            .map_or(true, |r| !r.starts_with("HTTP/1.1 200")),
        "the host's loopback must not reach a pod: {host:?}"
    );
    // As the kubelet stops a pod: its containers, then the sandbox.
    for (ns, sandbox, app) in pods {
        assert_eq!(stop_and_remove(&c, &app), Some(0));
        let o = c.ctr(&["task", "kill", "-s", "SIGKILL", &sandbox]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let t0 = Instant::now();
        while !text(&c.ctr(&["task", "ls"]).stdout)
            .lines()
            .any(|l| l.starts_with(&sandbox) && l.contains("STOPPED"))
        {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "{sandbox} did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(c.ctr(&["task", "delete", &sandbox]).status.success());
        assert!(c.ctr(&["container", "rm", &sandbox]).status.success());
        drop(ns);
    }
    c.assert_clean();
}

/// A function that can't bind its port fails `start` with the reason, and
/// the shim lives on: dropping the function's half-built runtime used to
/// panic the shim (Tokio refuses to drop a runtime on an async thread), so
/// `ctr run` hung, as the kubelet's start did for a pod's second replica
/// while both served in the host's namespace.
#[test]
fn a_port_in_use_fails_start_clearly() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let hh = c.import(
        "hello-http",
        &[("/hello.wasm", &std::fs::read(guest("hello-http")).unwrap())],
        "/hello.wasm",
    );
    let port = free_port();
    let listen = format!("WISP_LISTEN=127.0.0.1:{port}");
    let run = |id: &str| {
        let mut cmd = c.ctr_cmd(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--net-host",
            "--env",
            &listen,
            &hh,
            id,
        ]);
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                panic!("ctr run {id} hung:\n{}", c.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    };
    let o = run("first");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(get_retrying(&format!("127.0.0.1:{port}"), "/").starts_with("HTTP/1.1 200"));
    let o = run("second");
    assert!(!o.status.success(), "the second can't bind the same port");
    let err = text(&o.stderr);
    assert!(err.contains(&format!("binding 127.0.0.1:{port}")), "{err}");
    assert!(!c.log().contains("panicked"), "{}", c.log());
    // The first still serves; the second is removed as a failed start is.
    assert!(get_retrying(&format!("127.0.0.1:{port}"), "/").starts_with("HTTP/1.1 200"));
    let _ = c.ctr(&["task", "delete", "-f", "second"]);
    let _ = c.ctr(&["container", "rm", "second"]);
    assert_eq!(stop_and_remove(&c, "first"), Some(0));
    c.assert_clean();
}

struct NetNs(String);

impl NetNs {
    fn add(name: &str) -> NetNs {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
        let st = Command::new("ip")
            .args(["netns", "add", name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        let st = Command::new("ip")
            .args(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
            .status()
            .unwrap();
        assert!(st.success());
        NetNs(name.into())
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn bad_modules_fail_clearly_and_leave_nothing() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();

    let bad = c.import("bad", &[("/bad.wasm", b"this is not wasm")], "/bad.wasm");
    let o = c.run(&[], &bad, "bad1", &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("not a WebAssembly binary"),
        "{}",
        text(&o.stderr)
    );
    // The command names a file the image doesn't have.
    let o = c.run(&[], &bad, "bad2", &["/missing.wasm"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("/missing.wasm: the module is not in the image"),
        "{}",
        text(&o.stderr)
    );
    // An import the host does not provide.
    let wasm = wat::parse_str(r#"(module (import "env" "nope" (func)) (func (export "_start")))"#)
        .unwrap();
    let imp = c.import("import", &[("/imp.wasm", &wasm)], "/imp.wasm");
    let o = c.run(&[], &imp, "bad3", &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("imports `env::nope`"),
        "{}",
        text(&o.stderr)
    );
    // A symlink out of the image is not followed to the host.
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret.wasm");
    std::fs::write(&secret, std::fs::read(guest("hello")).unwrap()).unwrap();
    let link_img = c.import_with_links("link", &[], &[("/link.wasm", &secret)], "/link.wasm");
    let o = c.run(&[], &link_img, "bad4", &[]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o.stdout));
    assert!(
        text(&o.stderr).contains("not in the image"),
        "{}",
        text(&o.stderr)
    );

    // A trap: out of memory under the spec's limit, status 134 and a message.
    let bomb = c.import(
        "bomb",
        &[("/bomb.wasm", &std::fs::read(guest("test-membomb")).unwrap())],
        "/bomb.wasm",
    );
    let o = c.run(&["--memory-limit", "16777216"], &bomb, "bad5", &[]);
    assert_eq!(o.status.code(), Some(134), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("wasm trap") && text(&o.stderr).contains("out of memory"),
        "{}",
        text(&o.stderr)
    );
    c.assert_clean();
    assert!(
        c.log().contains("not a WebAssembly binary"),
        "the error is in containerd's log too"
    );
}

/// `ctr` opens its FIFO read ends in background goroutines and drops the
/// ones it has not finished opening when the task is deleted: with its
/// threads starved of CPU, a short task's whole output used to be lost
/// (about 4 % of runs here; runc's shim has the same race). The shim opens
/// the FIFOs at create and reports the exit only once they are read.
#[test]
fn short_outputs_survive_a_starved_ctr() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let hello = c.import(
        "hello",
        &[("/hello.wasm", &std::fs::read(guest("hello")).unwrap())],
        "/hello.wasm",
    );
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let burners: Vec<_> = (0..4)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
                }
            })
        })
        .collect();
    let mut lost = Vec::new();
    let mut expected = None;
    for i in 0..80 {
        let o = c.run(&[], &hello, &format!("starved{i}"), &[]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let out = text(&o.stdout);
        match &expected {
            None => expected = Some(out),
            Some(e) if *e != out => lost.push((i, out.len())),
            _ => {}
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for b in burners {
        b.join().unwrap();
    }
    assert!(
        expected.as_deref().is_some_and(|e| e.contains("Hello")),
        "{expected:?}"
    );
    assert!(
        lost.is_empty(),
        "runs with output lost (run, bytes): {lost:?}"
    );
    c.assert_clean();
}

/// The installed launcher's `-v`: (status, stdout).
fn launcher_version(c: &Containerd) -> (Option<i32>, String) {
    let o = Command::new(c.dir().join("bin/containerd-shim-wisp-v1"))
        .arg("-v")
        .output()
        .unwrap();
    (o.status.code(), text(&o.stdout))
}

#[test]
fn the_launcher_answers_start_and_delete_without_the_daemon_binary() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let bin = c.dir().join("bin");
    let daemon_bin = bin.join("containerd-shim-wisp-v1-daemon");
    // Installed as on a node: the launcher a file of its own (it looks for
    // the daemon in its own directory), the daemon beside it.
    let launcher = std::fs::symlink_metadata(bin.join("containerd-shim-wisp-v1")).unwrap();
    assert!(launcher.is_file(), "the launcher is not a plain file");
    assert!(daemon_bin.is_file(), "no daemon beside the launcher");
    let (code, out) = launcher_version(&c);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with("containerd-shim-wisp-v1:\n")
            && out.contains("Version: ")
            && out.contains(&format!("Daemon: {}", daemon_bin.display())),
        "{out}"
    );
    let hello = c.import(
        "hello",
        &[("/hello.wasm", &std::fs::read(guest("hello")).unwrap())],
        "/hello.wasm",
    );
    let want = "Content-Type: text/plain\n\nHello, world!\n";
    // The node's first container: the launcher execs the daemon binary,
    // whose `start` spawns the shared daemon (it lingers 60 s).
    let o = c.run(&[], &hello, "first", &[]);
    assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(0), want));

    // Without the daemon binary, the next container still runs: its
    // `start` (the daemon is alive) and its `delete` are the launcher's
    // alone; an exec of the daemon binary would have failed.
    std::fs::remove_file(&daemon_bin).unwrap();
    for id in ["second", "third"] {
        let o = c.run(&[], &hello, id, &[]);
        assert_eq!(
            (o.status.code(), text(&o.stdout).as_str()),
            (Some(0), want),
            "{id}: {}\n{}",
            text(&o.stderr),
            c.log()
        );
    }
    c.assert_clean();
    // containerd ran the launcher's `delete` after each: it found nothing to
    // complain about.
    let log = c.log();
    assert_eq!(log.matches("cleaning up dead shim").count(), 3, "{log}");
    assert!(!log.contains("failed to clean up"), "{log}");
    assert!(!log.contains("is missing"), "{log}");
    let (code, out) = launcher_version(&c);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("(missing)"), "{out}");

    // A container that needs a new daemon (one of its own) does need the
    // daemon binary: it fails, saying which file is missing, in `ctr`'s
    // error and containerd's log, and leaves nothing behind.
    let o = c.run(&["--env", "WISP_SHIM_GROUP=container"], &hello, "own", &[]);
    assert_ne!(o.status.code(), Some(0));
    let said = format!(
        "the shim daemon {} is missing: install containerd-shim-wisp-v1-daemon next to \
         containerd-shim-wisp-v1",
        daemon_bin.display()
    );
    assert!(text(&o.stderr).contains(&said), "{}", text(&o.stderr));
    assert!(c.log().contains(&said), "{}", c.log());
    c.assert_clean();

    // Put back, the same container runs.
    let real = Path::new(env!("CARGO_BIN_EXE_containerd-shim-wisp-v1-daemon"));
    std::os::unix::fs::symlink(real, &daemon_bin).unwrap();
    let o = c.run(&["--env", "WISP_SHIM_GROUP=container"], &hello, "own", &[]);
    assert_eq!((o.status.code(), text(&o.stdout).as_str()), (Some(0), want));
    c.assert_clean();
}

#[test]
fn the_launchers_delete_cleans_up_after_a_killed_daemon() {
    if !can_run() {
        return;
    }
    let c = Containerd::start();
    let img = c.import(
        "spin",
        &[("/spin.wasm", &std::fs::read(guest("test-spin")).unwrap())],
        "/spin.wasm",
    );
    let child = spin(&c, &img, "doomed");
    let daemon = task_pid(&c, "doomed");
    // The daemon dies under its running container: containerd runs `shim
    // delete` (the launcher's) in the bundle, which unmounts the rootfs
    // and answers for the task; `ctr run --rm` then removes the container.
    // SAFETY: kill has no memory preconditions.
    assert_eq!(unsafe { libc::kill(daemon as i32, libc::SIGKILL) }, 0);
    let (code, _, err) = wait_child(child, Duration::from_secs(20));
    assert_ne!(code, Some(0), "{err}");
    c.assert_clean();
    let log = c.log();
    assert!(log.contains("cleaning up dead shim"), "{log}");
    assert!(!log.contains("failed to clean up"), "{log}");
    // The next container gets a new daemon and runs.
    let child = spin(&c, &img, "next");
    assert_ne!(task_pid(&c, "next"), daemon);
    kill_all(&c, vec![("next".into(), child)]);
    c.assert_clean();
}
