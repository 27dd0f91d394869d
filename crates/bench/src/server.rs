//! Launching `wisp serve` as a child process and driving its API.

use crate::http::{Http, multipart};
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::Method;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wisp serve --listen 127.0.0.1:0`, killed on drop.
pub struct WispServer {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// Its `--home`.
    pub home: PathBuf,
    bin: PathBuf,
    args: Vec<String>,
    http: Http,
}

impl WispServer {
    /// Start `bin serve` on a free port with `--home home` and `args`.
    pub fn start(bin: &Path, home: &Path, args: &[&str]) -> Result<WispServer> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, url) = spawn(bin, home, &args)?;
        Ok(WispServer {
            child,
            url,
            home: home.to_path_buf(),
            bin: bin.to_path_buf(),
            args,
            http: Http::new(true),
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop (SIGTERM, then SIGKILL after 10 s) and start again on the same home.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let (child, url) = spawn(&self.bin, &self.home, &self.args)?;
        self.child = child;
        self.url = url;
        // Old pooled connections point at the dead process.
        self.http = Http::new(true);
        Ok(())
    }

    /// SIGTERM and wait (SIGKILL past 10 s).
    pub fn stop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident set size of the server process, in bytes.
    pub fn rss_bytes(&self) -> Result<u64> {
        rss_bytes(self.child.id())
    }

    /// `PUT /v1/functions/{name}` with `config`; returns the reply.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        config: &serde_json::Value,
    ) -> Result<crate::http::Reply> {
        let cfg = serde_json::to_vec(config)?;
        let (ct, body) = multipart(&[
            ("module", "application/wasm", wasm),
            ("config", "application/json", &cfg),
        ]);
        let r = self
            .http
            .send(
                Method::PUT,
                &format!("{}/v1/functions/{name}", self.url),
                &[("content-type", &ct)],
                Bytes::from(body),
            )
            .await?;
        r.ok().with_context(|| format!("deploying {name}"))
    }

    /// `DELETE /v1/functions/{name}` (a 404 is fine).
    pub async fn remove(&self, name: &str) -> Result<()> {
        let r = self
            .http
            .send(
                Method::DELETE,
                &format!("{}/v1/functions/{name}", self.url),
                &[],
                Bytes::new(),
            )
            .await?;
        if !r.status.is_success() && r.status != 404 {
            bail!("removing {name}: HTTP {} {}", r.status, r.text());
        }
        Ok(())
    }

    /// URL of a function invocation, `query` without `?` (may be empty).
    pub fn fn_url(&self, name: &str, query: &str) -> String {
        if query.is_empty() {
            format!("{}/fn/{name}", self.url)
        } else {
            format!("{}/fn/{name}?{query}", self.url)
        }
    }

    /// The API client (keep-alive).
    pub fn http(&self) -> &Http {
        &self.http
    }
}

impl Drop for WispServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(bin: &Path, home: &Path, args: &[String]) -> Result<(Child, String)> {
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let log_path = home.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("WISP_TOKEN")
        .env("WISP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("spawning {} serve", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    match line.trim().strip_prefix("wisp listening on ") {
        Some(url) => Ok((child, url.to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("`wisp serve` did not start (first line {line:?}); its log:\n{log}")
        }
    }
}

/// VmRSS of a process, in bytes (Linux `/proc`).
pub fn rss_bytes(pid: u32) -> Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .context("bad VmRSS line")?
        .parse()?;
    Ok(kb * 1024)
}
