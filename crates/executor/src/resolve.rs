//! Which function version a call runs: the one place a [`FunctionRef`] (a
//! name, maybe pinned to a version or a module digest) becomes a handle.
//! Workflow deploys validate through it and workflow runs call through it,
//! so a change of how functions are named (namespaces) is made here.
//!
//! The active version is the table's handle. A pinned version that isn't
//! active gets a handle of its own, kept until the function is removed
//! (versions are immutable): its own warm template and concurrency permits,
//! the name's metrics.

use crate::Executor;
use crate::error::{Error, join_err, store_err};
use crate::table::FunctionHandle;
use std::sync::Arc;
use wisp_core::ErrorKind;
use wisp_workflow::{FunctionRef, Resolved};

impl Executor {
    /// The handle `f` names; 404 when the function, version or digest isn't
    /// there.
    pub async fn resolve(&self, f: &FunctionRef) -> Result<Arc<FunctionHandle>, Error> {
        if self.get(&f.name).is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("{f} not found")));
        }
        if let Some(h) = self.known(f) {
            return Ok(h);
        }
        let store = self.store.clone();
        let f2 = f.clone();
        let found = tokio::task::spawn_blocking(move || match (f2.version, &f2.digest) {
            (Some(n), _) => store.version(&f2.name, n),
            (None, Some(d)) => store.version_with_digest(&f2.name, d),
            (None, None) => unreachable!("the active version"),
        })
        .await
        .map_err(join_err)?
        .map_err(store_err)?;
        let Some(version) = found else {
            return Err(Error::new(ErrorKind::NotFound, format!("{f} not found")));
        };
        let handle = self.make_handle(version, None);
        let mut pinned = self.pinned.write().unwrap();
        // The function may have been removed meanwhile (a removal empties
        // the table, then this cache): pin only what is still served.
        if self.get(&f.name).is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("{f} not found")));
        }
        Ok(pinned.entry(f.clone()).or_insert(handle).clone())
    }

    /// The handle `f` names if it is known without asking the store: the
    /// active version, or a pinned one seen before.
    pub(crate) fn known(&self, f: &FunctionRef) -> Option<Arc<FunctionHandle>> {
        let active = self.get(&f.name)?;
        let v = &active.version;
        let is_active = match (f.version, &f.digest) {
            (None, None) => true,
            (Some(n), _) => n == v.version,
            (None, Some(d)) => *d == v.digest,
        };
        if is_active {
            return Some(active);
        }
        self.pinned.read().unwrap().get(f).cloned()
    }

    /// Forget the pinned handles of a removed function.
    pub(crate) fn forget_pinned(&self, name: &str) {
        self.pinned.write().unwrap().retain(|f, _| f.name != name);
    }
}

/// What validation needs of a handle.
pub(crate) fn resolved(h: &FunctionHandle) -> Resolved {
    Resolved {
        version: h.version.version,
        abi: h.version.abi,
        limits: h.version.config.limits.clone(),
    }
}
