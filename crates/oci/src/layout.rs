//! OCI image layout tarballs: one module in one tar layer, as `ctr image
//! import` (and so the containerd shim) takes it.
//!
//! ```text
//! oci-layout                 {"imageLayoutVersion":"1.0.0"}
//! index.json                 one manifest, annotated with its name
//! blobs/sha256/<manifest>    OCI image manifest
//! blobs/sha256/<config>      OCI image config: os wasip1|wasip2, architecture wasm,
//!                            Entrypoint ["/<name>.wasm"], Env, Labels
//! blobs/sha256/<layer>       application/vnd.oci.image.layer.v1.tar holding /<name>.wasm
//! ```
//!
//! The index entry carries two names, as `ctr image export` writes them:
//! `io.containerd.image.name` (the full name, `docker.io/library/NAME:TAG`,
//! which containerd's importer takes as it is) and
//! `org.opencontainers.image.ref.name` (the tag, as the OCI spec has it; a
//! tag alone would make `ctr` 1.6 name the image `import-DATE:TAG`).
//!
//! The index entry has no `platform`: `ctr image import` without
//! `--all-platforms` filters the index by the host's platform and would
//! drop a `wasip1/wasm` entry (and import nothing). The image config still
//! says `os: wasip1`, `architecture: wasm`, and `ctr image ls` shows that.
//!
//! Deterministic: entries sorted, mtimes 0, owner root, no `created` time,
//! JSON with sorted maps. The same inputs give the same bytes.

use crate::format::{
    self, OCI_CONFIG_MEDIA_TYPE, OCI_INDEX_MEDIA_TYPE, OCI_MANIFEST_MEDIA_TYPE, OCI_TAR_GZIP_LAYER,
    OCI_TAR_LAYER,
};
use crate::{Error, Result, sha256_digest};
use oci_client::Reference;
use serde_json::json;
use std::collections::BTreeMap;

/// containerd's own annotation for an image's full name.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation for a reference name (a tag, in an image layout).
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// What goes into an image.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// `NAME[:TAG]`, possibly with a registry and path
    /// (`hello`, `hello:1`, `ghcr.io/acme/hello:1`); the tag defaults to `latest`.
    pub name: String,
    /// The module (or component).
    pub wasm: Vec<u8>,
    /// File name of the module inside the image, without the slash
    /// (default: the last path segment of the repository plus `.wasm`).
    pub file_name: Option<String>,
    /// `Env` of the image config, `K=V` each.
    pub env: Vec<(String, String)>,
    /// Manifest annotations (e.g. `wisp.abi=http`).
    pub annotations: BTreeMap<String, String>,
    /// `Labels` of the image config.
    pub labels: BTreeMap<String, String>,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The tarball.
    pub tar: Vec<u8>,
    /// The full name, e.g. `docker.io/library/hello:latest`.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// `sha256:…` of the manifest (the image's digest).
    pub manifest_digest: String,
    /// `sha256:…` of the config blob.
    pub config_digest: String,
    /// `sha256:…` of the layer (also its diff id: it is not compressed).
    pub layer_digest: String,
    /// The layer (a tar holding the module).
    pub layer_tar: Vec<u8>,
    /// Manifest + config + layer bytes: what a pull transfers.
    pub content_size: u64,
    /// The path of the module inside the image, e.g. `/hello.wasm`.
    pub entrypoint: String,
    /// `wasip1` or `wasip2`.
    pub os: String,
}

/// Parse `NAME[:TAG]` into the full name and the tag.
pub fn full_name(name: &str) -> Result<(String, String)> {
    let r: Reference = name
        .parse()
        .map_err(|e| Error::Invalid(format!("invalid image name {name:?}: {e}")))?;
    if r.digest().is_some() {
        return Err(Error::Invalid(format!(
            "invalid image name {name:?}: name an image by NAME[:TAG], not by digest"
        )));
    }
    let tag = r.tag().unwrap_or("latest").to_string();
    Ok((format!("{}/{}:{tag}", r.registry(), r.repository()), tag))
}

