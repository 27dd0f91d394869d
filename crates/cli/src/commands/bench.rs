//! `wisp bench`: the papers' experiments against real baselines (see the
//! `wisp-bench` crate).

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use wisp_bench::{Options, Scenario};

/// Run the benchmark scenarios and write a report.
#[derive(Args, Debug)]
pub struct BenchCommand {
    /// Scenario to run (repeatable; default: serial, cold, concurrent, mixed, memory, runtime, size).
    /// `chaos` (kill -9 under load, soak, noisy neighbours), `containerd` (Wasm images through
    /// the Wisp shim against runc containers; needs root and containerd), `openwhisk` (the WOW
    /// study's experiments through /api/v1 against a runc container per action; needs root and
    /// containerd for the baseline), `workflow` (one workflow in headless Chromium, on an
    /// edge-sized cgroup and unconstrained) and `k8s` (replicas to Ready on a single-node
    /// Kubernetes, shim against runc; needs root) run only when named.
    #[arg(long = "scenario", value_parser = parse_scenario)]
    scenarios: Vec<Scenario>,
    /// Run every scenario briefly (a smoke test; numbers are not for conclusions).
    #[arg(long)]
    quick: bool,
    /// Output directory for results.json, report.md and the SVG plots.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The guests' manifest written by scripts/build-functions.
    #[arg(
        long,
        env = "WISP_BENCH_MANIFEST",
        default_value = "functions/target/manifest.json"
    )]
    manifest: PathBuf,
    /// The `wisp` binary to launch as the server (default: this one).
    #[arg(long, hide = true)]
    wisp_bin: Option<PathBuf>,
    /// Serial: time per function and platform, e.g. 10s.
    #[arg(long, value_parser = wisp_core::units::parse_duration)]
    duration: Option<Duration>,
    /// Cold: repetitions of remove + deploy + first request.
    #[arg(long)]
    cold_runs: Option<usize>,
    /// Memory: warm function counts, comma-separated (e.g. 1,10,100,1000).
    #[arg(long, value_delimiter = ',')]
    memory_counts: Option<Vec<usize>>,
    /// Concurrent: duration of the rate-limited run, e.g. 60s.
    #[arg(long, value_parser = wisp_core::units::parse_duration)]
    concurrent_duration: Option<Duration>,
    /// Do not measure the runc container baseline.
    #[arg(long)]
    no_container: bool,
    /// Chaos: the parts to run, comma-separated (default: kill,soak,noisy).
    #[arg(long, value_delimiter = ',', value_parser = ["kill", "soak", "noisy"])]
    chaos_parts: Vec<String>,
    /// Containerd: the shim binary to install under a private containerd
    /// (default: containerd-shim-wisp-v1 next to this wisp binary), with
    /// containerd-shim-wisp-v1-daemon from the same directory.
    #[arg(long, env = "WISP_BENCH_SHIM")]
    shim_bin: Option<PathBuf>,
    /// Containerd: repetitions per function and side (default: 15; 2 with --quick).
    #[arg(long)]
    containerd_runs: Option<usize>,
    /// OpenWhisk: most containers the container baseline keeps at once
    /// (default 8: OpenWhisk's 2,048 MB of invoker user memory over 256 MB per action).
    #[arg(long)]
    ow_containers: Option<usize>,
    /// K8s: the wisp-operator binary (default: wisp-operator next to this wisp binary).
    #[arg(long, env = "WISP_BENCH_OPERATOR")]
    operator_bin: Option<PathBuf>,
    /// K8s: replica counts, comma-separated (default: 1,5,20; 1 with --quick).
    #[arg(long, value_delimiter = ',')]
    k8s_replicas: Option<Vec<usize>>,
    /// K8s: repetitions per replica count and way (default: 5; 1 with --quick).
    #[arg(long)]
    k8s_runs: Option<usize>,
}

fn parse_scenario(s: &str) -> Result<Scenario, String> {
    s.parse()
}

impl BenchCommand {
    /// Run; exit code 1 if a scenario failed.
    pub fn execute(self) -> Result<i32> {
        let wisp_bin = match self.wisp_bin {
            Some(p) => p,
            None => std::env::current_exe().context("locating the wisp binary")?,
        };
        let shim_bin = self.shim_bin.unwrap_or_else(|| {
            wisp_bin
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("containerd-shim-wisp-v1")
        });
        let operator_bin = self.operator_bin.unwrap_or_else(|| {
            wisp_bin
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join("wisp-operator")
        });
        let mut o = Options::new(wisp_bin, self.out, self.manifest);
        o.quick = self.quick;
        o.scenarios = self.scenarios;
        o.duration = self.duration;
        o.cold_runs = self.cold_runs;
        o.memory_counts = self.memory_counts;
        o.concurrent_duration = self.concurrent_duration;
        o.no_container = self.no_container;
        o.chaos_parts = self.chaos_parts;
        o.shim_bin = Some(shim_bin);
        o.containerd_runs = self.containerd_runs;
        o.ow_containers = self.ow_containers;
        o.operator_bin = Some(operator_bin);
        o.k8s_replicas = self.k8s_replicas;
        o.k8s_runs = self.k8s_runs;
        let w = wisp_bench::run(o)?;
        println!("report:  {}", w.markdown.display());
        println!("results: {}", w.json.display());
        println!(
            "plots:   {}",
            w.plots
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (name, err) in &w.failed {
            eprintln!("scenario {name} failed: {err}");
        }
        Ok(if w.failed.is_empty() { 0 } else { 1 })
    }
}
