//! Namespaces and their keys. A key is never stored: only its SHA-256.
//! Keys are 256 random bits, so a fast hash is enough (as for API tokens
//! elsewhere); the comparison happens in constant time in the executor.

use crate::{Error, Result, Store, now_ms, write_tx};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A namespace as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// The public half of its key (`uuid:key`), if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// Hex SHA-256 of the secret half.
    #[serde(skip)]
    pub key_sha256: Option<String>,
    /// Created, Unix milliseconds.
    pub created_ms: i64,
    /// Key last set, Unix milliseconds.
    pub updated_ms: i64,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Namespace> {
    Ok(Namespace {
        name: r.get(0)?,
        uuid: r.get(1)?,
        key_sha256: r.get(2)?,
        created_ms: r.get(3)?,
        updated_ms: r.get(4)?,
    })
}

const COLUMNS: &str = "name, uuid, key_sha256, created_ms, updated_ms";

impl Store {
    /// Every namespace, by name.
    pub fn namespaces(&self) -> Result<Vec<Namespace>> {
        let db = self.db.lock().unwrap();
        let mut st = db.prepare(&format!("SELECT {COLUMNS} FROM namespaces ORDER BY name"))?;
        Ok(st.query_map([], row)?.collect::<Result<_, _>>()?)
    }

    /// One namespace.
    pub fn namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let db = self.db.lock().unwrap();
        Ok(db
            .query_row(
                &format!("SELECT {COLUMNS} FROM namespaces WHERE name = ?1"),
                [name],
                row,
            )
            .optional()?)
    }

    /// Create a namespace with a key; [`Error::Conflict`] if it exists.
    pub fn create_namespace(&self, name: &str, uuid: &str, key_sha256: &str) -> Result<Namespace> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let exists: bool = tx
            .query_row("SELECT 1 FROM namespaces WHERE name = ?1", [name], |_| {
                Ok(())
            })
            .optional()?
            .is_some();
        if exists {
            return Err(Error::Conflict(format!(
                "namespace {name:?} already exists"
            )));
        }
        let now = now_ms();
        tx.execute(
            "INSERT INTO namespaces (name, uuid, key_sha256, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?4)",
            params![name, uuid, key_sha256, now],
        )?;
        let ns = tx.query_row(
            &format!("SELECT {COLUMNS} FROM namespaces WHERE name = ?1"),
            [name],
            row,
        )?;
        tx.commit()?;
        Ok(ns)
    }

    /// Replace a namespace's key (the old one stops working at once).
    pub fn set_namespace_key(&self, name: &str, uuid: &str, key_sha256: &str) -> Result<Namespace> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let n = tx.execute(
            "UPDATE namespaces SET uuid = ?2, key_sha256 = ?3, updated_ms = ?4 WHERE name = ?1",
            params![name, uuid, key_sha256, now_ms()],
        )?;
        if n == 0 {
            return Err(Error::NotFound(format!("namespace {name:?} not found")));
        }
        let ns = tx.query_row(
            &format!("SELECT {COLUMNS} FROM namespaces WHERE name = ?1"),
            [name],
            row,
        )?;
        tx.commit()?;
        Ok(ns)
    }

    /// Delete a namespace and everything in it (functions, versions,
    /// OpenWhisk entities, queued activations, activation records), in one
    /// transaction. Returns false if it did not exist.
    pub fn delete_namespace(&self, name: &str) -> Result<bool> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let n = tx.execute("DELETE FROM namespaces WHERE name = ?1", [name])?;
        for table in ["functions", "versions", "entities", "queue", "activations"] {
            tx.execute(&format!("DELETE FROM {table} WHERE namespace = ?1"), [name])?;
        }
        tx.commit()?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use crate::Store;

    #[test]
    fn namespaces_keys_and_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let all = s.namespaces().unwrap();
        assert_eq!(all.len(), 1, "a new home has the default namespace");
        assert_eq!(
            (all[0].name.as_str(), all[0].uuid.as_ref()),
            ("default", None)
        );
        let a = s.create_namespace("a", "u-a", "h1").unwrap();
        assert_eq!(
            (a.uuid.as_deref(), a.key_sha256.as_deref()),
            (Some("u-a"), Some("h1"))
        );
        assert!(matches!(
            s.create_namespace("a", "u-x", "h"),
            Err(crate::Error::Conflict(_))
        ));
        let r = s.set_namespace_key("a", "u-b", "h2").unwrap();
        assert_eq!(
            (r.uuid.as_deref(), r.key_sha256.as_deref()),
            (Some("u-b"), Some("h2"))
        );
        assert!(matches!(
            s.set_namespace_key("zz", "u", "h"),
            Err(crate::Error::NotFound(_))
        ));
        let json = serde_json::to_string(&r).unwrap();
        assert!(
            !json.contains("h2"),
            "the key's hash is never shown: {json}"
        );
        assert!(s.delete_namespace("a").unwrap());
        assert!(!s.delete_namespace("a").unwrap());
        assert!(s.namespace("a").unwrap().is_none());
    }
}
