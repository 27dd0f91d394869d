//! Wasm modules as OCI artifacts.
//!
//! - [`layout`]: an OCI image layout tarball (`oci-layout`, `index.json`,
//!   `blobs/sha256/…`) holding one module in an ordinary tar layer, as
//!   `ctr image import` and the containerd shim take it. Deterministic:
//!   the same inputs give the same bytes and digests.
//! - [`registry`]: push a module to any OCI registry in the CNCF TAG-Runtime
//!   Wasm artifact format, and pull one back from any of the three formats
//!   [`format`] reads, verifying every digest, within a size bound.
//! - [`auth`]: where credentials come from (flags, environment,
//!   `~/.docker/config.json`).
//!
//! Registry HTTP is `oci-client`'s (with its bearer-token dance); this crate
//! decides formats, limits, the plain-HTTP policy and the error messages.
//! It deliberately does not run, compile or validate guests: the caller
//! (the CLI, the server's deploy path, the shim) does that with the bytes.

pub mod auth;
pub mod format;
pub mod layout;
pub mod registry;

pub use auth::Credentials;
pub use format::Format;
pub use registry::{Pulled, Pushed, RegistryClient, RegistryOptions};

/// Largest module pulled or pushed by default: 64 MiB, the server's deploy
/// limit (`wisp serve --max-module`).
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 64 << 20;

/// Errors of this crate. Each variant says what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The reference can't be parsed, or a flag or input is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The registry has no such repository, tag or digest.
    #[error("{0}: not found in registry")]
    NotFound(String),
    /// The registry refused the credentials (or wanted some).
    #[error("{0}")]
    Unauthorized(String),
    /// Content did not hash to the digest it was asked for under.
    #[error("digest mismatch: expected {expected}, got {got}")]
    DigestMismatch {
        /// The digest asked for.
        expected: String,
        /// The digest of what arrived.
        got: String,
    },
    /// The image holds no Wasm module Wisp can find.
    #[error("{0}")]
    NotWasm(String),
    /// The module (or a blob) is over the size bound.
    #[error("{0}")]
    TooLarge(String),
    /// The registry could not be reached or answered out of protocol.
    #[error("{0}")]
    Registry(String),
    /// The operation ran past its time bound.
    #[error("{0}")]
    Timeout(String),
    /// Local file system failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Write `bytes` to `path` atomically: a temp file in the same directory,
/// fsynced, renamed over `path`, then the directory fsynced. Blocking.
pub fn atomic_write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::Invalid(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.{:x}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        rand_u64()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io {
            context: format!("writing {}", path.display()),
            source: e,
        }
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
