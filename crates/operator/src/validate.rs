//! Checking a `WasmApp` and turning it into a [`Plan`]: the normalised values
//! the resource builders use. Pure; no I/O.
//!
//! Every error names the field (`spec.limits.memory`, `spec.env[2].name`) so the
//! `Degraded` condition tells the user what to fix.

use crate::crd::{Autoscaling, WasmApp, WasmAppSpec};
use std::fmt;

/// Default container port when `spec.port` is unset.
pub const DEFAULT_PORT: i32 = 8080;

/// Environment variables the operator sets itself; `spec.env` may not set them.
pub const RESERVED_ENV: &[&str] = &[
    crate::resources::ENV_LISTEN,
    crate::resources::ENV_ALLOW_OUTBOUND,
    crate::resources::ENV_MEMORY,
    crate::resources::ENV_TIMEOUT,
    crate::resources::ENV_MAX_CONCURRENCY,
];

/// An invalid field and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidSpec {
    /// JSON path of the field, e.g. `spec.limits.memory`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for InvalidSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for InvalidSpec {}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        message: message.into(),
    }
}

/// A valid `WasmApp`, normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The app's name (also the Deployment's, Service's, Ingress's and HPA's).
    pub name: String,
    /// The spec as written.
    pub spec: WasmAppSpec,
    /// Container port.
    pub port: i32,
    /// Fixed replicas; `None` when an HPA scales.
    pub replicas: Option<i32>,
    /// `limits.memory` in bytes.
    pub memory_bytes: Option<u64>,
    /// `limits.timeout` in milliseconds.
    pub timeout_ms: Option<u64>,
    /// Digest when `image` is pinned (`…@sha256:<hex>`).
    pub pinned_digest: Option<String>,
}

