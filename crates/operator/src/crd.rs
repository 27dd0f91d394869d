//! The `WasmApp` custom resource (`wisp.dev/v1alpha1`).
//!
//! The schema only fixes the shape (types, required fields). Everything else
//! (quantities, durations, ranges, which fields go together) is checked by
//! [`crate::validate`], so a bad value reaches the operator and is reported
//! as a `Degraded` condition naming the field, instead of a bare admission
//! error that `kubectl apply` prints once and nobody sees again.
//!
//! `deploy/crd.yaml` is generated from these types (`wisp-operator crd`); a
//! unit test fails when the two differ.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of Wisp's resources.
pub const GROUP: &str = "wisp.dev";
/// The only version so far.
pub const VERSION: &str = "v1alpha1";

/// A Wasm application: one image, run by the `wisp` RuntimeClass, behind a Service.
// clippy reads the repeated `type_ = "string"` inside different printcolumn(...) as duplicates.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "wisp.dev",
    version = "v1alpha1",
    kind = "WasmApp",
    namespaced,
    status = "WasmAppStatus",
    shortname = "wapp",
    category = "wisp",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Status",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Host",
        type_ = "string",
        json_path = ".spec.host",
        priority = "1"
    ),
    printcolumn(
        name = "Digest",
        type_ = "string",
        json_path = ".status.imageDigest",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WasmAppSpec {
    /// OCI reference of the Wasm image, e.g. `registry.example/hello:1.0` or `…@sha256:<hex>`.
    pub image: String,
    /// Fixed number of replicas (default 1). Not together with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Scale with a HorizontalPodAutoscaler instead of a fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Environment variables for the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Per-replica limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// Hosts the guest may call over HTTP (the `--allow-outbound` syntax of `wisp deploy`).
    /// Empty: no outbound access.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// Directories made visible to the guest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Port the guest's HTTP server listens on in the pod (default 8080). The Service
    /// exposes it as port 80.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Host name to route to the app through an Ingress. No Ingress when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Scaling bounds and the target the HPA keeps.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaling {
    /// Fewest replicas (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// Most replicas.
    pub max_replicas: i32,
    /// Target average CPU use, percent of `limits.cpu` (which is then required).
    #[serde(
        default,
        rename = "targetCPUUtilizationPercentage",
        skip_serializing_if = "Option::is_none"
    )]
    pub target_cpu_utilization_percentage: Option<i32>,
    /// Target average in-flight requests per replica: the pods metric
    /// `wisp_requests_in_flight`, which needs a custom-metrics adapter in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_concurrency: Option<i32>,
}

/// One environment variable: a literal `value` or `valueFrom` a Secret or ConfigMap key.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Literal value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Where to read the value from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvSource>,
}

/// Exactly one of the two key references.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnvSource {
    /// A key of a Secret in the app's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    /// A key of a ConfigMap in the app's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key in a named Secret or ConfigMap.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeyRef {
    /// The object's name.
    pub name: String,
    /// The key.
    pub key: String,
}

/// Per-replica limits. Unset fields keep the runtime's defaults.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Memory of the pod and the guest, a Kubernetes quantity (`128Mi`, `1Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// CPU of the pod, a Kubernetes quantity (`250m`, `1`); request and limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Longest a request may run: `500ms`, `30s`, `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Most requests one replica runs at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
}

/// A directory for the guest, backed by a Kubernetes volume: an empty directory
/// unless one of `configMap`, `secret` or `persistentVolumeClaim` is named.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Volume name (a DNS label).
    pub name: String,
    /// Absolute path of the directory inside the guest.
    pub path: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// Files of this ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<String>,
    /// Files of this Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// This PersistentVolumeClaim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
}

/// What the operator last saw.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WasmAppStatus {
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Replicas the Deployment wants (from `replicas` or the HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Replicas that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `sha256:<hex>` of the image the replicas run: from `image` when it is pinned
    /// by digest, else from the running pods' `imageID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
}

/// A condition in the shape of `metav1.Condition`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Progressing` or `Degraded`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word, e.g. `InvalidSpec`.
    pub reason: String,
    /// For people (may be empty).
    pub message: String,
    /// When `status` last changed (RFC 3339).
    pub last_transition_time: String,
    /// The generation the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl WasmAppStatus {
    /// The condition of this type, if any.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

/// The CRD as YAML, exactly as committed in `deploy/crd.yaml`.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    let crd = WasmApp::crd();
    format!(
        "# Generated by `wisp-operator crd` from crates/operator/src/crd.rs; do not edit.\n{}",
        serde_yaml::to_string(&crd).expect("a CRD serialises to YAML")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_crd_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crd.yaml");
        let committed = std::fs::read_to_string(path).expect("deploy/crd.yaml exists");
        assert!(
            committed == crd_yaml(),
            "deploy/crd.yaml is stale: regenerate it with\n    cargo run -p wisp-operator -- crd > deploy/crd.yaml"
        );
    }

    #[test]
    fn crd_has_status_subresource_and_printer_columns() {
        use kube::CustomResourceExt;
        let crd = WasmApp::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("wasmapps.wisp.dev"));
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().unwrap().status.is_some());
        let cols: Vec<_> = v
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            cols,
            [
                "Image", "Desired", "Ready", "Status", "Host", "Digest", "Age"
            ]
        );
    }
}
