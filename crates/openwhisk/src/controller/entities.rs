//! OpenWhisk's entity fields and how they map onto Wisp: key-value lists,
//! semantic versions, fully qualified names, and an action's limits and
//! capability annotations turned into a [`FunctionConfig`].

use super::OwError;
use serde_json::{Map, Value, json};
use wisp_core::{DirGrant, FunctionConfig, Limits};

/// OpenWhisk's bounds on an action's limits (its defaults in a standard
/// deployment), and the Wisp limit each sets.
pub(crate) mod bounds {
    /// `limits.timeout`, milliseconds: `limits.timeout_ms`.
    pub const TIMEOUT_MS: (u64, u64, u64) = (100, 300_000, 60_000);
    /// `limits.memory`, MB: `limits.memory_bytes`.
    pub const MEMORY_MB: (u64, u64, u64) = (128, 512, 256);
    /// `limits.logs`, MB: `limits.max_log_bytes`, capped at Wisp's 1 MiB.
    pub const LOGS_MB: (u64, u64, u64) = (0, 10, 10);
    /// `limits.concurrency`: activations one container may run at once.
    /// Every Wisp activation has an instance of its own, so it is checked
    /// and kept, but never limits parallelism.
    pub const CONCURRENCY: (u64, u64, u64) = (1, 500, 1);
}

/// OpenWhisk's largest result: 1 MB.
pub(crate) const MAX_RESULT_BYTES: u64 = 1 << 20;

/// An action's limits as OpenWhisk shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwLimits {
    pub timeout: u64,
    pub memory: u64,
    pub logs: u64,
    pub concurrency: u64,
}

impl Default for OwLimits {
    fn default() -> Self {
        OwLimits {
            timeout: bounds::TIMEOUT_MS.2,
            memory: bounds::MEMORY_MB.2,
            logs: bounds::LOGS_MB.2,
            concurrency: bounds::CONCURRENCY.2,
        }
    }
}

impl OwLimits {
    pub(crate) fn json(&self) -> Value {
        json!({
            "timeout": self.timeout,
            "memory": self.memory,
            "logs": self.logs,
            "concurrency": self.concurrency,
        })
    }

    /// Read `limits` over `base`: absent fields keep `base`'s value. The
    /// errors are OpenWhisk's words (`requirement failed: duration 50
    /// milliseconds below allowed threshold of 100 milliseconds`).
    pub(crate) fn parse(v: Option<&Value>, base: OwLimits) -> Result<OwLimits, OwError> {
        let Some(v) = v else { return Ok(base) };
        let Some(m) = v.as_object() else {
            return Err(OwError::malformed("limits must be an object"));
        };
        let mut out = base;
        let num = |k: &str| -> Result<Option<u64>, OwError> {
            match m.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| OwError::malformed(format!("{k} limit must be whole number"))),
            }
        };
        let req = |ok: bool, msg: String| {
            if ok {
                Ok(())
            } else {
                Err(OwError::malformed(format!("requirement failed: {msg}")))
            }
        };
        if let Some(t) = num("timeout")? {
            let (lo, hi, _) = bounds::TIMEOUT_MS;
            req(
                t >= lo,
                format!("duration {t} milliseconds below allowed threshold of {lo} milliseconds"),
            )?;
            req(
                t <= hi,
                format!("duration {t} milliseconds exceeds allowed threshold of {hi} milliseconds"),
            )?;
            out.timeout = t;
        }
        if let Some(mb) = num("memory")? {
            let (lo, hi, _) = bounds::MEMORY_MB;
            req(
                mb >= lo,
                format!("memory {mb} MB below allowed threshold of {} B", lo << 20),
            )?;
            req(
                mb <= hi,
                format!("memory {mb} MB exceeds allowed threshold of {} B", hi << 20),
            )?;
            out.memory = mb;
        }
        if let Some(mb) = num("logs")? {
            let (lo, hi, _) = bounds::LOGS_MB;
            req(
                mb >= lo,
                format!("log size {mb} MB below allowed threshold of {} B", lo << 20),
            )?;
            req(
                mb <= hi,
                format!(
                    "log size {mb} MB exceeds allowed threshold of {} B",
                    hi << 20
                ),
            )?;
            out.logs = mb;
        }
        if let Some(c) = num("concurrency")? {
            let (lo, hi, _) = bounds::CONCURRENCY;
            req(
                c >= lo,
                format!("concurrency {c} below allowed threshold of {lo}"),
            )?;
            req(
                c <= hi,
                format!("concurrency {c} exceeds allowed threshold of {hi}"),
            )?;
            out.concurrency = c;
        }
        Ok(out)
    }

    /// From a stored OpenWhisk `limits` object, or Wisp's own limits for a
    /// function deployed through `/v1`.
    pub(crate) fn of(meta: Option<&Value>, wisp: &Limits) -> OwLimits {
        match meta.and_then(|m| m.get("limits")) {
            Some(l) => OwLimits::parse(Some(l), OwLimits::default()).unwrap_or_default(),
            None => OwLimits {
                timeout: wisp.timeout_ms,
                memory: wisp.memory_bytes >> 20,
                logs: wisp.max_log_bytes >> 20,
                concurrency: 1,
            },
        }
    }
}

