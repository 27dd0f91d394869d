//! Wisp's function store: SQLite metadata (WAL), content-addressed module
//! blobs, precompiled artifacts per engine fingerprint, and the activation
//! log.
//!
//! Layout of `$WISP_HOME`:
//!
//! ```text
//! wisp.lock                       exclusive lock of the server using this home; its pid
//! wisp.db                         functions, versions, artifact hashes, activations (SQLite, WAL)
//! blobs/sha256/<hex>              modules exactly as uploaded
//! compiled/<engine-fp>/<hex>.cwasm precompiled artifacts
//! ```
//!
//! One process at a time: [`Store::open`] takes an exclusive `flock` on
//! `wisp.lock` for the store's lifetime, so a second server can't collect
//! the first one's files as garbage. The home and its directories are 0700,
//! every file the store writes 0600 (`wisp.db` included, which SQLite's
//! `-wal` and `-shm` files inherit).
//!
//! Artifacts are native code that the loader deserializes without being
//! able to validate it, so the store records each one's SHA-256 and
//! [`Store::verify_artifact`] checks it before use.
//!
//! Crash safety: files are written to a temp name, fsynced, renamed, and the
//! directory fsynced; a version row is committed only after its blob and
//! artifact are durable. A `kill -9` at any point leaves either the whole
//! version or none of it (plus, at worst, an unreferenced file that
//! [`Store::gc`] removes, with any temp file).
//!
//! All methods block: async callers use `spawn_blocking`. The store knows
//! nothing about Wasmtime; artifacts are opaque bytes to it.

mod files;

use files::{HomeLock, ensure_private_dir, is_temp_name, make_private_if_exists, open_private};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};
use wisp_core::{
    Abi, Activation, ActivationStatus, FunctionConfig, FunctionInfo, FunctionVersion, OciSource,
};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such function or version.
    #[error("{0}")]
    NotFound(String),
    /// The request can't be done in the current state (e.g. no earlier version).
    #[error("{0}")]
    Conflict(String),
    /// Another `Store` (in this process or another) holds the home's lock.
    #[error("{0}")]
    Locked(String),
    /// A stored file doesn't match what was recorded for it (or nothing was
    /// recorded).
    #[error("{0}")]
    Corrupt(String),
    /// SQLite failure.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    /// File system failure.
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

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// What `create_version` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployed {
    /// The active version after the call.
    pub version: FunctionVersion,
    /// False when the same module and config were already active (no-op).
    pub created: bool,
}

/// Inputs of a new version.
pub struct NewVersion<'a> {
    /// The function's namespace.
    pub namespace: &'a str,
    /// Function name.
    pub name: &'a str,
    /// Hex SHA-256 of the module.
    pub digest_hex: &'a str,
    /// ABI.
    pub abi: Abi,
    /// Config.
    pub config: &'a FunctionConfig,
    /// Module size.
    pub wasm_size: u64,
    /// Artifact size.
    pub compiled_size: u64,
    /// Compile time.
    pub compile_ms: f64,
    /// Where the module was pulled from, for `oci://` deploys.
    pub oci: Option<&'a OciSource>,
    /// What the deploying API keeps with the version (OpenWhisk metadata).
    pub meta: Option<&'a serde_json::Value>,
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    home: PathBuf,
    /// Functions and versions: `synchronous=FULL`, a committed deploy
    /// survives power loss.
    pub(crate) db: Mutex<Connection>,
    /// Activation records: `synchronous=NORMAL` (WAL). Consistent after a
    /// crash and durable across process kills; a power cut may lose the
    /// last batches. Profiling showed fsync per batch at ~10 % of the
    /// server's CPU under load, for records that don't need it.
    pub(crate) acts: Mutex<Connection>,
    /// Held shared by every file write, exclusively by [`Store::gc`]: the
    /// temp files gc removes are never those of a write in flight.
    writes: RwLock<()>,
    /// Serializes [`Store::put_artifact`], so that an artifact file and its
    /// recorded hash are replaced together.
    artifact_writes: Mutex<()>,
    /// The home's lock; declared last, so it is released after the
    /// connections close.
    _lock: HomeLock,
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

mod entities;
mod namespaces;
mod queue;
mod schema;
pub use entities::{Entity, Put};
pub use namespaces::Namespace;
pub use queue::Queued;
pub use schema::SCHEMA_VERSION;

