//! The reconciler: one `WasmApp` in, its Deployment, Service, Ingress and HPA
//! applied, its status written.
//!
//! Lifecycle: [`Context`] is built once per leadership term; [`run`] drives a
//! kube-runtime `Controller` that calls [`reconcile`] for each app whenever the
//! app or anything it owns changes, and every 5 minutes. A failed reconcile
//! goes to [`error_policy`]: a Warning Event, a `Degraded` condition, and a
//! retry with exponential backoff per app. An invalid spec is not a failure:
//! it is reported once as `Degraded` and waits for the next edit.

use crate::crd::{Condition, WasmApp, WasmAppStatus};
use crate::metrics::{Metrics, Outcome};
use crate::resources::{self, FIELD_MANAGER};
use crate::validate::{self, InvalidSpec, Plan};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Condition types.
pub const READY: &str = "Ready";
/// The Deployment is rolling out.
pub const PROGRESSING: &str = "Progressing";
/// Something needs a person: invalid spec, failing API calls, a stuck rollout.
pub const DEGRADED: &str = "Degraded";

/// Periodic resync of a healthy app.
const RESYNC: Duration = Duration::from_secs(300);
/// First retry after a failure; doubles per consecutive failure.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile failed. Each is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request about one object failed.
    #[error("{action} {kind} {name}: {detail}")]
    Api {
        /// What we tried: `apply`, `delete`, `read`, `patch status of`.
        action: &'static str,
        /// Kind of the object.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The API server's message and code for a rejection, else the client's error.
        detail: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Discovery found no HorizontalPodAutoscaler API we can write.
    #[error("the API server serves neither autoscaling/v2 nor autoscaling/v2beta2")]
    NoHpaApi,
    /// Discovery failed.
    #[error("API discovery: {0}")]
    Discovery(#[source] kube::Error),
}

/// Result of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn api_err(
    action: &'static str,
    kind: &'static str,
    name: &str,
) -> impl FnOnce(kube::Error) -> Error {
    let name = name.to_string();
    move |source| Error::Api {
        action,
        kind,
        name,
        detail: match &source {
            kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
            other => other.to_string(),
        },
        source,
    }
}

/// What every reconcile shares.
pub struct Context {
    /// The client (the operator's own identity).
    pub client: Client,
    /// Publishes Kubernetes Events.
    pub recorder: Recorder,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The HPA API the server serves (autoscaling/v2, or v2beta2 on ≤ 1.22).
    pub hpa_api: ApiResource,
    /// Consecutive failures per app, for the backoff.
    failures: Mutex<HashMap<ObjectRef<WasmApp>, u32>>,
}

impl Context {
    /// Discover the HPA API and build the context.
    pub async fn new(client: Client, metrics: Arc<Metrics>, instance: String) -> Result<Self> {
        let hpa_api = discover_hpa_api(&client).await?;
        tracing::info!(api_version = %hpa_api.api_version, "HorizontalPodAutoscaler API");
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_string(),
                instance: Some(instance),
            },
        );
        Ok(Context {
            client,
            recorder,
            metrics,
            hpa_api,
            failures: Mutex::default(),
        })
    }
}

/// The newest HorizontalPodAutoscaler version the server has that we can write:
/// autoscaling/v2 (1.23+) or autoscaling/v2beta2 (1.12–1.25, all 1.20 has).
pub async fn discover_hpa_api(client: &Client) -> Result<ApiResource> {
    let groups = client.list_api_groups().await.map_err(Error::Discovery)?;
    let versions: Vec<String> = groups
        .groups
        .iter()
        .filter(|g| g.name == "autoscaling")
        .flat_map(|g| g.versions.iter().map(|v| v.version.clone()))
        .collect();
    let version = ["v2", "v2beta2"]
        .into_iter()
        .find(|v| versions.iter().any(|have| have == v))
        .ok_or(Error::NoHpaApi)?;
    let gvk = GroupVersionKind::gvk("autoscaling", version, "HorizontalPodAutoscaler");
    Ok(ApiResource::from_gvk_with_plural(
        &gvk,
        "horizontalpodautoscalers",
    ))
}