/// Build the tarball of `spec`. Pure CPU work on memory; no I/O.
pub fn build_image(spec: &ImageSpec) -> Result<BuiltImage> {
    let (name, _) = full_name(&spec.name)?;
    let is_component = format::is_component(&spec.wasm)?;
    let os = if is_component { "wasip2" } else { "wasip1" };
    let file_name = match &spec.file_name {
        Some(f) => f.trim_start_matches('/').to_string(),
        None => {
            let repo = name.rsplit_once(':').map_or(name.as_str(), |(r, _)| r);
            format!("{}.wasm", repo.rsplit('/').next().unwrap_or("module"))
        }
    };
    if file_name.is_empty() || file_name.contains('/') || file_name == "." || file_name == ".." {
        return Err(Error::Invalid(format!(
            "invalid module file name {file_name:?}: one path segment, no slashes"
        )));
    }
    for (k, _) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(Error::Invalid(format!("invalid env name {k:?}")));
        }
    }
    let entrypoint = format!("/{file_name}");

    let mut env: Vec<String> = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    // containerd hands a shim the image config's Env, not the manifest's
    // annotations: an ABI annotation is repeated as WISP_ABI so that
    // containerd-shim-wisp-v1 sees it (docs/containerd.md).
    if let Some(abi) = spec.annotations.get("wisp.abi")
        && !spec.env.iter().any(|(k, _)| k == "WISP_ABI")
    {
        env.push(format!("WISP_ABI={abi}"));
    }
    let mut run = serde_json::Map::new();
    run.insert("Entrypoint".into(), json!([entrypoint]));
    if !env.is_empty() {
        run.insert("Env".into(), json!(env));
    }
    if !spec.labels.is_empty() {
        run.insert("Labels".into(), json!(spec.labels));
    }
    let built = build_layout(&LayoutSpec {
        name: &spec.name,
        os,
        architecture: "wasm",
        entries: vec![LayerEntry::File(file_name, spec.wasm.clone(), 0o755)],
        gzip: false,
        config: run,
        annotations: spec.annotations.clone(),
    })?;
    Ok(BuiltImage {
        tar: built.tar,
        name: built.name,
        tag: built.tag,
        manifest_digest: built.manifest_digest,
        config_digest: built.config_digest,
        layer_digest: built.layer_digest,
        layer_tar: built.layer_tar,
        content_size: built.content_size,
        entrypoint,
        os: os.into(),
    })
}

/// One entry of an image's layer; paths are inside the image, with or
/// without the leading slash.
#[derive(Debug, Clone)]
pub enum LayerEntry {
    /// A regular file: path, contents, mode.
    File(String, Vec<u8>, u32),
    /// A directory.
    Dir(String),
    /// A symbolic link: path, target.
    Symlink(String, String),
}

impl LayerEntry {
    /// The path inside the image, without the leading slash.
    pub fn path(&self) -> &str {
        match self {
            LayerEntry::File(p, ..) | LayerEntry::Dir(p) | LayerEntry::Symlink(p, _) => {
                p.trim_start_matches('/')
            }
        }
    }
}

