//! File-system primitives of the store: private directories, atomic
//! owner-only writes, hashing a file through a read-only mapping, and the
//! exclusive lock on the home directory.

use crate::{Error, Result, io, sha256_hex};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the store writes.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Create `dir` (and missing parents) with mode 0700, or set an existing
/// one to 0700. The mode is enforced exactly, whatever the umask.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io(format!("creating {}", dir.display())))?;
    let mode = fs::metadata(dir)
        .map_err(io(format!("reading the metadata of {}", dir.display())))?
        .permissions()
        .mode();
    if mode & 0o777 != DIR_MODE {
        fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(io(format!("setting the mode of {} to 0700", dir.display())))?;
    }
    Ok(())
}

/// Set an existing file to mode 0600; a missing file is not an error.
pub(crate) fn make_private_if_exists(path: &Path) -> Result<()> {
    match fs::metadata(path) {
        Ok(m) if m.permissions().mode() & 0o777 != FILE_MODE => {
            fs::set_permissions(path, fs::Permissions::from_mode(FILE_MODE)).map_err(io(format!(
                "setting the mode of {} to 0600",
                path.display()
            )))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            context: format!("reading the metadata of {}", path.display()),
            source: e,
        }),
    }
}

/// Open `path` for reading and writing, creating it with mode 0600 if
/// missing (an existing file is set to 0600), without truncating it; with
/// `nofollow`, a symlink in its place is an error.
pub(crate) fn open_private(path: &Path, nofollow: bool) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .custom_flags(if nofollow { libc::O_NOFOLLOW } else { 0 })
        .open(path)
        .map_err(io(format!("opening {}", path.display())))?;
    let mode = f
        .metadata()
        .map_err(io(format!("reading the metadata of {}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o777 != FILE_MODE {
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .map_err(io(format!(
                "setting the mode of {} to 0600",
                path.display()
            )))?;
    }
    Ok(f)
}

/// Temp files of this process, numbered: with the pid and random bits, no
/// two writes (threads, processes, or a crashed earlier process with the
/// same pid) share a temp name.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// 64 bits from the standard library's randomly seeded hasher keys (seeded
/// from the OS once per thread): enough to tell this process's temp names
/// from a crashed process's that had the same pid.
fn random_u64(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.finish()
}

/// Whether a directory entry name is one of [`write_file`]'s temp files.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

fn temp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        ".{name}.{}.{n}.{:016x}.tmp",
        std::process::id(),
        random_u64(n)
    ))
}

/// Write `bytes` to `path` atomically with mode 0600; the parent directory
/// must exist. A fresh temp file (created exclusively, so never shared with
/// another write) is written, fsynced, renamed over `path`, and the
/// directory fsynced. On failure the temp file is removed.
pub(crate) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let failed = |e| Error::Io {
        context: format!("writing {}", path.display()),
        source: e,
    };
    let mut attempt = 0;
    let (mut f, tmp) = loop {
        let tmp = temp_path(path);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)
        {
            Ok(f) => break (f, tmp),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 3 => attempt += 1,
            Err(e) => return Err(failed(e)),
        }
    };
    let mut write = || -> std::io::Result<()> {
        // Exactly 0600 whatever the umask.
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        failed(e)
    })
}

/// Hex SHA-256 and length of a file's contents.
///
/// The file is mapped read-only rather than read: hashing a 16 MiB artifact
/// that way took ~8.5 ms against ~13 ms for `fs::read` and ~9.4 ms for
/// reading in 256 KiB chunks (release build, warm page cache; equal at
/// 1 MiB, ~0.55 ms).
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok((sha256_hex(&[]), 0));
    }
    let map_len = usize::try_from(len)
        .map_err(|_| std::io::Error::other("file too large to map into memory"))?;
    // SAFETY: a fresh private read-only mapping of a file we opened; the
    // pointer is checked against MAP_FAILED below and unmapped by `Mapping`.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    struct Mapping(*mut libc::c_void, usize);
    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: unmaps exactly the mapping created above, once.
            unsafe { libc::munmap(self.0, self.1) };
        }
    }
    let mapping = Mapping(ptr, map_len);
    // SAFETY: the mapping is `map_len` readable bytes and lives until
    // `mapping` drops, after the slice's last use. The store never
    // truncates a file in place (it replaces files by rename, which leaves
    // a mapped inode intact), and the home is private (0700) and locked, so
    // the pages can't shrink under us short of someone with our uid
    // truncating the file by hand (Wasmtime maps artifacts the same way).
    let bytes = unsafe { std::slice::from_raw_parts(mapping.0 as *const u8, mapping.1) };
    Ok((sha256_hex(bytes), len))
}

/// The exclusive lock on a home directory: a `flock` on `home/wisp.lock`,
/// held while this value lives (the lock goes with the open file
/// description, so closing the file releases it; so does the process's
/// death, `kill -9` included).
pub(crate) struct HomeLock {
    _file: File,
}

impl HomeLock {
    /// Take the lock without waiting and write our pid into the lock file.
    pub(crate) fn acquire(home: &Path) -> Result<HomeLock> {
        let path = home.join("wisp.lock");
        let file = open_private(&path, true)?;
        loop {
            // SAFETY: flock on a file descriptor we own and keep open.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let e = std::io::Error::last_os_error();
            match e.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    let pid = fs::read_to_string(&path)
                        .ok()
                        .and_then(|s| s.lines().next()?.trim().parse::<u32>().ok())
                        .map_or_else(|| "unknown".to_string(), |p| p.to_string());
                    return Err(Error::Locked(format!(
                        "another wisp server is using {} (pid {pid}); stop it or use another --home",
                        home.display()
                    )));
                }
                _ => {
                    return Err(Error::Io {
                        context: format!("locking {}", path.display()),
                        source: e,
                    });
                }
            }
        }
        // Write first, then cut: a reader sees the old pid or the new one on
        // the first line, never an empty file.
        let line = format!("{}\n", std::process::id());
        file.write_all_at(line.as_bytes(), 0)
            .and_then(|()| file.set_len(line.len() as u64))
            .map_err(io(format!("writing {}", path.display())))?;
        Ok(HomeLock { _file: file })
    }
}
