//! Commands that run locally without a server: `run` and `compile`.

use super::client_cmds::CapabilityOpts;
use super::{parse_kv, read_data};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;
use wisp_runtime::{
    CgiRequest, CommandExit, CommandRun, EXIT_TIMEOUT, EXIT_TRAP, EngineOptions, GuestInput,
    GuestOutput, Invocation, Runtime, StopHandle,
};

/// Run a module once, locally.
///
/// By default a command module runs as a plain program, like `wasmtime run`:
/// argv is the file name and ARGS, the environment is only what `-e` sets,
/// stdio is inherited, and the exit status is the guest's (134 when it
/// traps, 124 past `--timeout`). With `--cgi` it runs as one request under
/// `wisp serve`'s command ABI instead. A `wasi:http` component always runs
/// as one request.
#[derive(Args, Debug)]
pub struct RunCommand {
    /// The .wasm file.
    file: PathBuf,
    /// Arguments for the guest (argv[1..]); put them after `--` when one starts with `-`.
    args: Vec<String>,
    /// Run as one CGI request, as `wisp serve` does (default: a plain command).
    /// Implied by -d, -q, --path, -X and -i.
    #[arg(long)]
    cgi: bool,
    /// Request body: literal text, or @FILE (@- for stdin).
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Query parameter KEY=VALUE (repeatable).
    #[arg(short = 'q', long = "query", value_parser = parse_kv)]
    query: Vec<(String, String)>,
    /// Sub-path (PATH_INFO).
    #[arg(long, default_value = "")]
    path: String,
    /// HTTP method the guest sees (default: POST with -d, GET without).
    #[arg(short = 'X', long = "method")]
    method: Option<String>,
    /// Print the CGI headers and status too, not just the body.
    #[arg(short = 'i', long)]
    include: bool,
    #[command(flatten)]
    caps: CapabilityOpts,
}

impl RunCommand {
    /// Run; the exit code is the guest's in plain mode; in CGI mode 0 on
    /// success, 1 on a guest failure or an error status.
    pub fn execute(self) -> Result<i32> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(self.run())
    }

    async fn run(self) -> Result<i32> {
        let wasm = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let config = self.caps.config()?;
        let body = read_data(self.data.as_deref())?;
        let runtime = Runtime::new(EngineOptions {
            pooling: false,
            ..Default::default()
        })?;
        let loaded = runtime.load_bytes(&wasm)?;
        let cgi = self.cgi
            || self.data.is_some()
            || !self.query.is_empty()
            || !self.path.is_empty()
            || self.method.is_some()
            || self.include;
        if !cgi && let wisp_runtime::Loaded::Command(_) = &loaded {
            return self.run_plain(&runtime, &loaded, &config).await;
        }
        let method = self.method.clone().unwrap_or_else(|| {
            if self.data.is_some() {
                "POST".into()
            } else {
                "GET".into()
            }
        });
        let query: Vec<String> = self
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", crate::client::encode(k), crate::client::encode(v)))
            .collect();
        let query = query.join("&");
        let name = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "main".into());
        let req = CgiRequest {
            method: &method,
            path_info: &self.path,
            query: &query,
            headers: &http::HeaderMap::new(),
            content_length: body.len(),
            function: &name,
            server_name: "localhost",
            server_port: 0,
            remote_addr: "127.0.0.1",
        };
        let fn_env: Vec<(String, String)> = config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let wisp_runtime::Loaded::Http(_) = &loaded {
            let mut uri = if self.path.is_empty() {
                "/".to_string()
            } else {
                self.path.clone()
            };
            if !query.is_empty() {
                uri.push('?');
                uri.push_str(&query);
            }
            return run_http(
                &runtime,
                &loaded,
                &method,
                &uri,
                body,
                &fn_env,
                &config,
                self.include,
            )
            .await;
        }
        let env = wisp_runtime::build_cgi_env(&req, &fn_env);
        let args = vec![name.clone()];
        let r = runtime
            .invoke(
                &loaded,
                Invocation {
                    args: &args,
                    env: &env,
                    stdin: body.into(),
                    dirs: &config.dirs,
                    limits: &config.limits,
                },
            )
            .await;
        match r {
            Ok(out) => {
                std::io::stderr().write_all(&out.stderr)?;
                let resp = wisp_runtime::parse_cgi_response(out.stdout);
                let mut so = std::io::stdout().lock();
                if self.include {
                    writeln!(so, "Status: {}", resp.status)?;
                    for (k, v) in &resp.headers {
                        writeln!(so, "{k}: {v}")?;
                    }
                    writeln!(so)?;
                }
                so.write_all(&resp.body)?;
                Ok(if resp.status < 400 { 0 } else { 1 })
            }
            Err(e) => {
                if let Some(o) = e.output() {
                    std::io::stderr().write_all(&o.stderr)?;
                }
                eprintln!("error: {e}");
                Ok(1)
            }
        }
    }
}

