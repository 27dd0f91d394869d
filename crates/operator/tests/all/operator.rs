//! The operator, as a process under its ServiceAccount identity (RBAC from
//! deploy/), against kube-apiserver 1.20 + etcd + kube-controller-manager.

use crate::support::{Cluster, Operator, cluster, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ResourceQuota, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;
use wisp_operator::WasmApp;

const WAIT: Duration = Duration::from_secs(60);
const DIGEST: &str = "sha256:3f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8";

struct Env {
    cluster: &'static Cluster,
    client: Client,
    ns: String,
}

impl Env {
    async fn new(prefix: &str) -> Option<Env> {
        let cluster = cluster()?;
        let client = cluster.setup().await;
        let ns = cluster.namespace(&client, prefix).await;
        Some(Env {
            cluster,
            client,
            ns,
        })
    }

    fn operator(&self, identity: &str) -> Operator {
        Operator::start(
            self.cluster,
            &self.ns,
            &format!("lease-{}", self.ns),
            identity,
        )
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn create_app(&self, name: &str, spec: Value) -> WasmApp {
        let app: WasmApp = serde_json::from_value(json!({
            "apiVersion": "wisp.dev/v1alpha1",
            "kind": "WasmApp",
            "metadata": {"name": name},
            "spec": spec,
        }))
        .unwrap();
        self.api::<WasmApp>()
            .create(&PostParams::default(), &app)
            .await
            .expect("create WasmApp")
    }

    async fn patch_spec(&self, name: &str, spec: Value) {
        self.api::<WasmApp>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await
            .expect("patch WasmApp");
    }

    async fn get_json<K>(&self, name: &str) -> Result<Value, String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self.api::<K>().get_opt(name).await {
            Ok(Some(o)) => Ok(serde_json::to_value(o).unwrap()),
            Ok(None) => Err(format!("{name} not found")),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn get_kind(&self, kind: &str, name: &str) -> Result<Value, String> {
        match kind {
            "Service" => self.get_json::<Service>(name).await,
            _ => self.get_json::<Deployment>(name).await,
        }
    }

    /// Wait for the app's status to satisfy `check`; returns it.
    async fn status_where(&self, name: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, WAIT, || async {
            let app = self.get_json::<WasmApp>(name).await?;
            let status = app["status"].clone();
            if check(&status) && status["observedGeneration"] == app["metadata"]["generation"] {
                Ok(status)
            } else {
                Err(status.to_string())
            }
        })
        .await
    }

    async fn done(self) {
        let _ = Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .delete(&self.ns, &DeleteParams::default())
            .await;
    }
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn is(status: &Value, type_: &str, value: &str, reason: &str) -> bool {
    let c = condition(status, type_);
    c["status"] == value && c["reason"] == reason
}

#[tokio::test]
async fn a_wasmapp_becomes_a_deployment_a_service_and_a_status() {
    let Some(env) = Env::new("create").await else {
        return;
    };
    let _op = env.operator("op-a");
    let app = env
        .create_app(
            "hello",
            json!({
                "image": "registry.example/wisp/hello:1.0",
                "replicas": 2,
                "port": 3000,
                "env": [
                    {"name": "GREETING", "value": "hi"},
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hello", "key": "token"}}},
                ],
                "limits": {"memory": "64Mi", "timeout": "2s", "concurrency": 8},
                "allowedOutboundHosts": ["https://api.example"],
                "volumes": [{"name": "scratch", "path": "/tmp"}],
            }),
        )
        .await;

    let d = eventually("the Deployment", WAIT, || {
        env.get_json::<Deployment>("hello")
    })
    .await;
    let owner = &d["metadata"]["ownerReferences"];
    assert_eq!(
        owner,
        &json!([{
            "apiVersion": "wisp.dev/v1alpha1", "kind": "WasmApp", "name": "hello",
            "uid": app.uid().unwrap(), "controller": true,
        }])
    );
    let managers: Vec<_> = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["manager"].as_str().unwrap(),
                m["operation"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        managers.contains(&("wisp-operator", "Apply")),
        "{managers:?}"
    );
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["selector"],
        json!({"matchLabels": {"wisp.dev/app": "hello"}})
    );
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "wisp");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example/wisp/hello:1.0");
    assert_eq!(
        c["env"],
        json!([
            {"name": "WISP_LISTEN", "value": "0.0.0.0:3000"},
            {"name": "WISP_ALLOW_OUTBOUND", "value": "https://api.example"},
            {"name": "WISP_MEMORY", "value": "67108864"},
            {"name": "WISP_TIMEOUT", "value": "2000"},
            {"name": "WISP_MAX_CONCURRENCY", "value": "8"},
            {"name": "GREETING", "value": "hi"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hello", "key": "token"}}},
        ])
    );
    assert_eq!(
        c["resources"],
        json!({"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}})
    );
    assert_eq!(c["ports"][0]["containerPort"], 3000);
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "scratch", "mountPath": "/tmp"}])
    );
    assert_eq!(pod["volumes"], json!([{"name": "scratch", "emptyDir": {}}]));

    let s = eventually("the Service", WAIT, || env.get_json::<Service>("hello")).await;
    assert_eq!(s["spec"]["selector"], json!({"wisp.dev/app": "hello"}));
    assert_eq!(
        s["spec"]["ports"],
        json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}])
    );
    assert_eq!(
        s["metadata"]["ownerReferences"][0]["uid"],
        app.uid().unwrap()
    );
    assert!(
        env.get_json::<Ingress>("hello").await.is_err(),
        "no host, so no Ingress"
    );

    // No kubelet: the replicas exist (the controller manager made the pods) but are not ready.
    let status = env
        .status_where("hello", "Ready=False, 0/2", |s| {
            is(s, "Ready", "False", "ReplicasNotReady")
                && condition(s, "Ready")["message"] == "0/2 replicas ready"
                && is(s, "Degraded", "False", "AsExpected")
        })
        .await;
    assert_eq!(status["replicas"], 2);
    assert_eq!(status["readyReplicas"], 0);
    assert!(status.get("imageDigest").is_none(), "{status}");

    // Play the kubelet: report both pods running and ready, with the image's digest.
    let pods: Api<Pod> = env.api();
    let names = eventually("two pods from the ReplicaSet", WAIT, || async {
        let list = pods
            .list(&ListParams::default().labels("wisp.dev/app=hello"))
            .await
            .map_err(|e| e.to_string())?;
        let names: Vec<String> = list.items.iter().map(|p| p.name_any()).collect();
        (names.len() == 2)
            .then_some(names.clone())
            .ok_or(format!("{names:?}"))
    })
    .await;
    let now = "2026-01-01T00:00:00Z";
    for name in &names {
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [{
                    "name": "app", "ready": true, "restartCount": 0, "started": true,
                    "image": "registry.example/wisp/hello:1.0",
                    "imageID": format!("registry.example/wisp/hello@{DIGEST}"),
                    "state": {"running": {"startedAt": now}},
                }],
            }})),
        )
        .await
        .expect("patch pod status");
    }
    let status = env
        .status_where("hello", "Ready=True, 2/2, digest", |s| {
            is(s, "Ready", "True", "ReplicasReady") && s["imageDigest"] == DIGEST
        })
        .await;
    assert_eq!(status["readyReplicas"], 2);
    assert_eq!(condition(&status, "Ready")["message"], "2/2 replicas ready");
    assert!(
        is(&status, "Progressing", "False", "RolloutComplete"),
        "{status}"
    );
    env.done().await;
}

