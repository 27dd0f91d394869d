//! Integration tests of wisp-operator. `operator` runs the real binary against
//! a real kube-apiserver 1.20 (scripts/k8s-local, started once per run and
//! stopped at exit if this run started it); `manifests` checks deploy/.

mod manifests;
mod operator;
mod support;
