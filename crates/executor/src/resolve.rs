//! Which function version a call runs: the one place a [`FunctionRef`] (a
//! name, maybe pinned to a version or a module digest) becomes a handle.
//! Workflow deploys validate through it and workflow runs call through it,
//! so how functions are named (namespace, name, version or digest) is
//! decided here. A workflow's steps are functions of its own namespace.
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
    pub async fn resolve(
        &self,
        namespace: &str,
        f: &FunctionRef,
    ) -> Result<Arc<FunctionHandle>, Error> {
        if self.get(namespace, &f.name).is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("{f} not found")));
        }
        if let Some(h) = self.known(namespace, f) {
            return Ok(h);
        }
        let store = self.store.clone();
        let (ns, f2) = (namespace.to_string(), f.clone());
        let found = tokio::task::spawn_blocking(move || match (f2.version, &f2.digest) {
            (Some(n), _) => store.version(&ns, &f2.name, n),
            (None, Some(d)) => store.version_with_digest(&ns, &f2.name, d),
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
        if self.get(namespace, &f.name).is_none() {
            return Err(Error::new(ErrorKind::NotFound, format!("{f} not found")));
        }
        Ok(pinned
            .entry((namespace.to_string(), f.clone()))
            .or_insert(handle)
            .clone())
    }

    /// The handle `f` names if it is known without asking the store: the
    /// active version, or a pinned one seen before.
    pub(crate) fn known(&self, namespace: &str, f: &FunctionRef) -> Option<Arc<FunctionHandle>> {
        let active = self.get(namespace, &f.name)?;
        let v = &active.version;
        let is_active = match (f.version, &f.digest) {
            (None, None) => true,
            (Some(n), _) => n == v.version,
            (None, Some(d)) => *d == v.digest,
        };
        if is_active {
            return Some(active);
        }
        self.pinned
            .read()
            .unwrap()
            .get(&(namespace.to_string(), f.clone()))
            .cloned()
    }

    /// Forget the pinned handles of a removed function.
    pub(crate) fn forget_pinned(&self, namespace: &str, name: &str) {
        self.pinned
            .write()
            .unwrap()
            .retain(|(ns, f), _| !(ns == namespace && f.name == name));
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
