//! The formats a module travels in, and how to find the module in each.
//!
//! Written ([`crate::registry`]): the CNCF TAG-Runtime Wasm artifact — a
//! manifest whose config is `application/vnd.wasm.config.v0+json`
//! ([`WasmConfig`]) and whose one layer is the module, `application/wasm`.
//!
//! Read, in this order of preference:
//! 1. [`Format::WasmArtifact`]: the above (any `application/wasm` layer);
//! 2. [`Format::LegacyWasm`]: the older `application/vnd.wasm.content.layer.v1+wasm`
//!    layer (wasm-to-oci, early Krustlet/containerd-wasm-shims images);
//! 3. [`Format::Image`]: an ordinary OCI or Docker image whose tar (or
//!    tar+gzip) layers hold the `.wasm` file its config names as
//!    `Entrypoint[0]` (else `Cmd[0]`), found in the topmost layer that has
//!    it — what `docker build` of a `FROM scratch` Wasm image and
//!    [`crate::layout`] produce.
//!
//! Everything here is pure: bytes in, answers out, no I/O.

use crate::{Error, Result};
use oci_client::manifest::OciImageManifest;
use serde::{Deserialize, Serialize};
use std::io::Read;

/// Config media type of the Wasm artifact format.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// Layer media type of the Wasm artifact format.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The older Wasm layer media type.
pub const LEGACY_WASM_LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The older Wasm config media type.
pub const LEGACY_WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker schema 2 manifest list.
pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG_MEDIA_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// Uncompressed OCI tar layer.
pub const OCI_TAR_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Gzipped OCI tar layer.
pub const OCI_TAR_GZIP_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker tar layer.
pub const DOCKER_TAR_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Docker gzipped tar layer.
pub const DOCKER_TAR_GZIP_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Manifest media types a pull accepts.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    OCI_INDEX_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
];

/// Which of the readable formats an image is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// CNCF TAG-Runtime Wasm artifact (`application/wasm` layer).
    WasmArtifact,
    /// The older `application/vnd.wasm.content.layer.v1+wasm` layer.
    LegacyWasm,
    /// An ordinary OCI/Docker image with the module in a tar layer.
    Image,
}

impl Format {
    /// Stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::WasmArtifact => "wasm_artifact",
            Format::LegacyWasm => "legacy_wasm",
            Format::Image => "image",
        }
    }
}

/// The config blob of the Wasm artifact format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 creation time.
    pub created: String,
    /// Who made it, if said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Always `wasm`.
    pub architecture: String,
    /// `wasip1` for a core module, `wasip2` for a component.
    pub os: String,
    /// Digests of the layers, in order.
    pub layer_digests: Vec<String>,
    /// For a component: its world's imports and exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentInfo>,
}

/// What a component imports and exports (top-level names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Exported names, e.g. `wasi:http/incoming-handler@0.2.0`.
    pub exports: Vec<String>,
    /// Imported names.
    pub imports: Vec<String>,
    /// The world it targets, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// True when `wasm` is a component (its header's layer field is 1), false
/// for a core module. Neither: an error naming what the bytes start with.
pub fn is_component(wasm: &[u8]) -> Result<bool> {
    match wasm.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Ok(false),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(true),
        _ => Err(Error::NotWasm(format!(
            "not a WebAssembly binary (starts with {:02x?})",
            &wasm[..wasm.len().min(8)]
        ))),
    }
}