#[tokio::test]
async fn image_and_replica_changes_reach_the_deployment() {
    let Some(env) = Env::new("update").await else {
        return;
    };
    let _op = env.operator("op-a");
    env.create_app(
        "app",
        json!({"image": "registry.example/app:1", "replicas": 1}),
    )
    .await;
    eventually("Deployment at :1 x1", WAIT, || async {
        let d = env.get_json::<Deployment>("app").await?;
        let ok = d["spec"]["replicas"] == 1
            && d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/app:1";
        ok.then_some(()).ok_or(d["spec"].to_string())
    })
    .await;

    env.patch_spec(
        "app",
        json!({"image": "registry.example/app:2", "replicas": 3}),
    )
    .await;
    eventually("Deployment at :2 x3", WAIT, || async {
        let d = env.get_json::<Deployment>("app").await?;
        let ok = d["spec"]["replicas"] == 3
            && d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/app:2";
        ok.then_some(()).ok_or(d["spec"].to_string())
    })
    .await;
    let status = env
        .status_where("app", "status for generation 2", |s| s["replicas"] == 3)
        .await;
    assert_eq!(status["observedGeneration"], 2);
    env.done().await;
}

#[tokio::test]
async fn a_deleted_service_or_deployment_comes_back() {
    let Some(env) = Env::new("repair").await else {
        return;
    };
    let _op = env.operator("op-a");
    env.create_app("app", json!({"image": "registry.example/app:1"}))
        .await;
    // Let the first reconciles (the Deployment controller's status updates wake the
    // operator too) die down, so only the watch on the deleted kind can bring it back.
    env.status_where("app", "a status", |s| !s["conditions"].is_null())
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for kind in ["Service", "Deployment"] {
        let before = eventually(kind, WAIT, || env.get_kind(kind, "app")).await;
        let uid = before["metadata"]["uid"].clone();
        match kind {
            "Service" => {
                env.api::<Service>()
                    .delete("app", &DeleteParams::default())
                    .await
                    .unwrap();
            }
            _ => {
                env.api::<Deployment>()
                    .delete("app", &DeleteParams::default())
                    .await
                    .unwrap();
            }
        }
        eventually(&format!("a new {kind}"), WAIT, || async {
            let o = env.get_kind(kind, "app").await?;
            (o["metadata"]["uid"] != uid)
                .then_some(())
                .ok_or("still the old one".to_string())
        })
        .await;
    }
    env.done().await;
}

