//! The objects a `WasmApp` becomes, built from a validated [`Plan`]. Pure; no I/O.
//!
//! Each builder returns the whole object the operator server-side-applies: the
//! fields it sets are the fields it owns (field manager [`FIELD_MANAGER`]); fields
//! others set (the HPA's `replicas`, defaults the API server fills in) stay theirs.

use crate::crd::WasmApp;
use crate::validate::Plan;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecretKeySelector, SecretVolumeSource, Service, ServicePort, ServiceSpec,
    TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use std::collections::BTreeMap;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "wisp-operator";
/// RuntimeClass of the pods: containerd runs them with `containerd-shim-wisp-v1`.
pub const RUNTIME_CLASS: &str = "wisp";
/// Name of the container in the pod.
pub const CONTAINER: &str = "app";
/// Port of the Service (and of the Ingress backend).
pub const SERVICE_PORT: i32 = 80;
/// Label selecting an app's pods.
pub const APP_LABEL: &str = "wisp.dev/app";
/// Pods metric the HPA reads for `targetConcurrency`.
pub const CONCURRENCY_METRIC: &str = "wisp_requests_in_flight";

/// Env: the address the shim's HTTP server listens on (`0.0.0.0:PORT`).
pub const ENV_LISTEN: &str = "WISP_LISTEN";
/// Env: comma-separated outbound hosts (the shim's name for `allowedOutboundHosts`).
pub const ENV_ALLOW_OUTBOUND: &str = "WISP_ALLOW_OUTBOUND";
/// Env: memory limit in bytes (the shim also reads the container's memory limit).
pub const ENV_MEMORY: &str = "WISP_MEMORY";
/// Env: request timeout in milliseconds.
pub const ENV_TIMEOUT: &str = "WISP_TIMEOUT";
/// Env: most requests in flight per replica.
pub const ENV_MAX_CONCURRENCY: &str = "WISP_MAX_CONCURRENCY";

/// Labels on every object of an app and on its pods.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (APP_LABEL.to_string(), name.to_string()),
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            FIELD_MANAGER.to_string(),
        ),
    ])
}

/// The pod selector of an app.
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(APP_LABEL.to_string(), name.to_string())])
}