/// A one-layer image of any platform: what [`build_image`] writes for a
/// module, and what a benchmark or a test writes for a native rootfs.
#[derive(Debug, Clone)]
pub struct LayoutSpec<'a> {
    /// `NAME[:TAG]` (see [`full_name`]).
    pub name: &'a str,
    /// The config's `os` (`wasip1`, `linux`, …).
    pub os: &'a str,
    /// The config's `architecture` (`wasm`, `amd64`, …).
    pub architecture: &'a str,
    /// The layer's entries, in any order (they are written sorted by path).
    pub entries: Vec<LayerEntry>,
    /// Store the layer gzipped (`…tar+gzip`) instead of as a plain tar.
    pub gzip: bool,
    /// The config's `config` object (`Entrypoint`, `Env`, `Labels`, …).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A built layout tarball.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The tarball.
    pub tar: Vec<u8>,
    /// The full name, e.g. `docker.io/library/hello:latest`.
    pub name: String,
    /// The tag.
    pub tag: String,
    /// `sha256:…` of the manifest.
    pub manifest_digest: String,
    /// `sha256:…` of the config blob.
    pub config_digest: String,
    /// `sha256:…` of the layer blob.
    pub layer_digest: String,
    /// The layer uncompressed (a tar; its digest is the diff id).
    pub layer_tar: Vec<u8>,
    /// Size of the layer blob as stored (gzipped when asked).
    pub layer_size: u64,
    /// Manifest + config + layer bytes: what a pull transfers.
    pub content_size: u64,
}

/// One layer: the tar, and the blob as stored (the tar itself, or gzipped).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed tar (its digest is the layer's diff id).
    pub tar: Vec<u8>,
    /// The blob as stored in an image.
    pub blob: Vec<u8>,
    /// The blob's media type.
    pub media_type: &'static str,
}

/// Build a deterministic layer of `entries` (written sorted by path, owner
/// root, mtime 0), gzipped when asked.
pub fn build_layer(entries: &[LayerEntry], gzip: bool) -> Result<Layer> {
    let mut sorted: Vec<&LayerEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path().cmp(b.path()));
    let mut layer = tar::Builder::new(Vec::new());
    layer.mode(tar::HeaderMode::Deterministic);
    for e in sorted {
        match e {
            LayerEntry::File(_, data, mode) => append(&mut layer, e.path(), data, *mode)?,
            LayerEntry::Dir(_) => dir(&mut layer, &format!("{}/", e.path().trim_end_matches('/')))?,
            LayerEntry::Symlink(_, target) => {
                let mut h = header(tar::EntryType::Symlink, 0, 0o777);
                layer
                    .append_link(&mut h, e.path(), target)
                    .map_err(crate::io(format!("adding {} to a tarball", e.path())))?;
            }
        }
    }
    let tar = layer
        .into_inner()
        .map_err(crate::io("building the layer"))?;
    if !gzip {
        return Ok(Layer {
            blob: tar.clone(),
            tar,
            media_type: OCI_TAR_LAYER,
        });
    }
    use std::io::Write;
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let blob = z
        .write_all(&tar)
        .and_then(|_| z.finish())
        .map_err(crate::io("compressing the layer"))?;
    Ok(Layer {
        tar,
        blob,
        media_type: OCI_TAR_GZIP_LAYER,
    })
}

