//! Workflows: definitions (table `workflows`, one row per (namespace, name), versioned
//! like functions but replaced in place) and run records (table
//! `workflow_runs`, on the activation connection, pruned with the same
//! retention). The store keeps definitions and records as JSON text; it
//! does not interpret them (`wisp-workflow` does).
//!
//! Definitions are written on the `synchronous=FULL` connection in one
//! `IMMEDIATE` transaction: after a `kill -9` a workflow is either the old
//! definition or the new one, never a mix.

use crate::{Result, Store, get_version, now_ms, write_tx};
use rusqlite::{Connection, OptionalExtension, params};
use wisp_core::{Activation, FunctionVersion};

/// A stored workflow definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWorkflow {
    /// The namespace it belongs to (its steps are that namespace's functions).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// 1-based, increased by every change of the definition.
    pub version: u32,
    /// The definition in canonical JSON.
    pub definition: String,
    /// The definition as uploaded (YAML or JSON).
    pub source: String,
    /// First deployed, Unix ms.
    pub created_ms: i64,
    /// Last changed, Unix ms.
    pub updated_ms: i64,
}

/// One run's record, as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRun {
    /// The run's id (32 hex digits).
    pub id: String,
    /// The workflow's namespace.
    pub namespace: String,
    /// The workflow's name.
    pub workflow: String,
    /// Start, Unix ms.
    pub start_ms: i64,
    /// The record (`wisp_workflow::WorkflowActivation` as JSON).
    pub record: String,
}

