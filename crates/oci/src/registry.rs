//! Push and pull modules through an OCI registry.
//!
//! A push writes the Wasm artifact format ([`crate::format`]). A pull reads
//! any of the three formats and returns the module with the manifest digest
//! it resolved to. Every blob is hashed as it streams in and compared with
//! its descriptor; the manifest is hashed too and, when the reference names
//! a digest, compared with it. Sizes are checked against the descriptors
//! before a download starts and counted while it runs.
//!
//! Plain HTTP is used only for loopback registries (`localhost`,
//! 127.0.0.0/8, `::1`) and those named in [`RegistryOptions::insecure`];
//! everything else is HTTPS with the system's roots.

use crate::auth::{self, Credentials};
use crate::format::{self, Format, Plan};
use crate::{Error, Result, sha256_digest};
use bytes::Bytes;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::{OciDescriptor, OciImageManifest};
use oci_client::{Client, Reference};
use sha2::Digest;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest manifest or image config read: 4 MiB (real ones are a few KiB).
const MAX_METADATA_BYTES: u64 = 4 << 20;

/// What a progress callback hears.
#[derive(Debug, Clone)]
pub enum ProgressEvent {
    /// A transfer of `total` bytes begins (`what`: "pull" or "push" and the blob).
    Start {
        /// What is being transferred.
        what: String,
        /// Its size in bytes.
        total: u64,
    },
    /// `n` more bytes moved.
    Advance(u64),
    /// That transfer is over.
    Done,
}

/// A progress callback.
pub type Progress = Arc<dyn Fn(ProgressEvent) + Send + Sync>;

/// How to talk to registries.
#[derive(Clone)]
pub struct RegistryOptions {
    /// Credentials to use; `None` looks each registry up in the Docker
    /// config file and falls back to anonymous.
    pub credentials: Option<Credentials>,
    /// Registries (`host` or `host:port`) that may be spoken to over plain
    /// HTTP although they are not loopback.
    pub insecure: Vec<String>,
    /// Largest module accepted (pull) or sent (push).
    pub max_module_bytes: u64,
    /// Bound on one whole pull or push.
    pub timeout: Duration,
    /// Progress reports, if wanted.
    pub progress: Option<Progress>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            credentials: None,
            insecure: Vec::new(),
            max_module_bytes: crate::DEFAULT_MAX_MODULE_BYTES,
            timeout: Duration::from_secs(300),
            progress: None,
        }
    }
}

impl std::fmt::Debug for RegistryOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryOptions")
            .field("credentials", &self.credentials)
            .field("insecure", &self.insecure)
            .field("max_module_bytes", &self.max_module_bytes)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A pulled module.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The module bytes.
    pub wasm: Vec<u8>,
    /// The reference, fully qualified (`registry/repository:tag` or `@digest`).
    pub reference: String,
    /// `sha256:…` of the image manifest the reference resolved to.
    pub digest: String,
    /// Which format the module was found in.
    pub format: Format,
    /// Media type of the manifest.
    pub manifest_media_type: String,
    /// Media type of the config blob.
    pub config_media_type: String,
    /// Media types of the layers, in order.
    pub layer_media_types: Vec<String>,
}

/// A pushed module.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference, fully qualified.
    pub reference: String,
    /// `sha256:…` of the manifest pushed.
    pub digest: String,
    /// `sha256:…` of the module layer.
    pub layer_digest: String,
    /// Module size.
    pub size: u64,
}

/// True for `localhost`, 127.0.0.0/8 and `::1`, with or without a port.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => registry,
    }
}

/// Parse a reference, with or without an `oci://` prefix.
pub fn parse_reference(s: &str) -> Result<Reference> {
    let s = s.strip_prefix("oci://").unwrap_or(s);
    s.parse::<Reference>()
        .map_err(|e| Error::Invalid(format!("invalid OCI reference {s:?}: {e}")))
}

/// A client for pushes and pulls with one set of options.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    opts: RegistryOptions,
}

struct Session {
    client: Client,
    reference: Reference,
    shown: String,
    plain_http: bool,
}