/// `[{"key": k, "value": v}, ...]`, checked.
pub(crate) fn key_values(v: Option<&Value>, what: &str) -> Result<Vec<Value>, OwError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let Some(list) = v.as_array() else {
        return Err(OwError::malformed(format!(
            "{what} must be an array of key-value pairs"
        )));
    };
    for kv in list {
        if !kv.get("key").is_some_and(Value::is_string) || kv.get("value").is_none() {
            return Err(OwError::malformed(format!(
                "{what} must be an array of {{\"key\": string, \"value\": any}}"
            )));
        }
    }
    Ok(list.clone())
}

/// A key-value list as an object (later keys win).
pub(crate) fn kv_map(list: &[Value]) -> Map<String, Value> {
    list.iter()
        .filter_map(|kv| {
            Some((
                kv.get("key")?.as_str()?.to_string(),
                kv.get("value")?.clone(),
            ))
        })
        .collect()
}

/// The value of one key of a key-value list.
pub(crate) fn kv_get<'a>(list: &'a [Value], key: &str) -> Option<&'a Value> {
    list.iter()
        .rev()
        .find(|kv| kv.get("key").and_then(Value::as_str) == Some(key))
        .and_then(|kv| kv.get("value"))
}

/// `list` with `key` set to `value` (replacing it if present).
pub(crate) fn kv_set(mut list: Vec<Value>, key: &str, value: Value) -> Vec<Value> {
    list.retain(|kv| kv.get("key").and_then(Value::as_str) != Some(key));
    list.push(json!({ "key": key, "value": value }));
    list
}

/// `0.0.1` → `0.0.2` (OpenWhisk bumps the patch on every update).
pub(crate) fn up_patch(v: &str) -> String {
    let mut parts: Vec<u64> = v.split('.').filter_map(|p| p.parse().ok()).collect();
    parts.resize(3, 0);
    parts[2] += 1;
    format!("{}.{}.{}", parts[0], parts[1], parts[2])
}

/// OpenWhisk entity names: 1-256 characters, no `/` and no leading space
/// (Wisp functions are stricter: 1-64 of `[a-zA-Z0-9_-]`).
pub(crate) fn check_name(name: &str) -> Result<(), OwError> {
    wisp_core::validate_name(name).map_err(|m| {
        OwError::bad(format!(
            "The name of the entity contains illegal characters. ({m})"
        ))
    })
}

/// `/ns/name`, `ns/name` or `name` (in `default_ns`) → (namespace, name);
/// `_` is `default_ns`.
pub(crate) fn fqn(s: &str, default_ns: &str) -> Result<(String, String), OwError> {
    let parts: Vec<&str> = s.trim_start_matches('/').split('/').collect();
    let (ns, name) = match parts.as_slice() {
        [name] => (default_ns, *name),
        [ns, name] => (*ns, *name),
        _ => {
            return Err(OwError::bad(
                "The fully qualified name of the entity must contain at least the namespace and the name of the entity.",
            ));
        }
    };
    let ns = if ns == "_" { default_ns } else { ns };
    if name.is_empty() || ns.is_empty() {
        return Err(OwError::bad(
            "The name of the entity contains illegal characters.",
        ));
    }
    Ok((ns.to_string(), name.to_string()))
}