fn meta(app: &WasmApp, plan: &Plan) -> ObjectMeta {
    ObjectMeta {
        name: Some(plan.name.clone()),
        namespace: app.metadata.namespace.clone(),
        labels: Some(labels(&plan.name)),
        owner_references: app.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

/// The Deployment: pods of RuntimeClass `wisp` running `spec.image`.
pub fn deployment(app: &WasmApp, plan: &Plan) -> Deployment {
    let spec = &plan.spec;
    let limits = spec.limits.clone().unwrap_or_default();

    let mut vars = vec![env(ENV_LISTEN, format!("0.0.0.0:{}", plan.port))];
    if !spec.allowed_outbound_hosts.is_empty() {
        vars.push(env(
            ENV_ALLOW_OUTBOUND,
            spec.allowed_outbound_hosts.join(","),
        ));
    }
    if let Some(b) = plan.memory_bytes {
        vars.push(env(ENV_MEMORY, b.to_string()));
    }
    if let Some(ms) = plan.timeout_ms {
        vars.push(env(ENV_TIMEOUT, ms.to_string()));
    }
    if let Some(c) = limits.concurrency {
        vars.push(env(ENV_MAX_CONCURRENCY, c.to_string()));
    }
    for e in &spec.env {
        let from = e.value_from.as_ref().map(|f| EnvVarSource {
            secret_key_ref: f.secret_key_ref.as_ref().map(|r| SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: None,
            }),
            config_map_key_ref: f.config_map_key_ref.as_ref().map(|r| ConfigMapKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: None,
            }),
            ..EnvVarSource::default()
        });
        vars.push(EnvVar {
            name: e.name.clone(),
            value: e.value.clone(),
            value_from: from,
        });
    }

    let mut resources = BTreeMap::new();
    if let Some(m) = &limits.memory {
        resources.insert("memory".to_string(), Quantity(m.clone()));
    }
    if let Some(c) = &limits.cpu {
        resources.insert("cpu".to_string(), Quantity(c.clone()));
    }
    let resources = (!resources.is_empty()).then(|| ResourceRequirements {
        limits: Some(resources.clone()),
        requests: Some(resources),
        ..ResourceRequirements::default()
    });

    let mounts: Vec<VolumeMount> = spec
        .volumes
        .iter()
        .map(|v| VolumeMount {
            name: v.name.clone(),
            mount_path: v.path.clone(),
            read_only: v.read_only.then_some(true),
            ..VolumeMount::default()
        })
        .collect();
    let volumes: Vec<Volume> = spec
        .volumes
        .iter()
        .map(|v| {
            let mut vol = Volume {
                name: v.name.clone(),
                ..Volume::default()
            };
            if let Some(cm) = &v.config_map {
                vol.config_map = Some(ConfigMapVolumeSource {
                    name: cm.clone(),
                    ..ConfigMapVolumeSource::default()
                });
            } else if let Some(s) = &v.secret {
                vol.secret = Some(SecretVolumeSource {
                    secret_name: Some(s.clone()),
                    ..SecretVolumeSource::default()
                });
            } else if let Some(c) = &v.persistent_volume_claim {
                vol.persistent_volume_claim = Some(PersistentVolumeClaimVolumeSource {
                    claim_name: c.clone(),
                    read_only: v.read_only.then_some(true),
                });
            } else {
                vol.empty_dir = Some(EmptyDirVolumeSource::default());
            }
            vol
        })
        .collect();

    let container = Container {
        name: CONTAINER.to_string(),
        image: Some(spec.image.clone()),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: plan.port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        env: Some(vars),
        resources,
        volume_mounts: (!mounts.is_empty()).then_some(mounts),
        // The shim listens in the pod's network namespace, so the kubelet's TCP probe works.
        // Every second: the kubelet (1.20) probes a new container at its next tick, and a
        // Wasm pod serves within milliseconds of starting, so a longer period is how long a
        // new replica waits for traffic (5 s made it 2.5 s on average; wisp bench --scenario
        // k8s). A TCP connect is all a probe costs the shim.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::String("http".to_string()),
                host: None,
            }),
            period_seconds: Some(1),
            ..Probe::default()
        }),
        ..Container::default()
    };

    Deployment {
        metadata: meta(app, plan),
        spec: Some(DeploymentSpec {
            replicas: plan.replicas,
            selector: LabelSelector {
                match_labels: Some(selector(&plan.name)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&plan.name)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    runtime_class_name: Some(RUNTIME_CLASS.to_string()),
                    // A guest has no use for the Kubernetes API or for Docker-link variables.
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    containers: vec![container],
                    volumes: (!volumes.is_empty()).then_some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The Service: port 80 → the container's `http` port.
pub fn service(app: &WasmApp, plan: &Plan) -> Service {
    Service {
        metadata: meta(app, plan),
        spec: Some(ServiceSpec {
            selector: Some(selector(&plan.name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// The Ingress (networking.k8s.io/v1) when `spec.host` is set.
pub fn ingress(app: &WasmApp, plan: &Plan) -> Option<Ingress> {
    let host = plan.spec.host.clone()?;
    Some(Ingress {
        metadata: meta(app, plan),
        spec: Some(IngressSpec {
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_string()),
                        path_type: "Prefix".to_string(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: plan.name.clone(),
                                port: Some(ServiceBackendPort {
                                    number: Some(SERVICE_PORT),
                                    name: None,
                                }),
                            }),
                            resource: None,
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        status: None,
    })
}

/// The HPA when `spec.autoscaling` is set, in autoscaling/v2's shape, which
/// autoscaling/v2beta2 (all a 1.20 server has) shares field for field; the
/// controller sets `apiVersion` to the version the server serves.
pub fn hpa(app: &WasmApp, plan: &Plan) -> Option<HorizontalPodAutoscaler> {
    let a = plan.spec.autoscaling.as_ref()?;
    let mut metrics = Vec::new();
    if let Some(p) = a.target_cpu_utilization_percentage {
        metrics.push(MetricSpec {
            type_: "Resource".to_string(),
            resource: Some(ResourceMetricSource {
                name: "cpu".to_string(),
                target: MetricTarget {
                    type_: "Utilization".to_string(),
                    average_utilization: Some(p),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    if let Some(c) = a.target_concurrency {
        metrics.push(MetricSpec {
            type_: "Pods".to_string(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: CONCURRENCY_METRIC.to_string(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".to_string(),
                    average_value: Some(Quantity(c.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    Some(HorizontalPodAutoscaler {
        metadata: meta(app, plan),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".to_string()),
                kind: "Deployment".to_string(),
                name: plan.name.clone(),
            },
            min_replicas: Some(a.min_replicas.unwrap_or(1)),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::plan;
    use serde_json::json;

    fn app(spec: serde_json::Value) -> WasmApp {
        let mut a: WasmApp = serde_json::from_value(json!({
            "apiVersion": "wisp.dev/v1alpha1",
            "kind": "WasmApp",
            "metadata": {"name": "hello", "namespace": "ns", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap();
        a.metadata.generation = Some(1);
        a
    }

    #[test]
    fn deployment_from_a_full_spec() {
        let a = app(json!({
            "image": "registry.example/hello:1",
            "replicas": 3,
            "port": 3000,
            "env": [
                {"name": "GREETING", "value": "hi"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            ],
            "limits": {"memory": "64Mi", "timeout": "2s", "concurrency": 8},
            "allowedOutboundHosts": ["https://api.example", "http://b.example:8080"],
            "volumes": [{"name": "cfg", "path": "/etc/app", "readOnly": true, "configMap": "cfg"}],
        }));
        let d = deployment(&a, &plan(&a).unwrap());
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "WasmApp");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(v["spec"]["replicas"], 3);
        assert_eq!(
            v["spec"]["selector"],
            json!({"matchLabels": {"wisp.dev/app": "hello"}})
        );
        let pod = &v["spec"]["template"]["spec"];
        assert_eq!(pod["runtimeClassName"], "wisp");
        assert_eq!(pod["automountServiceAccountToken"], false);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example/hello:1");
        assert_eq!(c["ports"][0]["containerPort"], 3000);
        assert_eq!(
            c["readinessProbe"],
            json!({"tcpSocket": {"port": "http"}, "periodSeconds": 1})
        );
        assert_eq!(
            c["env"],
            json!([
                {"name": "WISP_LISTEN", "value": "0.0.0.0:3000"},
                {"name": "WISP_ALLOW_OUTBOUND", "value": "https://api.example,http://b.example:8080"},
                {"name": "WISP_MEMORY", "value": "67108864"},
                {"name": "WISP_TIMEOUT", "value": "2000"},
                {"name": "WISP_MAX_CONCURRENCY", "value": "8"},
                {"name": "GREETING", "value": "hi"},
                {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            ])
        );
        assert_eq!(
            c["resources"],
            json!({"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}})
        );
        assert_eq!(
            c["volumeMounts"],
            json!([{"name": "cfg", "mountPath": "/etc/app", "readOnly": true}])
        );
        assert_eq!(
            pod["volumes"],
            json!([{"name": "cfg", "configMap": {"name": "cfg"}}])
        );
    }

    #[test]
    fn autoscaled_app_leaves_replicas_to_the_hpa() {
        let a = app(json!({
            "image": "hello",
            "limits": {"cpu": "250m"},
            "autoscaling": {"maxReplicas": 5, "targetCPUUtilizationPercentage": 70, "targetConcurrency": 20},
            "host": "hello.example",
        }));
        let p = plan(&a).unwrap();
        let d = serde_json::to_value(deployment(&a, &p)).unwrap();
        assert!(d["spec"].get("replicas").is_none(), "{d}");
        let h = serde_json::to_value(hpa(&a, &p).unwrap()).unwrap();
        assert_eq!(h["spec"]["minReplicas"], 1);
        assert_eq!(h["spec"]["maxReplicas"], 5);
        assert_eq!(h["spec"]["scaleTargetRef"]["name"], "hello");
        assert_eq!(
            h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            70
        );
        assert_eq!(
            h["spec"]["metrics"][1]["pods"]["metric"]["name"],
            CONCURRENCY_METRIC
        );
        let i = serde_json::to_value(ingress(&a, &p).unwrap()).unwrap();
        assert_eq!(i["spec"]["rules"][0]["host"], "hello.example");
        assert_eq!(
            i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"],
            json!({"name": "hello", "port": {"number": 80}})
        );
    }

    #[test]
    fn no_ingress_or_hpa_unless_asked() {
        let a = app(json!({"image": "hello"}));
        let p = plan(&a).unwrap();
        assert!(ingress(&a, &p).is_none());
        assert!(hpa(&a, &p).is_none());
        let s = serde_json::to_value(service(&a, &p)).unwrap();
        assert_eq!(
            s["spec"]["ports"],
            json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"}])
        );
    }
}
