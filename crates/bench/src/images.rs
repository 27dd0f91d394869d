//! OCI image layout tarballs of one function, both ways, for `ctr image
//! import`:
//!
//! - [`wasm_image`]: what `wisp image build` writes ([`wisp_oci::layout`]):
//!   one uncompressed tar layer holding `/<name>.wasm`, config `wasip1/wasm`;
//! - [`native_image`]: the native build in the smallest rootfs that runs it
//!   (the binary plus exactly the shared libraries `ldd` lists, as
//!   [`crate::runc`] builds its rootfs), one gzipped tar layer, config
//!   `linux/amd64`, entrypoint the binary; [`native_layout`] is the same
//!   with extra files and config (`wisp image build --native`).
//!
//! Both are deterministic (sorted entries, mtime 0, owner root), so sizes
//! are comparable run to run.

use crate::runc::ldd_libs;
use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};
use wisp_oci::layout::LayerEntry;

/// One image written to disk.
#[derive(Clone, Debug)]
pub struct Image {
    /// Full name, e.g. `docker.io/wisp-bench/hello:wasm`.
    pub name: String,
    /// The layout tarball.
    pub tar: PathBuf,
    /// The layer blob as stored in the image (bytes).
    pub layer_bytes: u64,
    /// The layer uncompressed (the tar itself).
    pub layer_tar_bytes: u64,
    /// The layer gzipped (default level): as stored for the native image,
    /// computed for the Wasm one so both can be compared compressed.
    pub layer_gz_bytes: u64,
    /// Manifest + config + layer: the content an image pull transfers.
    pub content_bytes: u64,
}

fn gzip(b: &[u8]) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b)?;
    Ok(e.finish()?)
}

/// The sum of the blob sizes in a layout tarball.
#[cfg(test)]
fn blob_bytes(tarball: &[u8]) -> Result<u64> {
    let mut total = 0;
    for e in tar::Archive::new(tarball).entries()? {
        let e = e?;
        if e.header().entry_type().is_file() && e.path()?.starts_with("blobs/sha256") {
            total += e.header().size()?;
        }
    }
    Ok(total)
}

/// Write `tarball` as `<full name>.tar` into `dir`.
fn write(full_name: &str, tarball: &[u8], dir: &Path) -> Result<PathBuf> {
    let tar = dir.join(format!("{}.tar", full_name.replace(['/', ':'], "_")));
    std::fs::write(&tar, tarball).with_context(|| format!("writing {}", tar.display()))?;
    Ok(tar)
}

/// The Wasm image of `wasm`, named `NAME[:TAG]`, written into `dir`: the
/// image `wisp image build` writes.
pub fn wasm_image(name: &str, wasm: &[u8], dir: &Path) -> Result<Image> {
    wasm_image_with(name, wasm, Default::default(), dir)
}

/// [`wasm_image`] with manifest annotations, e.g. `wisp.abi=http` (written
/// into the config's `Env` too, as `wisp image build --annotation` does).
pub fn wasm_image_with(
    name: &str,
    wasm: &[u8],
    annotations: std::collections::BTreeMap<String, String>,
    dir: &Path,
) -> Result<Image> {
    let built = wisp_oci::layout::build_image(&wisp_oci::layout::ImageSpec {
        name: name.into(),
        wasm: wasm.to_vec(),
        annotations,
        ..Default::default()
    })
    .with_context(|| format!("building the Wasm image {name}"))?;
    let layer = built.layer_tar.len() as u64;
    Ok(Image {
        tar: write(&built.name, &built.tar, dir)?,
        name: built.name,
        layer_bytes: layer,
        layer_tar_bytes: layer,
        layer_gz_bytes: gzip(&built.layer_tar)?.len() as u64,
        content_bytes: built.content_size,
    })
}

/// The native image of `exe` (as `/<file name>`, with its libraries at the
/// paths `ldd` names), named `NAME[:TAG]` (`docker.io/…` is added as
/// `wisp image build` does), written into `dir`.
pub fn native_image(name: &str, exe: &Path, dir: &Path) -> Result<Image> {
    native_image_with(name, exe, Vec::new(), serde_json::Map::new(), dir)
}

/// The native image of several executables (each as `/<file name>`, with
/// the libraries any of them loads), the first one the entrypoint.
pub fn native_image_of(name: &str, exes: &[&Path], dir: &Path) -> Result<Image> {
    written(
        native_layout_of(name, exes, Vec::new(), serde_json::Map::new())?,
        dir,
    )
}

/// [`native_layout`] written into `dir`.
pub fn native_image_with(
    name: &str,
    exe: &Path,
    extra: Vec<LayerEntry>,
    config: serde_json::Map<String, serde_json::Value>,
    dir: &Path,
) -> Result<Image> {
    written(native_layout(name, exe, extra, config)?, dir)
}

fn written(layout: wisp_oci::layout::Layout, dir: &Path) -> Result<Image> {
    Ok(Image {
        tar: write(&layout.name, &layout.tar, dir)?,
        name: layout.name,
        layer_bytes: layout.layer_size,
        layer_tar_bytes: layout.layer_tar.len() as u64,
        layer_gz_bytes: layout.layer_size,
        content_bytes: layout.content_size,
    })
}