/// The Wisp config of an action: its limits, and the capabilities its
/// annotations grant (WOW's `dir` and `net_access`; `web-export` makes it
/// public on `/ns/{ns}/fn/{name}`). Dir grants are checked against the
/// server's `--allow-dir` roots at deploy.
pub(crate) fn config(limits: &OwLimits, annotations: &[Value]) -> Result<FunctionConfig, OwError> {
    let mut c = FunctionConfig {
        limits: Limits {
            timeout_ms: limits.timeout,
            memory_bytes: limits.memory << 20,
            max_log_bytes: (limits.logs << 20).min(wisp_core::BOUNDS[4].max),
            max_response_bytes: MAX_RESULT_BYTES,
            ..Limits::default()
        },
        private: !kv_get(annotations, "web-export").is_some_and(|v| v == &Value::Bool(true)),
        ..FunctionConfig::default()
    };
    match kv_get(annotations, "dir") {
        None | Some(Value::Null) => {}
        Some(Value::String(d)) if d.starts_with('/') => c.dirs.push(DirGrant {
            host: d.clone(),
            guest: d.clone(),
            read_only: false,
        }),
        Some(_) => {
            return Err(OwError::bad(
                "annotation dir must be an absolute host path (granted to the action at the same path)",
            ));
        }
    }
    match kv_get(annotations, "net_access") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => c.allowed_outbound_hosts = vec!["*://*:*".into()],
        Some(Value::Array(hosts)) if hosts.iter().all(Value::is_string) => {
            c.allowed_outbound_hosts = hosts
                .iter()
                .filter_map(|h| h.as_str().map(str::to_string))
                .collect();
        }
        Some(_) => {
            return Err(OwError::bad(
                "annotation net_access must be true, false, or a list of hosts in Spin's syntax (https://api.example.com)",
            ));
        }
    }
    c.validate().map_err(OwError::bad)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_with_openwhisk_words() {
        let base = OwLimits::default();
        let l = OwLimits::parse(Some(&json!({"timeout": 500, "memory": 128})), base).unwrap();
        assert_eq!(
            (l.timeout, l.memory, l.logs, l.concurrency),
            (500, 128, 10, 1)
        );
        let e = OwLimits::parse(Some(&json!({"timeout": 50})), base).unwrap_err();
        assert_eq!(
            e.error,
            "The request content was malformed:\nrequirement failed: duration 50 milliseconds below allowed threshold of 100 milliseconds"
        );
        let e = OwLimits::parse(Some(&json!({"memory": 1024})), base).unwrap_err();
        assert!(
            e.error
                .ends_with("memory 1024 MB exceeds allowed threshold of 536870912 B"),
            "{}",
            e.error
        );
        let e = OwLimits::parse(Some(&json!({"concurrency": 0})), base).unwrap_err();
        assert!(
            e.error
                .ends_with("concurrency 0 below allowed threshold of 1"),
            "{}",
            e.error
        );
        assert!(OwLimits::parse(Some(&json!({"logs": 11})), base).is_err());
        assert!(OwLimits::parse(Some(&json!({"timeout": "x"})), base).is_err());
    }

    #[test]
    fn annotations_become_grants() {
        let l = OwLimits::default();
        let c = config(
            &l,
            &[
                json!({"key": "dir", "value": "/tmp/x"}),
                json!({"key": "net_access", "value": true}),
            ],
        )
        .unwrap();
        assert_eq!(c.dirs[0].host, "/tmp/x");
        assert_eq!(c.dirs[0].guest, "/tmp/x");
        assert_eq!(c.allowed_outbound_hosts, ["*://*:*"]);
        assert!(c.private);
        assert_eq!(c.limits.memory_bytes, 256 << 20);
        assert_eq!(c.limits.max_log_bytes, 1 << 20);
        let web = config(&l, &[json!({"key": "web-export", "value": true})]).unwrap();
        assert!(!web.private && web.dirs.is_empty() && web.allowed_outbound_hosts.is_empty());
        assert!(config(&l, &[json!({"key": "dir", "value": "rel"})]).is_err());
        let hosts = config(
            &l,
            &[json!({"key": "net_access", "value": ["https://api.example.com"]})],
        )
        .unwrap();
        assert_eq!(hosts.allowed_outbound_hosts, ["https://api.example.com"]);
    }

    #[test]
    fn names_and_versions() {
        assert_eq!(fqn("/a/b", "x").unwrap(), ("a".into(), "b".into()));
        assert_eq!(fqn("_/b", "x").unwrap(), ("x".into(), "b".into()));
        assert_eq!(fqn("b", "x").unwrap(), ("x".into(), "b".into()));
        assert!(fqn("/a/p/b", "x").is_err());
        assert_eq!(up_patch("0.0.9"), "0.0.10");
        assert_eq!(up_patch("1.2"), "1.2.1");
        let kv = vec![json!({"key": "a", "value": 1})];
        assert_eq!(kv_map(&kv_set(kv, "a", json!(2)))["a"], 2);
    }
}
