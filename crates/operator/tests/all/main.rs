//! Integration tests of wisp-operator against a real API server (scripts/k8s-local).