/// Check `app` and normalise it.
pub fn plan(app: &WasmApp) -> Result<Plan, InvalidSpec> {
    let name = app
        .metadata
        .name
        .clone()
        .ok_or_else(|| invalid("metadata.name", "missing"))?;
    // The Service takes the app's name, and Service names are DNS-1035 labels.
    if !is_dns1035_label(&name) {
        return Err(invalid(
            "metadata.name",
            format!(
                "'{name}' must be a DNS-1035 label (a-z, 0-9, '-', starting with a letter, at most 63 characters): it names the Service"
            ),
        ));
    }
    let spec = &app.spec;
    let pinned_digest = check_image(&spec.image)?;

    let port = spec.port.unwrap_or(DEFAULT_PORT);
    if !(1..=65535).contains(&port) {
        return Err(invalid(
            "spec.port",
            format!("{port} is not a port (1-65535)"),
        ));
    }

    let replicas = match (&spec.replicas, &spec.autoscaling) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "spec.replicas",
                "set either replicas or autoscaling, not both",
            ));
        }
        (Some(r), None) if *r < 0 => {
            return Err(invalid("spec.replicas", format!("{r} is negative")));
        }
        (Some(r), None) => Some(*r),
        (None, None) => Some(1),
        (None, Some(a)) => {
            check_autoscaling(a, spec)?;
            None
        }
    };

    let limits = spec.limits.clone().unwrap_or_default();
    let memory_bytes = match &limits.memory {
        Some(m) => Some(parse_quantity_bytes(m).filter(|b| *b > 0).ok_or_else(|| {
            invalid(
                "spec.limits.memory",
                format!("'{m}' is not a positive memory quantity (e.g. 128Mi, 1Gi, 500M)"),
            )
        })?),
        None => None,
    };
    if let Some(cpu) = &limits.cpu
        && !is_cpu_quantity(cpu)
    {
        return Err(invalid(
            "spec.limits.cpu",
            format!("'{cpu}' is not a positive CPU quantity (e.g. 250m, 1, 1.5)"),
        ));
    }
    let timeout_ms = match &limits.timeout {
        Some(t) => Some(parse_duration_ms(t).filter(|ms| *ms > 0).ok_or_else(|| {
            invalid(
                "spec.limits.timeout",
                format!("'{t}' is not a positive duration (e.g. 500ms, 30s, 2m)"),
            )
        })?),
        None => None,
    };
    if let Some(c) = limits.concurrency
        && c < 1
    {
        return Err(invalid(
            "spec.limits.concurrency",
            format!("{c} is below 1"),
        ));
    }

    let mut seen = std::collections::HashSet::new();
    for (i, e) in spec.env.iter().enumerate() {
        let field = format!("spec.env[{i}]");
        if !is_env_name(&e.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!(
                    "'{}' is not a valid variable name ([A-Za-z_][A-Za-z0-9_.-]*)",
                    e.name
                ),
            ));
        }
        if RESERVED_ENV.contains(&e.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("{} is set by the operator from the spec", e.name),
            ));
        }
        if !seen.insert(e.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("{} is set twice", e.name),
            ));
        }
        match (&e.value, &e.value_from) {
            (Some(_), Some(_)) => {
                return Err(invalid(field, "set either value or valueFrom, not both"));
            }
            (None, None) => return Err(invalid(field, "set value or valueFrom")),
            (None, Some(from)) => match (&from.secret_key_ref, &from.config_map_key_ref) {
                (Some(r), None) | (None, Some(r)) => {
                    if r.name.is_empty() || r.key.is_empty() {
                        return Err(invalid(
                            format!("{field}.valueFrom"),
                            "the reference needs a name and a key",
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        format!("{field}.valueFrom"),
                        "set exactly one of secretKeyRef and configMapKeyRef",
                    ));
                }
            },
            (Some(_), None) => {}
        }
    }

    for (i, h) in spec.allowed_outbound_hosts.iter().enumerate() {
        if h.is_empty() || h.contains(',') || h.chars().any(char::is_whitespace) {
            return Err(invalid(
                format!("spec.allowedOutboundHosts[{i}]"),
                format!("'{h}' must be non-empty, without commas or spaces"),
            ));
        }
    }

    let mut names = std::collections::HashSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let field = format!("spec.volumes[{i}]");
        if !is_dns1123_label(&v.name) {
            return Err(invalid(
                format!("{field}.name"),
                format!("'{}' must be a DNS label", v.name),
            ));
        }
        if !names.insert(v.name.as_str()) {
            return Err(invalid(
                format!("{field}.name"),
                format!("{} is used twice", v.name),
            ));
        }
        if !v.path.starts_with('/') {
            return Err(invalid(
                format!("{field}.path"),
                format!("'{}' is not absolute", v.path),
            ));
        }
        let sources = [
            v.config_map.is_some(),
            v.secret.is_some(),
            v.persistent_volume_claim.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            return Err(invalid(
                field,
                "set at most one of configMap, secret and persistentVolumeClaim",
            ));
        }
    }

    if let Some(host) = &spec.host
        && !is_host(host)
    {
        return Err(invalid(
            "spec.host",
            format!("'{host}' is not a lower-case DNS name (a wildcard '*.' prefix is allowed)"),
        ));
    }

    Ok(Plan {
        name,
        spec: spec.clone(),
        port,
        replicas,
        memory_bytes,
        timeout_ms,
        pinned_digest,
    })
}

fn check_autoscaling(a: &Autoscaling, spec: &WasmAppSpec) -> Result<(), InvalidSpec> {
    let min = a.min_replicas.unwrap_or(1);
    if min < 1 {
        return Err(invalid(
            "spec.autoscaling.minReplicas",
            format!("{min} is below 1"),
        ));
    }
    if a.max_replicas < min {
        return Err(invalid(
            "spec.autoscaling.maxReplicas",
            format!("{} is below minReplicas ({min})", a.max_replicas),
        ));
    }
    match (a.target_cpu_utilization_percentage, a.target_concurrency) {
        (None, None) => {
            return Err(invalid(
                "spec.autoscaling",
                "set targetCPUUtilizationPercentage or targetConcurrency",
            ));
        }
        (Some(p), _) if p < 1 => {
            return Err(invalid(
                "spec.autoscaling.targetCPUUtilizationPercentage",
                format!("{p} is below 1"),
            ));
        }
        (_, Some(c)) if c < 1 => {
            return Err(invalid(
                "spec.autoscaling.targetConcurrency",
                format!("{c} is below 1"),
            ));
        }
        _ => {}
    }
    if a.target_cpu_utilization_percentage.is_some()
        && spec.limits.as_ref().and_then(|l| l.cpu.as_ref()).is_none()
    {
        return Err(invalid(
            "spec.limits.cpu",
            "required with autoscaling.targetCPUUtilizationPercentage: utilisation is a percentage of it",
        ));
    }
    Ok(())
}

