//! OCI commands: `image build` (a layout tarball for `ctr image import`),
//! `push` and `pull` (a registry). The work is `wisp-oci`'s; this file
//! parses flags, finds credentials and shows progress.

use super::{ClientOpts, parse_kv};
use crate::client::Client;
use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
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
    /// Write an OCI image layout tarball holding one module (for `ctr image import`),
    /// or with --native a Linux executable and its shared libraries.
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
    /// The .wasm module or component (with --native: a Linux executable).
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
    /// FILE is a Linux executable, not Wasm: a linux/amd64 image holding it
    /// as /<file name> (the Entrypoint) and the shared libraries `ldd` lists
    /// for it, one gzipped layer (as the pause, operator and node installer
    /// images of scripts/k8s-local and scripts/k8s-images are built).
    #[arg(long)]
    native: bool,
    /// With --native: add a host file as DST in the image, SRC:DST (repeatable;
    /// its mode is kept).
    #[arg(long = "add", value_parser = parse_src_dst, requires = "native")]
    add: Vec<(PathBuf, String)>,
    /// With --native: a symbolic link PATH=TARGET in the image (repeatable).
    #[arg(long = "link", value_parser = parse_kv, requires = "native")]
    links: Vec<(String, String)>,
    /// With --native: the image config's User (e.g. 65532 for a non-root process).
    #[arg(long, requires = "native")]
    user: Option<String>,
}

fn parse_src_dst(s: &str) -> Result<(PathBuf, String), String> {
    match s.split_once(':') {
        Some((src, dst)) if !src.is_empty() && dst.starts_with('/') && dst.len() > 1 => {
            Ok((PathBuf::from(src), dst.to_string()))
        }
        _ => Err(format!(
            "expected SRC:DST with an absolute DST inside the image, got {s:?}"
        )),
    }
}