/// Run the controller until `shutdown` resolves, then finish in-flight reconciles.
/// `namespace`: watch only this namespace (all when `None`).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (apps, deployments, services, ingresses, hpas) = match namespace {
        Some(ns) => (
            Api::<WasmApp>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<Ingress>::namespaced(client.clone(), ns),
            Api::<DynamicObject>::namespaced_with(client, ns, &ctx.hpa_api),
        ),
        None => (
            Api::<WasmApp>::all(client.clone()),
            Api::<Deployment>::all(client.clone()),
            Api::<Service>::all(client.clone()),
            Api::<Ingress>::all(client.clone()),
            Api::<DynamicObject>::all_with(client, &ctx.hpa_api),
        ),
    };
    // Only what we created: the label keeps other workloads out of our caches.
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=wisp-operator");
    Controller::new(apps, watcher::Config::default())
        .owns(deployments, owned.clone())
        .owns(services, owned.clone())
        .owns(ingresses, owned.clone())
        .owns_with(hpas, ctx.hpa_api.clone(), owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::debug!(app = %obj, "reconciled"),
                Err(e) => tracing::warn!(error = %e, "controller"),
            }
        })
        .await;
}

/// Reconcile one app (called by the controller).
pub async fn reconcile(app: Arc<WasmApp>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let res = reconcile_inner(&app, &ctx).await;
    let outcome = match &res {
        Ok((_, o)) => *o,
        Err(_) => Outcome::Error,
    };
    ctx.metrics.reconciled(outcome, start.elapsed());
    if res.is_ok() {
        ctx.failures
            .lock()
            .unwrap()
            .remove(&ObjectRef::from(app.as_ref()));
    }
    res.map(|(action, _)| action)
}

async fn reconcile_inner(app: &WasmApp, ctx: &Context) -> Result<(Action, Outcome)> {
    if app.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove what we made.
        return Ok((Action::await_change(), Outcome::Applied));
    }
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let client = &ctx.client;
    let apps: Api<WasmApp> = Api::namespaced(client.clone(), &ns);
    let prev = app.status.clone().unwrap_or_default();
    let now = Timestamp::now();

    let plan = match validate::plan(app) {
        Ok(p) => p,
        Err(invalid) => {
            let status = invalid_status(app, &invalid, &prev, now);
            if status != prev {
                tracing::info!(app = %name, namespace = %ns, error = %invalid, "invalid spec");
                patch_status(&apps, &name, &status).await?;
                publish(
                    ctx,
                    app,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    invalid.to_string(),
                )
                .await;
            }
            return Ok((Action::await_change(), Outcome::Invalid));
        }
    };

    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let deployment = resources::deployment(app, &plan);
    let deployment = Api::<Deployment>::namespaced(client.clone(), &ns)
        .patch(&name, &apply, &Patch::Apply(&deployment))
        .await
        .map_err(api_err("apply", "Deployment", &name))?;
    Api::<Service>::namespaced(client.clone(), &ns)
        .patch(
            &name,
            &apply,
            &Patch::Apply(&resources::service(app, &plan)),
        )
        .await
        .map_err(api_err("apply", "Service", &name))?;

    let ingresses = Api::<Ingress>::namespaced(client.clone(), &ns);
    match resources::ingress(app, &plan) {
        Some(ing) => {
            ingresses
                .patch(&name, &apply, &Patch::Apply(&ing))
                .await
                .map_err(api_err("apply", "Ingress", &name))?;
        }
        None => delete_owned(&ingresses, app, "Ingress").await?,
    }

    let hpas = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ctx.hpa_api);
    match resources::hpa(app, &plan) {
        Some(hpa) => {
            let mut hpa = serde_json::to_value(&hpa).expect("an HPA serialises");
            hpa["apiVersion"] = json!(ctx.hpa_api.api_version);
            hpas.patch(&name, &apply, &Patch::Apply(&hpa))
                .await
                .map_err(api_err("apply", "HorizontalPodAutoscaler", &name))?;
        }
        None => delete_owned(&hpas, app, "HorizontalPodAutoscaler").await?,
    }

    let digest = match &plan.pinned_digest {
        Some(d) => Some(d.clone()),
        None => running_digest(client, &ns, &plan).await?,
    };
    let status = ready_status(app, &deployment, digest, &prev, now);
    if status != prev {
        patch_status(&apps, &name, &status).await?;
        if status.condition(READY).map(|c| c.status.as_str()) == Some("True")
            && prev.condition(READY).map(|c| c.status.as_str()) != Some("True")
        {
            let msg = status
                .condition(READY)
                .map(|c| c.message.clone())
                .unwrap_or_default();
            publish(ctx, app, EventType::Normal, "Ready", "Reconcile", msg).await;
        }
    }
    Ok((Action::requeue(RESYNC), Outcome::Applied))
}

