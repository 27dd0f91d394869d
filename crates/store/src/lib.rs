//! Wisp's function store: SQLite metadata (WAL), content-addressed module
//! blobs, precompiled artifacts per engine fingerprint, and the activation
//! log.
//!
//! Layout of `$WISP_HOME`:
//!
//! ```text
//! wisp.db                         functions, versions, activations (SQLite, WAL)
//! blobs/sha256/<hex>              modules exactly as uploaded
//! compiled/<engine-fp>/<hex>.cwasm precompiled artifacts
//! ```
//!
//! Crash safety: files are written to a temp name, fsynced, renamed, and the
//! directory fsynced; a version row is committed only after its blob and
//! artifact are durable. A `kill -9` at any point leaves either the whole
//! version or none of it (plus, at worst, an unreferenced file that
//! [`Store::gc`] removes).
//!
//! All methods block: async callers use `spawn_blocking`. The store knows
//! nothing about Wasmtime; artifacts are opaque bytes to it.

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};
use wisp_core::{Abi, Activation, ActivationStatus, FunctionConfig, FunctionInfo, FunctionVersion};

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such function or version.
    #[error("{0}")]
    NotFound(String),
    /// The request can't be done in the current state (e.g. no earlier version).
    #[error("{0}")]
    Conflict(String),
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
}

/// The store. Cheap to share behind an `Arc`.
pub struct Store {
    home: PathBuf,
    /// Functions and versions: `synchronous=FULL`, a committed deploy
    /// survives power loss.
    db: Mutex<Connection>,
    /// Activation records: `synchronous=NORMAL` (WAL). Consistent after a
    /// crash and durable across process kills; a power cut may lose the
    /// last batches. Profiling showed fsync per batch at ~10 % of the
    /// server's CPU under load, for records that don't need it.
    acts: Mutex<Connection>,
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS functions (
    name           TEXT PRIMARY KEY,
    active_version INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    digest         TEXT NOT NULL,
    abi            TEXT NOT NULL,
    config         TEXT NOT NULL,
    wasm_size      INTEGER NOT NULL,
    compiled_size  INTEGER NOT NULL,
    compile_ms     REAL NOT NULL,
    created_ms     INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS activations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    function   TEXT NOT NULL,
    version    INTEGER NOT NULL,
    start_ms   INTEGER NOT NULL,
    wait_us    INTEGER NOT NULL,
    init_us    INTEGER NOT NULL,
    run_us     INTEGER NOT NULL,
    status     TEXT NOT NULL,
    http_status INTEGER NOT NULL,
    cold       INTEGER NOT NULL,
    bytes_in   INTEGER NOT NULL,
    bytes_out  INTEGER NOT NULL,
    error      TEXT,
    log        TEXT
);
CREATE INDEX IF NOT EXISTS activations_by_function ON activations(function, seq);
"#;

impl Store {
    /// Open (creating if needed) the store at `home`.
    pub fn open(home: &Path) -> Result<Store> {
        fs::create_dir_all(home.join("blobs/sha256"))
            .map_err(io(format!("creating {}", home.display())))?;
        fs::create_dir_all(home.join("compiled")).map_err(io("creating compiled/"))?;
        let conn = Connection::open(home.join("wisp.db"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a committed deploy survives power loss, not just kill -9.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA)?;
        let acts = Connection::open(home.join("wisp.db"))?;
        acts.busy_timeout(std::time::Duration::from_secs(5))?;
        acts.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Store {
            home: home.to_path_buf(),
            db: Mutex::new(conn),
            acts: Mutex::new(acts),
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
            atomic_write(&path, bytes)?;
        }
        Ok(())
    }

    /// Read a module blob.
    pub fn read_blob(&self, digest_hex: &str) -> Result<Vec<u8>> {
        let p = self.blob_path(digest_hex);
        fs::read(&p).map_err(io(format!("reading {}", p.display())))
    }

    /// Store a compiled artifact atomically; returns its path.
    pub fn put_artifact(
        &self,
        fingerprint: &str,
        digest_hex: &str,
        bytes: &[u8],
    ) -> Result<PathBuf> {
        let path = self.artifact_path(fingerprint, digest_hex);
        atomic_write(&path, bytes)?;
        Ok(path)
    }

    /// Record a new version and make it active, in one transaction. If the
    /// active version already has this digest and config, nothing changes.
    pub fn create_version(&self, v: NewVersion<'_>) -> Result<Deployed> {
        let mut db = self.db.lock().unwrap();
        let tx = db.transaction()?;
        let digest = wisp_core::digest_string(v.digest_hex);
        let config_json = serde_json::to_string(v.config).expect("config serializes");
        if let Some(active) = active_version(&tx, v.name)?
            && active.digest == digest
            && &active.config == v.config
        {
            return Ok(Deployed {
                version: active,
                created: false,
            });
        }
        let next: u32 = tx.query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE name = ?1",
            [v.name],
            |r| r.get(0),
        )?;
        let now = now_ms();
        tx.execute(
            "INSERT INTO versions (name, version, digest, abi, config, wasm_size, compiled_size, compile_ms, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![v.name, next, digest, v.abi.as_str(), config_json, v.wasm_size as i64, v.compiled_size as i64, v.compile_ms, now],
        )?;
        tx.execute(
            "INSERT INTO functions (name, active_version, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(name) DO UPDATE SET active_version = excluded.active_version, updated_ms = excluded.updated_ms",
            params![v.name, next, now],
        )?;
        let version = get_version(&tx, v.name, next)?.expect("just inserted");
        tx.commit()?;
        Ok(Deployed {
            version,
            created: true,
        })
    }

