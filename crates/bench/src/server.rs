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
    /// The cgroup it runs in, if constrained like an edge node.
    edge: Option<std::sync::Arc<crate::edge::EdgeNode>>,
}

impl WispServer {
    /// Start `bin serve` on a free port with `--home home` and `args`.
    pub fn start(bin: &Path, home: &Path, args: &[&str]) -> Result<WispServer> {
        WispServer::start_in(bin, home, args, None)
    }

    /// [`WispServer::start`] inside `edge` (joined before exec; restarts
    /// stay in it).
    pub fn start_in(
        bin: &Path,
        home: &Path,
        args: &[&str],
        edge: Option<std::sync::Arc<crate::edge::EdgeNode>>,
    ) -> Result<WispServer> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let (child, url) = spawn(bin, home, &args, edge.as_deref())?;
        Ok(WispServer {
            child,
            url,
            home: home.to_path_buf(),
            bin: bin.to_path_buf(),
            args,
            http: Http::new(true),
            edge,
        })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stop (SIGTERM, then SIGKILL after 10 s) and start again on the same home.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let (child, url) = spawn(&self.bin, &self.home, &self.args, self.edge.as_deref())?;
        self.child = child;
        self.url = url;
        // Old pooled connections point at the dead process.
        self.http = Http::new(true);
        Ok(())
    }

    /// SIGKILL: no shutdown path runs at all (no drain, no flush). Reaps the
    /// process, so the kernel has released its files and the home's lock.
    pub fn kill9(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: plain kill(2) on our own child, not yet reaped (so the
            // pid can't have been reused).
            unsafe {
                libc::kill(self.child.id() as i32, libc::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }

    /// Start again on the same home after the process exited (see
    /// [`WispServer::kill9`]); sends no signal. On error the old (dead)
    /// child stays, and `respawn` may be called again.
    pub fn respawn(&mut self) -> Result<()> {
        let _ = self.child.wait();
        let (child, url) = spawn(&self.bin, &self.home, &self.args, self.edge.as_deref())?;
        self.child = child;
        self.url = url;
        self.http = Http::new(true);
        Ok(())
    }

    /// SIGTERM and wait (SIGKILL past 10 s).
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return; // already exited and reaped: its pid may be someone else's now
        }
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

/// How long `wisp serve` may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(60);

fn spawn(
    bin: &Path,
    home: &Path,
    args: &[String],
    edge: Option<&crate::edge::EdgeNode>,
) -> Result<(Child, String)> {
    std::fs::create_dir_all(home).with_context(|| format!("creating {}", home.display()))?;
    let log_path = home.with_extension("log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)?;
    let mut cmd = Command::new(bin);
    if let Some(e) = edge {
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook only makes async-signal-safe syscalls.
        unsafe {
            cmd.pre_exec(e.join_hook());
        }
    }
    let mut child = cmd
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
    // Read the first line on a thread, so a server that hangs before
    // listening fails the start instead of blocking the bench forever.
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("bench-serve-stdout".into())
        .spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
    let line = match rx.recv_timeout(START_TIMEOUT) {
        Ok(r) => r.unwrap_or_default(),
        Err(_) => format!("(nothing within {} s)", START_TIMEOUT.as_secs()),
    };
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

/// CPU time (user + system) a process has used, in seconds (Linux `/proc`).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is the
    // first, utime the 12th and stime the 13th.
    let rest = s.rsplit_once(')').context("bad stat line")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).context("no utime")?.parse::<f64>()?
        + f.get(12).context("no stime")?.parse::<f64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks / hz)
}

/// Machine-wide CPU counters: the first eight fields of `/proc/stat`'s
/// `cpu` line, in jiffies: user, nice, system, idle, iowait, irq, softirq,
/// steal. Differences of two readings over the difference of their sums
/// are fractions of all cores, used by any process (other jobs on a shared
/// machine included) or the kernel.
pub fn machine_cpu_fields() -> Result<[u64; 8]> {
    let s = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = s
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line")?;
    let mut out = [0u64; 8];
    for (o, x) in out.iter_mut().zip(line.split_whitespace().skip(1)) {
        *o = x.parse().context("bad /proc/stat")?;
    }
    Ok(out)
}

/// Names of [`machine_cpu_fields`].
pub const MACHINE_CPU_FIELDS: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// The kernel's TCP counters that show a listen queue overflowing
/// (`/proc/net/netstat`, machine-wide): `ListenOverflows`, `ListenDrops`,
/// `TCPSynRetrans` (SYN and SYN-ACK retransmissions: a dropped SYN is
/// retried after 1 s, then 3 s, ...),
/// `TCPTimeouts`. Missing counters are absent from the map.
pub fn tcp_counters() -> std::collections::BTreeMap<String, u64> {
    const WANT: [&str; 4] = [
        "ListenOverflows",
        "ListenDrops",
        "TCPSynRetrans",
        "TCPTimeouts",
    ];
    let mut m = std::collections::BTreeMap::new();
    let Ok(s) = std::fs::read_to_string("/proc/net/netstat") else {
        return m;
    };
    let lines: Vec<&str> = s.lines().collect();
    for pair in lines.chunks(2) {
        let [h, v] = pair else { continue };
        for (k, x) in h.split_whitespace().zip(v.split_whitespace()).skip(1) {
            if WANT.contains(&k)
                && let Ok(x) = x.parse()
            {
                m.insert(k.to_string(), x);
            }
        }
    }
    m
}

/// `after - before` of [`tcp_counters`] readings.
pub fn tcp_delta(
    before: &std::collections::BTreeMap<String, u64>,
    after: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.saturating_sub(before.get(k).copied().unwrap_or(0)),
            )
        })
        .collect()
}