impl Store {
    /// Open (creating if needed) the store at `home`.
    ///
    /// Takes an exclusive lock on `home/wisp.lock` (without waiting) and
    /// holds it until the `Store` is dropped: [`Error::Locked`] if another
    /// `Store`, in this process or another, has the home. Creates the home
    /// and its directories with mode 0700 (an existing home is set to 0700)
    /// and `wisp.db` with mode 0600.
    pub fn open(home: &Path) -> Result<Store> {
        ensure_private_dir(home)?;
        let lock = HomeLock::acquire(home)?;
        for dir in ["blobs", "blobs/sha256", "compiled"] {
            ensure_private_dir(&home.join(dir))?;
        }
        let compiled = home.join("compiled");
        for e in fs::read_dir(&compiled)
            .map_err(io(format!("listing {}", compiled.display())))?
            .flatten()
        {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                ensure_private_dir(&e.path())?;
            }
        }
        // SQLite creates `-wal` and `-shm` with the database file's mode:
        // create it 0600 first (existing files of older versions are set to
        // 0600 too).
        let db_path = home.join("wisp.db");
        drop(open_private(&db_path, false)?);
        for suffix in ["-wal", "-shm", "-journal"] {
            make_private_if_exists(&home.join(format!("wisp.db{suffix}")))?;
        }
        let mut conn = Connection::open(&db_path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed deploy survives power loss, not just kill -9.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        schema::create_or_migrate(&mut conn)?;
        let acts = Connection::open(&db_path)?;
        acts.busy_timeout(std::time::Duration::from_secs(5))?;
        acts.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Store {
            home: home.to_path_buf(),
            db: Mutex::new(conn),
            acts: Mutex::new(acts),
            writes: RwLock::new(()),
            artifact_writes: Mutex::new(()),
            _lock: lock,
        })
    }

    /// The home directory.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Path of a module blob.
    pub fn blob_path(&self, digest_hex: &str) -> PathBuf {
        self.home.join("blobs/sha256").join(digest_hex)
    }

    /// Path of a compiled artifact for an engine fingerprint.
    pub fn artifact_path(&self, fingerprint: &str, digest_hex: &str) -> PathBuf {
        self.home
            .join("compiled")
            .join(fingerprint)
            .join(format!("{digest_hex}.cwasm"))
    }

    /// Store module bytes content-addressed; returns the hex digest.
    /// Idempotent: existing blobs are not rewritten.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String> {
        let hex = sha256_hex(bytes);
        self.put_blob_as(&hex, bytes)?;
        Ok(hex)
    }

    /// Store module bytes whose hex SHA-256 the caller already computed.
    pub fn put_blob_as(&self, digest_hex: &str, bytes: &[u8]) -> Result<()> {
        debug_assert_eq!(digest_hex, sha256_hex(bytes));
        let path = self.blob_path(digest_hex);
        if !path.exists() {
            let _w = self.writes.read().unwrap();
            ensure_private_dir(path.parent().expect("blob path has a parent"))?;
            files::write_file(&path, bytes)?;
        }
        Ok(())
    }

    /// Read a module blob.
    pub fn read_blob(&self, digest_hex: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest_hex);
        fs::read(&p).map_err(io(format!("reading {}", p.display())))
    }

    /// Store a compiled artifact atomically and record its SHA-256 (once the
    /// file is durable) for [`Store::verify_artifact`]; returns its path.
    pub fn put_artifact(
        &self,
        fingerprint: &str,
        digest_hex: &str,
        bytes: &[u8],
    ) -> Result<PathBuf> {
        let path = self.artifact_path(fingerprint, digest_hex);
        let sha = sha256_hex(bytes);
        let _w = self.writes.read().unwrap();
        let _a = self.artifact_writes.lock().unwrap();
        ensure_private_dir(path.parent().expect("artifact path has a parent"))?;
        files::write_file(&path, bytes)?;
        self.db.lock().unwrap().execute(
            "INSERT INTO artifacts (fingerprint, digest, sha256, size) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(fingerprint, digest) DO UPDATE SET sha256 = excluded.sha256, size = excluded.size",
            params![fingerprint, digest_hex, sha, bytes.len() as i64],
        )?;
        Ok(path)
    }

    /// The recorded hex SHA-256 of an artifact, if one was recorded.
    pub fn artifact_sha256(&self, fingerprint: &str, digest_hex: &str) -> Result<Option<String>> {
        let db = self.db.lock().unwrap();
        Ok(db
            .query_row(
                "SELECT sha256 FROM artifacts WHERE fingerprint = ?1 AND digest = ?2",
                params![fingerprint, digest_hex],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Check an artifact against its recorded SHA-256 before it is loaded;
    /// returns its path. [`Error::Corrupt`] when the contents differ or no
    /// hash was recorded (an artifact of an older version, or one whose
    /// record was lost in a crash): the caller recompiles it from the
    /// stored module. A missing file is an [`Error::Io`] of kind `NotFound`.
    pub fn verify_artifact(&self, fingerprint: &str, digest_hex: &str) -> Result<PathBuf> {
        let path = self.artifact_path(fingerprint, digest_hex);
        let (found, _) =
            files::sha256_file(&path).map_err(io(format!("reading {}", path.display())))?;
        match self.artifact_sha256(fingerprint, digest_hex)? {
            Some(expected) if expected == found => Ok(path),
            Some(expected) => Err(Error::Corrupt(format!(
                "artifact {} does not match its recorded SHA-256 (expected {expected}, found {found}): \
                 it was modified or corrupted; it will be recompiled from the stored module",
                path.display()
            ))),
            None => Err(Error::Corrupt(format!(
                "artifact {} has no recorded SHA-256, so it can't be trusted: \
                 it will be recompiled from the stored module",
                path.display()
            ))),
        }
    }

    /// Remove an artifact file and its recorded hash (e.g. one that failed
    /// to load). Returns whether there was a file.
    pub fn remove_artifact(&self, fingerprint: &str, digest_hex: &str) -> Result<bool> {
        let path = self.artifact_path(fingerprint, digest_hex);
        let _a = self.artifact_writes.lock().unwrap();
        self.db.lock().unwrap().execute(
            "DELETE FROM artifacts WHERE fingerprint = ?1 AND digest = ?2",
            params![fingerprint, digest_hex],
        )?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io {
                context: format!("removing {}", path.display()),
                source: e,
            }),
        }
    }

    /// Record a new version and make it active, in one transaction. If the
    /// active version already has this digest and config (and isn't
    /// broken), nothing changes.
    pub fn create_version(&self, v: NewVersion<'_>) -> Result<Deployed> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let digest = wisp_core::digest_string(v.digest_hex);
        let config_json = serde_json::to_string(v.config).expect("config serializes");
        let meta_json = v.meta.map(|m| m.to_string());
        if let Some(active) = active_version(&tx, v.namespace, v.name)?
            && active.broken.is_none()
            && active.digest == digest
            && &active.config == v.config
            && active.oci.as_ref() == v.oci
            && active.meta.as_ref() == v.meta
        {
            return Ok(Deployed {
                version: active,
                created: false,
            });
        }
        let next: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE namespace = ?1 AND name = ?2",
            [v.namespace, v.name],
            |r| r.get(0),
        )?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO versions (namespace, name, version, digest, abi, config, wasm_size, compiled_size, compile_ms, created_ms, oci_ref, oci_digest, meta)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![v.namespace, v.name, next, digest, v.abi.as_str(), config_json, v.wasm_size as i64, v.compiled_size as i64, v.compile_ms, now,
                    v.oci.map(|o| &o.reference), v.oci.map(|o| &o.digest), meta_json],
        )?;
        tx.execute(
            "INSERT INTO functions (namespace, name, active_version, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?4)
             ON CONFLICT(namespace, name) DO UPDATE SET active_version = excluded.active_version, updated_ms = excluded.updated_ms",
            params![v.namespace, v.name, next, now],
        )?;
        // A name is one thing in its namespace: a function replaces an
        // OpenWhisk entity of the action collection (a sequence) of that name.
        tx.execute(
            "DELETE FROM entities WHERE namespace = ?1 AND collection = 'actions' AND name = ?2",
            [v.namespace, v.name],
        )?;
        let version = get_version(&tx, v.namespace, v.name, next)?.expect("just inserted");
        tx.commit()?;
        Ok(Deployed {
            version,
            created: true,
        })
    }

    /// The function with its active version.
    pub fn get_function(&self, namespace: &str, name: &str) -> Result<Option<FunctionInfo>> {
        let db = self.db.lock().unwrap();
        function_info(&db, namespace, name)
    }

    /// A stored version (the active one when `version` is `None`) with its
    /// module's bytes, read from the blob store and checked against the
    /// version's digest. `None` if the function or version doesn't exist.
    pub fn module(
        &self,
        namespace: &str,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<(FunctionVersion, Vec<u8>)>> {
        let v = {
            let db = self.db.lock().unwrap();
            match version {
                Some(n) => get_version(&db, namespace, name, n)?,
                None => active_version(&db, namespace, name)?,
            }
        };
        let Some(v) = v else { return Ok(None) };
        let hex = v.digest.strip_prefix("sha256:").unwrap_or(&v.digest);
        let bytes = self.read_blob(hex)?;
        if sha256_hex(&bytes) != hex {
            return Err(Error::Corrupt(format!(
                "the stored module of {name:?} version {} does not match its digest {}",
                v.version, v.digest
            )));
        }
        Ok(Some((v, bytes)))
    }

    /// The functions of `namespace` (every namespace's when `None`), by
    /// namespace and name.
    pub fn list_functions(&self, namespace: Option<&str>) -> Result<Vec<FunctionInfo>> {
        let db = self.db.lock().unwrap();
        let names: Vec<(String, String)> = {
            let mut st = db.prepare(
                "SELECT namespace, name FROM functions WHERE (?1 IS NULL OR namespace = ?1) ORDER BY namespace, name",
            )?;
            st.query_map([namespace], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(names.len());
        for (ns, n) in names {
            if let Some(f) = function_info(&db, &ns, &n)? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Delete a function and all its versions. Returns false if absent.
    /// Blobs and artifacts are left for [`Store::gc`].
    pub fn delete_function(&self, namespace: &str, name: &str) -> Result<bool> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let n = tx.execute(
            "DELETE FROM functions WHERE namespace = ?1 AND name = ?2",
            [namespace, name],
        )?;
        tx.execute(
            "DELETE FROM versions WHERE namespace = ?1 AND name = ?2",
            [namespace, name],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Make an earlier version active: `to`, or the newest version older
    /// than the active one.
    pub fn rollback(
        &self,
        namespace: &str,
        name: &str,
        to: Option<u32>,
    ) -> Result<FunctionVersion> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let active = active_version(&tx, namespace, name)?
            .ok_or_else(|| Error::NotFound(format!("function {name:?} not found")))?;
        let target = match to {
            Some(v) => get_version(&tx, namespace, name, v)?
                .ok_or_else(|| Error::NotFound(format!("function {name:?} has no version {v}")))?,
            None => {
                let prev: Option<u32> = tx
                    .query_row(
                        "SELECT MAX(version) FROM versions WHERE namespace = ?1 AND name = ?2 AND version < ?3",
                        params![namespace, name, active.version],
                        |r| r.get(0),
                    )
                    .optional()?
                    .flatten();
                let prev = prev.ok_or_else(|| {
                    Error::Conflict(format!(
                        "function {name:?} has no version before {}",
                        active.version
                    ))
                })?;
                get_version(&tx, namespace, name, prev)?.expect("exists")
            }
        };
        tx.execute(
            "UPDATE functions SET active_version = ?3, updated_ms = ?4 WHERE namespace = ?1 AND name = ?2",
            params![namespace, name, target.version, now_ms()],
        )?;
        tx.commit()?;
        Ok(target)
    }

    /// Insert a batch of activation records in one transaction; returns how
    /// many rows were written (a record whose id is already stored is
    /// skipped).
    ///
    /// If a row fails (e.g. a log over SQLite's size limit), the batch is
    /// retried row by row in a new transaction, and a row that still fails
    /// is stored with its log replaced by `[log dropped: <error>]` (and, if
    /// that isn't enough, its error message likewise): one record loses its
    /// log, not the whole batch its records.
    pub fn insert_activations(&self, batch: &[Activation]) -> Result<usize> {
        let mut db = self.acts.lock().unwrap();
        let first = (|| -> rusqlite::Result<usize> {
            let tx = write_tx(&mut db)?;
            let mut written = 0;
            {
                let mut st = tx.prepare_cached(INSERT_ACTIVATION)?;
                for a in batch {
                    written += insert_activation(&mut st, a, a.log.as_deref(), a.error.as_deref())?;
                }
            }
            tx.commit()?;
            Ok(written)
        })();
        match first {
            Ok(n) => return Ok(n),
            Err(e) => tracing::warn!(
                error = %e,
                rows = batch.len(),
                "writing a batch of activation records failed; retrying row by row"
            ),
        }
        let tx = write_tx(&mut db)?;
        let mut written = 0;
        {
            let mut st = tx.prepare_cached(INSERT_ACTIVATION)?;
            for a in batch {
                let e = match insert_activation(&mut st, a, a.log.as_deref(), a.error.as_deref()) {
                    Ok(n) => {
                        written += n;
                        continue;
                    }
                    Err(e) => e,
                };
                // An error that rolled the transaction back (disk full, I/O)
                // is not this row's: give up on the batch as before.
                if tx.is_autocommit() {
                    return Err(e.into());
                }
                tracing::warn!(
                    id = %a.id,
                    function = %a.function,
                    error = %e,
                    "activation record can't be stored whole; storing it without its log"
                );
                let log = format!("[log dropped: {e}]");
                let n = match insert_activation(&mut st, a, Some(&log), a.error.as_deref()) {
                    Ok(n) => n,
                    Err(e) if !tx.is_autocommit() && a.error.is_some() => {
                        let error = format!("[error dropped: {e}]");
                        insert_activation(&mut st, a, Some(&log), Some(&error))?
                    }
                    Err(e) => return Err(e.into()),
                };
                written += n;
            }
        }
        tx.commit()?;
        Ok(written)
    }

    /// Keep only the newest `keep` activations. Returns how many were removed.
    pub fn prune_activations(&self, keep: u64) -> Result<usize> {
        let db = self.acts.lock().unwrap();
        Ok(db.execute(
            "DELETE FROM activations WHERE seq <= (SELECT MAX(seq) FROM activations) - ?1",
            [keep as i64],
        )?)
    }

    /// Newest activations first, as `q` filters them. Logs and results
    /// omitted.
    pub fn list_activations(&self, q: &ActivationQuery<'_>) -> Result<Vec<Activation>> {
        let db = self.acts.lock().unwrap();
        let sql = format!(
            "SELECT {ACTIVATION_COLUMNS_LISTED} FROM activations
             WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR function = ?2)
               AND (?3 IS NULL OR start_ms >= ?3) AND (?4 IS NULL OR start_ms <= ?4)
             ORDER BY seq DESC LIMIT ?5 OFFSET ?6"
        );
        let mut st = db.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                q.namespace,
                q.function,
                q.since_ms,
                q.upto_ms,
                q.limit,
                q.skip
            ],
            row_to_activation,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One activation with its log and result.
    pub fn get_activation(&self, id: &str) -> Result<Option<Activation>> {
        let db = self.acts.lock().unwrap();
        let sql = format!("SELECT {ACTIVATION_COLUMNS} FROM activations WHERE id = ?1");
        Ok(db.query_row(&sql, [id], row_to_activation).optional()?)
    }

    /// Remove blobs and artifacts no version references, artifacts of other
    /// engine fingerprints (files and recorded hashes), and temp files left
    /// by a crash. Returns the number of files (and directories) removed.
    ///
    /// Safe while the store is in use: the home's lock keeps other
    /// processes out, and in this process gc waits for file writes in
    /// flight. A caller that stores a blob and then creates the version
    /// referencing it must not run gc in between.
    pub fn gc(&self, fingerprint: &str) -> Result<usize> {
        let _w = self.writes.write().unwrap();
        let live: std::collections::HashSet<String> = {
            let db = self.db.lock().unwrap();
            let mut st = db.prepare("SELECT DISTINCT digest FROM versions")?;
            st.query_map([], |r| r.get::<_, String>(0))?
                .filter_map(|d| d.ok())
                .map(|d| d.trim_start_matches("sha256:").to_string())
                .collect()
        };
        let mut removed = 0;
        let blobs = self.home.join("blobs/sha256");
        for e in fs::read_dir(&blobs).map_err(io("listing blobs"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (is_temp_name(&name) || !live.contains(&name)) && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        let compiled = self.home.join("compiled");
        for fpdir in fs::read_dir(&compiled)
            .map_err(io("listing compiled"))?
            .flatten()
        {
            if !fpdir.file_type().is_ok_and(|t| t.is_dir()) {
                // Not written by the store (artifacts live in subdirectories).
                if fs::remove_file(fpdir.path()).is_ok() {
                    removed += 1;
                }
                continue;
            }
            if fpdir.file_name().to_string_lossy() != fingerprint {
                if fs::remove_dir_all(fpdir.path()).is_ok() {
                    removed += 1;
                }
                continue;
            }
            for e in fs::read_dir(fpdir.path())
                .map_err(io("listing artifacts"))?
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                let digest = match name.strip_suffix(".cwasm") {
                    Some(d) if !is_temp_name(&name) => d,
                    _ => "",
                };
                if !live.contains(digest) && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        // Recorded hashes of artifacts that are gone or were just removed.
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let rows: Vec<(String, String)> = {
            let mut st = tx.prepare("SELECT fingerprint, digest FROM artifacts")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?
        };
        for (fp, digest) in rows {
            if fp != fingerprint
                || !live.contains(&digest)
                || !self.artifact_path(&fp, &digest).exists()
            {
                tx.execute(
                    "DELETE FROM artifacts WHERE fingerprint = ?1 AND digest = ?2",
                    params![fp, digest],
                )?;
            }
        }
        tx.commit()?;
        Ok(removed)
    }
}

/// Which activations [`Store::list_activations`] returns.
#[derive(Debug, Clone, Default)]
pub struct ActivationQuery<'a> {
    /// Only this namespace's (every namespace's when `None`).
    pub namespace: Option<&'a str>,
    /// Only this function's.
    pub function: Option<&'a str>,
    /// Started at or after this Unix millisecond.
    pub since_ms: Option<i64>,
    /// Started at or before this Unix millisecond.
    pub upto_ms: Option<i64>,
    /// At most this many.
    pub limit: u32,
    /// Skip this many of the newest first.
    pub skip: u32,
}

const ACTIVATION_COLUMNS: &str = "id, namespace, function, version, start_ms, wait_us, init_us, run_us, status, http_status, cold, bytes_in, bytes_out, error, log, result, meta";
const ACTIVATION_COLUMNS_LISTED: &str = "id, namespace, function, version, start_ms, wait_us, init_us, run_us, status, http_status, cold, bytes_in, bytes_out, error, NULL, NULL, meta";

pub(crate) const INSERT_ACTIVATION: &str = "INSERT OR IGNORE INTO activations (id, namespace, function, version, start_ms, wait_us, init_us, run_us, status, http_status, cold, bytes_in, bytes_out, error, log, result, meta)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)";

/// Insert one record with the given log and error; returns the rows written
/// (0 when the id is already stored).
pub(crate) fn insert_activation(
    st: &mut rusqlite::CachedStatement<'_>,
    a: &Activation,
    log: Option<&str>,
    error: Option<&str>,
) -> rusqlite::Result<usize> {
    st.execute(params![
        a.id,
        a.namespace,
        a.function,
        a.version,
        a.start_ms,
        a.wait_us as i64,
        a.init_us as i64,
        a.run_us as i64,
        a.status.as_str(),
        a.http_status,
        a.cold,
        a.bytes_in as i64,
        a.bytes_out as i64,
        error,
        log,
        a.result.as_ref().map(|v| v.to_string()),
        a.meta.as_ref().map(|v| v.to_string()),
    ])
}

fn row_to_activation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Activation> {
    let json = |i: usize| -> rusqlite::Result<Option<serde_json::Value>> {
        Ok(r.get::<_, Option<String>>(i)?
            .and_then(|s| serde_json::from_str(&s).ok()))
    };
    Ok(Activation {
        id: r.get(0)?,
        namespace: r.get(1)?,
        function: r.get(2)?,
        version: r.get(3)?,
        start_ms: r.get(4)?,
        wait_us: r.get::<_, i64>(5)? as u64,
        init_us: r.get::<_, i64>(6)? as u64,
        run_us: r.get::<_, i64>(7)? as u64,
        status: ActivationStatus::parse(&r.get::<_, String>(8)?),
        http_status: r.get(9)?,
        cold: r.get(10)?,
        bytes_in: r.get::<_, i64>(11)? as u64,
        bytes_out: r.get::<_, i64>(12)? as u64,
        error: r.get(13)?,
        log: r.get(14)?,
        result: json(15)?,
        meta: json(16)?,
    })
}

fn get_version(
    db: &Connection,
    namespace: &str,
    name: &str,
    version: u32,
) -> Result<Option<FunctionVersion>> {
    let row = db
        .query_row(
            "SELECT digest, abi, config, wasm_size, compiled_size, compile_ms, created_ms, oci_ref, oci_digest, meta FROM versions WHERE namespace = ?1 AND name = ?2 AND version = ?3",
            params![namespace, name, version],
            |r| {
                Ok((
                    (
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, f64>(5)?,
                        r.get::<_, i64>(6)?,
                    ),
                    (r.get::<_, Option<String>>(7)?, r.get::<_, Option<String>>(8)?),
                    r.get::<_, Option<String>>(9)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(
        |((digest, abi_s, config_s, ws, cs, cms, created), oci, meta_s)| {
            // A row that no longer parses is never served with defaults in
            // place of what was stored: it is marked broken, and says why.
            let mut problems = Vec::new();
            let abi = Abi::parse(&abi_s).unwrap_or_else(|| {
                problems.push(format!(
                    "stored ABI of {name} v{version} is unknown ({abi_s:?})"
                ));
                Abi::Command
            });
            let config = serde_json::from_str(&config_s).unwrap_or_else(|e| {
                problems.push(format!(
                    "stored config of {name} v{version} does not parse: {e}"
                ));
                FunctionConfig::default()
            });
            let meta = meta_s.and_then(|m| match serde_json::from_str(&m) {
                Ok(v) => Some(v),
                Err(e) => {
                    problems.push(format!(
                        "stored metadata of {name} v{version} does not parse: {e}"
                    ));
                    None
                }
            });
            let broken = (!problems.is_empty()).then(|| {
                let msg = format!("{}; redeploy or roll back", problems.join("; "));
                tracing::error!(namespace, function = name, version, "{msg}");
                msg
            });
            FunctionVersion {
                namespace: namespace.to_string(),
                name: name.to_string(),
                version,
                digest,
                abi,
                config,
                wasm_size: ws as u64,
                compiled_size: cs as u64,
                compile_ms: cms,
                created_ms: created,
                broken,
                oci: match oci {
                    (Some(reference), Some(digest)) => Some(OciSource { reference, digest }),
                    _ => None,
                },
                meta,
            }
        },
    ))
}

/// Every transaction here writes, so it takes the write lock when it
/// begins (`BEGIN IMMEDIATE`), where the busy timeout applies. A deferred
/// transaction that reads first and writes later can't wait: if the other
/// connection (functions vs. activation records) committed since its read,
/// SQLite answers `SQLITE_BUSY` at once, and a deploy failed with "database
/// is locked" under load.
pub(crate) fn write_tx(db: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    db.transaction_with_behavior(TransactionBehavior::Immediate)
}

fn active_version(db: &Connection, namespace: &str, name: &str) -> Result<Option<FunctionVersion>> {
    let v: Option<u32> = db
        .query_row(
            "SELECT active_version FROM functions WHERE namespace = ?1 AND name = ?2",
            [namespace, name],
            |r| r.get(0),
        )
        .optional()?;
    match v {
        Some(v) => get_version(db, namespace, name, v),
        None => Ok(None),
    }
}

fn function_info(db: &Connection, namespace: &str, name: &str) -> Result<Option<FunctionInfo>> {
    let Some(active) = active_version(db, namespace, name)? else {
        return Ok(None);
    };
    let mut st = db.prepare_cached(
        "SELECT version FROM versions WHERE namespace = ?1 AND name = ?2 ORDER BY version",
    )?;
    let versions = st
        .query_map([namespace, name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(FunctionInfo {
        name: name.to_string(),
        active,
        versions,
    }))
}

/// Write `bytes` to `path` atomically, creating missing parent
/// directories: a temp file of its own in the same directory (named from
/// the pid, a process-wide counter and random bits, created exclusively, so
/// concurrent writes of one path never share it), fsynced, renamed over
/// `path`, then the directory fsynced. The file gets mode 0600.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("path has a parent");
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    files::write_file(path, bytes)
}

#[cfg(test)]
impl Store {
    /// Lower SQLite's limit on a string or row's size on the activations
    /// connection.
    fn set_max_row_bytes_for_tests(&self, bytes: i32) {
        self.acts
            .lock()
            .unwrap()
            .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, bytes)
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    }

    fn temps_in(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    fn all(limit: u32) -> ActivationQuery<'static> {
        ActivationQuery {
            limit,
            ..Default::default()
        }
    }

    fn activation(i: u32, log: String) -> Activation {
        Activation {
            id: format!("{i:032x}"),
            namespace: "default".into(),
            function: "f".into(),
            version: 1,
            start_ms: i as i64,
            wait_us: 1,
            init_us: 2,
            run_us: 3,
            status: ActivationStatus::Success,
            http_status: 200,
            cold: false,
            bytes_in: 4,
            bytes_out: 5,
            error: None,
            log: Some(log),
            result: None,
            meta: None,
        }
    }

    #[test]
    fn a_second_open_of_the_same_home_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let pid = std::process::id();
        assert_eq!(
            fs::read_to_string(dir.path().join("wisp.lock")).unwrap(),
            format!("{pid}\n")
        );
        // flock locks belong to the open file description: a second open in
        // the same process conflicts just like another process would.
        match Store::open(dir.path()) {
            Err(Error::Locked(m)) => assert_eq!(
                m,
                format!(
                    "another wisp server is using {} (pid {pid}); stop it or use another --home",
                    dir.path().display()
                )
            ),
            Err(e) => panic!("expected Locked, got {e}"),
            Ok(_) => panic!("a second Store opened a home that is in use"),
        }
        drop(s);
        let again = Store::open(dir.path()).expect("the lock goes with the Store");
        drop(again);
    }

    #[test]
    fn home_directories_and_files_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        fs::set_permissions(&home, fs::Permissions::from_mode(0o755)).unwrap();
        let s = Store::open(&home).unwrap();
        let h = s.put_blob(b"module").unwrap();
        s.put_artifact("fp1", &h, b"art").unwrap();
        s.create_version(nv("f", &h, &FunctionConfig::default()))
            .unwrap();
        for d in ["", "blobs", "blobs/sha256", "compiled", "compiled/fp1"] {
            assert_eq!(mode(&home.join(d)), 0o700, "directory {d:?}");
        }
        for f in [
            s.blob_path(&h),
            s.artifact_path("fp1", &h),
            home.join("wisp.lock"),
            home.join("wisp.db"),
            home.join("wisp.db-wal"),
            home.join("wisp.db-shm"),
        ] {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
    }

    #[test]
    fn concurrent_writes_of_one_path_never_clobber_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("target.bin");
        let threads = 8;
        let rounds = 25;
        let content = |t: usize, r: usize| vec![(t * rounds + r) as u8; 4096 + 97 * t + r];
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|sc| {
            for t in 0..threads {
                let (barrier, path) = (&barrier, &path);
                sc.spawn(move || {
                    barrier.wait();
                    for r in 0..rounds {
                        atomic_write(path, &content(t, r)).unwrap();
                    }
                });
            }
        });
        let got = fs::read(&path).unwrap();
        assert!(
            (0..threads).any(|t| (0..rounds).any(|r| got == content(t, r))),
            "the file is exactly one of the writes"
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(temps_in(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn artifacts_are_verified_against_their_recorded_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let bytes: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let path = s.put_artifact("fp1", "aa", &bytes).unwrap();
        assert_eq!(
            s.artifact_sha256("fp1", "aa").unwrap(),
            Some(sha256_hex(&bytes))
        );
        assert_eq!(s.verify_artifact("fp1", "aa").unwrap(), path);

        let mut flipped = bytes.clone();
        flipped[54_321] ^= 1;
        fs::write(&path, &flipped).unwrap();
        match s.verify_artifact("fp1", "aa") {
            Err(Error::Corrupt(m)) => {
                assert!(m.contains(&path.display().to_string()), "{m}");
                assert!(m.contains(&sha256_hex(&bytes)), "{m}");
                assert!(m.contains(&sha256_hex(&flipped)), "{m}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }

        // Rewritten through the store: verified again.
        s.put_artifact("fp1", "aa", &bytes).unwrap();
        s.verify_artifact("fp1", "aa").unwrap();

        // No record: not trusted.
        s.db.lock()
            .unwrap()
            .execute("DELETE FROM artifacts", [])
            .unwrap();
        assert_eq!(s.artifact_sha256("fp1", "aa").unwrap(), None);
        match s.verify_artifact("fp1", "aa") {
            Err(Error::Corrupt(m)) => assert!(m.contains(&path.display().to_string()), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }

        // An empty artifact hashes too; a missing one is NotFound.
        s.put_artifact("fp1", "empty", b"").unwrap();
        s.verify_artifact("fp1", "empty").unwrap();
        assert!(s.remove_artifact("fp1", "empty").unwrap());
        assert!(matches!(
            s.verify_artifact("fp1", "empty"),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
        ));
        assert_eq!(s.artifact_sha256("fp1", "empty").unwrap(), None);
    }

    #[test]
    fn gc_removes_artifact_records_and_stale_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let live = s.put_blob(b"live").unwrap();
        let dead = s.put_blob(b"dead").unwrap();
        s.create_version(nv("f", &live, &FunctionConfig::default()))
            .unwrap();
        s.put_artifact("fp1", &live, b"live art").unwrap();
        s.put_artifact("fp1", &dead, b"dead art").unwrap();
        s.put_artifact("old", &live, b"old art").unwrap();
        // Left by a crash between create and rename.
        let blob_tmp = dir
            .path()
            .join(format!("blobs/sha256/.{live}.4242.0.0123456789abcdef.tmp"));
        let art_tmp = dir.path().join(format!(
            "compiled/fp1/.{live}.cwasm.4242.7.0123456789abcdef.tmp"
        ));
        fs::write(&blob_tmp, b"partial").unwrap();
        fs::write(&art_tmp, b"partial").unwrap();

        let removed = s.gc("fp1").unwrap();
        assert_eq!(
            removed, 5,
            "dead blob, dead artifact, the old fingerprint's dir, two temps"
        );
        assert!(!blob_tmp.exists() && !art_tmp.exists());
        assert!(s.blob_path(&live).exists() && !s.blob_path(&dead).exists());
        assert!(!s.artifact_path("fp1", &dead).exists());
        s.verify_artifact("fp1", &live).unwrap();
        assert_eq!(s.artifact_sha256("fp1", &dead).unwrap(), None);
        assert_eq!(s.artifact_sha256("old", &live).unwrap(), None);
        let rows: i64 =
            s.db.lock()
                .unwrap()
                .query_row("SELECT COUNT(*) FROM artifacts", [], |r| r.get(0))
                .unwrap();
        assert_eq!(rows, 1, "only the live artifact's record is left");
    }

    #[test]
    fn a_stored_config_that_does_not_parse_marks_the_version_broken() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = FunctionConfig::default();
        s.create_version(nv("hello", "aa", &c)).unwrap();
        assert_eq!(
            s.get_function("default", "hello")
                .unwrap()
                .unwrap()
                .active
                .broken,
            None
        );
        s.db.lock()
            .unwrap()
            .execute(
                r#"UPDATE versions SET config='{"limits":{"nope":1}}' WHERE name='hello'"#,
                [],
            )
            .unwrap();
        let v = s.get_function("default", "hello").unwrap().unwrap().active;
        let why = v.broken.expect("a config that does not parse is broken");
        assert!(
            why.starts_with("stored config of hello v1 does not parse: "),
            "{why}"
        );
        assert!(why.contains("nope"), "names what failed: {why}");
        assert!(why.ends_with("; redeploy or roll back"), "{why}");

        // Redeploying the same module and config is not a no-op now.
        let d = s.create_version(nv("hello", "aa", &c)).unwrap();
        assert!(d.created);
        assert_eq!(d.version.version, 2);
        assert_eq!(d.version.broken, None);

        s.db.lock()
            .unwrap()
            .execute("UPDATE versions SET abi='wasi-p9' WHERE version = 2", [])
            .unwrap();
        let why = s
            .list_functions(None)
            .unwrap()
            .remove(0)
            .active
            .broken
            .expect("an unknown ABI is broken");
        assert!(why.contains("hello v2") && why.contains("wasi-p9"), "{why}");
    }

    #[test]
    fn an_oversized_log_loses_only_that_log() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        s.set_max_row_bytes_for_tests(1000);
        let batch: Vec<_> = (0..10)
            .map(|i| {
                activation(
                    i,
                    if i == 4 {
                        "x".repeat(5000)
                    } else {
                        format!("log {i}")
                    },
                )
            })
            .collect();
        assert_eq!(s.insert_activations(&batch).unwrap(), 10);
        assert_eq!(s.list_activations(&all(100)).unwrap().len(), 10);
        for i in 0..10 {
            let a = s.get_activation(&format!("{i:032x}")).unwrap().unwrap();
            let log = a.log.unwrap();
            if i == 4 {
                assert!(log.starts_with("[log dropped: "), "{log}");
                assert!(log.contains("too big"), "{log}");
            } else {
                assert_eq!(log, format!("log {i}"));
            }
        }
        // Already stored: nothing written, no error.
        assert_eq!(s.insert_activations(&batch).unwrap(), 0);
    }

    fn nv<'a>(name: &'a str, digest: &'a str, config: &'a FunctionConfig) -> NewVersion<'a> {
        NewVersion {
            namespace: "default",
            name,
            digest_hex: digest,
            abi: Abi::Command,
            config,
            wasm_size: 10,
            compiled_size: 20,
            compile_ms: 1.5,
            oci: None,
            meta: None,
        }
    }

    #[test]
    fn an_older_home_gains_the_oci_columns_and_records_sources() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The versions table as it was before OCI deploys.
            let db = Connection::open(dir.path().join("wisp.db")).unwrap();
            db.execute_batch(
                "CREATE TABLE versions (name TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL,
                 abi TEXT NOT NULL, config TEXT NOT NULL, wasm_size INTEGER NOT NULL, compiled_size INTEGER NOT NULL,
                 compile_ms REAL NOT NULL, created_ms INTEGER NOT NULL, PRIMARY KEY (name, version));
                 CREATE TABLE functions (name TEXT PRIMARY KEY, active_version INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
                 INSERT INTO versions VALUES ('old', 1, 'sha256:aa', 'command', '{}', 1, 2, 0.5, 0);
                 INSERT INTO functions VALUES ('old', 1, 0, 0);",
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let old = s.get_function("default", "old").unwrap().unwrap();
        assert_eq!(old.active.oci, None);
        assert!(old.active.broken.is_none());
        let c = FunctionConfig::default();
        let src = OciSource {
            reference: "127.0.0.1:5000/fns/f:v1".into(),
            digest: "sha256:bb".into(),
        };
        let d1 = s.create_version(nv("f", "aa", &c)).unwrap();
        let from_oci = NewVersion {
            oci: Some(&src),
            ..nv("f", "aa", &c)
        };
        let d2 = s.create_version(from_oci).unwrap();
        assert!(
            d2.created,
            "same bytes from a registry is a new version: its source differs"
        );
        assert_eq!(d2.version.version, d1.version.version + 1);
        assert_eq!(d2.version.oci.as_ref(), Some(&src));
        let again = s
            .create_version(NewVersion {
                oci: Some(&src),
                ..nv("f", "aa", &c)
            })
            .unwrap();
        assert!(!again.created);
        assert_eq!(
            s.get_function("default", "f").unwrap().unwrap().active.oci,
            Some(src)
        );
        let j = serde_json::to_value(&d1.version).unwrap();
        assert!(
            j.get("oci").is_none(),
            "uploaded versions show no oci field"
        );
    }

    #[test]
    fn versions_noop_and_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = FunctionConfig::default();
        let d1 = s.create_version(nv("f", "aa", &c)).unwrap();
        assert!(d1.created);
        assert_eq!(d1.version.version, 1);
        let again = s.create_version(nv("f", "aa", &c)).unwrap();
        assert!(!again.created, "same bytes and config is a no-op");
        assert_eq!(again.version.version, 1);
        let d2 = s.create_version(nv("f", "bb", &c)).unwrap();
        assert_eq!(d2.version.version, 2);
        let mut c2 = c.clone();
        c2.env.insert("K".into(), "V".into());
        let d3 = s.create_version(nv("f", "bb", &c2)).unwrap();
        assert_eq!(
            d3.version.version, 3,
            "same bytes, new config is a new version"
        );
        let back = s.rollback("default", "f", None).unwrap();
        assert_eq!(back.version, 2);
        assert_eq!(
            s.get_function("default", "f")
                .unwrap()
                .unwrap()
                .active
                .version,
            2
        );
        assert_eq!(
            s.rollback("default", "f", Some(1)).unwrap().digest,
            "sha256:aa"
        );
        assert!(matches!(
            s.rollback("default", "f", None),
            Err(Error::Conflict(_))
        ));
        assert!(matches!(
            s.rollback("default", "nope", None),
            Err(Error::NotFound(_))
        ));
        assert_eq!(
            s.get_function("default", "f").unwrap().unwrap().versions,
            vec![1, 2, 3]
        );
        assert!(s.delete_function("default", "f").unwrap());
        assert!(!s.delete_function("default", "f").unwrap());
        assert!(s.get_function("default", "f").unwrap().is_none());
    }

    #[test]
    fn blobs_artifacts_and_gc() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let h = s.put_blob(b"module").unwrap();
        assert_eq!(h, sha256_hex(b"module"));
        assert_eq!(s.read_blob(&h).unwrap(), b"module");
        s.put_artifact("fp1", &h, b"art").unwrap();
        s.put_artifact("old", &h, b"art").unwrap();
        let orphan = s.put_blob(b"orphan").unwrap();
        s.create_version(nv("f", &h, &FunctionConfig::default()))
            .unwrap();
        let removed = s.gc("fp1").unwrap();
        assert_eq!(removed, 2, "orphan blob and the stale fingerprint dir");
        assert!(s.blob_path(&h).exists());
        assert!(!s.blob_path(&orphan).exists());
        assert!(s.artifact_path("fp1", &h).exists());
        assert!(!s.artifact_path("old", &h).exists());
    }

    /// Deploys (a read, then writes, on the functions connection) racing
    /// the activation writer (the other connection) must never see
    /// "database is locked": a deferred transaction that reads first can't
    /// wait for the write lock once another connection committed since its
    /// read, and SQLite answers SQLITE_BUSY at once.
    #[test]
    fn deploys_and_activation_writes_never_see_a_locked_database() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(Store::open(dir.path()).unwrap());
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (s, done) = (s.clone(), done.clone());
            std::thread::spawn(move || {
                let mut round = 0u32;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    round += 1;
                    let batch: Vec<_> = (0..20)
                        .map(|i| activation(round * 20 + i, "x".repeat(64)))
                        .collect();
                    s.insert_activations(&batch).unwrap();
                    if round % 10 == 9 {
                        s.prune_activations(100).unwrap();
                    }
                }
            })
        };
        let c = FunctionConfig::default();
        for i in 0..1500u32 {
            let hex = format!("{i:064x}");
            let name = format!("f{}", i % 7);
            s.create_version(nv(&name, &hex, &c))
                .unwrap_or_else(|e| panic!("deploy {i}: {e}"));
            if i % 50 == 49 {
                s.rollback("default", &name, None).unwrap();
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
    }

    #[test]
    fn activations_roundtrip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mk = |i: u32, f: &str| Activation {
            function: f.into(),
            cold: i == 0,
            ..activation(i, format!("log {i}"))
        };
        let batch: Vec<_> = (0..10)
            .map(|i| mk(i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        s.insert_activations(&batch).unwrap();
        let a = s
            .list_activations(&ActivationQuery {
                function: Some("a"),
                ..all(100)
            })
            .unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].id, format!("{:032x}", 8), "newest first");
        assert!(a[0].log.is_none(), "listing omits logs");
        let one = s.get_activation(&format!("{:032x}", 0)).unwrap().unwrap();
        assert_eq!(one.log.as_deref(), Some("log 0"));
        assert!(one.cold);
        assert_eq!(s.prune_activations(3).unwrap(), 7);
        assert_eq!(s.list_activations(&all(100)).unwrap().len(), 3);
    }
}

#[cfg(test)]
mod namespace_tests {
    use super::*;

    #[test]
    fn one_name_in_two_namespaces_is_two_functions() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = FunctionConfig::default();
        let v = |ns, digest| NewVersion {
            namespace: ns,
            name: "f",
            digest_hex: digest,
            abi: Abi::Command,
            config: &c,
            wasm_size: 1,
            compiled_size: 1,
            compile_ms: 0.0,
            oci: None,
            meta: None,
        };
        s.create_namespace("b", "u-b", "h").unwrap();
        s.create_version(v("a", "aa")).unwrap();
        s.create_version(v("b", "bb")).unwrap();
        s.create_version(v("b", "cc")).unwrap();
        let a = s.get_function("a", "f").unwrap().unwrap();
        let b = s.get_function("b", "f").unwrap().unwrap();
        assert_eq!((a.active.version, a.active.namespace.as_str()), (1, "a"));
        assert_eq!((b.active.version, b.versions.len()), (2, 2));
        assert!(s.get_function("default", "f").unwrap().is_none());
        assert_eq!(s.list_functions(Some("a")).unwrap().len(), 1);
        assert_eq!(s.list_functions(None).unwrap().len(), 2);
        assert_eq!(s.rollback("b", "f", None).unwrap().digest, "sha256:bb");
        assert!(s.delete_function("a", "f").unwrap());
        assert!(s.get_function("b", "f").unwrap().is_some());
        // A sequence of the same name is replaced by a deploy, and a
        // sequence put without overwrite is refused while the function is there.
        s.put_entity("b", "actions", "g", &serde_json::json!({}), Put::Create)
            .unwrap();
        s.create_version(NewVersion {
            name: "g",
            ..v("b", "dd")
        })
        .unwrap();
        assert!(s.get_entity("b", "actions", "g").unwrap().is_none());
        assert!(matches!(
            s.put_entity("b", "actions", "g", &serde_json::json!({}), Put::Create),
            Err(Error::Conflict(_))
        ));
        s.put_entity("b", "actions", "g", &serde_json::json!({}), Put::Overwrite)
            .unwrap();
        assert!(s.get_function("b", "g").unwrap().is_none());
        // Deleting a namespace takes its functions and records with it.
        assert!(s.delete_namespace("b").unwrap());
        assert!(s.list_functions(Some("b")).unwrap().is_empty());
    }

    #[test]
    fn a_queued_job_ends_as_its_record_in_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let job = serde_json::json!({"action": "f"});
        assert!(s.enqueue("id1", "a", &job, 2).unwrap());
        assert!(s.enqueue("id2", "a", &job, 2).unwrap());
        assert!(!s.enqueue("id3", "a", &job, 2).unwrap(), "bounded");
        let q = s.queued(10, &|id| id == "id1").unwrap();
        assert_eq!(q.len(), 1);
        assert_eq!(
            (q[0].id.as_str(), q[0].attempts, &q[0].job),
            ("id2", 0, &job)
        );
        s.start_queued("id2").unwrap();
        assert_eq!(s.queued(10, &|_| false).unwrap()[1].attempts, 1);
        let rec = Activation {
            id: "id2".into(),
            namespace: "a".into(),
            function: "f".into(),
            version: 1,
            start_ms: 1,
            wait_us: 0,
            init_us: 0,
            run_us: 0,
            status: ActivationStatus::Success,
            http_status: 200,
            cold: false,
            bytes_in: 0,
            bytes_out: 0,
            error: None,
            log: None,
            result: Some(serde_json::json!({"ok": true})),
            meta: None,
        };
        s.complete_queued("id2", &rec).unwrap();
        assert_eq!(s.queue_len().unwrap(), 1);
        assert_eq!(s.get_activation("id2").unwrap().unwrap(), rec);
    }
}