/// The layout of a native image: `exe` as `/<file name>` and the Entrypoint,
/// the shared libraries `ldd` lists for it at their paths, `extra` entries
/// (files, links) and `config` merged into the image config (`Env`, `User`,
/// …; an `Entrypoint` there wins). One gzipped layer, `linux/amd64`.
/// `wisp image build --native` writes this (pause, operator and installer
/// images for Kubernetes).
pub fn native_layout(
    name: &str,
    exe: &Path,
    extra: Vec<LayerEntry>,
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<wisp_oci::layout::Layout> {
    native_layout_of(name, &[exe], extra, config)
}

/// [`native_layout`] of several executables, each as `/<file name>` with
/// the libraries any of them loads; the first is the Entrypoint.
pub fn native_layout_of(
    name: &str,
    exes: &[&Path],
    extra: Vec<LayerEntry>,
    config: serde_json::Map<String, serde_json::Value>,
) -> Result<wisp_oci::layout::Layout> {
    let mut entries = vec![];
    let mut libs = std::collections::BTreeSet::new();
    let mut entry = None;
    for exe in exes {
        let bin_name = exe
            .file_name()
            .context("executable without a file name")?
            .to_string_lossy()
            .into_owned();
        entry.get_or_insert_with(|| bin_name.clone());
        entries.push(LayerEntry::File(
            bin_name,
            std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?,
            0o755,
        ));
        libs.extend(ldd_libs(exe));
    }
    let bin_name = entry.context("no executable for the image")?;
    let mut dirs: std::collections::BTreeSet<String> =
        ["dev", "proc", "sys", "tmp"].map(String::from).into();
    let mut parents = |p: &Path| {
        let mut d = p.parent();
        while let Some(x) = d.filter(|x| x != &Path::new("/") && x != &Path::new("")) {
            dirs.insert(x.to_string_lossy().trim_start_matches('/').to_string());
            d = x.parent();
        }
    };
    for lib in libs {
        let real = std::fs::canonicalize(&lib)?;
        let bytes = std::fs::read(&real).with_context(|| format!("reading {}", real.display()))?;
        parents(&lib);
        entries.push(LayerEntry::File(
            lib.to_string_lossy().into_owned(),
            bytes,
            0o755,
        ));
    }
    // Extra entries win over a library at the same path.
    let extra_paths: std::collections::BTreeSet<String> = extra
        .iter()
        .map(|e| e.path().trim_end_matches('/').to_string())
        .collect();
    for p in &extra_paths {
        parents(Path::new(&format!("/{p}")));
    }
    entries.retain(|e| !extra_paths.contains(e.path()));
    entries.extend(extra);
    entries.extend(
        dirs.into_iter()
            .filter(|d| !extra_paths.contains(d))
            .map(LayerEntry::Dir),
    );
    let mut cfg = serde_json::Map::new();
    cfg.insert(
        "Entrypoint".into(),
        serde_json::json!([format!("/{bin_name}")]),
    );
    cfg.extend(config);
    wisp_oci::layout::build_layout(&wisp_oci::layout::LayoutSpec {
        name,
        os: "linux",
        architecture: "amd64",
        entries,
        gzip: true,
        config: cfg,
        annotations: Default::default(),
    })
    .with_context(|| format!("building the native image {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_image_holds_the_binary_and_its_libraries() {
        let dir = std::env::temp_dir().join(format!("wisp-bench-img-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Any dynamically linked executable will do: `ls`'s libraries are in ldd's list.
        let exe = Path::new("/bin/ls");
        let img = native_image("wisp-bench/ls:native", exe, &dir).unwrap();
        assert_eq!(img.name, "docker.io/wisp-bench/ls:native");
        let bytes = std::fs::read(&img.tar).unwrap();
        assert_eq!(blob_bytes(&bytes).unwrap(), img.content_bytes);
        // Find the layer and list it.
        let mut layer_paths = vec![];
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let mut e = e.unwrap();
            if e.header().size().unwrap() == img.layer_bytes {
                let mut gz = vec![];
                std::io::Read::read_to_end(&mut e, &mut gz).unwrap();
                let t = flate2::read::GzDecoder::new(&gz[..]);
                for f in tar::Archive::new(t).entries().unwrap() {
                    layer_paths.push(f.unwrap().path().unwrap().to_string_lossy().into_owned());
                }
            }
        }
        assert!(layer_paths.contains(&"ls".to_string()), "{layer_paths:?}");
        for lib in ldd_libs(exe) {
            let p = lib.to_string_lossy().trim_start_matches('/').to_string();
            assert!(layer_paths.contains(&p), "{p} missing: {layer_paths:?}");
        }
        let again = native_image("wisp-bench/ls:native", exe, &dir).unwrap();
        assert_eq!(std::fs::read(&again.tar).unwrap(), bytes, "deterministic");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wasm_image_sizes_add_up() {
        let dir = std::env::temp_dir().join(format!("wisp-bench-wimg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let wasm = b"\0asm\x01\0\0\0".repeat(100);
        let img = wasm_image("wisp-bench/x:wasm", &wasm, &dir).unwrap();
        assert_eq!(img.name, "docker.io/wisp-bench/x:wasm");
        assert!(img.layer_bytes > wasm.len() as u64, "{img:?}");
        assert!(img.content_bytes > img.layer_bytes);
        assert!(
            img.layer_gz_bytes < img.layer_bytes,
            "repetitive input compresses"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
