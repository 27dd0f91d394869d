//! Disk I/O: writes `?lines=` 64-byte lines (default 100000) to a fresh file in
//! `?dir=` (default `/data`, a granted writable directory), fsyncs it (unless
//! `?sync=false`), reads it back line by line verifying every line, and deletes
//! it. The answer is deterministic; the timings go to stderr.
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use wisp_sdk::{Error, Request, Response};

const PAYLOAD: &str = "the quick brown fox jumps over the lazy dog 0123456789";

/// Removes the scratch file however the function ends.
struct Scratch(PathBuf);
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn line(i: u64) -> String {
    format!("{i:08} {PAYLOAD}\n")
}

fn create_scratch(dir: &Path) -> Result<(Scratch, File), Error> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    for attempt in 0..100u32 {
        let path = dir.join(format!(".wisp-diskio-{nanos:x}-{attempt}.tmp"));
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((Scratch(path), f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(wisp_sdk::fs::io_error("create", &path, e)),
        }
    }
    Err(Error::msg("could not create a scratch file"))
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let lines: u64 = req.param_or("lines", 100_000)?;
        let sync: bool = req.param_or("sync", true)?;
        let dir_param = req
            .param("dir")
            .filter(|d| !d.is_empty())
            .unwrap_or("/data")
            .to_string();
        let dir = wisp_sdk::fs::require_dir(&dir_param)?;
        let (scratch, file) = create_scratch(&dir)?;
        let path = scratch.0.clone();
        let io = |op: &str| {
            let path = path.clone();
            let op = op.to_string();
            move |e: std::io::Error| wisp_sdk::fs::io_error(&op, &path, e)
        };

        let t0 = Instant::now();
        let mut w = BufWriter::with_capacity(64 * 1024, file);
        let mut written = 0u64;
        for i in 0..lines {
            let l = line(i);
            w.write_all(l.as_bytes()).map_err(io("write"))?;
            written += l.len() as u64;
        }
        let file = w.into_inner().map_err(|e| io("write")(e.into_error()))?;
        if sync {
            file.sync_all().map_err(io("sync"))?;
        }
        drop(file);
        let t1 = Instant::now();

        let reader = BufReader::with_capacity(64 * 1024, File::open(&path).map_err(io("open"))?);
        let (mut read, mut count) = (0u64, 0u64);
        for l in reader.lines() {
            let l = l.map_err(io("read"))?;
            if l.len() + 1 != line(count).len()
                || l.as_bytes() != &line(count).as_bytes()[..l.len()]
            {
                return Err(Error::msg(format!(
                    "line {} read back differs: {l:?}",
                    count + 1
                )));
            }
            read += l.len() as u64 + 1;
            count += 1;
        }
        if count != lines {
            return Err(Error::msg(format!(
                "read back {count} lines, wrote {lines}"
            )));
        }
        let t2 = Instant::now();
        eprintln!(
            "diskio: write{} {:.3} ms, read {:.3} ms",
            if sync { "+fsync" } else { "" },
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
        drop(scratch);
        Ok(Response::text(format!(
            "diskio: wrote and read back {lines} lines ({written} bytes) in {dir_param}: ok ({read} bytes verified)\n"
        )))
    });
}
