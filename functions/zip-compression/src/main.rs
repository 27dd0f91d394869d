//! Zips a directory tree: `?dir=` (default `/data`, a granted directory) with
//! deflate, entries in sorted path order with a fixed timestamp (1980-01-01)
//! and mode 0644/0755, so the archive is byte-for-byte reproducible. Answers the
//! archive (`application/zip`), or writes it to `?out=` and answers a summary.
use std::io::{Cursor, Seek, Write};
use std::path::{Path, PathBuf};
use wisp_sdk::{Error, Request, Response};
use zip::write::SimpleFileOptions;

/// Relative paths of all directories and regular files under `root`, sorted.
fn walk(
    root: &Path,
    rel: &Path,
    skip: Option<&Path>,
    dirs: &mut Vec<PathBuf>,
    files: &mut Vec<PathBuf>,
) -> Result<(), Error> {
    let here = root.join(rel);
    let rd = std::fs::read_dir(&here).map_err(|e| wisp_sdk::fs::io_error("list", &here, e))?;
    let mut entries = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| wisp_sdk::fs::io_error("list", &here, e))?;
        entries.push(entry.file_name());
    }
    entries.sort();
    for name in entries {
        let rel_path = rel.join(&name);
        let full = root.join(&rel_path);
        if Some(full.as_path()) == skip {
            continue;
        }
        let meta =
            std::fs::metadata(&full).map_err(|e| wisp_sdk::fs::io_error("stat", &full, e))?;
        if meta.is_dir() {
            dirs.push(rel_path.clone());
            walk(root, &rel_path, skip, dirs, files)?;
        } else if meta.is_file() {
            files.push(rel_path);
        }
    }
    Ok(())
}

fn zip_name(p: &Path) -> String {
    p.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Writes the archive; returns (files, uncompressed bytes).
fn zip_into<W: Write + Seek>(
    w: W,
    root: &Path,
    dirs: &[PathBuf],
    files: &[PathBuf],
) -> Result<(W, u64), Error> {
    let mut zip = zip::ZipWriter::new(w);
    let base = SimpleFileOptions::default().last_modified_time(zip::DateTime::default());
    let file_opts = base
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    let dir_opts = base.unix_permissions(0o755);
    for d in dirs {
        zip.add_directory(zip_name(d), dir_opts)?;
    }
    let mut total = 0u64;
    for f in files {
        let full = root.join(f);
        let data = wisp_sdk::fs::read(&full)?;
        total += data.len() as u64;
        zip.start_file(zip_name(f), file_opts)?;
        zip.write_all(&data)?;
    }
    Ok((zip.finish()?, total))
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let dir = req
            .param("dir")
            .filter(|d| !d.is_empty())
            .unwrap_or("/data")
            .to_string();
        let root = wisp_sdk::fs::require_dir(&dir)?;
        let out = req
            .param("out")
            .filter(|o| !o.is_empty())
            .map(PathBuf::from);
        let (mut dirs, mut files) = (Vec::new(), Vec::new());
        walk(&root, Path::new(""), out.as_deref(), &mut dirs, &mut files)?;
        match out {
            Some(out) => {
                let file = std::fs::File::create(&out)
                    .map_err(|e| wisp_sdk::fs::io_error("create", &out, e))?;
                let (file, total) = zip_into(file, &root, &dirs, &files)?;
                let size = file.metadata()?.len();
                Ok(Response::text(format!(
                    "zipped {} files ({total} bytes) from {dir} into {} ({size} bytes)\n",
                    files.len(),
                    out.display()
                )))
            }
            None => {
                let (cursor, total) = zip_into(Cursor::new(Vec::new()), &root, &dirs, &files)?;
                Ok(Response::bytes("application/zip", cursor.into_inner())
                    .header("X-Zip-Files", files.len())
                    .header("X-Zip-Input-Bytes", total))
            }
        }
    });
}
