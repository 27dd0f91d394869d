//! Named JSON documents of a namespace that are not functions: OpenWhisk's
//! sequences (collection `actions`), triggers and rules. The store keeps
//! them whole and knows nothing of their shape, except that a sequence
//! and a function can't share a name (one action collection).

use crate::{Error, Result, Store, now_ms, write_tx};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The document.
    pub doc: Value,
    /// Last written, Unix milliseconds.
    pub updated_ms: i64,
}

/// How [`Store::put_entity`] treats an existing document of that name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Put {
    /// Refuse ([`Error::Conflict`]).
    Create,
    /// Replace it. In the `actions` collection, a function of that name is
    /// deleted in the same transaction (the caller drops its handle).
    Overwrite,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn entity((namespace, name, doc, updated_ms): (String, String, String, i64)) -> Result<Entity> {
    let doc = serde_json::from_str(&doc).map_err(|e| {
        Error::Corrupt(format!(
            "stored document {namespace}/{name} does not parse: {e}"
        ))
    })?;
    Ok(Entity {
        namespace,
        name,
        doc,
        updated_ms,
    })
}

impl Store {
    /// Write a document. Returns whether it replaced one (a function, in
    /// the `actions` collection, counts too).
    pub fn put_entity(
        &self,
        namespace: &str,
        collection: &str,
        name: &str,
        doc: &Value,
        mode: Put,
    ) -> Result<bool> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let mut exists = tx
            .query_row(
                "SELECT 1 FROM entities WHERE namespace = ?1 AND collection = ?2 AND name = ?3",
                [namespace, collection, name],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        if collection == "actions" {
            let function = tx
                .query_row(
                    "SELECT 1 FROM functions WHERE namespace = ?1 AND name = ?2",
                    [namespace, name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if function && mode == Put::Overwrite {
                tx.execute(
                    "DELETE FROM functions WHERE namespace = ?1 AND name = ?2",
                    [namespace, name],
                )?;
                tx.execute(
                    "DELETE FROM versions WHERE namespace = ?1 AND name = ?2",
                    [namespace, name],
                )?;
            }
            exists |= function;
        }
        if exists && mode == Put::Create {
            return Err(Error::Conflict(format!(
                "{collection} {namespace}/{name} already exists"
            )));
        }
        tx.execute(
            "INSERT INTO entities (namespace, collection, name, doc, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(namespace, collection, name) DO UPDATE SET doc = excluded.doc, updated_ms = excluded.updated_ms",
            params![namespace, collection, name, doc.to_string(), now_ms()],
        )?;
        tx.commit()?;
        Ok(exists)
    }

    /// One document.
    pub fn get_entity(
        &self,
        namespace: &str,
        collection: &str,
        name: &str,
    ) -> Result<Option<Entity>> {
        let db = self.db.lock().unwrap();
        let r = db
            .query_row(
                "SELECT namespace, name, doc, updated_ms FROM entities WHERE namespace = ?1 AND collection = ?2 AND name = ?3",
                [namespace, collection, name],
                row,
            )
            .optional()?;
        r.map(entity).transpose()
    }

    /// A namespace's documents of a collection by name (every namespace's
    /// when `None`), `limit` after `skip`.
    pub fn list_entities(
        &self,
        namespace: Option<&str>,
        collection: &str,
        limit: u32,
        skip: u32,
    ) -> Result<Vec<Entity>> {
        let db = self.db.lock().unwrap();
        let mut st = db.prepare_cached(
            "SELECT namespace, name, doc, updated_ms FROM entities WHERE (?1 IS NULL OR namespace = ?1) AND collection = ?2
             ORDER BY namespace, name LIMIT ?3 OFFSET ?4",
        )?;
        let rows: Vec<_> = st
            .query_map(params![namespace, collection, limit, skip], row)?
            .collect::<Result<_, _>>()?;
        rows.into_iter().map(entity).collect()
    }

    /// Delete a document. Returns false if absent.
    pub fn delete_entity(&self, namespace: &str, collection: &str, name: &str) -> Result<bool> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let n = tx.execute(
            "DELETE FROM entities WHERE namespace = ?1 AND collection = ?2 AND name = ?3",
            [namespace, collection, name],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::Put;
    use crate::Store;
    use serde_json::json;

    #[test]
    fn documents_create_overwrite_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert!(
            !s.put_entity("a", "triggers", "t", &json!({"n": 1}), Put::Create)
                .unwrap()
        );
        assert!(matches!(
            s.put_entity("a", "triggers", "t", &json!({}), Put::Create),
            Err(crate::Error::Conflict(_))
        ));
        assert!(
            s.put_entity("a", "triggers", "t", &json!({"n": 2}), Put::Overwrite)
                .unwrap()
        );
        s.put_entity("a", "triggers", "u", &json!({}), Put::Create)
            .unwrap();
        s.put_entity("b", "triggers", "t", &json!({}), Put::Create)
            .unwrap();
        assert_eq!(
            s.get_entity("a", "triggers", "t").unwrap().unwrap().doc,
            json!({"n": 2})
        );
        assert!(s.get_entity("a", "rules", "t").unwrap().is_none());
        let names = |ns, limit, skip| -> Vec<String> {
            s.list_entities(ns, "triggers", limit, skip)
                .unwrap()
                .into_iter()
                .map(|e| format!("{}/{}", e.namespace, e.name))
                .collect()
        };
        assert_eq!(names(Some("a"), 10, 0), ["a/t", "a/u"]);
        assert_eq!(names(Some("a"), 1, 1), ["a/u"]);
        assert_eq!(names(None, 10, 0), ["a/t", "a/u", "b/t"]);
        assert!(s.delete_entity("a", "triggers", "t").unwrap());
        assert!(!s.delete_entity("a", "triggers", "t").unwrap());
    }
}
