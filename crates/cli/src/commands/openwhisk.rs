//! `wisp openwhisk-runtime`: Wisp as an OpenWhisk action container.

use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use wisp_core::Limits;
use wisp_openwhisk::proxy::{ProxyOptions, router};
use wisp_runtime::{EngineOptions, Runtime};

/// Serve the OpenWhisk action proxy protocol (POST /init, POST /run) for one
/// Wasm action, as an OpenWhisk runtime image's entry point.
#[derive(Args, Debug)]
pub struct OpenWhiskRuntimeCommand {
    /// Address to serve on. OpenWhisk's invoker talks to port 8080 of the
    /// action container; the protocol has no credentials, so keep the
    /// container on the invoker's network only.
    #[arg(long, env = "WISP_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Memory an activation may use, e.g. 256MiB (OpenWhisk's default).
    #[arg(long, env = "WISP_MEMORY", default_value = "256MiB", value_parser = wisp_core::units::parse_size)]
    memory: u64,
    /// Longest an activation may run when the platform's deadline is later, e.g. 60s.
    #[arg(long, env = "WISP_TIMEOUT", default_value = "60s", value_parser = wisp_core::units::parse_duration)]
    timeout: Duration,
    /// Largest result (the action's stdout), e.g. 1MiB.
    #[arg(long, env = "WISP_MAX_RESULT", default_value = "1MiB", value_parser = wisp_core::units::parse_size)]
    max_result: u64,
    /// Log bytes kept per activation (stderr), e.g. 1MiB (the most Wisp keeps).
    #[arg(long, env = "WISP_MAX_LOG", default_value = "1MiB", value_parser = wisp_core::units::parse_size)]
    max_log: u64,
    /// Largest module /init accepts, e.g. 64MiB.
    #[arg(long, env = "WISP_MAX_MODULE", default_value = "64MiB", value_parser = wisp_core::units::parse_size)]
    max_module: u64,
    /// Largest /run body (the parameters), e.g. 16MiB.
    #[arg(long, env = "WISP_MAX_PARAMS", default_value = "16MiB", value_parser = wisp_core::units::parse_size)]
    max_params: u64,
}

impl OpenWhiskRuntimeCommand {
    /// Serve until SIGTERM/SIGINT.
    pub fn execute(self) -> Result<i32> {
        super::serve::init_tracing(false);
        let limits = Limits {
            memory_bytes: self.memory,
            timeout_ms: self.timeout.as_millis().max(1) as u64,
            max_response_bytes: self.max_result,
            max_log_bytes: self.max_log,
            ..Limits::default()
        };
        limits
            .validate()
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("checking the limits")?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("wisp-ow")
            .build()?;
        rt.block_on(async move {
            // One action per container, one activation at a time: a small
            // pool is plenty and keeps the container's footprint small.
            let runtime = Arc::new(
                Runtime::new(EngineOptions {
                    pool_instances: 16,
                    max_memory_bytes: self.memory.max(64 << 10),
                    ..Default::default()
                })
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context("starting the Wasm engine")?,
            );
            let opts = ProxyOptions {
                limits,
                max_module_bytes: self.max_module as usize,
                max_run_bytes: self.max_params as usize,
                api_host: std::env::var("__OW_API_HOST").ok(),
            };
            let listener = tokio::net::TcpListener::bind(self.listen)
                .await
                .with_context(|| format!("binding {}", self.listen))?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "wisp OpenWhisk action proxy listening");
            eprintln!("wisp openwhisk-runtime listening on {addr}");
            axum::serve(listener, router(runtime, opts))
                .with_graceful_shutdown(super::serve::shutdown_signal())
                .await?;
            Ok(0)
        })
    }
}