/// Check an OCI reference enough to catch typos; returns its digest if pinned.
fn check_image(image: &str) -> Result<Option<String>, InvalidSpec> {
    let bad = |why: &str| {
        invalid(
            "spec.image",
            format!("'{image}' is not an OCI reference: {why}"),
        )
    };
    if image.is_empty() {
        return Err(bad("empty"));
    }
    if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains whitespace"));
    }
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("the digest must be sha256:<64 hex digits>"))?;
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(bad("the digest must be sha256:<64 lower-case hex digits>"));
            }
            (n, Some(d.to_string()))
        }
        None => (image, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let repo = match name[last_slash..].rfind(':') {
        Some(i) => {
            let tag = &name[last_slash + i + 1..];
            if tag.is_empty()
                || tag.len() > 128
                || !tag
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            {
                return Err(bad(
                    "the tag must be [A-Za-z0-9_.-], at most 128 characters",
                ));
            }
            &name[..last_slash + i]
        }
        None => name,
    };
    let path = repo.split_once('/').map_or(repo, |(first, rest)| {
        // The first component is a registry when it has a '.' or ':' or is localhost.
        if first.contains('.') || first.contains(':') || first == "localhost" {
            rest
        } else {
            repo
        }
    });
    if path.is_empty()
        || path.split('/').any(|c| {
            c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
        })
    {
        return Err(bad(
            "the repository must be lower-case [a-z0-9._-] components separated by '/'",
        ));
    }
    Ok(digest)
}

/// Bytes of a Kubernetes memory quantity (`128Mi`, `1G`, `1048576`, `1.5Gi`).
pub fn parse_quantity_bytes(q: &str) -> Option<u64> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let (num, mult) = SUFFIXES
        .iter()
        .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
        .unwrap_or((q, 1.0));
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return None;
    }
    let v: f64 = num.parse().ok()?;
    let bytes = (v * mult).ceil();
    (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
}

fn is_cpu_quantity(q: &str) -> bool {
    let num = q.strip_suffix('m').unwrap_or(q);
    !num.is_empty()
        && num.chars().all(|c| c.is_ascii_digit() || c == '.')
        && num.parse::<f64>().is_ok_and(|v| v > 0.0)
}