/// Retry with exponential backoff per app; tell the user through an Event and
/// the `Degraded` condition.
pub fn error_policy(app: Arc<WasmApp>, err: &Error, ctx: Arc<Context>) -> Action {
    let failures = {
        let mut f = ctx.failures.lock().unwrap();
        let n = f.entry(ObjectRef::from(app.as_ref())).or_insert(0);
        *n = n.saturating_add(1);
        *n
    };
    let delay = BACKOFF_BASE
        .saturating_mul(1u32 << (failures - 1).min(16))
        .min(BACKOFF_MAX);
    let message = truncate(&err.to_string(), 1000);
    tracing::warn!(
        app = %app.name_any(),
        namespace = %app.namespace().unwrap_or_default(),
        error = %message,
        failures,
        retry_in = ?delay,
        "reconcile failed"
    );
    tokio::spawn(async move {
        publish(
            &ctx,
            &app,
            EventType::Warning,
            "ReconcileFailed",
            "Reconcile",
            message.clone(),
        )
        .await;
        if let Err(e) = report_failure(&ctx, &app, &message).await {
            tracing::warn!(error = %e, "could not report the failure in the status");
        }
    });
    Action::requeue(delay)
}

/// Set `Degraded=True ReconcileFailed` on the app as it is now (not on the
/// possibly older copy the reconcile saw), and only if that changes it: a write
/// from a stale copy would move the transition time and wake the controller again.
async fn report_failure(ctx: &Context, app: &WasmApp, message: &str) -> Result<()> {
    let name = app.name_any();
    let apps: Api<WasmApp> =
        Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
    let Some(current) = apps
        .get_opt(&name)
        .await
        .map_err(api_err("read", "WasmApp", &name))?
    else {
        return Ok(());
    };
    let prev = current.status.clone().unwrap_or_default();
    let mut status = prev.clone();
    set_condition(
        &mut status.conditions,
        cond(&current, DEGRADED, "True", "ReconcileFailed", message),
        Timestamp::now(),
    );
    status.observed_generation = current.metadata.generation;
    if status != prev {
        patch_status(&apps, &name, &status).await?;
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

async fn publish(
    ctx: &Context,
    app: &WasmApp,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(truncate(&note, 1000)),
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &app.object_ref(&())).await {
        tracing::warn!(error = %e, reason, "could not publish an Event");
    }
}

async fn patch_status(apps: &Api<WasmApp>, name: &str, status: &WasmAppStatus) -> Result<()> {
    let mut status = serde_json::to_value(status).expect("a status serialises");
    // A merge patch leaves out what is absent; say null to clear a stale digest.
    if status.get("imageDigest").is_none() {
        status["imageDigest"] = serde_json::Value::Null;
    }
    apps.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(api_err("patch status of", "WasmApp", name))?;
    Ok(())
}

/// Delete `app`'s object of this kind if it exists and `app` controls it.
async fn delete_owned<K>(api: &Api<K>, app: &WasmApp, kind: &'static str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let name = app.name_any();
    let Some(obj) = api
        .get_opt(&name)
        .await
        .map_err(api_err("read", kind, &name))?
    else {
        return Ok(());
    };
    let ours = obj
        .owner_references()
        .iter()
        .any(|r| r.controller == Some(true) && Some(&r.uid) == app.metadata.uid.as_ref());
    if ours {
        api.delete(&name, &Default::default())
            .await
            .map_err(api_err("delete", kind, &name))?;
    }
    Ok(())
}

/// The digest the app's pods run, when they all report the same one for `spec.image`.
async fn running_digest(client: &Client, ns: &str, plan: &Plan) -> Result<Option<String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{}={}", resources::APP_LABEL, plan.name)))
        .await
        .map_err(api_err("list", "Pod", &plan.name))?;
    let mut digests = pods
        .items
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .filter(|c| c.name == resources::CONTAINER && c.image == plan.spec.image)
        .filter_map(|c| {
            c.image_id
                .find("sha256:")
                .map(|i| c.image_id[i..].to_string())
        });
    let Some(first) = digests.next() else {
        return Ok(None);
    };
    Ok(digests.all(|d| d == first).then_some(first))
}

