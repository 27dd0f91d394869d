//! Commands that talk to a running server: deploy, invoke, ls, rm, logs, rollback.

use super::{ClientOpts, parse_kv, read_data};
use crate::client::{Client, encode, multipart};
use anyhow::{Context, Result};
use clap::Args;
use http::Method;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use wisp_core::units::{format_size, parse_duration, parse_size};
use wisp_core::{DirGrant, FunctionConfig, Limits};

/// Capabilities and limits, shared by `deploy` and `run`.
#[derive(Args, Debug, Clone, Default)]
pub struct CapabilityOpts {
    /// Environment variable for the function, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    pub env: Vec<(String, String)>,
    /// Grant a host directory: HOST:GUEST[:ro] (repeatable; HOST made absolute).
    #[arg(long = "dir", value_parser = DirGrant::parse)]
    pub dirs: Vec<DirGrant>,
    /// Memory limit per instance, e.g. 128MiB (default 128MiB).
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Wall-clock timeout per invocation, e.g. 10s (default 10s).
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Instances running at once (default 100).
    #[arg(long)]
    pub max_concurrency: Option<u32>,
    /// Requests allowed to wait for a free instance (default 1000; 429 past it).
    #[arg(long)]
    pub max_queue: Option<u32>,
    /// Longest wait for a free instance, e.g. 5s (default 5s; 503 past it).
    #[arg(long, value_parser = parse_duration)]
    pub queue_timeout: Option<Duration>,
    /// Largest request body, e.g. 16MiB (default 16MiB; 413 past it).
    #[arg(long, value_parser = parse_size)]
    pub max_body: Option<u64>,
    /// Largest response, e.g. 16MiB (default 16MiB).
    #[arg(long, value_parser = parse_size)]
    pub max_response: Option<u64>,
    /// Allow outbound HTTP to SCHEME://HOST[:PORT] (Spin syntax, wildcards `*`; repeatable; default: none).
    #[arg(long = "allow-outbound")]
    pub allow_outbound: Vec<String>,
    /// Do not serve the function on the public invoke routes (/fn/...);
    /// only authenticated APIs reach it (default: public).
    #[arg(long)]
    pub private: bool,
}

impl CapabilityOpts {
    /// The config these flags describe.
    pub fn config(&self) -> Result<FunctionConfig> {
        let mut limits = Limits::default();
        if let Some(m) = self.memory {
            limits.memory_bytes = m;
        }
        if let Some(t) = self.timeout {
            limits.timeout_ms = t.as_millis() as u64;
        }
        if let Some(c) = self.max_concurrency {
            limits.max_concurrency = c;
        }
        if let Some(q) = self.max_queue {
            limits.max_queue = q;
        }
        if let Some(q) = self.queue_timeout {
            limits.queue_timeout_ms = q.as_millis() as u64;
        }
        if let Some(b) = self.max_body {
            limits.max_body_bytes = b;
        }
        if let Some(r) = self.max_response {
            limits.max_response_bytes = r;
        }
        let mut dirs = Vec::new();
        for d in &self.dirs {
            let host = std::fs::canonicalize(&d.host)
                .with_context(|| format!("--dir {}: host directory not found", d.host))?;
            dirs.push(DirGrant {
                host: host.to_string_lossy().into_owned(),
                ..d.clone()
            });
        }
        let c = FunctionConfig {
            env: self.env.iter().cloned().collect(),
            dirs,
            limits,
            allowed_outbound_hosts: self.allow_outbound.clone(),
            private: self.private,
        };
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }
}

/// Deploy a module.
#[derive(Args, Debug)]
pub struct DeployCommand {
    /// Function name ([a-zA-Z0-9_-], up to 64 chars).
    name: String,
    /// The .wasm file, or oci://REGISTRY/REPOSITORY[:TAG|@DIGEST] for the
    /// server to pull (with its own credentials and `--insecure-registry` list).
    module: String,
    #[command(flatten)]
    caps: CapabilityOpts,
    #[command(flatten)]
    client: ClientOpts,
}

