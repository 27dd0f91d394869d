//! Subcommands.

mod bench;
mod client_cmds;
mod local;
mod namespace;
mod oci;
mod openwhisk;
mod serve;
mod workflow;

use clap::{Args, Parser, Subcommand};

pub use client_cmds::{DeployCommand, InvokeCommand};
pub use local::{CompileCommand, RunCommand};
pub use oci::{ImageCommand, PullCommand, PushCommand, RegistryFlags};
pub use serve::ServeCommand;

/// Wisp: a WebAssembly serverless platform. Every request runs in a fresh,
/// isolated Wasm instance that starts in microseconds.
#[derive(Parser, Debug)]
#[command(name = "wisp", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags shared by the commands that talk to a server.
#[derive(Args, Debug, Clone)]
pub struct ClientOpts {
    /// Server base URL.
    #[arg(
        long,
        env = "WISP_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Bearer token for the management API (default: none).
    #[arg(long, env = "WISP_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, env = "WISP_JSON", global = true)]
    pub json: bool,
    /// The namespace to act on (default: the token's own: `default` for the
    /// admin token, the key's namespace for a `uuid:key`).
    #[arg(long, env = "WISP_NAMESPACE", global = true)]
    pub namespace: Option<String>,
}

impl ClientOpts {
    /// `/v1/{rest}` in the chosen namespace.
    pub fn api(&self, rest: &str) -> String {
        match &self.namespace {
            Some(ns) => format!("/v1/namespaces/{ns}/{rest}"),
            None => format!("/v1/{rest}"),
        }
    }

    /// Where a function of the chosen namespace is invoked.
    pub fn invoke_path(&self, name: &str) -> String {
        wisp_executor::invoke_path(
            self.namespace
                .as_deref()
                .unwrap_or(wisp_core::DEFAULT_NAMESPACE),
            name,
        )
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Wisp server (gateway + executor + store).
    Serve(ServeCommand),
    /// Deploy a Wasm module as a function (a new immutable version).
    Deploy(DeployCommand),
    /// Invoke a function over HTTP; the response body goes to stdout.
    Invoke(InvokeCommand),
    /// List functions.
    Ls(client_cmds::LsCommand),
    /// Remove a function and all its versions.
    Rm(client_cmds::RmCommand),
    /// Show recent activations of a function (or one activation with its log).
    Logs(client_cmds::LogsCommand),
    /// Make an earlier version of a function active again.
    Rollback(client_cmds::RollbackCommand),
    /// Manage namespaces and their keys (create, ls, rm, rotate-key).
    Namespace(namespace::NamespaceCommand),
    /// Run a module once, locally, without a server.
    Run(RunCommand),
    /// Precompile a module ahead of time for this machine's engine.
    Compile(CompileCommand),
    /// Run the benchmark scenarios against real baselines and write a report.
    Bench(bench::BenchCommand),
    /// Serve one Wasm action over OpenWhisk's action proxy protocol
    /// (/init, /run): the entry point of a Wisp OpenWhisk runtime image.
    #[command(name = "openwhisk-runtime")]
    OpenWhiskRuntime(openwhisk::OpenWhiskRuntimeCommand),
    /// Push a module to an OCI registry (Wasm artifact format).
    Push(PushCommand),
    /// Pull a module from an OCI registry (Wasm artifact, older Wasm layer, or image).
    Pull(PullCommand),
    /// Build OCI image layout tarballs (`wisp image build`).
    Image(ImageCommand),
    /// Workflows: deploy, run, list, show, remove, and their runs' logs.
    Workflow(workflow::WorkflowCommand),
}

impl Cli {
    /// Run the chosen command; returns the process exit code.
    pub fn execute(self) -> anyhow::Result<i32> {
        match self.command {
            Command::Serve(c) => c.execute(),
            Command::Deploy(c) => block_on(c.execute()),
            Command::Invoke(c) => block_on(c.execute()),
            Command::Ls(c) => block_on(c.execute()),
            Command::Rm(c) => block_on(c.execute()),
            Command::Logs(c) => block_on(c.execute()),
            Command::Rollback(c) => block_on(c.execute()),
            Command::Namespace(c) => block_on(c.execute()),
            Command::Run(c) => c.execute(),
            Command::Compile(c) => c.execute(),
            Command::Bench(c) => c.execute(),
            Command::OpenWhiskRuntime(c) => c.execute(),
            Command::Push(c) => block_on(c.execute()),
            Command::Pull(c) => block_on(c.execute()),
            Command::Image(c) => c.execute(),
            Command::Workflow(c) => block_on(c.execute()),
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<i32>>>(f: F) -> anyhow::Result<i32> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f)
}

/// `K=V` pairs.
/// A `-d`/`--data` argument's bytes: none (empty), `@-` (stdin), `@FILE`
/// (the file), or the literal text, as curl reads it.
pub(crate) fn read_data(data: Option<&str>) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    Ok(match data {
        None => Vec::new(),
        Some("@-") => {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).context("reading stdin")?;
            b
        }
        Some(d) if d.starts_with('@') => {
            std::fs::read(&d[1..]).with_context(|| format!("reading {}", &d[1..]))?
        }
        Some(d) => d.as_bytes().to_vec(),
    })
}

pub(crate) fn parse_kv(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}
