//! The `wisp` command line against a real server, and its local commands.

use crate::support::*;
use std::process::{Command, Output};

fn wisp(server: &Server, args: &[&str]) -> Output {
    Command::new(wisp_bin())
        .args(args)
        .env("WISP_SERVER", &server.url)
        .env_remove("WISP_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn deploy_invoke_ls_logs_rollback_rm() {
    let s = Server::allowing_dirs();
    let hello = guest("hello");
    let cgi = guest("test-cgi");
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("f.txt"), "from dir").unwrap();
    let dir = format!("{}:/data:ro", data.path().display());

    let o = wisp(&s, &["deploy", "app", hello.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("app v1 deployed"), "{}", stdout(&o));

    let o = wisp(
        &s,
        &[
            "deploy",
            "app",
            cgi.to_str().unwrap(),
            "--env",
            "A=1",
            "--dir",
            &dir,
            "--memory",
            "64MiB",
            "--timeout",
            "3s",
            "--max-concurrency",
            "7",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("app v2 deployed"), "{}", stdout(&o));

    let o = wisp(
        &s,
        &[
            "invoke", "app", "-d", "payload", "-q", "k=v w", "--path", "/sub", "-v",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    for want in [
        "REQUEST_METHOD=POST",
        "PATH_INFO=/sub",
        "k=v w",
        "A=1",
        "--- body ---\npayload",
    ] {
        assert!(out.contains(want), "missing {want:?}:\n{out}");
    }
    let err = stderr(&o);
    assert!(
        err.contains("status:     200")
            && err.contains("activation: ")
            && err.contains("cold:       false"),
        "{err}"
    );

    let o = wisp(&s, &["invoke", "app", "-q", "read=/data/f.txt"]);
    assert_eq!(stdout(&o), "from dir");

    let o = wisp(&s, &["invoke", "app", "-X", "GET", "-q", "exit=2"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("nonzero_exit"), "{}", stdout(&o));

    let o = wisp(&s, &["ls"]);
    assert!(o.status.success());
    let t = stdout(&o);
    assert!(
        t.contains("NAME") && t.contains("app") && t.contains("64.0 MiB") && t.contains("3s"),
        "{t}"
    );
    let o = wisp(&s, &["ls", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["functions"][0]["config"]["limits"]["max_concurrency"], 7);

    let hh = manifest().get("hello-http").unwrap().wasm.clone();
    let o = wisp(
        &s,
        &[
            "deploy",
            "hh",
            hh.to_str().unwrap(),
            "--allow-outbound",
            "http://127.0.0.1:9",
            "--allow-outbound",
            "https://*.example.com",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = wisp(
        &s,
        &[
            "deploy",
            "bad",
            hh.to_str().unwrap(),
            "--allow-outbound",
            "example.com",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing scheme"), "{}", stderr(&o));
    let o = wisp(&s, &["invoke", "hh", "--path", "/status/202"]);
    assert_eq!(stdout(&o), "status 202\n");
    let o = wisp(&s, &["rm", "hh"]);
    assert!(o.status.success());

    let o = wisp(&s, &["logs", "app"]);
    let t = stdout(&o);
    assert!(t.lines().count() >= 4, "{t}");
    assert!(t.contains("success") && t.contains("error"), "{t}");
    let o = wisp(&s, &["logs", "app", "--json", "-n", "1"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let id = v["activations"][0]["id"].as_str().unwrap().to_string();
    let o = wisp(&s, &["logs", "--id", &id]);
    assert!(
        stdout(&o).contains("function exited with status 2"),
        "{}",
        stdout(&o)
    );

    let o = wisp(&s, &["rollback", "app"]);
    assert!(stdout(&o).contains("app is now at v1"), "{}", stdout(&o));
    assert_eq!(stdout(&wisp(&s, &["invoke", "app"])), "Hello, world!\n");

    let o = wisp(&s, &["rm", "app"]);
    assert!(o.status.success());
    let o = wisp(&s, &["rm", "app"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
}

#[test]
fn cli_errors_are_clear() {
    let s = Server::start();
    let o = wisp(&s, &["deploy", "x", "/no/such/file.wasm"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("reading /no/such/file.wasm"),
        "{}",
        stderr(&o)
    );
    let o = wisp(
        &s,
        &[
            "deploy",
            "x",
            guest("hello").to_str().unwrap(),
            "--memory",
            "12XB",
        ],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("invalid size unit"), "{}", stderr(&o));
    let o = Command::new(wisp_bin())
        .args(["ls", "--server", "http://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot reach the Wisp server"),
        "{}",
        stderr(&o)
    );
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), b"\0asm\x01\0\0\0\x99garbage").unwrap();
    let o = wisp(&s, &["deploy", "x", bad.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("400") && stderr(&o).contains("invalid WebAssembly module"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_locally_without_a_server() {
    // --cgi: one request under the command ABI, headers parsed off.
    let o = Command::new(wisp_bin())
        .args(["run", "--cgi", guest("hello").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello, world!\n");

    let o = Command::new(wisp_bin())
        .args([
            "run",
            guest("test-cgi").to_str().unwrap(),
            "-d",
            "body!",
            "--env",
            "E=1",
            "-q",
            "status=404",
            "-i",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "a 404 answer exits 1");
    let t = stdout(&o);
    assert!(t.starts_with("Status: 404\n"), "{t}");
    assert!(
        t.contains("E=1") && t.contains("--- body ---\nbody!"),
        "{t}"
    );

    // A wasi:http component runs locally too.
    let hh = manifest().get("hello-http").unwrap().wasm.clone();
    let o = Command::new(wisp_bin())
        .args(["run", hh.to_str().unwrap(), "-i", "--path", "/status/201"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("Status: 201\n") && stdout(&o).contains("x-wisp-test: yes"),
        "{}",
        stdout(&o)
    );
    let o = Command::new(wisp_bin())
        .args([
            "run",
            hh.to_str().unwrap(),
            "--path",
            "/fetch",
            "-q",
            "url=http://127.0.0.1:1/",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("HttpRequestDenied") && stderr(&o).contains("denied"),
        "{} / {}",
        stdout(&o),
        stderr(&o)
    );

    let o = Command::new(wisp_bin())
        .args([
            "run",
            "--cgi",
            guest("test-spin").to_str().unwrap(),
            "--timeout",
            "300ms",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("timeout"), "{}", stderr(&o));
}

#[test]
fn run_a_plain_command_like_wasmtime_run() {
    // Without --cgi a command is a program: stdout untouched.
    let o = Command::new(wisp_bin())
        .args(["run", guest("hello").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Content-Type: text/plain\n\nHello, world!\n");

    // argv (argv[0] = the file as given), env only from -e, a dir in
    // wasmtime's HOST::GUEST form, inherited stdin and stderr, exit status.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seen.txt"), "x").unwrap();
    let argv = guest("test-argv");
    let mut child = Command::new(wisp_bin())
        .args([
            "run",
            argv.to_str().unwrap(),
            "-e",
            "EXIT=3",
            "-e",
            "READ_STDIN=1",
            "-e",
            "STDERR=to stderr",
            "-e",
            "LIST=/data",
            "--dir",
            &format!("{}::/data", dir.path().display()),
            "--",
            "one",
            "-x",
            "two words",
        ])
        .env("HOST_SECRET", "no")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"typed").unwrap();
    let o = child.wait_with_output().unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(3), "{out}\n{}", stderr(&o));
    assert!(
        out.starts_with(&format!(
            "argv[0]={}\nargv[1]=one\nargv[2]=-x\nargv[3]=two words\n",
            argv.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("EXIT=3\n") && !out.contains("HOST_SECRET"),
        "{out}"
    );
    assert!(
        out.contains("stdin=typed\n") && out.contains("list=seen.txt\n"),
        "{out}"
    );
    assert_eq!(stderr(&o), "to stderr\n");

    // A trap exits 134 (as wasmtime run), with the reason on stderr.
    let o = Command::new(wisp_bin())
        .args([
            "run",
            guest("test-membomb").to_str().unwrap(),
            "--memory",
            "16MiB",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(134), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("wasm trap") && stderr(&o).contains("out of memory"),
        "{}",
        stderr(&o)
    );

    // --timeout, only when asked: 124 (as timeout(1)).
    let t0 = std::time::Instant::now();
    let o = Command::new(wisp_bin())
        .args([
            "run",
            guest("test-spin").to_str().unwrap(),
            "--timeout",
            "300ms",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(124), "{}", stderr(&o));
    assert!(stderr(&o).contains("timed out"), "{}", stderr(&o));
    assert!(t0.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn compile_writes_a_precompiled_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("hello.cwasm");
    let o = Command::new(wisp_bin())
        .args([
            "compile",
            guest("hello").to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let art = std::fs::read(&out).unwrap();
    assert!(
        art.starts_with(b"\x7fELF"),
        "a precompiled artifact is an ELF image"
    );
    // Deploying a precompiled artifact is refused: Wisp never trusts foreign native code.
    let s = Server::start();
    let o = wisp(&s, &["deploy", "x", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("precompiled"), "{}", stderr(&o));
}