fn row_to_workflow(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredWorkflow> {
    Ok(StoredWorkflow {
        namespace: r.get(0)?,
        name: r.get(1)?,
        version: r.get(2)?,
        definition: r.get(3)?,
        source: r.get(4)?,
        created_ms: r.get(5)?,
        updated_ms: r.get(6)?,
    })
}

const WORKFLOW_COLUMNS: &str =
    "namespace, name, version, definition, source, created_ms, updated_ms";

fn get_workflow(db: &Connection, namespace: &str, name: &str) -> Result<Option<StoredWorkflow>> {
    Ok(db
        .query_row(
            &format!("SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE namespace = ?1 AND name = ?2"),
            [namespace, name],
            row_to_workflow,
        )
        .optional()?)
}

fn row_to_run(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkflowRun> {
    Ok(WorkflowRun {
        id: r.get(0)?,
        namespace: r.get(1)?,
        workflow: r.get(2)?,
        start_ms: r.get(3)?,
        record: r.get(4)?,
    })
}

impl Store {
    /// Store `name`'s definition in `namespace`, replacing the current one;
    /// returns the stored row and whether it changed (false when the
    /// canonical definition and the source are what is stored already).
    pub fn put_workflow(
        &self,
        namespace: &str,
        name: &str,
        definition: &str,
        source: &str,
    ) -> Result<(StoredWorkflow, bool)> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let old = get_workflow(&tx, namespace, name)?;
        if let Some(o) = &old
            && o.definition == definition
            && o.source == source
        {
            return Ok((o.clone(), false));
        }
        let now = now_ms();
        let version = old.as_ref().map_or(1, |o| o.version + 1);
        tx.execute(
            "INSERT INTO workflows (namespace, name, version, definition, source, created_ms, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
             ON CONFLICT(namespace, name) DO UPDATE SET version = excluded.version, definition = excluded.definition,
                 source = excluded.source, updated_ms = excluded.updated_ms",
            params![namespace, name, version, definition, source, now],
        )?;
        let stored = get_workflow(&tx, namespace, name)?.expect("just written");
        tx.commit()?;
        Ok((stored, true))
    }

    /// A workflow's stored definition.
    pub fn get_workflow(&self, namespace: &str, name: &str) -> Result<Option<StoredWorkflow>> {
        get_workflow(&self.db.lock().unwrap(), namespace, name)
    }

    /// The workflows of `namespace` (of every namespace when `None`), by
    /// namespace and name.
    pub fn list_workflows(&self, namespace: Option<&str>) -> Result<Vec<StoredWorkflow>> {
        let db = self.db.lock().unwrap();
        let mut st = db.prepare(&format!(
            "SELECT {WORKFLOW_COLUMNS} FROM workflows WHERE (?1 IS NULL OR namespace = ?1) ORDER BY namespace, name"
        ))?;
        let rows = st.query_map([namespace], row_to_workflow)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Remove a workflow; false if there was none. Its run records stay
    /// until pruned.
    pub fn delete_workflow(&self, namespace: &str, name: &str) -> Result<bool> {
        let mut db = self.db.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let n = tx.execute(
            "DELETE FROM workflows WHERE namespace = ?1 AND name = ?2",
            [namespace, name],
        )?;
        tx.commit()?;
        Ok(n > 0)
    }

    /// Insert run records in one transaction (a record whose id is stored
    /// already is skipped); returns how many were written.
    pub fn insert_workflow_runs(&self, runs: &[WorkflowRun]) -> Result<usize> {
        let mut db = self.acts.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let mut written = 0;
        {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO workflow_runs (id, namespace, workflow, start_ms, record) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for r in runs {
                written +=
                    st.execute(params![r.id, r.namespace, r.workflow, r.start_ms, r.record])?;
            }
        }
        tx.commit()?;
        Ok(written)
    }

    /// Keep only the newest `keep` run records.
    pub fn prune_workflow_runs(&self, keep: u64) -> Result<usize> {
        let db = self.acts.lock().unwrap();
        Ok(db.execute(
            "DELETE FROM workflow_runs WHERE seq <= (SELECT MAX(seq) FROM workflow_runs) - ?1",
            [keep as i64],
        )?)
    }

    /// Run records, newest first, of `namespace` (every namespace's when
    /// `None`), optionally of one workflow.
    pub fn list_workflow_runs(
        &self,
        namespace: Option<&str>,
        workflow: Option<&str>,
        limit: u32,
    ) -> Result<Vec<WorkflowRun>> {
        let db = self.acts.lock().unwrap();
        let mut st = db.prepare_cached(
            "SELECT id, namespace, workflow, start_ms, record FROM workflow_runs
             WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR workflow = ?2)
             ORDER BY seq DESC LIMIT ?3",
        )?;
        let rows = st.query_map(params![namespace, workflow, limit], row_to_run)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One run record.
    pub fn get_workflow_run(&self, id: &str) -> Result<Option<WorkflowRun>> {
        let db = self.acts.lock().unwrap();
        Ok(db
            .query_row(
                "SELECT id, namespace, workflow, start_ms, record FROM workflow_runs WHERE id = ?1",
                [id],
                row_to_run,
            )
            .optional()?)
    }

    /// The activation records (without logs) whose parent is `parent`, in
    /// the order they were written.
    pub fn child_activations(&self, parent: &str) -> Result<Vec<Activation>> {
        let db = self.acts.lock().unwrap();
        let mut st = db.prepare_cached(&format!(
            "SELECT {} FROM activations WHERE parent = ?1 ORDER BY seq",
            crate::ACTIVATION_COLUMNS_LISTED
        ))?;
        let rows = st.query_map([parent], crate::row_to_activation)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stored version of a function.
    pub fn version(
        &self,
        namespace: &str,
        name: &str,
        version: u32,
    ) -> Result<Option<FunctionVersion>> {
        get_version(&self.db.lock().unwrap(), namespace, name, version)
    }

    /// The newest version of `name` whose module has `digest`
    /// (`sha256:<hex>`).
    pub fn version_with_digest(
        &self,
        namespace: &str,
        name: &str,
        digest: &str,
    ) -> Result<Option<FunctionVersion>> {
        let db = self.db.lock().unwrap();
        let v: Option<u32> = db
            .query_row(
                "SELECT MAX(version) FROM versions WHERE namespace = ?1 AND name = ?2 AND digest = ?3",
                params![namespace, name, digest],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        match v {
            Some(v) => get_version(&db, namespace, name, v),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_core::FunctionConfig;

    #[test]
    fn definitions_are_versioned_replaced_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (a, created) = s
            .put_workflow("default", "w", "{\"steps\":[]}", "steps: []")
            .unwrap();
        assert!(created);
        assert_eq!(a.version, 1);
        let (same, created) = s
            .put_workflow("default", "w", "{\"steps\":[]}", "steps: []")
            .unwrap();
        assert!(!created);
        assert_eq!(same, a);
        let (b, created) = s
            .put_workflow("default", "w", "{\"steps\":[1]}", "steps: [1]")
            .unwrap();
        assert!(created);
        assert_eq!((b.version, b.created_ms), (2, a.created_ms));
        s.put_workflow("default", "a", "{}", "{}").unwrap();
        // Another namespace's workflow of the same name is another workflow.
        s.put_workflow("other", "w", "{}", "{}").unwrap();
        let names: Vec<String> = s
            .list_workflows(Some("default"))
            .unwrap()
            .into_iter()
            .map(|w| w.name)
            .collect();
        assert_eq!(names, ["a", "w"]);
        assert_eq!(s.list_workflows(None).unwrap().len(), 3);
        assert_eq!(s.get_workflow("other", "w").unwrap().unwrap().version, 1);
        drop(s);
        // Durable across a reopen (the same as after a kill: committed rows stay).
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(
            s.get_workflow("default", "w").unwrap().unwrap().definition,
            "{\"steps\":[1]}"
        );
        assert!(s.delete_workflow("default", "w").unwrap());
        assert!(!s.delete_workflow("default", "w").unwrap());
        assert!(s.get_workflow("default", "w").unwrap().is_none());
        assert!(s.get_workflow("other", "w").unwrap().is_some());
    }

    #[test]
    fn run_records_and_their_steps() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let run = |i: u32, w: &str| WorkflowRun {
            id: format!("{i:032x}"),
            namespace: if i == 5 { "other" } else { "default" }.into(),
            workflow: w.into(),
            start_ms: i as i64,
            record: format!("{{\"n\":{i}}}"),
        };
        let runs: Vec<_> = (0..6)
            .map(|i| run(i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        assert_eq!(s.insert_workflow_runs(&runs).unwrap(), 6);
        assert_eq!(
            s.insert_workflow_runs(&runs[..1]).unwrap(),
            0,
            "ids are unique"
        );
        let a = s.list_workflow_runs(None, Some("a"), 10).unwrap();
        assert_eq!(a.iter().map(|r| r.start_ms).collect::<Vec<_>>(), [4, 2, 0]);
        let b = s
            .list_workflow_runs(Some("default"), Some("b"), 10)
            .unwrap();
        assert_eq!(b.iter().map(|r| r.start_ms).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(
            s.get_workflow_run(&format!("{:032x}", 3))
                .unwrap()
                .unwrap()
                .record,
            "{\"n\":3}"
        );
        assert_eq!(s.prune_workflow_runs(2).unwrap(), 4);
        assert_eq!(s.list_workflow_runs(None, None, 10).unwrap().len(), 2);

        let step = |i: u32, parent: Option<&str>| Activation {
            id: format!("{:032x}", 100 + i),
            namespace: "default".into(),
            function: "f".into(),
            version: 1,
            start_ms: 0,
            wait_us: 0,
            init_us: 0,
            run_us: 0,
            status: wisp_core::ActivationStatus::Success,
            http_status: 200,
            cold: false,
            bytes_in: 0,
            bytes_out: 0,
            error: None,
            log: Some("log".into()),
            result: None,
            meta: None,
            parent: parent.map(str::to_string),
            step: parent.map(|_| format!("s{i}")),
        };
        let p = "f".repeat(32);
        s.insert_activations(&[step(0, Some(&p)), step(1, None), step(2, Some(&p))])
            .unwrap();
        let kids = s.child_activations(&p).unwrap();
        assert_eq!(
            kids.iter()
                .map(|a| a.step.clone().unwrap())
                .collect::<Vec<_>>(),
            ["s0", "s2"]
        );
        assert!(
            kids.iter().all(|a| a.log.is_none()),
            "listings leave logs out"
        );
        let one = s.get_activation(&format!("{:032x}", 102)).unwrap().unwrap();
        assert_eq!(
            (one.parent.as_deref(), one.step.as_deref()),
            (Some(p.as_str()), Some("s2"))
        );
    }

    #[test]
    fn versions_by_number_and_by_digest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = FunctionConfig::default();
        let h1 = s.put_blob(b"one").unwrap();
        let h2 = s.put_blob(b"two").unwrap();
        for (h, env) in [(&h1, "1"), (&h2, "2"), (&h1, "3")] {
            let mut c = c.clone();
            c.env.insert("V".into(), env.into());
            s.create_version(crate::tests::nv("f", h, &c)).unwrap();
        }
        assert_eq!(
            s.version("default", "f", 2).unwrap().unwrap().digest,
            format!("sha256:{h2}")
        );
        assert!(s.version("default", "f", 4).unwrap().is_none());
        let v = s
            .version_with_digest("default", "f", &format!("sha256:{h1}"))
            .unwrap()
            .unwrap();
        assert_eq!(v.version, 3, "the newest with that digest");
        assert!(
            s.version_with_digest("default", "f", "sha256:00")
                .unwrap()
                .is_none()
        );
        assert!(
            s.version_with_digest("default", "g", &format!("sha256:{h1}"))
                .unwrap()
                .is_none()
        );
    }
}