/// The top-level imports and exports of a component.
pub fn component_info(wasm: &[u8]) -> Result<ComponentInfo> {
    use wasmparser::{Parser, Payload};
    let mut info = ComponentInfo::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|e| Error::NotWasm(format!("malformed component: {e}")))?;
        match payload {
            Payload::Version { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(s) if depth == 1 => {
                for i in s {
                    let i = i.map_err(|e| Error::NotWasm(format!("malformed component: {e}")))?;
                    info.imports.push(i.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(s) if depth == 1 => {
                for e in s {
                    let e = e.map_err(|e| Error::NotWasm(format!("malformed component: {e}")))?;
                    info.exports.push(e.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    if info
        .exports
        .iter()
        .any(|e| e.starts_with("wasi:http/incoming-handler"))
    {
        info.target = Some("wasi:http/proxy".into());
    }
    Ok(info)
}

/// The Wasm artifact config for `wasm` stored as the layer `layer_digest`.
pub fn wasm_config(wasm: &[u8], layer_digest: &str, created: String) -> Result<WasmConfig> {
    let component = if is_component(wasm)? {
        Some(component_info(wasm)?)
    } else {
        None
    };
    Ok(WasmConfig {
        created,
        author: None,
        architecture: "wasm".into(),
        os: if component.is_some() {
            "wasip2"
        } else {
            "wasip1"
        }
        .into(),
        layer_digests: vec![layer_digest.to_string()],
        component,
    })
}

/// Where the module is in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// The module is the blob of layer `index`.
    Layer {
        /// Index into `manifest.layers`.
        index: usize,
        /// Which format that is.
        format: Format,
    },
    /// The module is a file in one of the tar layers: read the config for
    /// its path ([`entrypoint`]), then search the layers top-down
    /// ([`find_in_tar`]).
    Image,
}

/// Decide where the module is in `manifest`; an image with nothing Wisp can
/// read is [`Error::NotWasm`], listing the media types seen.
pub fn plan(reference: &str, manifest: &OciImageManifest) -> Result<Plan> {
    let layer_of = |mt: &str| {
        let found: Vec<usize> = manifest
            .layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.media_type == mt)
            .map(|(i, _)| i)
            .collect();
        found
    };
    for (mt, format) in [
        (WASM_LAYER_MEDIA_TYPE, Format::WasmArtifact),
        (LEGACY_WASM_LAYER_MEDIA_TYPE, Format::LegacyWasm),
    ] {
        match layer_of(mt).as_slice() {
            [] => {}
            [index] => {
                return Ok(Plan::Layer {
                    index: *index,
                    format,
                });
            }
            many => {
                return Err(Error::NotWasm(format!(
                    "{reference}: the image has {} `{mt}` layers; Wisp takes images with one module",
                    many.len()
                )));
            }
        }
    }
    let image_config = [OCI_CONFIG_MEDIA_TYPE, DOCKER_CONFIG_MEDIA_TYPE]
        .contains(&manifest.config.media_type.as_str());
    let has_tar = manifest
        .layers
        .iter()
        .any(|l| tar_kind(&l.media_type).is_some());
    if image_config && has_tar {
        return Ok(Plan::Image);
    }
    Err(Error::NotWasm(format!(
        "{reference} is not a Wasm image: config {}, layers [{}]; expected an `{WASM_LAYER_MEDIA_TYPE}` \
         or `{LEGACY_WASM_LAYER_MEDIA_TYPE}` layer, or an image whose tar layers hold its entrypoint",
        manifest.config.media_type,
        media_types(manifest).join(", ")
    )))
}

/// Every layer's media type, in order.
pub fn media_types(manifest: &OciImageManifest) -> Vec<String> {
    manifest
        .layers
        .iter()
        .map(|l| l.media_type.clone())
        .collect()
}

/// How a tar layer is compressed: `Some(false)` plain, `Some(true)` gzip,
/// `None` not a tar layer Wisp reads.
pub fn tar_kind(media_type: &str) -> Option<bool> {
    match media_type {
        OCI_TAR_LAYER | DOCKER_TAR_LAYER => Some(false),
        OCI_TAR_GZIP_LAYER | DOCKER_TAR_GZIP_LAYER => Some(true),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    config: Option<ImageRunConfig>,
}

#[derive(Deserialize)]
struct ImageRunConfig {
    #[serde(rename = "Entrypoint", default)]
    entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", default)]
    cmd: Option<Vec<String>>,
}

/// The module's path in an image: `config.Entrypoint[0]`, else `Cmd[0]`.
pub fn entrypoint(reference: &str, config_json: &[u8]) -> Result<String> {
    let c: ImageConfigFile = serde_json::from_slice(config_json)
        .map_err(|e| Error::NotWasm(format!("{reference}: image config is not valid JSON: {e}")))?;
    let run = c.config.as_ref();
    fn first(v: Option<&Vec<String>>) -> Option<&String> {
        v.and_then(|v| v.first()).filter(|s| !s.is_empty())
    }
    first(run.and_then(|r| r.entrypoint.as_ref()))
        .or_else(|| first(run.and_then(|r| r.cmd.as_ref())))
        .cloned()
        .ok_or_else(|| {
            Error::NotWasm(format!(
                "{reference} is an ordinary image without an entrypoint: its config sets neither \
                 Entrypoint nor Cmd, so Wisp can't tell which file is the module"
            ))
        })
}

/// `/a/./b.wasm`, `./a/b.wasm` and `a/b.wasm` all become `a/b.wasm`.
fn normalize(path: &str) -> String {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// What one tar layer says about `path`.
#[derive(Debug, PartialEq)]
pub enum TarFind {
    /// The file's bytes.
    Found(Vec<u8>),
    /// The layer deletes it (an OCI whiteout): lower layers don't count.
    Deleted,
    /// The layer doesn't mention it.
    Absent,
}

/// Look for `path` in a tar layer (gzipped when `gzip`). A file over
/// `max` bytes is [`Error::TooLarge`]; a link at `path` is refused (Wisp
/// doesn't resolve links across layers).
pub fn find_in_tar(layer: &[u8], gzip: bool, path: &str, max: u64) -> Result<TarFind> {
    let want = normalize(path);
    if want.is_empty() {
        return Err(Error::NotWasm(format!("entrypoint {path:?} names no file")));
    }
    let (dir, base) = match want.rsplit_once('/') {
        Some((d, b)) => (format!("{d}/"), b.to_string()),
        None => (String::new(), want.clone()),
    };
    let whiteout = format!("{dir}.wh.{base}");
    let opaque = format!("{dir}.wh..wh..opq");
    let reader: Box<dyn Read + '_> = if gzip {
        Box::new(flate2::read::GzDecoder::new(layer))
    } else {
        Box::new(layer)
    };
    let bad = |e: std::io::Error| Error::NotWasm(format!("reading a tar layer: {e}"));
    let mut ar = tar::Archive::new(reader);
    let mut deleted = false;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let name = normalize(&entry.path().map_err(bad)?.to_string_lossy());
        if name == whiteout || (name == opaque && !dir.is_empty()) {
            deleted = true;
            continue;
        }
        if name != want {
            continue;
        }
        let kind = entry.header().entry_type();
        if !kind.is_file() {
            return Err(Error::NotWasm(format!(
                "entrypoint {path:?} is not a regular file in its layer ({kind:?}); Wisp follows no links"
            )));
        }
        let size = entry.header().size().map_err(bad)?;
        if size > max {
            return Err(Error::TooLarge(format!(
                "module {path:?} is {size} bytes; the limit is {max}"
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        (&mut entry)
            .take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(bad)?;
        return Ok(TarFind::Found(bytes));
    }
    Ok(if deleted {
        TarFind::Deleted
    } else {
        TarFind::Absent
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::manifest::OciDescriptor;

    fn manifest(config_mt: &str, layers: &[&str]) -> OciImageManifest {
        OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST_MEDIA_TYPE.into()),
            config: OciDescriptor {
                media_type: config_mt.into(),
                digest: "sha256:00".into(),
                size: 2,
                ..Default::default()
            },
            layers: layers
                .iter()
                .map(|mt| OciDescriptor {
                    media_type: mt.to_string(),
                    digest: "sha256:11".into(),
                    size: 8,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn plans_for_each_format() {
        let m = manifest(WASM_CONFIG_MEDIA_TYPE, &[WASM_LAYER_MEDIA_TYPE]);
        assert_eq!(
            plan("r", &m).unwrap(),
            Plan::Layer {
                index: 0,
                format: Format::WasmArtifact
            }
        );
        let m = manifest(
            LEGACY_WASM_CONFIG_MEDIA_TYPE,
            &["text/plain", LEGACY_WASM_LAYER_MEDIA_TYPE],
        );
        assert_eq!(
            plan("r", &m).unwrap(),
            Plan::Layer {
                index: 1,
                format: Format::LegacyWasm
            }
        );
        let m = manifest(
            DOCKER_CONFIG_MEDIA_TYPE,
            &[DOCKER_TAR_GZIP_LAYER, OCI_TAR_LAYER],
        );
        assert_eq!(plan("r", &m).unwrap(), Plan::Image);
    }

    #[test]
    fn a_non_wasm_image_lists_the_media_types_seen() {
        let m = manifest(
            "application/vnd.cncf.helm.config.v1+json",
            &["application/tar+zstd"],
        );
        let e = plan("reg/helm:1", &m).unwrap_err().to_string();
        assert!(e.contains("reg/helm:1 is not a Wasm image"), "{e}");
        assert!(
            e.contains("application/vnd.cncf.helm.config.v1+json"),
            "{e}"
        );
        assert!(e.contains("application/tar+zstd"), "{e}");
        let m = manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &[WASM_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE],
        );
        assert!(
            plan("r", &m)
                .unwrap_err()
                .to_string()
                .contains("2 `application/wasm` layers")
        );
    }

    #[test]
    fn entrypoint_then_cmd() {
        let e = |j: &str| entrypoint("r", j.as_bytes());
        assert_eq!(
            e(r#"{"config":{"Entrypoint":["/a.wasm","x"],"Cmd":["/b.wasm"]}}"#).unwrap(),
            "/a.wasm"
        );
        assert_eq!(
            e(r#"{"config":{"Entrypoint":null,"Cmd":["/b.wasm"]}}"#).unwrap(),
            "/b.wasm"
        );
        assert!(
            e(r#"{"config":{}}"#)
                .unwrap_err()
                .to_string()
                .contains("neither")
        );
        assert!(e(r#"{"architecture":"wasm"}"#).is_err());
        assert!(
            e("not json")
                .unwrap_err()
                .to_string()
                .contains("not valid JSON")
        );
    }

    fn tar_of(entries: &[(&str, &[u8])], gzip: bool) -> Vec<u8> {
        let entries: Vec<crate::layout::LayerEntry> = entries
            .iter()
            .map(|(p, d)| crate::layout::LayerEntry::File(p.to_string(), d.to_vec(), 0o644))
            .collect();
        crate::layout::build_layer(&entries, gzip).unwrap().blob
    }

    #[test]
    fn finds_files_in_tar_layers() {
        let layer = tar_of(&[("etc/x", b"x"), ("app/m.wasm", b"\0asm\x01\0\0\0")], true);
        assert_eq!(
            find_in_tar(&layer, true, "/app/m.wasm", 100).unwrap(),
            TarFind::Found(b"\0asm\x01\0\0\0".to_vec())
        );
        assert_eq!(
            find_in_tar(&layer, true, "./app/m.wasm", 100).unwrap(),
            TarFind::Found(b"\0asm\x01\0\0\0".to_vec())
        );
        assert_eq!(
            find_in_tar(&layer, true, "/m.wasm", 100).unwrap(),
            TarFind::Absent
        );
        assert!(matches!(
            find_in_tar(&layer, true, "/app/m.wasm", 4),
            Err(Error::TooLarge(_))
        ));
        let plain = tar_of(&[("app/.wh.m.wasm", b"")], false);
        assert_eq!(
            find_in_tar(&plain, false, "/app/m.wasm", 100).unwrap(),
            TarFind::Deleted
        );
        assert!(find_in_tar(b"garbage that is no tar", true, "/a", 100).is_err());
    }

    #[test]
    fn configs_for_modules_and_components() {
        let module = wat::parse_str("(module)").unwrap();
        let c = wasm_config(&module, "sha256:ab", "2020-01-01T00:00:00Z".into()).unwrap();
        assert_eq!((c.os.as_str(), c.architecture.as_str()), ("wasip1", "wasm"));
        assert!(c.component.is_none());
        let j = serde_json::to_value(&c).unwrap();
        assert_eq!(j["layerDigests"][0], "sha256:ab");
        assert!(j.get("component").is_none());

        let comp = wat::parse_str(
            r#"(component
                 (import "wasi:cli/stdout@0.2.0" (instance))
                 (core module $m)
                 (component $inner (import "nested" (instance)))
                 (instance $i (instantiate $inner (with "nested" (instance))))
                 (export "wasi:http/incoming-handler@0.2.0" (instance $i)))"#,
        )
        .unwrap();
        assert!(is_component(&comp).unwrap());
        let c = wasm_config(&comp, "sha256:cd", "t".into()).unwrap();
        assert_eq!(c.os, "wasip2");
        let info = c.component.unwrap();
        assert_eq!(info.imports, vec!["wasi:cli/stdout@0.2.0"]);
        assert_eq!(info.exports, vec!["wasi:http/incoming-handler@0.2.0"]);
        assert_eq!(info.target.as_deref(), Some("wasi:http/proxy"));
        assert!(is_component(b"\x7fELF\x02\x01\x01\0").is_err());
    }
}
