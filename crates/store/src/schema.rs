//! The database schema and its migrations.
//!
//! `PRAGMA user_version` says which schema a home has. A home from before
//! namespaces (version 0: functions keyed by name alone) is migrated to
//! [`SCHEMA_VERSION`] in **one** `IMMEDIATE` transaction: the keyed tables
//! are rebuilt with every function in namespace `default`, activation
//! records gain their namespace, and the version is bumped last. SQLite's
//! DDL is transactional, so a `kill -9` at any point leaves either the old
//! home, whole, or the new one (the test below kills a migrating process at
//! spread-out moments and checks exactly that).

use crate::now_ms;
use rusqlite::{Connection, TransactionBehavior};

/// The schema this build writes.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS functions (
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    active_version INTEGER NOT NULL,
    created_ms     INTEGER NOT NULL,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS versions (
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    version        INTEGER NOT NULL,
    digest         TEXT NOT NULL,
    abi            TEXT NOT NULL,
    config         TEXT NOT NULL,
    wasm_size      INTEGER NOT NULL,
    compiled_size  INTEGER NOT NULL,
    compile_ms     REAL NOT NULL,
    created_ms     INTEGER NOT NULL,
    oci_ref        TEXT,
    oci_digest     TEXT,
    meta           TEXT,
    PRIMARY KEY (namespace, name, version)
);
CREATE TABLE IF NOT EXISTS activations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    id         TEXT NOT NULL UNIQUE,
    namespace  TEXT NOT NULL DEFAULT 'default',
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
    log        TEXT,
    result     TEXT,
    meta       TEXT
);
CREATE INDEX IF NOT EXISTS activations_by_ns_function ON activations(namespace, function, seq);
CREATE INDEX IF NOT EXISTS activations_by_ns ON activations(namespace, seq);
CREATE TABLE IF NOT EXISTS artifacts (
    fingerprint TEXT NOT NULL,
    digest      TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    PRIMARY KEY (fingerprint, digest)
);
CREATE TABLE IF NOT EXISTS namespaces (
    name        TEXT PRIMARY KEY,
    uuid        TEXT UNIQUE,
    key_sha256  TEXT,
    created_ms  INTEGER NOT NULL,
    updated_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entities (
    namespace   TEXT NOT NULL,
    collection  TEXT NOT NULL,
    name        TEXT NOT NULL,
    doc         TEXT NOT NULL,
    updated_ms  INTEGER NOT NULL,
    PRIMARY KEY (namespace, collection, name)
);
CREATE TABLE IF NOT EXISTS queue (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    namespace   TEXT NOT NULL,
    job         TEXT NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0
);
"#;

fn has_table(db: &Connection, table: &str) -> rusqlite::Result<bool> {
    db.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [table],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

fn has_column(db: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    db.query_row(
        &format!("SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = ?1"),
        [column],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )
}

/// Create the schema in a new home, or bring an older one up to
/// [`SCHEMA_VERSION`], in one transaction.
pub(crate) fn create_or_migrate(db: &mut Connection) -> crate::Result<()> {
    let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(crate::Error::Corrupt(format!(
            "this home's database has schema version {version}, newer than this wisp's ({SCHEMA_VERSION}): \
             run a newer wisp, or another home"
        )));
    }
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if version < SCHEMA_VERSION && has_table(&tx, "functions")? {
        migrate_v0(&tx)?;
    }
    tx.execute_batch(SCHEMA)?;
    tx.execute(
        "INSERT OR IGNORE INTO namespaces (name, created_ms, updated_ms) VALUES (?1, ?2, ?2)",
        rusqlite::params![wisp_core::DEFAULT_NAMESPACE, now_ms()],
    )?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// From a home of one unnamed space to namespaces: every function, version
/// and activation goes to `default`.
fn migrate_v0(tx: &Connection) -> rusqlite::Result<()> {
    // Columns of the first release's versions table were added later.
    for column in ["oci_ref", "oci_digest"] {
        if !has_column(tx, "versions", column)? {
            tx.execute_batch(&format!("ALTER TABLE versions ADD COLUMN {column} TEXT"))?;
        }
    }
    if has_table(tx, "activations")? && !has_column(tx, "activations", "namespace")? {
        tx.execute_batch(
            "ALTER TABLE activations ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
             ALTER TABLE activations ADD COLUMN result TEXT;
             ALTER TABLE activations ADD COLUMN meta TEXT;
             DROP INDEX IF EXISTS activations_by_function;",
        )?;
    }
    if !has_column(tx, "functions", "namespace")? {
        tracing::info!("store: migrating to namespaces (every function goes to `default`)");
        tx.execute_batch(
            "ALTER TABLE functions RENAME TO functions_v0;
             ALTER TABLE versions RENAME TO versions_v0;",
        )?;
        tx.execute_batch(SCHEMA)?;
        tx.execute_batch(
            "INSERT INTO functions (namespace, name, active_version, created_ms, updated_ms)
                 SELECT 'default', name, active_version, created_ms, updated_ms FROM functions_v0;
             INSERT INTO versions (namespace, name, version, digest, abi, config, wasm_size,
                                   compiled_size, compile_ms, created_ms, oci_ref, oci_digest, meta)
                 SELECT 'default', name, version, digest, abi, config, wasm_size,
                        compiled_size, compile_ms, created_ms, oci_ref, oci_digest, NULL FROM versions_v0;
             DROP TABLE functions_v0;
             DROP TABLE versions_v0;",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// A home as the release before namespaces left it: `functions`
    /// functions of two versions each and `acts` activation records.
    fn old_home(dir: &Path, functions: u32, acts: u32) {
        let db = Connection::open(dir.join("wisp.db")).unwrap();
        db.pragma_update(None, "journal_mode", "WAL").unwrap();
        db.execute_batch(
            "CREATE TABLE functions (name TEXT PRIMARY KEY, active_version INTEGER NOT NULL,
                 created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
             CREATE TABLE versions (name TEXT NOT NULL, version INTEGER NOT NULL, digest TEXT NOT NULL,
                 abi TEXT NOT NULL, config TEXT NOT NULL, wasm_size INTEGER NOT NULL, compiled_size INTEGER NOT NULL,
                 compile_ms REAL NOT NULL, created_ms INTEGER NOT NULL, oci_ref TEXT, oci_digest TEXT,
                 PRIMARY KEY (name, version));
             CREATE TABLE activations (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                 function TEXT NOT NULL, version INTEGER NOT NULL, start_ms INTEGER NOT NULL,
                 wait_us INTEGER NOT NULL, init_us INTEGER NOT NULL, run_us INTEGER NOT NULL,
                 status TEXT NOT NULL, http_status INTEGER NOT NULL, cold INTEGER NOT NULL,
                 bytes_in INTEGER NOT NULL, bytes_out INTEGER NOT NULL, error TEXT, log TEXT);
             CREATE INDEX activations_by_function ON activations(function, seq);
             CREATE TABLE artifacts (fingerprint TEXT NOT NULL, digest TEXT NOT NULL,
                 sha256 TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (fingerprint, digest));",
        )
        .unwrap();
        let tx = db.unchecked_transaction().unwrap();
        for i in 0..functions {
            tx.execute(
                "INSERT INTO functions VALUES (?1, 2, 0, 0)",
                [format!("f{i}")],
            )
            .unwrap();
            for v in 1..=2 {
                tx.execute(
                    "INSERT INTO versions VALUES (?1, ?2, ?3, 'command', '{}', 1, 2, 0.5, 0, NULL, NULL)",
                    rusqlite::params![format!("f{i}"), v, format!("sha256:{i:064x}")],
                )
                .unwrap();
            }
        }
        for i in 0..acts {
            tx.execute(
                "INSERT INTO activations (id, function, version, start_ms, wait_us, init_us, run_us, status,
                     http_status, cold, bytes_in, bytes_out, error, log)
                 VALUES (?1, ?2, 2, ?3, 1, 2, 3, 'success', 200, 0, 0, 5, NULL, 'a log line')",
                rusqlite::params![format!("{i:032x}"), format!("f{}", i % functions), i as i64],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }

    /// What a migrated home must hold, whoever migrated it.
    fn check_migrated(dir: &Path, functions: u32, acts: u32) {
        let s = Store::open(dir).unwrap();
        let fns = s.list_functions(None).unwrap();
        assert_eq!(fns.len(), functions as usize);
        assert!(fns.iter().all(|f| f.active.namespace == "default"
            && f.versions == vec![1, 2]
            && f.active.version == 2));
        let q = crate::ActivationQuery {
            namespace: Some("default"),
            function: Some("f3"),
            limit: 100_000,
            ..Default::default()
        };
        assert_eq!(
            s.list_activations(&q).unwrap().len() as u32,
            acts / functions + u32::from(3 < acts % functions)
        );
        let one = s.get_activation(&format!("{:032x}", 7)).unwrap().unwrap();
        assert_eq!(
            (one.namespace.as_str(), one.log.as_deref()),
            ("default", Some("a log line"))
        );
        let db = s.db.lock().unwrap();
        let ok: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let v: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
    }

    #[test]
    fn an_old_home_is_migrated_to_the_default_namespace() {
        let dir = tempfile::tempdir().unwrap();
        old_home(dir.path(), 10, 95);
        check_migrated(dir.path(), 10, 95);
        // Opening again is a no-op.
        check_migrated(dir.path(), 10, 95);
    }

    /// Run by [`a_kill_9_during_the_migration_leaves_the_old_home_or_the_new_one`]
    /// in a child process: open (and so migrate) the home it names.
    #[test]
    #[ignore = "a child of the kill -9 test"]
    fn migration_child() {
        let Some(home) = std::env::var_os("WISP_TEST_MIGRATION_HOME") else {
            return;
        };
        println!("opening");
        let t = Instant::now();
        drop(Store::open(Path::new(&home)).unwrap());
        println!("migrated in {} us", t.elapsed().as_micros());
    }

    /// The schema a killed migration left: 0 (the old one, whole) or the
    /// new one; never anything in between.
    fn schema_left(dir: &Path, functions: u32) -> i64 {
        let db = Connection::open(dir.join("wisp.db")).unwrap();
        let v: i64 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let namespaced = has_column(&db, "functions", "namespace").unwrap();
        let n: u32 = db
            .query_row("SELECT COUNT(*) FROM functions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, functions, "no function lost (schema {v})");
        assert_eq!(
            namespaced,
            v == SCHEMA_VERSION,
            "schema {v} but namespaced={namespaced}"
        );
        assert!(!has_table(&db, "functions_v0").unwrap());
        v
    }

    #[test]
    fn a_kill_9_during_the_migration_leaves_the_old_home_or_the_new_one() {
        const FUNCTIONS: u32 = 2_000;
        const ACTS: u32 = 150_000;
        let template = tempfile::tempdir().unwrap();
        old_home(template.path(), FUNCTIONS, ACTS);
        let run = |dir: &Path, kill_after: Option<Duration>| -> bool {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .args([
                    "schema::tests::migration_child",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .env("WISP_TEST_MIGRATION_HOME", dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let mut line = String::new();
            while !line.contains("opening") {
                line.clear();
                assert!(
                    out.read_line(&mut line).unwrap() > 0,
                    "the child ended before opening"
                );
            }
            if let Some(d) = kill_after {
                std::thread::sleep(d);
                child.kill().unwrap();
            }
            let st = child.wait().unwrap();
            kill_after.is_none() && st.success()
        };
        let copy = |to: &Path| {
            for f in ["wisp.db", "wisp.db-wal", "wisp.db-shm"] {
                let from = template.path().join(f);
                if from.exists() {
                    std::fs::copy(&from, to.join(f)).unwrap();
                }
            }
        };
        // How long a whole migration takes here.
        let whole = tempfile::tempdir().unwrap();
        copy(whole.path());
        let t = Instant::now();
        assert!(run(whole.path(), None));
        let took = t.elapsed();
        check_migrated(whole.path(), FUNCTIONS, ACTS);

        let mut left = std::collections::BTreeMap::new();
        // Spread over the migration, then well past it (a loaded machine
        // may migrate slower than the measured run).
        for i in (0..14u32).chain([36, 72]) {
            let dir = tempfile::tempdir().unwrap();
            copy(dir.path());
            let after = took * i / 12;
            run(dir.path(), Some(after));
            *left.entry(schema_left(dir.path(), FUNCTIONS)).or_insert(0) += 1;
            // Whatever was left, the next open ends with the whole new home.
            check_migrated(dir.path(), FUNCTIONS, ACTS);
        }
        assert!(
            left.contains_key(&0) && left.contains_key(&SCHEMA_VERSION),
            "kills spread over a {took:?} migration left both the old and the new schema: {left:?}"
        );
    }
}
