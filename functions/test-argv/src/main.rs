//! Test fixture for the plain-command ABI (`wisp run`, the containerd shim):
//! prints `argv[i]=…` for each argument, then the environment sorted as
//! `K=V` lines, then `stdin=…` with what it read when `READ_STDIN=1`;
//! writes `STDERR` to stderr; lists directory `LIST` if set; exits with
//! status `EXIT` (default 0).
use std::io::{Read, Write};

fn main() {
    let mut out = std::io::stdout().lock();
    for (i, a) in std::env::args().enumerate() {
        writeln!(out, "argv[{i}]={a}").unwrap();
    }
    let mut env: Vec<(String, String)> = std::env::vars().collect();
    env.sort();
    for (k, v) in &env {
        writeln!(out, "{k}={v}").unwrap();
    }
    let var = |k: &str| std::env::var(k).ok();
    if var("READ_STDIN").as_deref() == Some("1") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).unwrap();
        writeln!(out, "stdin={s}").unwrap();
    }
    if let Some(dir) = var("LIST") {
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        writeln!(out, "list={}", names.join(",")).unwrap();
    }
    if let Some(msg) = var("STDERR") {
        eprintln!("{msg}");
    }
    out.flush().unwrap();
    std::process::exit(var("EXIT").and_then(|c| c.parse().ok()).unwrap_or(0));
}