impl RegistryClient {
    /// A client with `opts`.
    pub fn new(opts: RegistryOptions) -> RegistryClient {
        RegistryClient { opts }
    }

    /// The options.
    pub fn options(&self) -> &RegistryOptions {
        &self.opts
    }

    /// Whether `registry` is spoken to over plain HTTP.
    pub fn plain_http(&self, registry: &str) -> bool {
        is_loopback(registry)
            || self.opts.insecure.iter().any(|i| {
                i.eq_ignore_ascii_case(registry) || i.eq_ignore_ascii_case(host_of(registry))
            })
    }

    async fn session(&self, reference: &str) -> Result<(Session, Credentials)> {
        let r = parse_reference(reference)?;
        let registry = r.resolve_registry().to_string();
        let plain_http = self.plain_http(&registry);
        // reqwest is built without a default TLS provider (see Cargo.toml).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = ClientConfig {
            protocol: if plain_http {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            max_concurrent_download: 1,
            max_concurrent_upload: 1,
            ..Default::default()
        };
        let client = Client::try_from(config)
            .map_err(|e| Error::Registry(format!("cannot set up an HTTP client: {e}")))?;
        let creds = match &self.opts.credentials {
            Some(c) => c.clone(),
            None => {
                let reg = registry.clone();
                tokio::task::spawn_blocking(move || auth::from_docker_config(&reg))
                    .await
                    .map_err(|e| Error::Registry(format!("reading the Docker config: {e}")))??
                    .unwrap_or_default()
            }
        };
        client
            .store_auth_if_needed(&registry, &creds.to_oci())
            .await;
        let shown = r.whole();
        Ok((
            Session {
                client,
                reference: r,
                shown,
                plain_http,
            },
            creds,
        ))
    }

    fn bounded<T>(
        &self,
        what: String,
        f: impl Future<Output = Result<T>>,
    ) -> impl Future<Output = Result<T>> {
        let t = self.opts.timeout;
        async move {
            tokio::time::timeout(t, f).await.unwrap_or_else(|_| {
                Err(Error::Timeout(format!(
                    "{what} took longer than {}s",
                    t.as_secs_f64()
                )))
            })
        }
    }

    fn progress(&self, e: ProgressEvent) {
        if let Some(p) = &self.opts.progress {
            p(e);
        }
    }