impl RunCommand {
    /// A plain command: argv, env, dirs, inherited stdio, the guest's status.
    async fn run_plain(
        &self,
        runtime: &Runtime,
        loaded: &wisp_runtime::Loaded,
        config: &wisp_core::FunctionConfig,
    ) -> Result<i32> {
        let mut args = vec![self.file.to_string_lossy().into_owned()];
        args.extend(self.args.iter().cloned());
        let env: Vec<(String, String)> = config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let exit = runtime
            .run_command(
                loaded,
                CommandRun {
                    args: &args,
                    env: &env,
                    dirs: &config.dirs,
                    memory_bytes: config.limits.memory_bytes,
                    // Unlike a request, a program runs as long as it needs
                    // unless --timeout is given.
                    timeout: self.caps.timeout,
                    stdin: GuestInput::Inherit,
                    stdout: GuestOutput::Inherit,
                    stderr: GuestOutput::Inherit,
                    stop: StopHandle::new(),
                },
            )
            .await?;
        std::io::stdout().flush()?;
        Ok(match exit {
            CommandExit::Exited(code) => code,
            CommandExit::Trapped(msg) => {
                eprintln!("error: {}: wasm trap: {msg}", self.file.display());
                EXIT_TRAP
            }
            CommandExit::TimedOut(d) => {
                eprintln!(
                    "error: {}: timed out after {d:?} (--timeout)",
                    self.file.display()
                );
                EXIT_TIMEOUT
            }
            CommandExit::Stopped => unreachable!("nothing stops a local run"),
        })
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_http(
    runtime: &Runtime,
    loaded: &wisp_runtime::Loaded,
    method: &str,
    uri: &str,
    body: Vec<u8>,
    env: &[(String, String)],
    config: &wisp_core::FunctionConfig,
    include: bool,
) -> Result<i32> {
    use http_body_util::BodyExt;
    let wisp_runtime::Loaded::Http(pre) = loaded else {
        unreachable!()
    };
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .body(
            http_body_util::Full::new(bytes::Bytes::from(body))
                .map_err(|n| match n {})
                .boxed_unsync(),
        )?;
    let allow = std::sync::Arc::new(
        wisp_core::outbound::AllowList::parse(&config.allowed_outbound_hosts)
            .map_err(anyhow::Error::msg)?,
    );
    let inv = wisp_runtime::HttpInvocation {
        env,
        dirs: &config.dirs,
        limits: &config.limits,
        allow,
        hold: Box::new(()),
        lane: None,
    };
    match runtime.invoke_http(pre, req, inv, None).await {
        Ok(out) => {
            let (parts, body) = out.response.into_parts();
            let mut so = std::io::stdout().lock();
            if include {
                writeln!(so, "Status: {}", parts.status.as_u16())?;
                for (k, v) in &parts.headers {
                    writeln!(so, "{k}: {}", v.to_str().unwrap_or("?"))?;
                }
                writeln!(so)?;
            }
            let bytes = body
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("response body: {e}"))?
                .to_bytes();
            so.write_all(&bytes)?;
            let done = out.done.wait().await;
            std::io::stderr().write_all(&done.log)?;
            if let Err(e) = done.result {
                eprintln!("error: {e}");
                return Ok(1);
            }
            Ok(if parts.status.as_u16() < 400 { 0 } else { 1 })
        }
        Err(e) => {
            if let Some(o) = e.output() {
                std::io::stderr().write_all(&o.stderr)?;
            }
            eprintln!("error: {e}");
            Ok(1)
        }
    }
}

/// Precompile a module for this machine's engine (the artifact Wisp itself stores).
#[derive(Args, Debug)]
pub struct CompileCommand {
    /// The .wasm file.
    file: PathBuf,
    /// Output path (default: FILE with extension .cwasm).
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
}

impl CompileCommand {
    /// Run.
    pub fn execute(self) -> Result<i32> {
        let wasm = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        // Same engine settings as `wisp serve`, so the fingerprint matches.
        let runtime = Runtime::new(EngineOptions::default())?;
        let c = runtime.compile(&wasm)?;
        let out = self
            .output
            .unwrap_or_else(|| self.file.with_extension("cwasm"));
        wisp_store::atomic_write(&out, &c.artifact).map_err(|e| anyhow::anyhow!("{e}"))?;
        println!(
            "{} -> {} ({} bytes, {:.1} ms, engine {})",
            self.file.display(),
            out.display(),
            c.artifact.len(),
            c.compile_time.as_secs_f64() * 1e3,
            runtime.fingerprint()
        );
        Ok(0)
    }
}