/// A condition; `message` must not be empty: a 1.20 API server's JSON merge
/// patch turns "" into null, which the schema then rejects.
fn cond(app: &WasmApp, type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    debug_assert!(!message.is_empty(), "empty message in condition {type_}");
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        last_transition_time: String::new(),
        observed_generation: app.metadata.generation,
    }
}

/// Put `c` into `conds`, keeping the old transition time when the status did not change.
fn set_condition(conds: &mut Vec<Condition>, mut c: Condition, now: Timestamp) {
    match conds.iter_mut().find(|o| o.type_ == c.type_) {
        Some(old) => {
            c.last_transition_time = if old.status == c.status {
                old.last_transition_time.clone()
            } else {
                now.to_string()
            };
            *old = c;
        }
        None => {
            c.last_transition_time = now.to_string();
            conds.push(c);
        }
    }
}

/// Status for a spec that failed validation.
pub fn invalid_status(
    app: &WasmApp,
    invalid: &InvalidSpec,
    prev: &WasmAppStatus,
    now: Timestamp,
) -> WasmAppStatus {
    let msg = invalid.to_string();
    let mut s = prev.clone();
    for c in [
        cond(
            app,
            READY,
            "False",
            "InvalidSpec",
            "the spec is invalid; see the Degraded condition",
        ),
        cond(
            app,
            PROGRESSING,
            "False",
            "InvalidSpec",
            "the spec is invalid; nothing was changed",
        ),
        cond(app, DEGRADED, "True", "InvalidSpec", &msg),
    ] {
        set_condition(&mut s.conditions, c, now);
    }
    s.observed_generation = app.metadata.generation;
    s
}

