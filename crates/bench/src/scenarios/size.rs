//! Scenario 7, size: wasm module, precompiled artifact, native binary and
//! the smallest container image (gzipped layer of the binary plus the
//! shared libraries `ldd` lists), as `scripts/function-sizes` computes them.

use crate::Ctx;
use crate::plot;
use crate::report::{Section, bytes, table};
use crate::runc::ldd_libs;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;

/// Size of `tar czf` of the executable and its libraries.
fn image_size(exe: &Path) -> Result<u64> {
    let mut files = vec![exe.to_path_buf()];
    files.extend(ldd_libs(exe));
    let out = std::process::Command::new("tar")
        .args(["--dereference", "-czPf", "-"])
        .args(&files)
        .output()
        .context("running tar")?;
    anyhow::ensure!(
        out.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout.len() as u64)
}

pub async fn run(ctx: &Ctx) -> Result<Section> {
    let names: Vec<String> = if ctx.opts.quick {
        vec!["hello".into(), "fibonacci".into(), "hash".into()]
    } else {
        ctx.funcs
            .iter()
            .filter(|(n, f)| !n.starts_with("test-") && f.abi == "command" && f.native.is_some())
            .map(|(n, _)| n.clone())
            .collect()
    };
    let mut sec = Section::new("size", "Sizes: module, artifact, native, image");
    let rt = ctx.runtime()?;
    let mut rows = vec![];
    let mut data = vec![];
    let mut series: Vec<(String, Vec<(f64, f64)>)> =
        ["wasm", "precompiled", "native", "min. image"]
            .iter()
            .map(|s| (s.to_string(), vec![]))
            .collect();
    let (mut tw, mut ti) = (0u64, 0u64);
    for n in &names {
        ctx.progress(&format!("size: {n}"));
        let f = ctx.func(n)?;
        let wasm = ctx.wasm(n)?;
        let pre = rt.compile(&wasm)?.artifact.len() as u64;
        let exe = ctx.native(n)?;
        let native = std::fs::metadata(exe)?.len();
        let img = image_size(exe)?;
        tw += f.wasm_size;
        ti += img;
        rows.push(vec![
            n.clone(),
            bytes(f.wasm_size as f64),
            bytes(pre as f64),
            bytes(native as f64),
            bytes(img as f64),
            format!("{:.1}×", img as f64 / f.wasm_size as f64),
        ]);
        for (i, v) in [f.wasm_size, pre, native, img].into_iter().enumerate() {
            series[i].1.push((v as f64 / 1024.0, 0.0));
        }
        data.push(json!({"function": n, "wasm": f.wasm_size, "precompiled": pre, "native": native, "min_image": img}));
    }
    sec.para(
        "*precompiled*: the artifact Wisp compiles once at deploy and maps on load. *min. image*: a gzipped tar layer of the native \
         binary plus exactly the shared libraries `ldd` lists, the smallest container that runs it (real images add a base \
         distribution). The orchestration study found 55–90× between OCI images and Wasm modules.",
    );
    sec.markdown.push_str(&table(
        &[
            "function",
            "wasm",
            "precompiled",
            "native",
            "min. image",
            "image / wasm",
        ],
        &rows,
    ));
    sec.para(&format!(
        "All {}: {} of wasm against {} of minimal images ({:.1}×).",
        names.len(),
        bytes(tw as f64),
        bytes(ti as f64),
        ti as f64 / tw as f64
    ));
    sec.plot(
        "sizes.svg",
        plot::bars("Deployable sizes", "KiB (log)", &names, &series, true),
        "Size of the wasm module, precompiled artifact, native binary and minimal image per function",
    );
    sec.json = json!({"functions": data, "total_wasm": tw, "total_min_image": ti});
    Ok(sec)
}