impl DeployCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        wisp_core::validate_name(&self.name).map_err(anyhow::Error::msg)?;
        let config = self.caps.config()?;
        let (ctype, body) = if self.module.starts_with("oci://") {
            let body = serde_json::json!({ "oci": self.module, "config": config });
            ("application/json".to_string(), serde_json::to_vec(&body)?)
        } else {
            let file = PathBuf::from(&self.module);
            let wasm =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let cfg_json = serde_json::to_vec(&config)?;
            multipart(&[
                ("module", "application/wasm", &wasm),
                ("config", "application/json", &cfg_json),
            ])
        };
        let c = Client::new(&self.client.server, self.client.token.clone());
        let r = c
            .send(
                Method::PUT,
                &self.client.api(&format!("functions/{}", self.name)),
                &[("content-type", &ctype)],
                body,
            )
            .await?
            .ok()?;
        let v = r.json()?;
        if self.client.json {
            println!("{v}");
        } else {
            let what = if v["created"].as_bool() == Some(false) {
                "unchanged (same module and config)"
            } else {
                "deployed"
            };
            println!(
                "{} v{} {what}: {} ({} wasm, {} compiled, compile {:.1} ms)",
                v["name"].as_str().unwrap_or("?"),
                v["version"],
                v["digest"].as_str().unwrap_or("?"),
                format_size(v["wasm_size"].as_u64().unwrap_or(0)),
                format_size(v["compiled_size"].as_u64().unwrap_or(0)),
                v["compile_ms"].as_f64().unwrap_or(0.0)
            );
            if let Some(oci) = v.get("oci") {
                println!(
                    "from: {}@{}",
                    oci["reference"].as_str().unwrap_or("?"),
                    oci["digest"].as_str().unwrap_or("?")
                );
            }
            println!(
                "invoke: {}{}",
                c.base(),
                self.client.invoke_path(&self.name)
            );
        }
        Ok(0)
    }
}

/// Invoke a function.
#[derive(Args, Debug)]
pub struct InvokeCommand {
    /// Function name.
    name: String,
    /// Request body: literal text, or @FILE to read a file (@- for stdin).
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Query parameter KEY=VALUE (repeatable; also exposed to the guest as env).
    #[arg(short = 'q', long = "query", value_parser = parse_kv)]
    query: Vec<(String, String)>,
    /// Sub-path after /fn/NAME, e.g. /users/7.
    #[arg(long, default_value = "")]
    path: String,
    /// HTTP method (default: POST with -d, GET without).
    #[arg(short = 'X', long = "method")]
    method: Option<String>,
    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Show status, timing, activation id and cold flag on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    #[command(flatten)]
    client: ClientOpts,
}

impl InvokeCommand {
    /// Run; exit code 0 for 2xx/3xx, 1 otherwise.
    pub async fn execute(self) -> Result<i32> {
        let body = read_data(self.data.as_deref())?;
        let method = match &self.method {
            Some(m) => {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes()).context("invalid method")?
            }
            None if self.data.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut path = self.client.invoke_path(&self.name);
        if !self.path.is_empty() {
            if !self.path.starts_with('/') {
                path.push('/');
            }
            path.push_str(&self.path);
        }
        if !self.query.is_empty() {
            let q: Vec<String> = self
                .query
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            path.push('?');
            path.push_str(&q.join("&"));
        }
        let mut hs: Vec<(String, String)> = Vec::new();
        for h in &self.headers {
            let (k, v) = h
                .split_once(':')
                .with_context(|| format!("header {h:?} must be \"Name: value\""))?;
            hs.push((k.trim().to_string(), v.trim().to_string()));
        }
        let href: Vec<(&str, &str)> = hs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let c = Client::new(&self.client.server, None);
        let start = std::time::Instant::now();
        let r = c.send(method, &path, &href, body).await?;
        let elapsed = start.elapsed();
        if self.verbose {
            eprintln!("status:     {}", r.status);
            eprintln!(
                "activation: {}",
                r.header("wisp-activation-id").unwrap_or("-")
            );
            eprintln!("cold:       {}", r.header("wisp-cold").unwrap_or("-"));
            eprintln!("timing:     {}", r.header("server-timing").unwrap_or("-"));
            eprintln!(
                "total:      {:.3} ms (client side)",
                elapsed.as_secs_f64() * 1e3
            );
        }
        std::io::stdout().write_all(&r.body)?;
        if !(r.status.is_success() || r.status.is_redirection()) {
            if !self.verbose {
                eprintln!("status {}", r.status);
            }
            return Ok(1);
        }
        Ok(0)
    }
}

/// List functions.
#[derive(Args, Debug)]
pub struct LsCommand {
    #[command(flatten)]
    client: ClientOpts,
}