#[tokio::test]
async fn an_invalid_spec_is_degraded_naming_the_field_and_recovers() {
    let Some(env) = Env::new("invalid").await else {
        return;
    };
    let mut op = env.operator("op-a");
    let app = env
        .create_app(
            "app",
            json!({"image": "registry.example/app:1", "limits": {"memory": "lots"}}),
        )
        .await;
    let status = env
        .status_where("app", "Degraded=True InvalidSpec", |s| {
            is(s, "Degraded", "True", "InvalidSpec")
        })
        .await;
    let msg = condition(&status, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.starts_with("spec.limits.memory: 'lots'"), "{msg}");
    assert!(is(&status, "Ready", "False", "InvalidSpec"), "{status}");
    assert!(
        env.get_json::<Deployment>("app").await.is_err(),
        "nothing is created for an invalid spec"
    );

    let events: Api<Event> = env.api();
    eventually("a Warning Event InvalidSpec", WAIT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|e| {
                e.reason.as_deref() == Some("InvalidSpec")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == app.uid().as_deref()
                    && e.note
                        .as_deref()
                        .is_some_and(|n| n.contains("spec.limits.memory"))
            })
            .map(|_| ())
            .ok_or(format!("{} events", list.items.len()))
    })
    .await;
    assert!(
        op.alive(),
        "the operator must not exit on an invalid spec:\n{}",
        op.log()
    );
    assert!(op.metric("wisp_operator_invalid_specs_total").await >= 1.0);

    env.patch_spec("app", json!({"limits": {"memory": "64Mi"}}))
        .await;
    env.status_where("app", "Degraded=False", |s| {
        is(s, "Degraded", "False", "AsExpected")
    })
    .await;
    let d = env.get_json::<Deployment>("app").await.unwrap();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "64Mi"
    );
    env.done().await;
}

