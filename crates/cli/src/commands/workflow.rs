//! `wisp workflow deploy|run|ls|show|rm|logs`: workflows on a server.

use super::{ClientOpts, read_data};
use crate::client::{Client, encode};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use http::Method;
use std::io::Write;
use std::path::PathBuf;

/// Workflows: DAGs of functions run in-process by the server.
#[derive(Args, Debug)]
pub struct WorkflowCommand {
    #[command(subcommand)]
    command: WorkflowSub,
}

#[derive(Subcommand, Debug)]
enum WorkflowSub {
    /// Validate a definition (YAML or JSON) and store it as NAME.
    Deploy(DeployArgs),
    /// Run a workflow on an input; its output goes to stdout.
    Run(RunArgs),
    /// List workflows.
    Ls(ClientArgs),
    /// Show a workflow: its definition and the plan it resolves to.
    Show(NameArgs),
    /// Remove a workflow.
    Rm(NameArgs),
    /// Recent runs of a workflow with their step timings, or one run
    /// (--id) with its steps' activation records.
    Logs(LogsArgs),
}

#[derive(Args, Debug)]
struct ClientArgs {
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Args, Debug)]
struct NameArgs {
    /// Workflow name.
    name: String,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Args, Debug)]
struct DeployArgs {
    /// Workflow name ([a-zA-Z0-9_-], up to 64 chars).
    name: String,
    /// The definition: a .yaml/.yml or .json file (- for stdin).
    file: PathBuf,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Workflow name.
    name: String,
    /// Input: literal text, or @FILE to read a file (@- for stdin). Default: empty.
    #[arg(short = 'd', long = "data")]
    data: Option<String>,
    /// Content-Type of the input (default: none).
    #[arg(long)]
    content_type: Option<String>,
    /// Run only the steps after STEP, the input being STEP's output (hybrid runs).
    #[arg(long)]
    after: Option<String>,
    /// Write the output to FILE instead of stdout.
    #[arg(short = 'o', long)]
    output: Option<PathBuf>,
    /// Show status, run id and every step's delay and run time on stderr.
    #[arg(short = 'v', long)]
    verbose: bool,
    #[command(flatten)]
    client: ClientOpts,
}

#[derive(Args, Debug)]
struct LogsArgs {
    /// Workflow name (omit with --id).
    name: Option<String>,
    /// Show one run with its steps' activation records.
    #[arg(long)]
    id: Option<String>,
    /// How many runs, 1 to 10000 (default 20).
    #[arg(short = 'n', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    limit: u32,
    #[command(flatten)]
    client: ClientOpts,
}

impl WorkflowCommand {
    /// Run; the exit code.
    pub async fn execute(self) -> Result<i32> {
        match self.command {
            WorkflowSub::Deploy(a) => deploy(a).await,
            WorkflowSub::Run(a) => run(a).await,
            WorkflowSub::Ls(a) => ls(a).await,
            WorkflowSub::Show(a) => show(a).await,
            WorkflowSub::Rm(a) => rm(a).await,
            WorkflowSub::Logs(a) => logs(a).await,
        }
    }
}

/// Where a workflow of the chosen namespace runs.
fn wf_path(c: &ClientOpts, name: &str) -> String {
    match c.namespace.as_deref() {
        None | Some(wisp_core::DEFAULT_NAMESPACE) => format!("/wf/{name}"),
        Some(ns) => format!("/ns/{ns}/wf/{name}"),
    }
}

fn client(c: &ClientOpts) -> Client {
    Client::new(&c.server, c.token.clone())
}

async fn deploy(a: DeployArgs) -> Result<i32> {
    wisp_core::validate_name(&a.name)
        .map_err(|m| anyhow::anyhow!(m.replacen("function name", "workflow name", 1)))?;
    let text = if a.file.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b)?;
        b
    } else {
        std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?
    };
    // Parse here too, for an error before any traffic.
    let parsed =
        wisp_workflow::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
    let ctype = if text.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        "application/json"
    } else {
        "application/yaml"
    };
    let c = client(&a.client);
    let r = c
        .send(
            Method::PUT,
            &a.client.api(&format!("workflows/{}", a.name)),
            &[("content-type", ctype)],
            text,
        )
        .await?
        .ok()?;
    let v = r.json()?;
    if a.client.json {
        println!("{v}");
        return Ok(0);
    }
    let what = if v["created"].as_bool() == Some(false) {
        "unchanged"
    } else {
        "deployed"
    };
    println!(
        "{} v{} {what}: {} steps",
        v["name"].as_str().unwrap_or("?"),
        v["version"],
        parsed.steps.len()
    );
    for s in v["plan"].as_array().into_iter().flatten() {
        println!(
            "  {:<16} {} v{} ({}) <- {}{}",
            s["step"].as_str().unwrap_or("?"),
            s["function"].as_str().unwrap_or("?"),
            s["version"],
            s["abi"].as_str().unwrap_or("?"),
            s["inputs"]
                .as_array()
                .map(|i| i
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            if s["output"].as_bool() == Some(true) {
                "  [output]"
            } else {
                ""
            }
        );
    }
    println!("run: {}{}", c.base(), wf_path(&a.client, &a.name));
    Ok(0)
}

