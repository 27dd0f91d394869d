//! OCI commands: `image build` (a layout tarball for `ctr image import`),
//! `push` and `pull` (a registry). The work is `wisp-oci`'s; this file
//! parses flags, finds credentials and shows progress.

use super::parse_kv;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wisp_core::units::{format_size, parse_duration, parse_size};
use wisp_oci::registry::{ProgressEvent, RegistryClient, RegistryOptions};
use wisp_oci::{Credentials, layout};

/// Build images.
#[derive(Args, Debug)]
pub struct ImageCommand {
    #[command(subcommand)]
    command: ImageSub,
}

#[derive(Subcommand, Debug)]
enum ImageSub {
    /// Write an OCI image layout tarball holding one module (for `ctr image import`).
    Build(ImageBuildCommand),
}

impl ImageCommand {
    /// Run.
    pub fn execute(self) -> Result<i32> {
        match self.command {
            ImageSub::Build(c) => c.execute(),
        }
    }
}

/// `wisp image build FILE -t NAME[:TAG] -o image.tar`.
#[derive(Args, Debug)]
pub struct ImageBuildCommand {
    /// The .wasm module or component.
    file: PathBuf,
    /// Image name, NAME[:TAG] (tag default `latest`; a bare NAME is docker.io/library/NAME).
    #[arg(short = 't', long = "tag")]
    name: String,
    /// Where to write the tarball (written atomically).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Environment variable in the image config, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Manifest annotation KEY=VALUE, e.g. wisp.abi=http (repeatable).
    #[arg(long = "annotation", value_parser = parse_kv)]
    annotations: Vec<(String, String)>,
    /// Image config label KEY=VALUE (repeatable).
    #[arg(long = "label", value_parser = parse_kv)]
    labels: Vec<(String, String)>,
}

impl ImageBuildCommand {
    /// Run.
    pub fn execute(self) -> Result<i32> {
        let wasm = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        let img = layout::build_image(&layout::ImageSpec {
            name: self.name.clone(),
            wasm,
            file_name: None,
            env: self.env,
            annotations: self.annotations.into_iter().collect(),
            labels: self.labels.into_iter().collect(),
        })?;
        wisp_oci::atomic_write(&self.output, &img.tar)?;
        println!(
            "wrote {} ({}): {} {} ({}, entrypoint {})",
            self.output.display(),
            format_size(img.tar.len() as u64),
            img.name,
            img.manifest_digest,
            img.os,
            img.entrypoint
        );
        Ok(0)
    }
}

/// Registry flags shared by `push`, `pull` (and `serve`'s pulls).
#[derive(Args, Debug, Clone, Default)]
pub struct RegistryFlags {
    /// Registry user name (with --password-stdin or WISP_REGISTRY_PASSWORD; default: from the Docker config, else anonymous).
    #[arg(long, env = "WISP_REGISTRY_USERNAME")]
    pub username: Option<String>,
    /// Read the registry password (or token) from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// Bearer token sent as it is (instead of user and password).
    #[arg(long, env = "WISP_REGISTRY_TOKEN", hide_env_values = true)]
    pub registry_token: Option<String>,
    /// Speak plain HTTP to this registry, HOST or HOST:PORT (repeatable; loopback registries always may).
    #[arg(long = "insecure-registry")]
    pub insecure: Vec<String>,
    /// Largest module, e.g. 64MiB (default 64MiB, the server's deploy limit).
    #[arg(long, value_parser = parse_size)]
    pub max_module: Option<u64>,
    /// Bound on the whole transfer, e.g. 5m (default 5m).
    #[arg(long = "registry-timeout", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
}