#[tokio::test]
async fn a_failing_apply_is_retried_with_an_event_until_it_succeeds() {
    let Some(env) = Env::new("failing").await else {
        return;
    };
    // A quota of zero Services: the API server refuses the operator's Service.
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "no-services"},
        "spec": {"hard": {"services": "0"}},
    }))
    .unwrap();
    let quotas: Api<ResourceQuota> = env.api();
    quotas.create(&PostParams::default(), &quota).await.unwrap();
    // Enforced for sure once the quota controller has computed its status.
    eventually("the quota's status", WAIT, || async {
        let q = quotas.get("no-services").await.map_err(|e| e.to_string())?;
        let hard = q.status.and_then(|s| s.hard).unwrap_or_default();
        hard.contains_key("services")
            .then_some(())
            .ok_or("no status yet".to_string())
    })
    .await;
    let op = env.operator("op-a");
    let app = env
        .create_app("app", json!({"image": "registry.example/app:1"}))
        .await;

    let status = env
        .status_where("app", "Degraded=True ReconcileFailed", |s| {
            is(s, "Degraded", "True", "ReconcileFailed")
        })
        .await;
    let msg = condition(&status, "Degraded")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(msg.starts_with("apply Service app: "), "{msg}");
    let events: Api<Event> = env.api();
    eventually("a Warning Event ReconcileFailed", WAIT, || async {
        let list = events
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        list.items
            .iter()
            .find(|e| {
                e.reason.as_deref() == Some("ReconcileFailed")
                    && e.regarding.as_ref().and_then(|r| r.uid.as_deref()) == app.uid().as_deref()
            })
            .map(|_| ())
            .ok_or(format!("{} events", list.items.len()))
    })
    .await;
    assert!(op.metric("wisp_operator_reconcile_errors_total").await >= 1.0);

    env.api::<ResourceQuota>()
        .delete("no-services", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Service after the quota went", WAIT, || {
        env.get_json::<Service>("app")
    })
    .await;
    env.status_where("app", "Degraded=False", |s| {
        is(s, "Degraded", "False", "AsExpected")
    })
    .await;
    env.done().await;
}

#[tokio::test]
async fn autoscaling_and_host_add_an_hpa_and_an_ingress_and_dropping_them_deletes_them() {
    let Some(env) = Env::new("scale").await else {
        return;
    };
    let _op = env.operator("op-a");
    env.create_app(
        "app",
        json!({
            "image": "registry.example/app:1",
            "limits": {"cpu": "100m"},
            "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
            "host": "app.example.com",
        }),
    )
    .await;
    // 1.20 serves autoscaling/v2beta2, not v2: the operator discovers which.
    let hpa_api = wisp_operator::controller::discover_hpa_api(&env.client)
        .await
        .unwrap();
    assert_eq!(hpa_api.api_version, "autoscaling/v2beta2");
    let hpas: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), &env.ns, &hpa_api);
    let hpa = eventually("the HPA", WAIT, || async {
        hpas.get("app").await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(hpa.data["spec"]["minReplicas"], 2);
    assert_eq!(hpa.data["spec"]["maxReplicas"], 5);
    assert_eq!(hpa.data["spec"]["scaleTargetRef"]["name"], "app");
    assert_eq!(
        hpa.data["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        70
    );
    let ing = eventually("the Ingress", WAIT, || env.get_json::<Ingress>("app")).await;
    assert_eq!(ing["spec"]["rules"][0]["host"], "app.example.com");
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "app", "port": {"number": 80}})
    );
    // The HPA controller (not the operator) sets the Deployment's replicas.
    eventually("the HPA to scale to minReplicas", WAIT, || async {
        let d = env.get_json::<Deployment>("app").await?;
        (d["spec"]["replicas"] == 2)
            .then_some(())
            .ok_or(d["spec"]["replicas"].to_string())
    })
    .await;

    env.patch_spec(
        "app",
        json!({"autoscaling": null, "host": null, "replicas": 4}),
    )
    .await;
    eventually("the HPA and Ingress gone, 4 replicas", WAIT, || async {
        let hpa_gone = hpas
            .get_opt("app")
            .await
            .map_err(|e| e.to_string())?
            .is_none();
        let ing_gone = env.get_json::<Ingress>("app").await.is_err();
        let d = env.get_json::<Deployment>("app").await?;
        (hpa_gone && ing_gone && d["spec"]["replicas"] == 4)
            .then_some(())
            .ok_or(format!(
                "hpa gone {hpa_gone}, ingress gone {ing_gone}, replicas {}",
                d["spec"]["replicas"]
            ))
    })
    .await;
    env.done().await;
}

