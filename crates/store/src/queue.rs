//! The durable queue of activations accepted but not yet run (OpenWhisk's
//! non-blocking invokes). A job is a row until its activation record is
//! written: [`Store::complete_queued`] inserts the record and deletes the
//! row in one transaction, so after a crash each accepted job has either
//! its record or its row, never both and never neither. A job that was
//! running when the process died is run again (at least once); its start
//! count says how often that happened.

use crate::{INSERT_ACTIVATION, Result, Store, insert_activation, now_ms, write_tx};
use rusqlite::params;
use serde_json::Value;
use wisp_core::Activation;

/// A queued job.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    /// The activation id it was accepted under.
    pub id: String,
    /// Its namespace.
    pub namespace: String,
    /// What to run, as the caller described it.
    pub job: Value,
    /// Accepted, Unix milliseconds.
    pub enqueued_ms: i64,
    /// How many times it was started before (a crash mid-run leaves 1).
    pub attempts: u32,
}

impl Store {
    /// Accept a job unless the queue holds `max` already (returns false).
    pub fn enqueue(&self, id: &str, namespace: &str, job: &Value, max: u64) -> Result<bool> {
        let mut db = self.acts.lock().unwrap();
        let tx = write_tx(&mut db)?;
        let n: u64 = tx.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?;
        if n >= max {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO queue (id, namespace, job, enqueued_ms) VALUES (?1, ?2, ?3, ?4)",
            params![id, namespace, job.to_string(), now_ms()],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The oldest `limit` jobs whose id is not in `skip`.
    pub fn queued(&self, limit: u32, skip: &dyn Fn(&str) -> bool) -> Result<Vec<Queued>> {
        let db = self.acts.lock().unwrap();
        let mut st = db.prepare_cached(
            "SELECT id, namespace, job, enqueued_ms, attempts FROM queue ORDER BY seq",
        )?;
        let mut rows = st.query([])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let id: String = r.get(0)?;
            if skip(&id) {
                continue;
            }
            let job: String = r.get(2)?;
            out.push(Queued {
                id,
                namespace: r.get(1)?,
                job: serde_json::from_str(&job).unwrap_or(Value::Null),
                enqueued_ms: r.get(3)?,
                attempts: r.get(4)?,
            });
            if out.len() >= limit as usize {
                break;
            }
        }
        Ok(out)
    }

    /// Count a start of a job (durably, before it runs).
    pub fn start_queued(&self, id: &str) -> Result<()> {
        let db = self.acts.lock().unwrap();
        db.execute(
            "UPDATE queue SET attempts = attempts + 1 WHERE id = ?1",
            [id],
        )?;
        Ok(())
    }

    /// Jobs waiting.
    pub fn queue_len(&self) -> Result<u64> {
        let db = self.acts.lock().unwrap();
        Ok(db.query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0))?)
    }

    /// Write a job's activation record and drop the job, in one transaction.
    pub fn complete_queued(&self, id: &str, record: &Activation) -> Result<()> {
        let mut db = self.acts.lock().unwrap();
        let tx = write_tx(&mut db)?;
        {
            let mut st = tx.prepare_cached(INSERT_ACTIVATION)?;
            insert_activation(
                &mut st,
                record,
                record.log.as_deref(),
                record.error.as_deref(),
            )?;
        }
        tx.execute("DELETE FROM queue WHERE id = ?1", [id])?;
        tx.commit()?;
        Ok(())
    }
}