/// Milliseconds of a duration written `250ms`, `30s`, `2m`, `1h`.
pub fn parse_duration_ms(d: &str) -> Option<u64> {
    let (num, mult) = [("ms", 1u64), ("s", 1000), ("m", 60_000), ("h", 3_600_000)]
        .iter()
        .find_map(|(s, m)| d.strip_suffix(s).map(|n| (n, *m)))?;
    if num.is_empty() || !num.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_env_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn is_host(s: &str) -> bool {
    let s = s.strip_prefix("*.").unwrap_or(s);
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{EnvSource, EnvVar, KeyRef, Limits, Volume};

    fn app(spec: WasmAppSpec) -> WasmApp {
        WasmApp::new("hello", spec)
    }

    fn spec() -> WasmAppSpec {
        serde_json::from_value(serde_json::json!({"image": "registry.example:5000/fns/hello:1.0"}))
            .unwrap()
    }

    fn field_of(s: WasmAppSpec) -> String {
        plan(&app(s)).unwrap_err().field
    }

    #[test]
    fn defaults() {
        let p = plan(&app(spec())).unwrap();
        assert_eq!(p.port, 8080);
        assert_eq!(p.replicas, Some(1));
        assert_eq!(p.memory_bytes, None);
        assert_eq!(p.pinned_digest, None);
    }

    #[test]
    fn quantities_and_durations() {
        assert_eq!(parse_quantity_bytes("128Mi"), Some(128 << 20));
        assert_eq!(parse_quantity_bytes("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_quantity_bytes("500M"), Some(500_000_000));
        assert_eq!(parse_quantity_bytes("4096"), Some(4096));
        assert_eq!(parse_quantity_bytes("lots"), None);
        assert_eq!(parse_quantity_bytes("Mi"), None);
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("30"), None);
        assert_eq!(parse_duration_ms("1.5s"), None);
    }

    #[test]
    fn images() {
        for ok in [
            "hello",
            "docker.io/library/hello:1",
            "localhost:5000/a/b-c_d.e:v1.2",
            "ghcr.io/x/y@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(check_image(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Hello/World", "a b", "x@sha256:12", "x:", "x@md5:00"] {
            assert!(check_image(bad).is_err(), "{bad}");
        }
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(
            check_image(&format!("r.io/a@{d}")).unwrap().as_deref(),
            Some(d)
        );
    }

    #[test]
    fn each_bad_field_is_named() {
        let mut s = spec();
        s.image = "Not An Image".into();
        assert_eq!(field_of(s), "spec.image");

        let mut s = spec();
        s.limits = Some(Limits {
            memory: Some("lots".into()),
            ..Default::default()
        });
        let e = plan(&app(s)).unwrap_err();
        assert_eq!(e.field, "spec.limits.memory");
        assert!(
            e.to_string().starts_with("spec.limits.memory: 'lots'"),
            "{e}"
        );

        let mut s = spec();
        s.limits = Some(Limits {
            timeout: Some("30".into()),
            ..Default::default()
        });
        assert_eq!(field_of(s), "spec.limits.timeout");

        let mut s = spec();
        s.limits = Some(Limits {
            concurrency: Some(0),
            ..Default::default()
        });
        assert_eq!(field_of(s), "spec.limits.concurrency");

        let mut s = spec();
        s.port = Some(70000);
        assert_eq!(field_of(s), "spec.port");

        let mut s = spec();
        s.replicas = Some(2);
        s.autoscaling = Some(Autoscaling {
            min_replicas: None,
            max_replicas: 3,
            target_cpu_utilization_percentage: None,
            target_concurrency: Some(10),
        });
        assert_eq!(field_of(s), "spec.replicas");

        let mut s = spec();
        s.autoscaling = Some(Autoscaling {
            min_replicas: Some(2),
            max_replicas: 5,
            target_cpu_utilization_percentage: Some(70),
            target_concurrency: None,
        });
        assert_eq!(field_of(s), "spec.limits.cpu");

        let mut s = spec();
        s.env = vec![
            EnvVar {
                name: "A".into(),
                value: Some("1".into()),
                value_from: None,
            },
            EnvVar {
                name: "WISP_LISTEN".into(),
                value: Some("x".into()),
                value_from: None,
            },
        ];
        assert_eq!(field_of(s), "spec.env[1].name");

        let mut s = spec();
        s.env = vec![EnvVar {
            name: "A".into(),
            value: None,
            value_from: Some(EnvSource {
                secret_key_ref: Some(KeyRef {
                    name: "s".into(),
                    key: "k".into(),
                }),
                config_map_key_ref: Some(KeyRef {
                    name: "c".into(),
                    key: "k".into(),
                }),
            }),
        }];
        assert_eq!(field_of(s), "spec.env[0].valueFrom");

        let mut s = spec();
        s.volumes = vec![Volume {
            name: "data".into(),
            path: "data".into(),
            read_only: false,
            config_map: None,
            secret: None,
            persistent_volume_claim: None,
        }];
        assert_eq!(field_of(s), "spec.volumes[0].path");

        let mut s = spec();
        s.allowed_outbound_hosts = vec!["a.example,b.example".into()];
        assert_eq!(field_of(s), "spec.allowedOutboundHosts[0]");

        let mut s = spec();
        s.host = Some("Bad_Host".into());
        assert_eq!(field_of(s), "spec.host");

        let mut a = app(spec());
        a.metadata.name = Some("1abc".into());
        assert_eq!(plan(&a).unwrap_err().field, "metadata.name");
    }
}