/// Open file descriptors of a process (its sockets included), from
/// `/proc/PID/fd`.
pub fn open_fds(pid: u32) -> Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))
        .with_context(|| format!("listing /proc/{pid}/fd"))?
        .count() as u64)
}

/// Cores in use between two [`machine_cpu_fields`] readings: (all busy,
/// by niced processes).
pub fn machine_cores(before: &[u64; 8], after: &[u64; 8]) -> (f64, f64) {
    let d: Vec<u64> = (0..8).map(|i| after[i].saturating_sub(before[i])).collect();
    let total: u64 = d.iter().sum();
    if total == 0 {
        return (f64::NAN, f64::NAN);
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let busy = (total - d[3] - d[4]) as f64 / total as f64 * cores;
    (busy, d[1] as f64 / total as f64 * cores)
}

/// The accept-queue size (backlog) of the socket listening on 127.0.0.1:`port`,
/// as `ss -ltn` reports it (its Send-Q column); `None` without `ss`.
pub fn listen_backlog(port: u16) -> Option<u64> {
    let o = Command::new("ss")
        .args(["-Hltn", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.starts_with("LISTEN"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Port of a `http://host:port` URL.
pub fn url_port(url: &str) -> Option<u16> {
    url.rsplit(':').next()?.trim_end_matches('/').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_counter_deltas() {
        assert_eq!(url_port("http://127.0.0.1:40123"), Some(40123));
        assert_eq!(url_port("http://127.0.0.1:40123/"), Some(40123));
        assert_eq!(url_port("http://127.0.0.1"), None);
        let a = [("ListenOverflows".to_string(), 5u64)].into();
        let b = [("ListenOverflows".to_string(), 12u64)].into();
        assert_eq!(tcp_delta(&a, &b)["ListenOverflows"], 7);
        // This process is alive and has used some CPU, and /proc/stat reads.
        assert!(cpu_seconds(std::process::id()).unwrap() >= 0.0);
        assert!(open_fds(std::process::id()).unwrap() >= 3);
        let m = machine_cpu_fields().unwrap();
        assert!(m.iter().sum::<u64>() > 0);
    }
}
