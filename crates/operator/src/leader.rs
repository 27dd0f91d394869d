//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` does it, so several replicas can run and one reconciles.
//!
//! Every `renew_every` each candidate reads the Lease. The holder writes a new
//! `renewTime`; a candidate takes the Lease when it is free or its `renewTime`
//! is older than `leaseDurationSeconds`. Every write carries the
//! `resourceVersion` it read, so of two candidates racing for an expired Lease
//! one gets a 409 Conflict and stays a follower. A leader that cannot renew
//! for `renew_deadline` (shorter than the lease duration) steps down before
//! anyone else may take over. On shutdown the leader clears `holderIdentity`,
//! so a successor need not wait for expiry.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where and how to elect.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This candidate's identity (pod name, or host name and pid).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often to try to acquire or renew.
    pub renew_every: Duration,
}

impl LeaseConfig {
    /// A leader that could not renew for this long steps down: two thirds of the
    /// lease duration (client-go: 10 s of 15 s).
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// Campaigns for one Lease.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl Elector {
    /// A candidate for `cfg.name` in `cfg.namespace`.
    pub fn new(client: Client, cfg: LeaseConfig) -> Self {
        Elector {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
        }
    }

    /// Campaign until `shutdown` fires; `leader` says whether we hold the Lease.
    /// Releases the Lease on the way out if we held it.
    pub async fn run(self, leader: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renew: Option<Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    if last_renew.is_none() {
                        tracing::info!(lease = %self.cfg.name, identity = %self.cfg.identity, "became leader");
                    }
                    last_renew = Some(Instant::now());
                    leader.send_replace(true);
                }
                Ok(false) => {
                    if last_renew.take().is_some() {
                        tracing::warn!(lease = %self.cfg.name, "lost the lease to another candidate");
                    }
                    leader.send_replace(false);
                }
                Err(e) => {
                    tracing::warn!(lease = %self.cfg.name, error = %e, "lease request failed");
                    if last_renew.is_some_and(|t| t.elapsed() > self.cfg.renew_deadline()) {
                        tracing::warn!(lease = %self.cfg.name, "could not renew within the deadline; stepping down");
                        last_renew = None;
                        leader.send_replace(false);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.renew_every) => {}
                _ = shutdown.wait_for(|s| *s) => break,
            }
        }
        if *leader.borrow() {
            leader.send_replace(false);
            match self.release().await {
                Ok(()) => tracing::info!(lease = %self.cfg.name, "released the lease"),
                Err(e) => {
                    tracing::warn!(lease = %self.cfg.name, error = %e, "could not release the lease")
                }
            }
        }
    }

    /// One round: `Ok(true)` when we hold the Lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let duration_secs = self.cfg.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    namespace: Some(self.cfg.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(duration_secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return conflict_is_false(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if holder.as_deref() == Some(self.cfg.identity.as_str()) {
            spec.renew_time = Some(MicroTime(now));
            spec.lease_duration_seconds = Some(duration_secs);
        } else {
            if holder.is_some() && !expired(spec, now) {
                return Ok(false);
            }
            spec.holder_identity = Some(self.cfg.identity.clone());
            spec.lease_duration_seconds = Some(duration_secs);
            spec.acquire_time = Some(MicroTime(now));
            spec.renew_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        // `replace` sends the resourceVersion we read: a concurrent writer makes it 409.
        conflict_is_false(
            self.api
                .replace(&self.cfg.name, &PostParams::default(), &lease)
                .await,
        )
    }

    async fn release(&self) -> Result<(), Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
    }
}

fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().map(|t| t.0) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    renewed + SignedDuration::from_secs(secs) < now
}

fn conflict_is_false(r: Result<Lease, Error>) -> Result<bool, Error> {
    match r {
        Ok(_) => Ok(true),
        Err(Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry() {
        let now = Timestamp::now();
        let spec = |ago: i64| LeaseSpec {
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(ago))),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&spec(5), now));
        assert!(expired(&spec(16), now));
        assert!(expired(&LeaseSpec::default(), now));
    }
}