impl LsCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let c = Client::new(&self.client.server, self.client.token.clone());
        let v = c.get(&self.client.api("functions")).await?.ok()?.json()?;
        if self.client.json {
            println!("{v}");
            return Ok(0);
        }
        let fns = v["functions"].as_array().cloned().unwrap_or_default();
        if fns.is_empty() {
            println!("no functions deployed (try: wisp deploy NAME FILE.wasm)");
            return Ok(0);
        }
        println!(
            "{:<24} {:>7} {:<8} {:>10} {:>10} {:>8} {:>9}  {:<19}  SOURCE",
            "NAME", "VERSION", "ABI", "WASM", "COMPILED", "MEMORY", "TIMEOUT", "DIGEST"
        );
        for f in fns {
            let l = &f["config"]["limits"];
            // Where the module came from: upload, or REF@MANIFEST-DIGEST.
            let source = match f.get("oci") {
                Some(o) => format!(
                    "oci://{}@{}",
                    o["reference"].as_str().unwrap_or("?"),
                    o["digest"].as_str().unwrap_or("?")
                ),
                None => "upload".to_string(),
            };
            println!(
                "{:<24} {:>7} {:<8} {:>10} {:>10} {:>8} {:>8}s  {:<19}  {source}",
                f["name"].as_str().unwrap_or("?"),
                f["version"].to_string(),
                f["abi"].as_str().unwrap_or("?"),
                format_size(f["wasm_size"].as_u64().unwrap_or(0)),
                format_size(f["compiled_size"].as_u64().unwrap_or(0)),
                format_size(l["memory_bytes"].as_u64().unwrap_or(0)),
                l["timeout_ms"].as_u64().unwrap_or(0) as f64 / 1000.0,
                &f["digest"]
                    .as_str()
                    .unwrap_or("?")
                    .chars()
                    .take(19)
                    .collect::<String>()
            );
        }
        Ok(0)
    }
}

/// Remove a function.
#[derive(Args, Debug)]
pub struct RmCommand {
    /// Function name.
    name: String,
    #[command(flatten)]
    client: ClientOpts,
}

impl RmCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let c = Client::new(&self.client.server, self.client.token.clone());
        c.send(
            Method::DELETE,
            &self.client.api(&format!("functions/{}", self.name)),
            &[],
            Vec::new(),
        )
        .await?
        .ok()?;
        if !self.client.json {
            println!("removed {}", self.name);
        }
        Ok(0)
    }
}

/// Recent activations.
#[derive(Args, Debug)]
pub struct LogsCommand {
    /// Function name (omit with --id).
    name: Option<String>,
    /// Show one activation with its full log.
    #[arg(long)]
    id: Option<String>,
    /// How many activations, 1 to 10000 (default 20).
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    #[command(flatten)]
    client: ClientOpts,
}

impl LogsCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let c = Client::new(&self.client.server, self.client.token.clone());
        if let Some(id) = &self.id {
            let a = c
                .get(&format!("/v1/activations/{id}"))
                .await?
                .ok()?
                .json()?;
            if self.client.json {
                println!("{a}");
            } else {
                print_activation(&a);
                if let Some(e) = a["error"].as_str() {
                    println!("error: {e}");
                }
                println!("--- log ---\n{}", a["log"].as_str().unwrap_or(""));
            }
            return Ok(0);
        }
        let mut path = self
            .client
            .api(&format!("activations?limit={}", self.limit));
        if let Some(n) = &self.name {
            path.push_str(&format!("&function={}", encode(n)));
        }
        let v = c.get(&path).await?.ok()?.json()?;
        if self.client.json {
            println!("{v}");
            return Ok(0);
        }
        println!(
            "{:<32} {:<16} {:>3} {:<8} {:>5} {:>5} {:>10} {:>10} {:>10}",
            "ID", "FUNCTION", "VER", "STATUS", "HTTP", "COLD", "WAIT_US", "INIT_US", "RUN_US"
        );
        for a in v["activations"].as_array().cloned().unwrap_or_default() {
            print_activation(&a);
        }
        Ok(0)
    }
}

fn print_activation(a: &serde_json::Value) {
    println!(
        "{:<32} {:<16} {:>3} {:<8} {:>5} {:>5} {:>10} {:>10} {:>10}",
        a["id"].as_str().unwrap_or("?"),
        a["function"].as_str().unwrap_or("?"),
        a["version"].to_string(),
        a["status"].as_str().unwrap_or("?"),
        a["http_status"].to_string(),
        a["cold"].to_string(),
        a["wait_us"].to_string(),
        a["init_us"].to_string(),
        a["run_us"].to_string()
    );
}

/// Roll back to an earlier version.
#[derive(Args, Debug)]
pub struct RollbackCommand {
    /// Function name.
    name: String,
    /// Version to activate (default: the one before the active version).
    #[arg(long)]
    to: Option<u32>,
    #[command(flatten)]
    client: ClientOpts,
}

impl RollbackCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let c = Client::new(&self.client.server, self.client.token.clone());
        let mut path = self
            .client
            .api(&format!("functions/{}/rollback", self.name));
        if let Some(v) = self.to {
            path.push_str(&format!("?version={v}"));
        }
        let v = c
            .send(Method::POST, &path, &[], Vec::new())
            .await?
            .ok()?
            .json()?;
        if self.client.json {
            println!("{v}");
        } else {
            println!(
                "{} is now at v{} ({})",
                self.name,
                v["version"],
                v["digest"].as_str().unwrap_or("?")
            );
        }
        Ok(0)
    }
}
