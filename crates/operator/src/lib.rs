//! `wisp-operator`: runs Wisp applications on Kubernetes.
//!
//! A `WasmApp` custom resource ([`crd`]) is checked ([`validate`]) and turned
//! into a Deployment whose pods use RuntimeClass `wisp` (containerd runs them
//! with `containerd-shim-wisp-v1`), a Service, and when asked an Ingress and a
//! HorizontalPodAutoscaler ([`resources`]), all server-side applied and owned
//! by the app. [`controller`] reconciles; [`leader`] makes sure only one of
//! several replicas does; [`metrics`] serves Prometheus counters.
//!
//! Left out on purpose: talking to Wisp nodes (the shim does the running),
//! pulling images (the kubelet and containerd do), and any admission webhook
//! (an invalid spec is reported in the status instead).

pub mod controller;
pub mod crd;
pub mod leader;
pub mod metrics;
pub mod resources;
pub mod validate;

pub use crd::{WasmApp, WasmAppSpec, WasmAppStatus};