/// Build the layout tarball of a one-layer image. Pure CPU work on memory.
pub fn build_layout(spec: &LayoutSpec<'_>) -> Result<Layout> {
    let (name, tag) = full_name(spec.name)?;
    let Layer {
        tar: layer_tar,
        blob,
        media_type,
    } = build_layer(&spec.entries, spec.gzip)?;
    let diff_id = sha256_digest(&layer_tar);
    let layer_digest = sha256_digest(&blob);

    let config = json!({
        "architecture": spec.architecture,
        "os": spec.os,
        "config": spec.config,
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    });
    let config = serde_json::to_vec(&config).expect("JSON of strings serializes");
    let config_digest = sha256_digest(&config);

    let mut manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST_MEDIA_TYPE,
        "config": { "mediaType": OCI_CONFIG_MEDIA_TYPE, "digest": config_digest, "size": config.len() },
        "layers": [ { "mediaType": media_type, "digest": layer_digest, "size": blob.len() } ],
    });
    if !spec.annotations.is_empty() {
        manifest["annotations"] = json!(spec.annotations);
    }
    let manifest = serde_json::to_vec(&manifest).expect("JSON of strings serializes");
    let manifest_digest = sha256_digest(&manifest);

    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX_MEDIA_TYPE,
        "manifests": [ {
            "mediaType": OCI_MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": { CONTAINERD_IMAGE_NAME: name, OCI_REF_NAME: tag },
        } ],
    });
    let index = serde_json::to_vec(&index).expect("JSON of strings serializes");

    let mut blobs: BTreeMap<String, &[u8]> = BTreeMap::new();
    for (d, b) in [
        (&manifest_digest, &manifest[..]),
        (&config_digest, &config[..]),
        (&layer_digest, &blob[..]),
    ] {
        blobs.insert(format!("blobs/sha256/{}", hex_of(d)), b);
    }
    let mut out = tar::Builder::new(Vec::new());
    out.mode(tar::HeaderMode::Deterministic);
    dir(&mut out, "blobs/")?;
    dir(&mut out, "blobs/sha256/")?;
    for (path, bytes) in &blobs {
        append(&mut out, path, bytes, 0o644)?;
    }
    append(&mut out, "index.json", &index, 0o644)?;
    append(
        &mut out,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    let tar = out
        .into_inner()
        .map_err(crate::io("building the image tarball"))?;
    Ok(Layout {
        tar,
        name,
        tag,
        manifest_digest,
        config_digest,
        layer_digest,
        layer_size: blob.len() as u64,
        content_size: (manifest.len() + config.len() + blob.len()) as u64,
        layer_tar,
    })
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn header(kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn append(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mode: u32) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, data.len() as u64, mode);
    b.append_data(&mut h, path, data)
        .map_err(crate::io(format!("adding {path} to a tarball")))
}

fn dir(b: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut h, path, std::io::empty())
        .map_err(crate::io(format!("adding {path} to a tarball")))
}