    /// The function with its active version.
    pub fn get_function(&self, name: &str) -> Result<Option<FunctionInfo>> {
        let db = self.db.lock().unwrap();
        function_info(&db, name)
    }

    /// All functions, by name.
    pub fn list_functions(&self) -> Result<Vec<FunctionInfo>> {
        let db = self.db.lock().unwrap();
        let names: Vec<String> = {
            let mut st = db.prepare("SELECT name FROM functions ORDER BY name")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(f) = function_info(&db, &n)? {
                out.push(f);
            }
        }
        Ok(out)
    }

    /// Delete a function and all its versions. Returns false if absent.
    /// Blobs and artifacts are left for [`Store::gc`].
    pub fn delete_function(&self, name: &str) -> Result<bool> {
        let mut db = self.db.lock().unwrap();
        let tx = db.transaction()?;
        let n = tx.execute("DELETE FROM functions WHERE name = ?1", [name])?;
        tx.execute("DELETE FROM versions WHERE name = ?1", [name])?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Make an earlier version active: `to`, or the newest version older
    /// than the active one.
    pub fn rollback(&self, name: &str, to: Option<u32>) -> Result<FunctionVersion> {
        let mut db = self.db.lock().unwrap();
        let tx = db.transaction()?;
        let active = active_version(&tx, name)?
            .ok_or_else(|| Error::NotFound(format!("function {name:?} not found")))?;
        let target = match to {
            Some(v) => get_version(&tx, name, v)?
                .ok_or_else(|| Error::NotFound(format!("function {name:?} has no version {v}")))?,
            None => {
                let prev: Option<u32> = tx
                    .query_row(
                        "SELECT MAX(version) FROM versions WHERE name = ?1 AND version < ?2",
                        params![name, active.version],
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
                get_version(&tx, name, prev)?.expect("exists")
            }
        };
        tx.execute(
            "UPDATE functions SET active_version = ?2, updated_ms = ?3 WHERE name = ?1",
            params![name, target.version, now_ms()],
        )?;
        tx.commit()?;
        Ok(target)
    }

    /// Insert a batch of activation records in one transaction.
    pub fn insert_activations(&self, batch: &[Activation]) -> Result<()> {
        let mut db = self.acts.lock().unwrap();
        let tx = db.transaction()?;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO activations (id, function, version, start_ms, wait_us, init_us, run_us, status, http_status, cold, bytes_in, bytes_out, error, log)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for a in batch {
                st.execute(params![
                    a.id,
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
                    a.error,
                    a.log
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Keep only the newest `keep` activations. Returns how many were removed.
    pub fn prune_activations(&self, keep: u64) -> Result<usize> {
        let db = self.acts.lock().unwrap();
        Ok(db.execute(
            "DELETE FROM activations WHERE seq <= (SELECT MAX(seq) FROM activations) - ?1",
            [keep as i64],
        )?)
    }

    /// Newest activations first, optionally of one function. Logs omitted.
    pub fn list_activations(&self, function: Option<&str>, limit: u32) -> Result<Vec<Activation>> {
        let db = self.acts.lock().unwrap();
        let sql = "SELECT id, function, version, start_ms, wait_us, init_us, run_us, status, http_status, cold, bytes_in, bytes_out, error, NULL
                   FROM activations WHERE (?1 IS NULL OR function = ?1) ORDER BY seq DESC LIMIT ?2";
        let mut st = db.prepare_cached(sql)?;
        let rows = st.query_map(params![function, limit], row_to_activation)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One activation with its log.
    pub fn get_activation(&self, id: &str) -> Result<Option<Activation>> {
        let db = self.acts.lock().unwrap();
        let sql = "SELECT id, function, version, start_ms, wait_us, init_us, run_us, status, http_status, cold, bytes_in, bytes_out, error, log
                   FROM activations WHERE id = ?1";
        Ok(db.query_row(sql, [id], row_to_activation).optional()?)
    }

    /// Remove blobs and artifacts no version references, artifacts of other
    /// engine fingerprints, and temp files left by a crash. Returns the
    /// number of files removed.
    pub fn gc(&self, fingerprint: &str) -> Result<usize> {
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
            if !live.contains(&name) && fs::remove_file(e.path()).is_ok() {
                removed += 1;
            }
        }
        let compiled = self.home.join("compiled");
        for fpdir in fs::read_dir(&compiled)
            .map_err(io("listing compiled"))?
            .flatten()
        {
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
                let digest = name.strip_suffix(".cwasm").unwrap_or("");
                if !live.contains(digest) && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

fn row_to_activation(r: &rusqlite::Row<'_>) -> rusqlite::Result<Activation> {
    Ok(Activation {
        id: r.get(0)?,
        function: r.get(1)?,
        version: r.get(2)?,
        start_ms: r.get(3)?,
        wait_us: r.get::<_, i64>(4)? as u64,
        init_us: r.get::<_, i64>(5)? as u64,
        run_us: r.get::<_, i64>(6)? as u64,
        status: ActivationStatus::parse(&r.get::<_, String>(7)?),
        http_status: r.get(8)?,
        cold: r.get(9)?,
        bytes_in: r.get::<_, i64>(10)? as u64,
        bytes_out: r.get::<_, i64>(11)? as u64,
        error: r.get(12)?,
        log: r.get(13)?,
    })
}

fn get_version(db: &Connection, name: &str, version: u32) -> Result<Option<FunctionVersion>> {
    let row = db
        .query_row(
            "SELECT digest, abi, config, wasm_size, compiled_size, compile_ms, created_ms FROM versions WHERE name = ?1 AND version = ?2",
            params![name, version],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, f64>(5)?,
                    r.get::<_, i64>(6)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(
        |(digest, abi, config, ws, cs, cms, created)| FunctionVersion {
            name: name.to_string(),
            version,
            digest,
            abi: Abi::parse(&abi).unwrap_or(Abi::Command),
            config: serde_json::from_str(&config).unwrap_or_default(),
            wasm_size: ws as u64,
            compiled_size: cs as u64,
            compile_ms: cms,
            created_ms: created,
            broken: None,
        },
    ))
}

fn active_version(db: &Connection, name: &str) -> Result<Option<FunctionVersion>> {
    let v: Option<u32> = db
        .query_row(
            "SELECT active_version FROM functions WHERE name = ?1",
            [name],
            |r| r.get(0),
        )
        .optional()?;
    match v {
        Some(v) => get_version(db, name, v),
        None => Ok(None),
    }
}

fn function_info(db: &Connection, name: &str) -> Result<Option<FunctionInfo>> {
    let Some(active) = active_version(db, name)? else {
        return Ok(None);
    };
    let mut st =
        db.prepare_cached("SELECT version FROM versions WHERE name = ?1 ORDER BY version")?;
    let versions = st
        .query_map([name], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(Some(FunctionInfo {
        name: name.to_string(),
        active,
        versions,
    }))
}

/// Write `bytes` to `path` atomically: temp file in the same directory,
/// fsync, rename over, fsync the directory.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("path has a parent");
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().unwrap().to_string_lossy(),
        std::process::id()
    ));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::Io {
            context: format!("writing {}", path.display()),
            source: e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nv<'a>(name: &'a str, digest: &'a str, config: &'a FunctionConfig) -> NewVersion<'a> {
        NewVersion {
            name,
            digest_hex: digest,
            abi: Abi::Command,
            config,
            wasm_size: 10,
            compiled_size: 20,
            compile_ms: 1.5,
        }
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
        let back = s.rollback("f", None).unwrap();
        assert_eq!(back.version, 2);
        assert_eq!(s.get_function("f").unwrap().unwrap().active.version, 2);
        assert_eq!(s.rollback("f", Some(1)).unwrap().digest, "sha256:aa");
        assert!(matches!(s.rollback("f", None), Err(Error::Conflict(_))));
        assert!(matches!(s.rollback("nope", None), Err(Error::NotFound(_))));
        assert_eq!(
            s.get_function("f").unwrap().unwrap().versions,
            vec![1, 2, 3]
        );
        assert!(s.delete_function("f").unwrap());
        assert!(!s.delete_function("f").unwrap());
        assert!(s.get_function("f").unwrap().is_none());
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

    #[test]
    fn activations_roundtrip_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mk = |i: u32, f: &str| Activation {
            id: format!("{i:032x}"),
            function: f.into(),
            version: 1,
            start_ms: i as i64,
            wait_us: 1,
            init_us: 2,
            run_us: 3,
            status: ActivationStatus::Success,
            http_status: 200,
            cold: i == 0,
            bytes_in: 4,
            bytes_out: 5,
            error: None,
            log: Some(format!("log {i}")),
        };
        let batch: Vec<_> = (0..10)
            .map(|i| mk(i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        s.insert_activations(&batch).unwrap();
        let a = s.list_activations(Some("a"), 100).unwrap();
        assert_eq!(a.len(), 5);
        assert_eq!(a[0].id, format!("{:032x}", 8), "newest first");
        assert!(a[0].log.is_none(), "listing omits logs");
        let one = s.get_activation(&format!("{:032x}", 0)).unwrap().unwrap();
        assert_eq!(one.log.as_deref(), Some("log 0"));
        assert!(one.cold);
        assert_eq!(s.prune_activations(3).unwrap(), 7);
        assert_eq!(s.list_activations(None, 100).unwrap().len(), 3);
    }
}