impl RegistryFlags {
    /// The options these flags describe (reads stdin for --password-stdin).
    pub fn options(&self) -> Result<RegistryOptions> {
        let credentials = if let Some(t) = &self.registry_token {
            Some(Credentials::Bearer(t.clone()))
        } else if let Some(u) = &self.username {
            let password = if self.password_stdin {
                let mut p = String::new();
                std::io::stdin()
                    .read_to_string(&mut p)
                    .context("reading the password from stdin")?;
                p.trim_end_matches(['\n', '\r']).to_string()
            } else {
                std::env::var("WISP_REGISTRY_PASSWORD").map_err(|_| {
                    anyhow::anyhow!(
                        "--username needs a password: pass --password-stdin or set WISP_REGISTRY_PASSWORD"
                    )
                })?
            };
            Some(Credentials::Basic {
                username: u.clone(),
                password,
            })
        } else if self.password_stdin {
            bail!("--password-stdin needs --username");
        } else {
            None
        };
        let mut o = RegistryOptions {
            credentials,
            insecure: self.insecure.clone(),
            ..Default::default()
        };
        if let Some(m) = self.max_module {
            o.max_module_bytes = m;
        }
        if let Some(t) = self.timeout {
            o.timeout = t;
        }
        Ok(o)
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
fn progress_bar() -> Option<wisp_oci::registry::Progress> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:40} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    Some(Arc::new(move |e| match e {
        ProgressEvent::Start { what, total } => {
            bar.reset();
            bar.set_length(total);
            bar.set_message(what);
        }
        ProgressEvent::Advance(n) => bar.inc(n),
        ProgressEvent::Done => bar.finish_and_clear(),
    }))
}

/// `wisp push FILE REF`.
#[derive(Args, Debug)]
pub struct PushCommand {
    /// The .wasm file to push. (Pushing a deployed function by name needs a
    /// management API route for its module, which the server doesn't have yet.)
    file: PathBuf,
    /// Where to: REGISTRY/REPOSITORY[:TAG] (tag default `latest`; `oci://` prefix optional).
    reference: String,
    /// Manifest annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_parser = parse_kv)]
    annotations: Vec<(String, String)>,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Print machine-readable JSON.
    #[arg(long, env = "WISP_JSON")]
    json: bool,
}

impl PushCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let wasm = tokio::fs::read(&self.file)
            .await
            .with_context(|| format!("reading {}", self.file.display()))?;
        let mut opts = self.registry.options()?;
        opts.progress = progress_bar();
        let annotations: BTreeMap<String, String> = self.annotations.into_iter().collect();
        let p = RegistryClient::new(opts)
            .push(&self.reference, Bytes::from(wasm), annotations)
            .await?;
        if self.json {
            println!(
                "{}",
                serde_json::json!({"reference": p.reference, "digest": p.digest,
                    "layer_digest": p.layer_digest, "size": p.size})
            );
        } else {
            println!(
                "pushed {} ({}): {}",
                p.reference,
                format_size(p.size),
                p.digest
            );
        }
        Ok(0)
    }
}

/// `wisp pull REF -o FILE`.
#[derive(Args, Debug)]
pub struct PullCommand {
    /// What to pull: REGISTRY/REPOSITORY[:TAG|@DIGEST] (`oci://` prefix optional).
    reference: String,
    /// Where to write the module (written atomically).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    #[command(flatten)]
    registry: RegistryFlags,
    /// Print machine-readable JSON.
    #[arg(long, env = "WISP_JSON")]
    json: bool,
}

impl PullCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let mut opts = self.registry.options()?;
        opts.progress = progress_bar();
        let p = RegistryClient::new(opts).pull(&self.reference).await?;
        let out = self.output.clone();
        let size = p.wasm.len() as u64;
        let wasm = p.wasm;
        tokio::task::spawn_blocking(move || wisp_oci::atomic_write(&out, &wasm))
            .await
            .context("writing the module")??;
        if self.json {
            println!(
                "{}",
                serde_json::json!({"reference": p.reference, "digest": p.digest,
                    "format": p.format.as_str(), "size": size,
                    "manifest_media_type": p.manifest_media_type,
                    "config_media_type": p.config_media_type,
                    "layer_media_types": p.layer_media_types})
            );
        } else {
            let at = if p.reference.contains('@') {
                p.reference.clone()
            } else {
                format!("{}@{}", p.reference, p.digest)
            };
            println!(
                "pulled {at} ({}, {}) to {}",
                format_size(size),
                p.format.as_str(),
                self.output.display()
            );
        }
        Ok(0)
    }
}