    /// Push `wasm` to `reference` in the Wasm artifact format, with
    /// `annotations` on the manifest.
    pub async fn push(
        &self,
        reference: &str,
        wasm: Bytes,
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed> {
        self.bounded(
            format!("pushing {reference}"),
            self.push_inner(reference, wasm, annotations),
        )
        .await
    }

    async fn push_inner(
        &self,
        reference: &str,
        wasm: Bytes,
        annotations: BTreeMap<String, String>,
    ) -> Result<Pushed> {
        let max = self.opts.max_module_bytes;
        if wasm.len() as u64 > max {
            return Err(Error::TooLarge(format!(
                "module is {} bytes; the limit is {max}",
                wasm.len()
            )));
        }
        let (s, creds) = self.session(reference).await?;
        if s.reference.digest().is_some() {
            return Err(Error::Invalid(format!(
                "{}: push to a tag, not a digest (the digest is the manifest's, known after the push)",
                s.shown
            )));
        }
        let layer_digest = sha256_digest(&wasm);
        let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let config = format::wasm_config(&wasm, &layer_digest, created)?;
        let config = Bytes::from(serde_json::to_vec(&config).expect("config serializes"));
        let config_digest = sha256_digest(&config);
        let manifest = OciImageManifest {
            schema_version: 2,
            media_type: Some(format::OCI_MANIFEST_MEDIA_TYPE.into()),
            config: OciDescriptor {
                media_type: format::WASM_CONFIG_MEDIA_TYPE.into(),
                digest: config_digest.clone(),
                size: config.len() as i64,
                ..Default::default()
            },
            layers: vec![OciDescriptor {
                media_type: format::WASM_LAYER_MEDIA_TYPE.into(),
                digest: layer_digest.clone(),
                size: wasm.len() as i64,
                ..Default::default()
            }],
            annotations: (!annotations.is_empty()).then(|| annotations.into_iter().collect()),
            ..Default::default()
        };
        let manifest = serde_json::to_vec(&manifest).expect("manifest serializes");
        let digest = sha256_digest(&manifest);
        let size = wasm.len() as u64;
        self.progress(ProgressEvent::Start {
            what: format!("push {}", s.shown),
            total: size + config.len() as u64 + manifest.len() as u64,
        });
        let map = |e| map_err(&s, &creds, e);
        s.client
            .push_blob(&s.reference, wasm, &layer_digest)
            .await
            .map_err(map)?;
        self.progress(ProgressEvent::Advance(size));
        let config_len = config.len() as u64;
        s.client
            .push_blob(&s.reference, config, &config_digest)
            .await
            .map_err(map)?;
        self.progress(ProgressEvent::Advance(config_len));
        let manifest_len = manifest.len() as u64;
        s.client
            .push_manifest_raw(
                &s.reference,
                manifest,
                http::HeaderValue::from_static(format::OCI_MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(map)?;
        self.progress(ProgressEvent::Advance(manifest_len));
        self.progress(ProgressEvent::Done);
        Ok(Pushed {
            reference: s.shown,
            digest,
            layer_digest,
            size,
        })
    }

    /// Pull the module at `reference` (`oci://` prefix optional).
    pub async fn pull(&self, reference: &str) -> Result<Pulled> {
        self.bounded(format!("pulling {reference}"), self.pull_inner(reference))
            .await
    }

    async fn manifest(
        &self,
        s: &Session,
        creds: &Credentials,
        r: &Reference,
    ) -> Result<(Bytes, String, serde_json::Value)> {
        let (body, _) = s
            .client
            .pull_manifest_raw(r, &creds.to_oci(), &format::MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| map_err(s, creds, e))?;
        if body.len() as u64 > MAX_METADATA_BYTES {
            return Err(Error::TooLarge(format!(
                "{}: the manifest is {} bytes; the limit is {MAX_METADATA_BYTES}",
                s.shown,
                body.len()
            )));
        }
        let got = sha256_digest(&body);
        if let Some(expected) = r.digest()
            && expected != got
        {
            return Err(Error::DigestMismatch {
                expected: expected.to_string(),
                got,
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Error::Registry(format!("{}: the manifest is not JSON: {e}", s.shown)))?;
        Ok((body, got, v))
    }

    async fn pull_inner(&self, reference: &str) -> Result<Pulled> {
        let (s, creds) = self.session(reference).await?;
        let (mut body, mut digest, mut v) = self.manifest(&s, &creds, &s.reference).await?;
        let mut media_type = v["mediaType"].as_str().unwrap_or("").to_string();
        if v.get("manifests").is_some() {
            let index: oci_client::manifest::OciImageIndex = serde_json::from_slice(&body)
                .map_err(|e| Error::Registry(format!("{}: bad image index: {e}", s.shown)))?;
            let wasm_entry = |e: &&oci_client::manifest::ImageIndexEntry| {
                e.platform.as_ref().is_some_and(|p| {
                    p.architecture.to_string() == "wasm"
                        || matches!(p.os.to_string().as_str(), "wasip1" | "wasip2" | "wasi")
                })
            };
            let entry = match index.manifests.iter().find(wasm_entry) {
                Some(e) => e,
                None if index.manifests.len() == 1 => &index.manifests[0],
                None => {
                    let seen: Vec<String> = index
                        .manifests
                        .iter()
                        .map(|e| match &e.platform {
                            Some(p) => format!("{}/{}", p.os, p.architecture),
                            None => "unknown".into(),
                        })
                        .collect();
                    return Err(Error::NotWasm(format!(
                        "{} is a multi-platform index without a wasm platform (has {})",
                        s.shown,
                        seen.join(", ")
                    )));
                }
            };
            let r = Reference::with_digest(
                s.reference.registry().to_string(),
                s.reference.repository().to_string(),
                entry.digest.clone(),
            );
            (body, digest, v) = self.manifest(&s, &creds, &r).await?;
            media_type = v["mediaType"]
                .as_str()
                .unwrap_or(&entry.media_type)
                .to_string();
        }
        let manifest: OciImageManifest = serde_json::from_slice(&body)
            .map_err(|e| Error::Registry(format!("{}: bad image manifest: {e}", s.shown)))?;
        let max = self.opts.max_module_bytes;
        let (wasm, fmt) = match format::plan(&s.shown, &manifest)? {
            Plan::Layer { index, format } => {
                let layer = &manifest.layers[index];
                (self.blob(&s, &creds, layer, max, "module").await?, format)
            }
            Plan::Image => (
                self.from_image(&s, &creds, &manifest, max).await?,
                Format::Image,
            ),
        };
        format::is_component(&wasm)
            .map_err(|e| Error::NotWasm(format!("{}: the module layer {e}", s.shown)))?;
        self.progress(ProgressEvent::Done);
        let shown = match s.reference.digest() {
            Some(_) => s.shown.clone(),
            None => s.shown.clone(),
        };
        Ok(Pulled {
            wasm,
            reference: shown,
            digest,
            format: fmt,
            manifest_media_type: media_type,
            config_media_type: manifest.config.media_type.clone(),
            layer_media_types: format::media_types(&manifest),
        })
    }

    async fn from_image(
        &self,
        s: &Session,
        creds: &Credentials,
        manifest: &OciImageManifest,
        max: u64,
    ) -> Result<Vec<u8>> {
        let config = self
            .blob(s, creds, &manifest.config, MAX_METADATA_BYTES, "config")
            .await?;
        let path = format::entrypoint(&s.shown, &config)?;
        // A layer holds the module and maybe more: allow it twice the
        // module bound (plus slack for tar framing), held in memory.
        let layer_max = max.saturating_mul(2).saturating_add(1 << 20);
        for layer in manifest.layers.iter().rev() {
            let Some(gzip) = format::tar_kind(&layer.media_type) else {
                continue;
            };
            let bytes = self.blob(s, creds, layer, layer_max, "layer").await?;
            let p = path.clone();
            let found =
                tokio::task::spawn_blocking(move || format::find_in_tar(&bytes, gzip, &p, max))
                    .await
                    .map_err(|e| Error::Registry(format!("reading a layer: {e}")))??;
            match found {
                format::TarFind::Found(b) => return Ok(b),
                format::TarFind::Deleted => break,
                format::TarFind::Absent => {}
            }
        }
        Err(Error::NotWasm(format!(
            "{}: no layer holds its entrypoint {path}",
            s.shown
        )))
    }

    /// Download one blob, bounded by `max`, hashing it as it arrives.
    async fn blob(
        &self,
        s: &Session,
        creds: &Credentials,
        desc: &OciDescriptor,
        max: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        let declared = u64::try_from(desc.size).unwrap_or(u64::MAX);
        if declared > max {
            return Err(Error::TooLarge(format!(
                "{}: the {what} is {declared} bytes; the limit is {max}",
                s.shown
            )));
        }
        self.progress(ProgressEvent::Start {
            what: format!("pull {what} {}", short(&desc.digest)),
            total: declared,
        });
        let mut stream = s
            .client
            .pull_blob_stream(&s.reference, desc)
            .await
            .map_err(|e| map_err(s, creds, e))?;
        let mut out = Vec::with_capacity(declared.min(max) as usize);
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| io_err(s, e))?;
            if (out.len() + chunk.len()) as u64 > declared.min(max) {
                return Err(Error::TooLarge(format!(
                    "{}: the {what} {} is larger than its declared {declared} bytes (limit {max})",
                    s.shown, desc.digest
                )));
            }
            hasher.update(&chunk);
            out.extend_from_slice(&chunk);
            self.progress(ProgressEvent::Advance(chunk.len() as u64));
        }
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != desc.digest {
            return Err(Error::DigestMismatch {
                expected: desc.digest.clone(),
                got,
            });
        }
        if out.len() as u64 != declared {
            return Err(Error::Registry(format!(
                "{}: the {what} is {} bytes, its descriptor says {declared}",
                s.shown,
                out.len()
            )));
        }
        Ok(out)
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// A stream error: oci-client's verifying stream reports a digest mismatch
/// as an I/O error wrapping its `DigestError`.
fn io_err(s: &Session, e: std::io::Error) -> Error {
    if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) = e
        .get_ref()
        .and_then(|i| i.downcast_ref::<oci_client::errors::DigestError>())
    {
        return Error::DigestMismatch {
            expected: expected.clone(),
            got: actual.clone(),
        };
    }
    Error::Registry(format!("{}: reading from the registry: {e}", s.shown))
}

fn map_err(s: &Session, creds: &Credentials, e: OciDistributionError) -> Error {
    let who = match creds {
        Credentials::Anonymous => "anonymously".to_string(),
        Credentials::Basic { username, .. } => format!("as {username:?}"),
        Credentials::Bearer(_) => "with a bearer token".to_string(),
    };
    let unauthorized = || {
        Error::Unauthorized(format!(
            "{}: unauthorized: the registry refused access {who} \
             (give --username and --password-stdin, or log in with `docker login`)",
            s.shown
        ))
    };
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => unauthorized(),
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                Error::NotFound(s.shown.clone())
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                unauthorized()
            } else {
                let msgs: Vec<String> = envelope
                    .errors
                    .iter()
                    .map(|e| format!("{:?}: {}", e.code, e.message))
                    .collect();
                Error::Registry(format!(
                    "{}: the registry answered {}",
                    s.shown,
                    msgs.join("; ")
                ))
            }
        }
        OciDistributionError::ServerError { code: 404, .. }
        | OciDistributionError::ImageManifestNotFoundError(_) => Error::NotFound(s.shown.clone()),
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => unauthorized(),
        OciDistributionError::ServerError { code, message, .. } => Error::Registry(format!(
            "{}: the registry answered {code}: {}",
            s.shown,
            message.chars().take(200).collect::<String>()
        )),
        OciDistributionError::DigestError(oci_client::errors::DigestError::VerificationError {
            expected,
            actual,
        }) => Error::DigestMismatch {
            expected,
            got: actual,
        },
        OciDistributionError::RequestError(e) => {
            let mut msg = format!("{}: cannot reach the registry: {e}", s.shown);
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                msg.push_str(&format!(": {c}"));
                src = c.source();
            }
            if !s.plain_http {
                msg.push_str(&format!(
                    " (spoken to over HTTPS; if {} serves plain HTTP, pass --insecure-registry {})",
                    s.reference.resolve_registry(),
                    s.reference.resolve_registry()
                ));
            }
            Error::Registry(msg)
        }
        other => Error::Registry(format!("{}: {other}", s.shown)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_insecure() {
        for r in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.9.9.9",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(r), "{r}");
        }
        for r in [
            "0.0.0.0:5000",
            "10.0.0.1:5000",
            "example.com",
            "localhost.example.com:80",
            "[::2]:1",
        ] {
            assert!(!is_loopback(r), "{r}");
        }
        let c = RegistryClient::new(RegistryOptions {
            insecure: vec!["reg.internal".into(), "0.0.0.0:5000".into()],
            ..Default::default()
        });
        assert!(c.plain_http("reg.internal:443"));
        assert!(c.plain_http("0.0.0.0:5000"));
        assert!(!c.plain_http("0.0.0.0:5001"));
        assert!(!c.plain_http("ghcr.io"));
    }

    #[test]
    fn references() {
        let r = parse_reference("oci://127.0.0.1:5000/fns/hello:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "fns/hello");
        assert_eq!(r.tag(), Some("v1"));
        assert!(parse_reference("oci://host/Repo:x").is_err());
        assert!(parse_reference("").is_err());
    }
}
