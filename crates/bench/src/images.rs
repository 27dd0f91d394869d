//! OCI image layout tarballs of one function, both ways, for `ctr image
//! import`:
//!
//! - [`wasm_image`]: what `wisp image build` writes ([`wisp_oci::layout`]):
//!   one uncompressed tar layer holding `/<name>.wasm`, config `wasip1/wasm`;
//! - [`native_image`]: the native build in the smallest rootfs that runs it
//!   (the binary plus exactly the shared libraries `ldd` lists, as
//!   [`crate::runc`] builds its rootfs), one gzipped tar layer, config
//!   `linux/amd64`, entrypoint the binary.
//!
//! Both are deterministic (sorted entries, mtime 0, owner root), so sizes
//! are comparable run to run.

use crate::runc::ldd_libs;
use anyhow::{Context, Result};
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

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

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn gzip(b: &[u8]) -> Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b)?;
    Ok(e.finish()?)
}

/// The sum of the blob sizes in a layout tarball.
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

/// The Wasm image of `wasm`, named `NAME[:TAG]`, written into `dir`.
pub fn wasm_image(name: &str, wasm: &[u8], dir: &Path) -> Result<Image> {
    let built = wisp_oci::layout::build_image(&wisp_oci::layout::ImageSpec {
        name: name.into(),
        wasm: wasm.to_vec(),
        ..Default::default()
    })
    .with_context(|| format!("building the Wasm image {name}"))?;
    // The layer: the one tar entry holding the module (uncompressed).
    let layer_bytes = {
        let mut n = None;
        for e in tar::Archive::new(&built.tar[..]).entries()? {
            let e = e?;
            if e.path()?
                .ends_with(built.layer_digest.trim_start_matches("sha256:"))
            {
                n = Some(e.header().size()?);
            }
        }
        n.context("the layer is not in the image tarball")?
    };
    let layer = single_file_tar(built.entrypoint.trim_start_matches('/'), wasm, 0o755)?;
    let tar = dir.join(format!("{}.tar", file_stem(&built.name)));
    std::fs::write(&tar, &built.tar).with_context(|| format!("writing {}", tar.display()))?;
    Ok(Image {
        name: built.name,
        tar,
        layer_bytes,
        layer_tar_bytes: layer_bytes,
        layer_gz_bytes: gzip(&layer)?.len() as u64,
        content_bytes: blob_bytes(&built.tar)?,
    })
}

/// A deterministic tar of one file (what the Wasm layer holds), for sizes.
fn single_file_tar(path: &str, data: &[u8], mode: u32) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    append(&mut b, path, data, mode)?;
    Ok(b.into_inner()?)
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
        .with_context(|| format!("adding {path} to a tarball"))
}

fn dir_entry(b: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0, 0o755);
    b.append_data(&mut h, path, std::io::empty())
        .with_context(|| format!("adding {path} to a tarball"))
}

fn file_stem(full_name: &str) -> String {
    full_name.replace(['/', ':'], "_")
}

/// The native image of `exe` (as `/<file name>`, with its libraries at the
/// paths `ldd` names), named `NAME[:TAG]` (`docker.io/…` is added as
/// `wisp image build` does), written into `dir`.
pub fn native_image(name: &str, exe: &Path, dir: &Path) -> Result<Image> {
    let (full, tag) = wisp_oci::layout::full_name(name)?;
    let bin_name = exe
        .file_name()
        .context("executable without a file name")?
        .to_string_lossy()
        .into_owned();
    // path in image → bytes; directories made from the paths.
    let mut files: std::collections::BTreeMap<String, (Vec<u8>, u32)> = Default::default();
    files.insert(
        bin_name.clone(),
        (
            std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?,
            0o755,
        ),
    );
    for lib in ldd_libs(exe) {
        let real = std::fs::canonicalize(&lib)?;
        let bytes = std::fs::read(&real).with_context(|| format!("reading {}", real.display()))?;
        let path = lib.to_string_lossy().trim_start_matches('/').to_string();
        files.insert(path, (bytes, 0o755));
    }
    let mut dirs: std::collections::BTreeSet<String> =
        ["dev", "proc", "sys", "tmp"].map(String::from).into();
    for p in files.keys() {
        let mut d = Path::new(p).parent();
        while let Some(x) = d.filter(|x| !x.as_os_str().is_empty()) {
            dirs.insert(x.to_string_lossy().into_owned());
            d = x.parent();
        }
    }
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    for d in &dirs {
        dir_entry(&mut b, &format!("{d}/"))?;
    }
    for (p, (bytes, mode)) in &files {
        append(&mut b, p, bytes, *mode)?;
    }
    let layer_tar = b.into_inner()?;
    let layer = gzip(&layer_tar)?;
    let diff_id = sha(&layer_tar);
    let layer_d = sha(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [format!("/{bin_name}")]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    let config_d = sha(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer.len()}],
    }))?;
    let manifest_d = sha(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_d, "size": manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                wisp_oci::layout::CONTAINERD_IMAGE_NAME: full,
                wisp_oci::layout::OCI_REF_NAME: tag,
            },
        }],
    }))?;
    let mut out = tar::Builder::new(Vec::new());
    out.mode(tar::HeaderMode::Deterministic);
    dir_entry(&mut out, "blobs/")?;
    dir_entry(&mut out, "blobs/sha256/")?;
    let mut blobs = vec![
        (manifest_d, &manifest[..]),
        (config_d, &config[..]),
        (layer_d, &layer[..]),
    ];
    blobs.sort();
    for (d, bytes) in blobs {
        append(
            &mut out,
            &format!("blobs/sha256/{}", d.trim_start_matches("sha256:")),
            bytes,
            0o644,
        )?;
    }
    append(&mut out, "index.json", &index, 0o644)?;
    append(
        &mut out,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    let tarball = out.into_inner()?;
    let tar = dir.join(format!("{}.tar", file_stem(&full)));
    std::fs::write(&tar, &tarball).with_context(|| format!("writing {}", tar.display()))?;
    Ok(Image {
        name: full,
        tar,
        layer_bytes: layer.len() as u64,
        layer_tar_bytes: layer_tar.len() as u64,
        layer_gz_bytes: layer.len() as u64,
        content_bytes: (manifest.len() + config.len() + layer.len()) as u64,
    })
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