async fn run(a: RunArgs) -> Result<i32> {
    let body = read_data(a.data.as_deref())?;
    let mut path = wf_path(&a.client, &a.name);
    if let Some(s) = &a.after {
        path.push_str(&format!("?after={}", encode(s)));
    }
    let mut headers = Vec::new();
    if let Some(ct) = &a.content_type {
        headers.push(("content-type", ct.as_str()));
    }
    // Runs are public like /fn; no token is sent.
    let c = Client::new(&a.client.server, None);
    let t0 = std::time::Instant::now();
    let r = c.send(Method::POST, &path, &headers, body).await?;
    let elapsed = t0.elapsed();
    if a.verbose {
        eprintln!("status:   {}", r.status);
        eprintln!(
            "run:      {}",
            r.header("wisp-activation-id").unwrap_or("-")
        );
        for part in r.header("server-timing").unwrap_or("").split(", ") {
            if let Some((name, dur)) = part.split_once(";dur=") {
                eprintln!("  {name:<24} {dur:>10} ms");
            }
        }
        eprintln!(
            "total:    {:.3} ms (client side)",
            elapsed.as_secs_f64() * 1e3
        );
    }
    match &a.output {
        Some(f) => {
            std::fs::write(f, &r.body).with_context(|| format!("writing {}", f.display()))?
        }
        None => std::io::stdout().write_all(&r.body)?,
    }
    if !r.status.is_success() {
        if !a.verbose {
            eprintln!("status {}", r.status);
        }
        return Ok(1);
    }
    Ok(0)
}

async fn ls(a: ClientArgs) -> Result<i32> {
    let v = client(&a.client)
        .get(&a.client.api("workflows"))
        .await?
        .ok()?
        .json()?;
    if a.client.json {
        println!("{v}");
        return Ok(0);
    }
    let wfs = v["workflows"].as_array().cloned().unwrap_or_default();
    if wfs.is_empty() {
        println!("no workflows deployed (try: wisp workflow deploy NAME FILE.yaml)");
        return Ok(0);
    }
    println!("{:<24} {:>7} {:>5}  STATE", "NAME", "VERSION", "STEPS");
    for w in wfs {
        println!(
            "{:<24} {:>7} {:>5}  {}",
            w["name"].as_str().unwrap_or("?"),
            w["version"],
            w["steps"],
            w["broken"]
                .as_str()
                .map_or("ready".to_string(), |b| format!("broken: {b}"))
        );
    }
    Ok(0)
}

async fn show(a: NameArgs) -> Result<i32> {
    let v = client(&a.client)
        .get(&a.client.api(&format!("workflows/{}", a.name)))
        .await?
        .ok()?
        .json()?;
    if a.client.json {
        println!("{v}");
    } else {
        println!("{} v{}", v["name"].as_str().unwrap_or("?"), v["version"]);
        if let Some(b) = v["broken"].as_str() {
            println!("broken: {b}");
        }
        print!("{}", v["source"].as_str().unwrap_or(""));
    }
    Ok(0)
}

async fn rm(a: NameArgs) -> Result<i32> {
    client(&a.client)
        .send(
            Method::DELETE,
            &a.client.api(&format!("workflows/{}", a.name)),
            &[],
            Vec::new(),
        )
        .await?
        .ok()?;
    if !a.client.json {
        println!("removed workflow {}", a.name);
    }
    Ok(0)
}

fn ms(v: &serde_json::Value) -> String {
    format!("{:.3}", v.as_u64().unwrap_or(0) as f64 / 1e3)
}

async fn logs(a: LogsArgs) -> Result<i32> {
    let c = client(&a.client);
    let runs = match (&a.id, &a.name) {
        (Some(id), _) => {
            let v = c
                .get(&format!("/v1/activations/{id}"))
                .await?
                .ok()?
                .json()?;
            if a.client.json {
                println!("{v}");
                return Ok(0);
            }
            vec![v]
        }
        (None, Some(n)) => {
            let v = c
                .get(
                    &a.client
                        .api(&format!("workflows/{n}/runs?limit={}", a.limit)),
                )
                .await?
                .ok()?
                .json()?;
            if a.client.json {
                println!("{v}");
                return Ok(0);
            }
            v["runs"].as_array().cloned().unwrap_or_default()
        }
        (None, None) => anyhow::bail!("name a workflow, or a run with --id"),
    };
    for r in &runs {
        println!(
            "{}  {} v{}  {}  http {}  makespan {} ms{}",
            r["id"].as_str().unwrap_or("?"),
            r["workflow"].as_str().unwrap_or("?"),
            r["version"],
            r["status"].as_str().unwrap_or("?"),
            r["http_status"],
            ms(&r["makespan_us"]),
            r["error"]
                .as_str()
                .map(|e| format!("\n  error: {e}"))
                .unwrap_or_default()
        );
        println!(
            "  {:<16} {:<8} {:>10} {:>10} {:>10} {:>10}  ACTIVATION",
            "STEP", "STATUS", "DELAY_MS", "RUN_MS", "START_MS", "END_MS"
        );
        for s in r["steps"].as_array().into_iter().flatten() {
            println!(
                "  {:<16} {:<8} {:>10} {:>10} {:>10} {:>10}  {}",
                s["step"].as_str().unwrap_or("?"),
                s["status"].as_str().unwrap_or("?"),
                ms(&s["delay_us"]),
                ms(&s["run_us"]),
                ms(&s["start_us"]),
                ms(&s["end_us"]),
                s["activation_id"].as_str().unwrap_or("-")
            );
        }
        if let Some(acts) = r["activations"].as_array() {
            println!("  step activation records:");
            for x in acts {
                println!(
                    "    {} {:<16} {:<10} {}",
                    x["id"].as_str().unwrap_or("?"),
                    x["step"].as_str().unwrap_or("?"),
                    x["status"].as_str().unwrap_or("?"),
                    x["error"].as_str().unwrap_or("")
                );
            }
        }
    }
    Ok(0)
}