/// Read the module back out of a layout tarball made by [`build_image`]
/// (or any layout whose index names one image of a format
/// [`crate::format`] reads), checking every digest on the way. Returns the
/// module and the manifest digest. Pure; for tests and the shim.
pub fn read_image(tarball: &[u8], max: u64) -> Result<(Vec<u8>, String)> {
    use std::io::Read;
    let bad = |e: std::io::Error| Error::Invalid(format!("reading the image tarball: {e}"));
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(tarball);
    for e in ar.entries().map_err(bad)? {
        let mut e = e.map_err(bad)?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let path = e
            .path()
            .map_err(bad)?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let mut b = Vec::new();
        (&mut e)
            .take(max.saturating_mul(2) + (1 << 20))
            .read_to_end(&mut b)
            .map_err(bad)?;
        files.insert(path, b);
    }
    let blob = |digest: &str| -> Result<&Vec<u8>> {
        let b = files
            .get(&format!("blobs/sha256/{}", hex_of(digest)))
            .ok_or_else(|| Error::Invalid(format!("the tarball has no blob {digest}")))?;
        let got = sha256_digest(b);
        if got != digest {
            return Err(Error::DigestMismatch {
                expected: digest.into(),
                got,
            });
        }
        Ok(b)
    };
    let index: oci_client::manifest::OciImageIndex = serde_json::from_slice(
        files
            .get("index.json")
            .ok_or_else(|| Error::Invalid("the tarball has no index.json".into()))?,
    )
    .map_err(|e| Error::Invalid(format!("index.json: {e}")))?;
    let [entry] = index.manifests.as_slice() else {
        return Err(Error::Invalid(format!(
            "index.json lists {} images; expected one",
            index.manifests.len()
        )));
    };
    let manifest: oci_client::manifest::OciImageManifest =
        serde_json::from_slice(blob(&entry.digest)?)
            .map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
    let wasm = match format::plan("image tarball", &manifest)? {
        format::Plan::Layer { index, .. } => blob(&manifest.layers[index].digest)?.clone(),
        format::Plan::Image => {
            let path = format::entrypoint("image tarball", blob(&manifest.config.digest)?)?;
            let mut found = None;
            for l in manifest.layers.iter().rev() {
                let Some(gz) = format::tar_kind(&l.media_type) else {
                    continue;
                };
                match format::find_in_tar(blob(&l.digest)?, gz, &path, max)? {
                    format::TarFind::Found(b) => {
                        found = Some(b);
                        break;
                    }
                    format::TarFind::Deleted => break,
                    format::TarFind::Absent => {}
                }
            }
            found.ok_or_else(|| Error::NotWasm(format!("no layer holds the entrypoint {path}")))?
        }
    };
    Ok((wasm, entry.digest.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_native_layout_has_sorted_entries_links_and_a_gzipped_layer() {
        let built = build_layout(&LayoutSpec {
            name: "wisp.test/x:1",
            os: "linux",
            architecture: "amd64",
            entries: vec![
                LayerEntry::File("/lib/x/libc.so".into(), b"elf".to_vec(), 0o755),
                LayerEntry::Symlink("bin/sh".into(), "/lib/x/libc.so".into()),
                LayerEntry::Dir("lib/x".into()),
                LayerEntry::Dir("lib".into()),
                LayerEntry::Dir("bin".into()),
            ],
            gzip: true,
            config: Default::default(),
            annotations: Default::default(),
        })
        .unwrap();
        assert_eq!(
            (built.name.as_str(), built.tag.as_str()),
            ("wisp.test/x:1", "1")
        );
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&read_blob(&built.tar, &built.layer_digest)[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, built.layer_tar);
        let listed: Vec<(String, tar::EntryType)> = tar::Archive::new(&built.layer_tar[..])
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                )
            })
            .collect();
        assert_eq!(
            listed,
            vec![
                ("bin/".into(), tar::EntryType::Directory),
                ("bin/sh".into(), tar::EntryType::Symlink),
                ("lib/".into(), tar::EntryType::Directory),
                ("lib/x/".into(), tar::EntryType::Directory),
                ("lib/x/libc.so".into(), tar::EntryType::Regular),
            ]
        );
        let manifest: serde_json::Value =
            serde_json::from_slice(&read_blob(&built.tar, &built.manifest_digest)).unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], OCI_TAR_GZIP_LAYER);
        assert_eq!(manifest["layers"][0]["size"], built.layer_size);
    }

    fn read_blob(tarball: &[u8], digest: &str) -> Vec<u8> {
        let want = format!("blobs/sha256/{}", hex_of(digest));
        for e in tar::Archive::new(tarball).entries().unwrap() {
            let mut e = e.unwrap();
            if e.path().unwrap().to_string_lossy() == want {
                let mut b = Vec::new();
                e.read_to_end(&mut b).unwrap();
                return b;
            }
        }
        panic!("no blob {digest}");
    }

    fn spec() -> ImageSpec {
        ImageSpec {
            name: "hello:1".into(),
            wasm: wat::parse_str("(module (func (export \"_start\")))").unwrap(),
            env: vec![("GREETING".into(), "hi".into())],
            annotations: [("wisp.abi".to_string(), "command".to_string())].into(),
            labels: [("org.example".to_string(), "x".to_string())].into(),
            ..Default::default()
        }
    }

    fn entries(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        use std::io::Read;
        let mut out = BTreeMap::new();
        for e in tar::Archive::new(tar).entries().unwrap() {
            let mut e = e.unwrap();
            assert_eq!(e.header().mtime().unwrap(), 0);
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            out.insert(p, b);
        }
        out
    }

    #[test]
    fn layout_has_every_part_and_digests_match() {
        let img = build_image(&spec()).unwrap();
        assert_eq!(img.name, "docker.io/library/hello:1");
        assert_eq!(img.entrypoint, "/hello.wasm");
        let files = entries(&img.tar);
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert!(
            names.contains(&"oci-layout") && names.contains(&"index.json"),
            "{names:?}"
        );
        for (path, bytes) in &files {
            if let Some(hex) = path.strip_prefix("blobs/sha256/").filter(|h| !h.is_empty()) {
                assert_eq!(sha256_digest(bytes), format!("sha256:{hex}"), "{path}");
            }
        }
        let index: serde_json::Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let m = &index["manifests"][0];
        assert_eq!(m["digest"], img.manifest_digest.as_str());
        assert_eq!(m["annotations"][OCI_REF_NAME], "1");
        assert!(
            m.get("platform").is_none(),
            "ctr would filter a wasm platform out"
        );
        assert_eq!(
            m["annotations"][CONTAINERD_IMAGE_NAME],
            "docker.io/library/hello:1"
        );
        let manifest: serde_json::Value = serde_json::from_slice(
            &files[&format!("blobs/sha256/{}", hex_of(&img.manifest_digest))],
        )
        .unwrap();
        assert_eq!(manifest["layers"][0]["mediaType"], OCI_TAR_LAYER);
        assert_eq!(manifest["annotations"]["wisp.abi"], "command");
        let config: serde_json::Value =
            serde_json::from_slice(&files[&format!("blobs/sha256/{}", hex_of(&img.config_digest))])
                .unwrap();
        assert_eq!(config["os"], "wasip1");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["config"]["Entrypoint"][0], "/hello.wasm");
        assert_eq!(config["config"]["Env"][0], "GREETING=hi");
        // The ABI annotation reaches the shim through Env.
        assert_eq!(config["config"]["Env"][1], "WISP_ABI=command");
        assert_eq!(config["config"]["Labels"]["org.example"], "x");
        assert_eq!(config["rootfs"]["diff_ids"][0], img.layer_digest.as_str());
        let layer = entries(&files[&format!("blobs/sha256/{}", hex_of(&img.layer_digest))]);
        assert_eq!(layer.keys().collect::<Vec<_>>(), vec!["hello.wasm"]);
        assert_eq!(layer["hello.wasm"], spec().wasm);
    }

    #[test]
    fn same_input_same_bytes_and_the_module_reads_back() {
        let a = build_image(&spec()).unwrap();
        let b = build_image(&spec()).unwrap();
        assert_eq!(a.tar, b.tar);
        assert_eq!(a.manifest_digest, b.manifest_digest);
        let mut other = spec();
        other.env.clear();
        assert_ne!(
            build_image(&other).unwrap().manifest_digest,
            a.manifest_digest
        );
        let (wasm, digest) = read_image(&a.tar, 1 << 20).unwrap();
        assert_eq!(wasm, spec().wasm);
        assert_eq!(digest, a.manifest_digest);
    }

    #[test]
    fn a_tampered_blob_is_caught() {
        let img = build_image(&spec()).unwrap();
        let mut tar = img.tar.clone();
        // Flip a byte of the module inside the layer blob inside the tarball.
        let at = tar
            .windows(4)
            .position(|w| w == b"\0asm")
            .expect("module bytes are in the tarball");
        tar[at + 5] ^= 0xff;
        let e = read_image(&tar, 1 << 20).unwrap_err().to_string();
        assert!(e.starts_with("digest mismatch: expected sha256:"), "{e}");
    }

    #[test]
    fn names_and_bad_input() {
        assert_eq!(
            full_name("ghcr.io/acme/fn").unwrap(),
            ("ghcr.io/acme/fn:latest".to_string(), "latest".to_string())
        );
        assert!(full_name("UPPER:1").is_err());
        assert!(
            full_name("a@sha256:0000000000000000000000000000000000000000000000000000000000000000")
                .is_err()
        );
        let mut s = spec();
        s.wasm = b"not wasm".to_vec();
        assert!(
            build_image(&s)
                .unwrap_err()
                .to_string()
                .contains("not a WebAssembly binary")
        );
        let mut s = spec();
        s.file_name = Some("a/b.wasm".into());
        assert!(build_image(&s).is_err());
    }
}
