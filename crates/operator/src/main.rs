//! The `wisp-operator` binary: `run` the controller, or print the `crd`.

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use wisp_operator::controller::{self, Context};
use wisp_operator::leader::{Elector, LeaseConfig};
use wisp_operator::metrics::{self, Metrics};

/// Kubernetes operator for Wisp: WasmApp → Deployment (RuntimeClass wisp) + Service (+ Ingress, HPA).
#[derive(Parser)]
#[command(name = "wisp-operator", version)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the controller (with leader election).
    Run(RunArgs),
    /// Print the WasmApp CustomResourceDefinition as YAML (deploy/crd.yaml).
    Crd,
}

#[derive(Args)]
struct RunArgs {
    /// Watch only this namespace. Default: all namespaces.
    #[arg(long, env = "WISP_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of `/metrics` and `/healthz`. Port 0 picks a free port (logged). Default 0.0.0.0:8080.
    #[arg(long, env = "WISP_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Namespace of the leader-election Lease. Default: $POD_NAMESPACE, else wisp-system.
    #[arg(long, env = "WISP_LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease. Default wisp-operator.
    #[arg(long, env = "WISP_LEASE_NAME", default_value = "wisp-operator")]
    lease_name: String,
    /// This replica's identity in the Lease. Default: $POD_NAME, else HOSTNAME-PID.
    #[arg(long, env = "WISP_IDENTITY")]
    identity: Option<String>,
    /// How long a Lease holds without renewal (`15s`, `500ms`). Default 15s.
    #[arg(long, env = "WISP_LEASE_DURATION", default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
    /// How often to renew or try to acquire the Lease. Default 2s.
    #[arg(long, env = "WISP_LEASE_RENEW", default_value = "2s", value_parser = duration)]
    renew_every: Duration,
    /// Log as JSON lines. Log filter: WISP_LOG (default `info`).
    #[arg(long, env = "WISP_LOG_JSON")]
    log_json: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    wisp_operator::validate::parse_duration_ms(s)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("'{s}' is not a duration like 500ms, 15s, 1m"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Crd => {
            print!("{}", wisp_operator::crd::crd_yaml());
            Ok(())
        }
        Cmd::Run(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the Tokio runtime")
            .and_then(|rt| rt.block_on(run(args))),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wisp-operator: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WISP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }

    // Check everything before binding the port.
    if args.renew_every >= args.lease_duration * 2 / 3 {
        bail!(
            "--renew-every ({:?}) must be below two thirds of --lease-duration ({:?}), so a leader renews before it steps down",
            args.renew_every,
            args.lease_duration
        );
    }
    let identity = args.identity.clone().unwrap_or_else(default_identity);
    let lease = LeaseConfig {
        namespace: args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "wisp-system".to_string()),
        name: args.lease_name.clone(),
        identity: identity.clone(),
        lease_duration: args.lease_duration,
        renew_every: args.renew_every,
    };
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster service account or KUBECONFIG)")?;

    let metrics = Arc::new(Metrics::default());
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding the metrics address {}", args.metrics_addr))?;
    let addr = listener.local_addr().context("metrics listener address")?;
    tracing::info!("metrics listening on http://{addr}");
    let router = metrics::router(metrics.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        shutdown_tx.send_replace(true);
    });

    let (leader_tx, mut leader_rx) = watch::channel(false);
    tracing::info!(lease = %lease.name, namespace = %lease.namespace, %identity, "campaigning for leadership");
    let elector =
        tokio::spawn(Elector::new(client.clone(), lease).run(leader_tx, shutdown_rx.clone()));

    let mut shutdown = shutdown_rx.clone();
    loop {
        tokio::select! {
            r = leader_rx.wait_for(|l| *l) => if r.is_err() { break },
            _ = shutdown.wait_for(|s| *s) => break,
        }
        metrics.set_leader(true);
        match Context::new(client.clone(), metrics.clone(), identity.clone()).await {
            Ok(ctx) => {
                let (stop_tx, stop_rx) = oneshot::channel::<()>();
                let (mut l, mut s) = (leader_rx.clone(), shutdown_rx.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = l.wait_for(|l| !*l) => {}
                        _ = s.wait_for(|s| *s) => {}
                    }
                    let _ = stop_tx.send(());
                });
                tracing::info!(
                    namespace = args.namespace.as_deref().unwrap_or("(all)"),
                    "controller started"
                );
                controller::run(Arc::new(ctx), args.namespace.as_deref(), async move {
                    let _ = stop_rx.await;
                })
                .await;
                tracing::info!("controller stopped");
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start the controller; retrying in 5s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = shutdown.wait_for(|s| *s) => {}
                }
            }
        }
        metrics.set_leader(false);
        if *shutdown_rx.borrow() {
            break;
        }
    }
    // The elector releases the Lease, so a successor need not wait for it to expire.
    let _ = tokio::time::timeout(Duration::from_secs(5), elector).await;
    Ok(())
}

fn default_identity() -> String {
    if let Ok(pod) = std::env::var("POD_NAME") {
        return pod;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "wisp-operator".to_string());
    format!("{host}-{}", std::process::id())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
