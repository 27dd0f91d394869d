//! Test fixture for the command ABI. Behaviour is driven by query parameters
//! (which the host also exposes as environment variables):
//!
//! - `status=404`      emit `Status: 404 ...`
//! - `header=X-A:b`    emit an extra response header
//! - `stderr=text`     write `text` to stderr (the activation log)
//! - `exit=3`          exit with that code after answering
//! - `big=N`           write N bytes of `x` as the body
//! - `read=/path`      answer with the contents of a file (granted dir)
//! - `write=/path`     write the request body to a file, answer "ok"
//! - `raw=1`           no CGI headers at all
//!
//! Otherwise it answers with every environment variable (sorted, `K=V` lines)
//! followed by `--- body ---` and the request body.
use std::io::{Read, Write};

fn main() {
    let q = |k: &str| std::env::var(k).ok();
    let mut out = std::io::stdout().lock();
    if let Some(msg) = q("stderr") {
        eprintln!("{msg}");
    }
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body).unwrap();

    if let Some(path) = q("write") {
        if let Err(e) = std::fs::write(&path, &body) {
            write!(out, "Status: 500 Internal Server Error\n\nwrite {path}: {e}\n").unwrap();
            return;
        }
        write!(out, "Content-Type: text/plain\n\nok\n").unwrap();
        return;
    }
    if let Some(path) = q("read") {
        match std::fs::read(&path) {
            Ok(data) => {
                write!(out, "Content-Type: application/octet-stream\n\n").unwrap();
                out.write_all(&data).unwrap();
            }
            Err(e) => write!(out, "Status: 404 Not Found\n\nread {path}: {e}\n").unwrap(),
        }
        return;
    }
    if q("raw").is_none() {
        if let Some(s) = q("status") {
            let reason = if s == "404" { "Not Found" } else { "Custom" };
            write!(out, "Status: {s} {reason}\n").unwrap();
        }
        if let Some(h) = q("header") {
            write!(out, "{h}\n").unwrap();
        }
        write!(out, "Content-Type: text/plain; charset=utf-8\n\n").unwrap();
    }
    if let Some(n) = q("big").and_then(|n| n.parse::<usize>().ok()) {
        let chunk = vec![b'x'; 64 * 1024];
        let mut left = n;
        while left > 0 {
            let k = left.min(chunk.len());
            if out.write_all(&chunk[..k]).is_err() {
                std::process::exit(1);
            }
            left -= k;
        }
    } else {
        let mut vars: Vec<(String, String)> = std::env::vars().collect();
        vars.sort();
        for (k, v) in vars {
            writeln!(out, "{k}={v}").unwrap();
        }
        writeln!(out, "--- body ---").unwrap();
        out.write_all(&body).unwrap();
    }
    out.flush().unwrap();
    if let Some(code) = q("exit").and_then(|c| c.parse::<i32>().ok()) {
        std::process::exit(code);
    }
}