impl ImageBuildCommand {
    /// Run.
    pub fn execute(self) -> Result<i32> {
        if self.native {
            return self.native();
        }
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

impl ImageBuildCommand {
    /// `--native`: a Linux executable and its libraries.
    fn native(self) -> Result<i32> {
        use std::os::unix::fs::PermissionsExt;
        if !self.annotations.is_empty() {
            bail!("--annotation is for Wasm images; a native image takes --label");
        }
        let head = std::fs::read(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))?;
        if !head.starts_with(b"\x7fELF") {
            bail!(
                "{} is not a Linux executable (ELF); without --native, FILE is a .wasm",
                self.file.display()
            );
        }
        let mut extra = vec![];
        for (src, dst) in &self.add {
            let meta =
                std::fs::metadata(src).with_context(|| format!("--add {}", src.display()))?;
            if !meta.is_file() {
                bail!("--add {}: not a regular file", src.display());
            }
            let data = std::fs::read(src).with_context(|| format!("reading {}", src.display()))?;
            extra.push(layout::LayerEntry::File(
                dst.clone(),
                data,
                meta.permissions().mode() & 0o7777,
            ));
        }
        for (path, target) in &self.links {
            extra.push(layout::LayerEntry::Symlink(path.clone(), target.clone()));
        }
        let mut config = serde_json::Map::new();
        if !self.env.is_empty() {
            let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            config.insert("Env".into(), env.into());
        }
        if !self.labels.is_empty() {
            let labels: serde_json::Map<String, serde_json::Value> = self
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            config.insert("Labels".into(), labels.into());
        }
        if let Some(u) = &self.user {
            config.insert("User".into(), u.clone().into());
        }
        let img = wisp_bench::images::native_layout(&self.name, &self.file, extra, config)?;
        wisp_oci::atomic_write(&self.output, &img.tar)?;
        println!(
            "wrote {} ({}): {} {} (linux/amd64, entrypoint /{})",
            self.output.display(),
            format_size(img.tar.len() as u64),
            img.name,
            img.manifest_digest,
            self.file.file_name().unwrap_or_default().to_string_lossy()
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

/// [`RegistryFlags::options`] off the async thread (it may read stdin).
async fn blocking_options(flags: &RegistryFlags) -> Result<RegistryOptions> {
    let flags = flags.clone();
    tokio::task::spawn_blocking(move || flags.options())
        .await
        .context("reading registry credentials")?
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

/// `wisp push FILE|NAME[@VERSION] REF`.
#[derive(Args, Debug)]
pub struct PushCommand {
    /// What to push: a .wasm file, or (when no such file exists) the name of
    /// a function deployed on the server (`--server`), optionally
    /// `NAME@VERSION` (default: its active version).
    source: String,
    /// Where to: REGISTRY/REPOSITORY[:TAG] (tag default `latest`; `oci://` prefix optional).
    reference: String,
    /// Manifest annotation KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_parser = parse_kv)]
    annotations: Vec<(String, String)>,
    #[command(flatten)]
    registry: RegistryFlags,
    #[command(flatten)]
    client: ClientOpts,
}

/// A module to push and the annotations that describe where it came from.
struct Source {
    wasm: Vec<u8>,
    annotations: BTreeMap<String, String>,
    what: String,
}

impl PushCommand {
    /// Run.
    pub async fn execute(self) -> Result<i32> {
        let src = self.source().await?;
        let mut opts = blocking_options(&self.registry).await?;
        opts.progress = progress_bar();
        let mut annotations = src.annotations;
        annotations.extend(self.annotations);
        let p = RegistryClient::new(opts)
            .push(&self.reference, Bytes::from(src.wasm), annotations)
            .await?;
        if self.client.json {
            println!(
                "{}",
                serde_json::json!({"reference": p.reference, "digest": p.digest,
                    "layer_digest": p.layer_digest, "size": p.size})
            );
        } else {
            println!(
                "pushed {} as {} ({}): {}",
                src.what,
                p.reference,
                format_size(p.size),
                p.digest
            );
        }
        Ok(0)
    }

    /// The file if it exists; otherwise the deployed function of that name.
    async fn source(&self) -> Result<Source> {
        let path = Path::new(&self.source);
        if tokio::fs::try_exists(path).await.unwrap_or(false) {
            let wasm = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            return Ok(Source {
                wasm,
                annotations: BTreeMap::new(),
                what: path.display().to_string(),
            });
        }
        let (name, version) = match self.source.split_once('@') {
            Some((n, v)) => (
                n,
                Some(v.parse::<u32>().map_err(|_| {
                    anyhow::anyhow!("{:?}: the version after @ must be a number", self.source)
                })?),
            ),
            None => (self.source.as_str(), None),
        };
        if wisp_core::validate_name(name).is_err() {
            bail!(
                "{}: no such file (and {name:?} is not a function name)",
                self.source
            );
        }
        let c = Client::new(&self.client.server, self.client.token.clone());
        let mut route = self.client.api(&format!("functions/{name}/module"));
        if let Some(v) = version {
            route.push_str(&format!("?version={v}"));
        }
        let reply = c.get(&route).await.with_context(|| {
            format!(
                "{}: no such file; fetching the deployed function {name:?}",
                self.source
            )
        })?;
        let reply = reply.ok().with_context(|| {
            format!(
                "{}: no such file, and the server has no such function",
                self.source
            )
        })?;
        let digest = reply
            .header("etag")
            .map(|e| e.trim_matches('"').to_string())
            .context("the server sent the module without its digest (ETag)")?;
        let wasm = reply.body.to_vec();
        let got = format!("sha256:{}", wisp_store::sha256_hex(&wasm));
        if got != digest {
            bail!("the module of {name:?} arrived as {got}, not {digest} as the server says");
        }
        let version = reply.header("x-wisp-version").unwrap_or("?").to_string();
        Ok(Source {
            wasm,
            // Every deployed function answers HTTP (a CGI command module or
            // a wasi:http component): the shim serves it that way too.
            annotations: BTreeMap::from([
                (
                    "org.opencontainers.image.title".to_string(),
                    name.to_string(),
                ),
                ("wisp.abi".to_string(), "http".to_string()),
                ("wisp.function.version".to_string(), version.clone()),
                ("wisp.function.digest".to_string(), digest),
            ]),
            what: format!("{name} v{version}"),
        })
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
        let mut opts = blocking_options(&self.registry).await?;
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