#[tokio::test]
async fn only_the_lease_holder_reconciles_and_a_successor_takes_over() {
    let Some(env) = Env::new("leader").await else {
        return;
    };
    let lease_name = format!("lease-{}", env.ns);
    let mut first = env.operator("op-first");
    // Let the first one win, so the roles are known.
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "wisp-system");
    eventually("op-first to hold the Lease", WAIT, || async {
        let l = leases.get(&lease_name).await.map_err(|e| e.to_string())?;
        let holder = l.spec.and_then(|s| s.holder_identity);
        (holder.as_deref() == Some("op-first"))
            .then_some(())
            .ok_or(format!("{holder:?}"))
    })
    .await;
    let mut second = env.operator("op-second");

    env.create_app("one", json!({"image": "registry.example/one:1"}))
        .await;
    eventually("the Deployment of one", WAIT, || {
        env.get_json::<Deployment>("one")
    })
    .await;
    env.status_where("one", "a status", |s| !s["conditions"].is_null())
        .await;
    // Give the follower every chance to (wrongly) reconcile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(first.metric("wisp_operator_leader").await, 1.0);
    assert_eq!(second.metric("wisp_operator_leader").await, 0.0);
    assert!(first.metric("wisp_operator_reconciles_total").await >= 1.0);
    assert_eq!(
        second.metric("wisp_operator_reconciles_total").await,
        0.0,
        "{}",
        second.log()
    );

    // The leader stops: it releases the Lease and the follower takes over.
    assert_eq!(first.terminate(), Some(0), "{}", first.log());
    eventually("op-second to hold the Lease", WAIT, || async {
        let l = leases.get(&lease_name).await.map_err(|e| e.to_string())?;
        let spec = l.spec.unwrap_or_default();
        (spec.holder_identity.as_deref() == Some("op-second") && spec.lease_transitions == Some(1))
            .then_some(())
            .ok_or(format!("{spec:?}"))
    })
    .await;
    env.create_app("two", json!({"image": "registry.example/two:1"}))
        .await;
    eventually("the Deployment of two", WAIT, || {
        env.get_json::<Deployment>("two")
    })
    .await;
    assert_eq!(second.metric("wisp_operator_leader").await, 1.0);
    assert!(second.metric("wisp_operator_reconciles_total").await >= 1.0);
    assert!(second.alive());
    env.done().await;
}

#[tokio::test]
async fn deleting_the_app_deletes_what_it_owns() {
    let Some(env) = Env::new("gc").await else {
        return;
    };
    let _op = env.operator("op-a");
    env.create_app(
        "app",
        json!({"image": "registry.example/app:1", "host": "app.example.com"}),
    )
    .await;
    eventually("the Ingress", WAIT, || env.get_json::<Ingress>("app")).await;
    env.get_json::<Deployment>("app").await.unwrap();
    env.get_json::<Service>("app").await.unwrap();
    env.api::<WasmApp>()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    // The garbage collector (kube-controller-manager) follows the owner references.
    eventually("Deployment, Service and Ingress gone", WAIT, || async {
        let left: Vec<&str> = [
            (
                "Deployment",
                env.get_json::<Deployment>("app").await.is_ok(),
            ),
            ("Service", env.get_json::<Service>("app").await.is_ok()),
            ("Ingress", env.get_json::<Ingress>("app").await.is_ok()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        left.is_empty()
            .then_some(())
            .ok_or(format!("left: {left:?}"))
    })
    .await;
    env.done().await;
}

#[tokio::test]
async fn a_killed_leader_is_replaced_once_its_lease_expires() {
    let Some(env) = Env::new("expiry").await else {
        return;
    };
    let lease_name = format!("lease-{}", env.ns);
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "wisp-system");
    let holder = || async {
        let l = leases.get(&lease_name).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(l.spec.unwrap_or_default())
    };
    let mut first = env.operator("op-first");
    eventually("op-first to hold the Lease", WAIT, || async {
        let spec = holder().await?;
        (spec.holder_identity.as_deref() == Some("op-first"))
            .then_some(())
            .ok_or(format!("{spec:?}"))
    })
    .await;
    let second = env.operator("op-second");
    first.kill();
    let killed_at = std::time::Instant::now();
    // The Lease still names op-first; op-second may take it only after 3 s (--lease-duration).
    let spec = eventually("op-second to take the expired Lease", WAIT, || async {
        let spec = holder().await?;
        (spec.holder_identity.as_deref() == Some("op-second"))
            .then_some(spec.clone())
            .ok_or(format!("{spec:?}"))
    })
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_secs(2),
        "taken over too early: {:?}",
        killed_at.elapsed()
    );
    assert_eq!(spec.lease_transitions, Some(1));
    env.create_app("app", json!({"image": "registry.example/app:1"}))
        .await;
    eventually("the Deployment from op-second", WAIT, || {
        env.get_json::<Deployment>("app")
    })
    .await;
    assert_eq!(second.metric("wisp_operator_leader").await, 1.0);
    env.done().await;
}