/// Status from the applied Deployment (as the API server returned it).
pub fn ready_status(
    app: &WasmApp,
    deployment: &Deployment,
    image_digest: Option<String>,
    prev: &WasmAppStatus,
    now: Timestamp,
) -> WasmAppStatus {
    let ds = deployment.status.clone().unwrap_or_default();
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let ready = ds.ready_replicas.unwrap_or(0);
    let updated = ds.updated_replicas.unwrap_or(0);
    let total = ds.replicas.unwrap_or(0);
    let seen = ds.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);

    let progressing = if !seen {
        cond(
            app,
            PROGRESSING,
            "True",
            "RollingOut",
            "waiting for the Deployment controller to see the new template",
        )
    } else if updated < desired || total > updated {
        cond(
            app,
            PROGRESSING,
            "True",
            "RollingOut",
            &format!("{updated} of {desired} replicas updated, {total} in total"),
        )
    } else {
        cond(
            app,
            PROGRESSING,
            "False",
            "RolloutComplete",
            &format!("{desired} replicas up to date"),
        )
    };
    let ready_msg = format!("{ready}/{desired} replicas ready");
    let ready_c = if ready >= desired && seen {
        cond(app, READY, "True", "ReplicasReady", &ready_msg)
    } else {
        cond(app, READY, "False", "ReplicasNotReady", &ready_msg)
    };
    let stuck = ds.conditions.as_ref().and_then(|cs| {
        cs.iter().find(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        })
    });
    let degraded = match stuck {
        Some(c) => cond(
            app,
            DEGRADED,
            "True",
            "ProgressDeadlineExceeded",
            c.message
                .as_deref()
                .unwrap_or("the rollout made no progress"),
        ),
        None => cond(app, DEGRADED, "False", "AsExpected", "all objects applied"),
    };

    let mut s = prev.clone();
    for c in [ready_c, progressing, degraded] {
        set_condition(&mut s.conditions, c, now);
    }
    s.replicas = Some(desired);
    s.ready_replicas = ready;
    s.observed_generation = app.metadata.generation;
    s.image_digest = image_digest;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::{DeploymentSpec, DeploymentStatus};

    fn app() -> WasmApp {
        let mut a = WasmApp::new(
            "hello",
            serde_json::from_value(json!({"image": "hello"})).unwrap(),
        );
        a.metadata.generation = Some(3);
        a
    }

    fn deployment(replicas: i32, generation: i64, status: DeploymentStatus) -> Deployment {
        let mut d = Deployment {
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(status),
            ..Default::default()
        };
        d.metadata.generation = Some(generation);
        d
    }

    fn get<'a>(s: &'a WasmAppStatus, t: &str) -> (&'a str, &'a str) {
        let c = s.condition(t).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn status_follows_the_deployment() {
        let t0 = Timestamp::now();
        let d = deployment(2, 1, DeploymentStatus::default());
        let s = ready_status(&app(), &d, None, &WasmAppStatus::default(), t0);
        assert_eq!(get(&s, READY), ("False", "ReplicasNotReady"));
        assert_eq!(get(&s, PROGRESSING), ("True", "RollingOut"));
        assert_eq!(get(&s, DEGRADED), ("False", "AsExpected"));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.replicas, Some(2));

        let d = deployment(
            2,
            1,
            DeploymentStatus {
                observed_generation: Some(1),
                replicas: Some(2),
                updated_replicas: Some(2),
                ready_replicas: Some(2),
                ..Default::default()
            },
        );
        let t1 = t0 + k8s_openapi::jiff::SignedDuration::from_secs(10);
        let s2 = ready_status(&app(), &d, Some("sha256:ab".into()), &s, t1);
        assert_eq!(get(&s2, READY), ("True", "ReplicasReady"));
        assert_eq!(s2.condition(READY).unwrap().message, "2/2 replicas ready");
        assert_eq!(get(&s2, PROGRESSING), ("False", "RolloutComplete"));
        assert_eq!(s2.ready_replicas, 2);
        assert_eq!(s2.image_digest.as_deref(), Some("sha256:ab"));
        // Transition times move only with the status.
        assert_eq!(
            s2.condition(READY).unwrap().last_transition_time,
            t1.to_string()
        );
        assert_eq!(
            s2.condition(DEGRADED).unwrap().last_transition_time,
            t0.to_string()
        );
        // The same input again changes nothing, so no status write and no watch loop.
        assert_eq!(
            ready_status(
                &app(),
                &d,
                Some("sha256:ab".into()),
                &s2,
                t1 + k8s_openapi::jiff::SignedDuration::from_secs(5)
            ),
            s2
        );
    }

    #[test]
    fn invalid_spec_is_degraded_with_the_field() {
        let invalid = InvalidSpec {
            field: "spec.limits.memory".into(),
            message: "'lots' is not a positive memory quantity".into(),
        };
        let s = invalid_status(
            &app(),
            &invalid,
            &WasmAppStatus::default(),
            Timestamp::now(),
        );
        assert_eq!(get(&s, DEGRADED), ("True", "InvalidSpec"));
        assert!(
            s.condition(DEGRADED)
                .unwrap()
                .message
                .starts_with("spec.limits.memory: ")
        );
        assert_eq!(get(&s, READY), ("False", "InvalidSpec"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
