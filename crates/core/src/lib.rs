//! Shared types of Wisp: function specs, limits, capabilities, activation
//! records and error kinds.
//!
//! This crate does no I/O: it also holds the pure translations every edge
//! shares (CGI in [`cgi`], deploy bodies in [`deploy`]), so they can be
//! tested and fuzzed without an engine. Every other crate speaks in these types; the JSON
//! shapes here are the public API shapes of the management endpoints.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

pub mod cgi;
pub mod deploy;
pub mod outbound;
pub mod units;

/// Default memory limit per instance: 128 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 128 << 20;
/// Default wall-clock timeout per invocation: 10 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Default cap on a response body (stdout): 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 16 << 20;
/// Default cap on a request body: 16 MiB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 << 20;
/// Default cap on the captured log (stderr) per activation: 64 KiB.
pub const DEFAULT_MAX_LOG_BYTES: u64 = 64 << 10;
/// Default number of instances of one function running at once.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 100;
/// Default number of requests that may wait for a free slot.
pub const DEFAULT_MAX_QUEUE: u32 = 1000;
/// Default longest time a request waits in the queue before a 503.
pub const DEFAULT_QUEUE_TIMEOUT_MS: u64 = 5_000;

/// The namespace every function lives in unless another is named: what the
/// single space of a home from before namespaces became, and what the
/// admin token's unscoped routes (`/v1/functions`, `/fn/{name}`) use.
pub const DEFAULT_NAMESPACE: &str = "default";

fn default_namespace() -> String {
    DEFAULT_NAMESPACE.to_string()
}

/// Valid namespace names: 1–64 chars of `[a-zA-Z0-9_.@-]`, starting
/// alphanumeric (OpenWhisk's `whisk.system` and `user@example.com_dev`
/// styles fit). `_` alone is not a name: it means "the caller's namespace".
pub fn validate_namespace(ns: &str) -> Result<(), String> {
    let ok = !ns.is_empty()
        && ns.len() <= 64
        && ns.as_bytes()[0].is_ascii_alphanumeric()
        && ns
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid namespace {ns:?}: use 1-64 characters of [a-zA-Z0-9_.@-], starting with a letter or digit"
        ))
    }
}

/// Valid function names: 1–64 chars of `[a-zA-Z0-9_-]`, starting alphanumeric.
pub fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid function name {name:?}: use 1-64 characters of [a-zA-Z0-9_-], starting with a letter or digit"
        ))
    }
}

/// How a function talks to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Abi {
    /// A WASI preview 1 command module (`_start`), CGI/WAGI conventions.
    Command,
    /// A component exporting `wasi:http/incoming-handler` (the `wasi:http/proxy` world).
    Http,
}

impl Abi {
    /// Stable string form, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Abi::Command => "command",
            Abi::Http => "http",
        }
    }
    /// Parse the stored string form.
    pub fn parse(s: &str) -> Option<Abi> {
        match s {
            "command" => Some(Abi::Command),
            "http" => Some(Abi::Http),
            _ => None,
        }
    }
}

impl fmt::Display for Abi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resource limits of one function. Every field has a default; the JSON
/// form accepts any subset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory an instance may grow to, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock budget of one invocation, in milliseconds (504 past it).
    pub timeout_ms: u64,
    /// Largest response (stdout) in bytes.
    pub max_response_bytes: u64,
    /// Largest request body in bytes (413 past it).
    pub max_body_bytes: u64,
    /// Largest captured log (stderr) in bytes; the rest is dropped.
    pub max_log_bytes: u64,
    /// Instances of this function running at once.
    pub max_concurrency: u32,
    /// Requests allowed to wait for a slot (429 past it).
    pub max_queue: u32,
    /// Longest wait for a slot in milliseconds (503 past it).
    pub queue_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_log_bytes: DEFAULT_MAX_LOG_BYTES,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_queue: DEFAULT_MAX_QUEUE,
            queue_timeout_ms: DEFAULT_QUEUE_TIMEOUT_MS,
        }
    }
}

/// Hard ceiling on `memory_bytes` (the 32-bit Wasm address space).
pub const MAX_MEMORY_BYTES: u64 = 4 << 30;

impl Limits {
    /// The timeout as a `Duration`.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Check the limits are usable: every field has a lower and an upper
    /// bound (see [`BOUNDS`]); the message names the field and its bound.
    pub fn validate(&self) -> Result<(), String> {
        let values = [
            self.memory_bytes,
            self.timeout_ms,
            self.max_response_bytes,
            self.max_body_bytes,
            self.max_log_bytes,
            self.max_concurrency as u64,
            self.max_queue as u64,
            self.queue_timeout_ms,
        ];
        for (b, v) in BOUNDS.iter().zip(values) {
            if v < b.min || v > b.max {
                return Err(format!(
                    "limits.{} must be between {} and {}, got {v}",
                    b.field, b.min, b.max
                ));
            }
        }
        Ok(())
    }
}

/// The allowed range of one limit.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// Config key under `limits`.
    pub field: &'static str,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
}

/// Bounds of every limit, in the order of [`Limits`]' fields. The upper
/// bounds keep one function from asking the node for more than it can give:
/// buffers are held in host memory (response, body, log), and a log row must
/// stay far below SQLite's 1 GB string limit.
pub const BOUNDS: [Bound; 8] = [
    Bound {
        field: "memory_bytes",
        min: 64 << 10,
        max: MAX_MEMORY_BYTES,
    },
    Bound {
        field: "timeout_ms",
        min: 1,
        max: 15 * 60 * 1000,
    },
    Bound {
        field: "max_response_bytes",
        min: 1,
        max: 256 << 20,
    },
    Bound {
        field: "max_body_bytes",
        min: 0,
        max: 256 << 20,
    },
    Bound {
        field: "max_log_bytes",
        min: 0,
        max: 1 << 20,
    },
    Bound {
        field: "max_concurrency",
        min: 1,
        max: 10_000,
    },
    Bound {
        field: "max_queue",
        min: 0,
        max: 100_000,
    },
    Bound {
        field: "queue_timeout_ms",
        min: 0,
        max: 5 * 60 * 1000,
    },
];

/// Most env vars one function may set.
pub const MAX_ENV_VARS: usize = 256;
/// Most bytes of env names and values together.
pub const MAX_ENV_BYTES: usize = 64 << 10;
/// Most directory grants.
pub const MAX_DIRS: usize = 32;
/// Most outbound allow-list entries.
pub const MAX_OUTBOUND_HOSTS: usize = 64;

/// A host directory granted to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Absolute path on the host.
    pub host: String,
    /// Path the guest sees (e.g. `/data`).
    pub guest: String,
    /// Read-only when true.
    #[serde(default)]
    pub read_only: bool,
}

impl DirGrant {
    /// Parse the CLI form `HOST:GUEST[:ro|:rw]`, or `wasmtime run`'s
    /// `HOST::GUEST[:ro|:rw]`.
    pub fn parse(spec: &str) -> Result<DirGrant, String> {
        let parts: Vec<&str> = match spec.split_once("::") {
            Some((h, rest)) => std::iter::once(h).chain(rest.split(':')).collect(),
            None => spec.split(':').collect(),
        };
        let (host, guest, ro) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            _ => {
                return Err(format!(
                    "invalid dir grant {spec:?}: expected HOST:GUEST[:ro|:rw] or HOST::GUEST"
                ));
            }
        };
        if host.is_empty() || guest.is_empty() {
            return Err(format!("invalid dir grant {spec:?}: empty path"));
        }
        Ok(DirGrant {
            host: host.into(),
            guest: guest.into(),
            read_only: ro,
        })
    }
}

/// What a function may see and do beyond its own memory. Nothing by default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionConfig {
    /// Environment variables set for every invocation.
    pub env: BTreeMap<String, String>,
    /// Preopened directories.
    pub dirs: Vec<DirGrant>,
    /// Resource limits.
    pub limits: Limits,
    /// Hosts the function may call over HTTP (Spin syntax, see [`outbound`]).
    /// Empty: no outbound access.
    pub allowed_outbound_hosts: Vec<String>,
    /// Not served on the public invoke routes (`/fn/...`, `/ns/{ns}/fn/...`),
    /// only through authenticated APIs (an OpenWhisk action that is not a
    /// web action). Default false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub private: bool,
}

impl FunctionConfig {
    /// Validate everything a deploy can check without touching the module
    /// or the file system (where a grant may point is the executor's call).
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        if self.env.len() > MAX_ENV_VARS {
            return Err(format!(
                "env has {} variables; the limit is {MAX_ENV_VARS}",
                self.env.len()
            ));
        }
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if env_bytes > MAX_ENV_BYTES {
            return Err(format!(
                "env holds {env_bytes} bytes; the limit is {MAX_ENV_BYTES}"
            ));
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(format!(
                    "invalid env var {k:?}: names may not be empty or hold '=' or NUL, values may not hold NUL"
                ));
            }
        }
        if self.allowed_outbound_hosts.len() > MAX_OUTBOUND_HOSTS {
            return Err(format!(
                "allowed_outbound_hosts has {} entries; the limit is {MAX_OUTBOUND_HOSTS}",
                self.allowed_outbound_hosts.len()
            ));
        }
        outbound::AllowList::parse(&self.allowed_outbound_hosts)?;
        if self.dirs.len() > MAX_DIRS {
            return Err(format!(
                "dirs has {} grants; the limit is {MAX_DIRS}",
                self.dirs.len()
            ));
        }
        for d in &self.dirs {
            if !d.host.starts_with('/') {
                return Err(format!(
                    "dir grant host path must be absolute: {:?}",
                    d.host
                ));
            }
            if !d.guest.starts_with('/') {
                return Err(format!(
                    "dir grant guest path must be absolute: {:?}",
                    d.guest
                ));
            }
            if d.host.contains('\0') || d.guest.contains('\0') {
                return Err("dir grant paths may not hold NUL".into());
            }
        }
        Ok(())
    }
}

/// One immutable deployed version of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionVersion {
    /// The namespace the function belongs to.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Function name.
    pub name: String,
    /// Version number, 1-based, increasing per name.
    pub version: u32,
    /// `sha256:<hex>` of the module bytes.
    pub digest: String,
    /// ABI of the module.
    pub abi: Abi,
    /// Capabilities and limits.
    pub config: FunctionConfig,
    /// Size of the uploaded module in bytes.
    pub wasm_size: u64,
    /// Size of the precompiled artifact in bytes.
    pub compiled_size: u64,
    /// Time spent compiling at deploy, in milliseconds.
    pub compile_ms: f64,
    /// Creation time, Unix milliseconds.
    pub created_ms: i64,
    /// Set when the stored version can't be served as it is (its config or
    /// ABI no longer parses): why. A broken version is never run with
    /// defaults in place of what was stored; it answers 503 until
    /// redeployed or rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken: Option<String>,
    /// Set when the module was pulled from an OCI registry (`oci://REF`
    /// deploys): the reference and the manifest digest it resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciSource>,
    /// What the API that deployed this version keeps with it (for an
    /// OpenWhisk action: its kind, parameters, annotations, limits and
    /// semantic version), versioned with the module and config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// Where an OCI-deployed version's module came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OciSource {
    /// The reference, fully qualified, e.g. `ghcr.io/acme/hello:v1`.
    #[schema(example = "ghcr.io/acme/hello:v1")]
    pub reference: String,
    /// `sha256:<hex>` of the image manifest the reference resolved to at
    /// deploy time (pull `REF@DIGEST` to get the same bytes again).
    pub digest: String,
}

/// A function as listed: its active version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionInfo {
    /// Function name.
    pub name: String,
    /// Currently active version.
    #[serde(flatten)]
    pub active: FunctionVersion,
    /// All version numbers kept for this name.
    pub versions: Vec<u32>,
}

/// Outcome of one invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivationStatus {
    /// The guest answered (whatever HTTP status it chose).
    Success,
    /// The guest exited non-zero or trapped.
    Error,
    /// The guest ran past its deadline.
    Timeout,
    /// Refused before running (queue full, queue wait too long, pool full).
    Rejected,
    /// The client went away before its answer was complete; whatever was
    /// running for it was stopped and its slots released.
    Cancelled,
}

impl ActivationStatus {
    /// Every status, in a stable order (metrics).
    pub const ALL: [ActivationStatus; 5] = [
        ActivationStatus::Success,
        ActivationStatus::Error,
        ActivationStatus::Timeout,
        ActivationStatus::Rejected,
        ActivationStatus::Cancelled,
    ];
    /// Stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationStatus::Success => "success",
            ActivationStatus::Error => "error",
            ActivationStatus::Timeout => "timeout",
            ActivationStatus::Rejected => "rejected",
            ActivationStatus::Cancelled => "cancelled",
        }
    }
    /// Parse the stored string form.
    pub fn parse(s: &str) -> ActivationStatus {
        match s {
            "success" => ActivationStatus::Success,
            "timeout" => ActivationStatus::Timeout,
            "rejected" => ActivationStatus::Rejected,
            "cancelled" => ActivationStatus::Cancelled,
            _ => ActivationStatus::Error,
        }
    }
}

/// The record of one invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Activation {
    /// 32 hex chars.
    pub id: String,
    /// The namespace of the function.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Function name.
    pub function: String,
    /// Version that ran.
    pub version: u32,
    /// Start, Unix milliseconds.
    pub start_ms: i64,
    /// Time spent waiting for a concurrency slot, µs.
    pub wait_us: u64,
    /// Time spent loading the function (0 when warm), µs.
    pub init_us: u64,
    /// Instantiate + run time, µs.
    pub run_us: u64,
    /// Outcome.
    pub status: ActivationStatus,
    /// HTTP status sent to the client.
    pub http_status: u16,
    /// Whether the function had to be loaded for this request.
    pub cold: bool,
    /// Request body size.
    pub bytes_in: u64,
    /// Response body size.
    pub bytes_out: u64,
    /// Short error description when status is not success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Captured stderr (capped); omitted in listings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// The JSON result of a JSON call (an OpenWhisk action's result
    /// object); omitted in listings and for HTTP invocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// What the API that made the call records with it (OpenWhisk: the
    /// response status, annotations, cause, the action's version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<serde_json::Value>,
}

/// Why an invocation failed, as seen by clients. Each kind maps to one HTTP
/// status and one stable `code` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Unknown function.
    NotFound,
    /// Bad request (malformed module, bad config, bad name).
    BadRequest,
    /// Request body over the function's limit.
    PayloadTooLarge,
    /// The function's wait queue is full.
    TooManyRequests,
    /// No slot became free in time, or the instance pool is exhausted.
    Unavailable,
    /// The guest ran past its deadline.
    Timeout,
    /// The guest trapped (incl. stack overflow, out of memory abort).
    Trap,
    /// The guest exited with a non-zero status.
    Exit,
    /// The guest wrote more than its response limit.
    ResponseTooLarge,
    /// Missing or wrong bearer token.
    Unauthorized,
    /// Not allowed for this caller (a foreign `Host` or `Origin`).
    Forbidden,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. no earlier version to roll back to).
    Conflict,
    /// A bug or I/O failure on the host side.
    Internal,
}

impl ErrorKind {
    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "not_found",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::TooManyRequests => "too_many_requests",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Trap => "trap",
            ErrorKind::Exit => "nonzero_exit",
            ErrorKind::ResponseTooLarge => "response_too_large",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
        }
    }
    /// HTTP status for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::NotFound => 404,
            ErrorKind::BadRequest => 400,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::TooManyRequests => 429,
            ErrorKind::Unavailable => 503,
            ErrorKind::Timeout => 504,
            ErrorKind::Trap | ErrorKind::Exit | ErrorKind::ResponseTooLarge => 500,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::Internal => 500,
        }
    }
    /// All kinds, for metrics.
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::NotFound,
        ErrorKind::BadRequest,
        ErrorKind::PayloadTooLarge,
        ErrorKind::TooManyRequests,
        ErrorKind::Unavailable,
        ErrorKind::Timeout,
        ErrorKind::Trap,
        ErrorKind::Exit,
        ErrorKind::ResponseTooLarge,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Conflict,
        ErrorKind::Internal,
    ];
}

/// `sha256:<hex>` digest string of some bytes' hex digest.
pub fn digest_string(hex: &str) -> String {
    format!("sha256:{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("hello-world_2").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a/b").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn dir_grants() {
        let g = DirGrant::parse("/tmp/x:/data:ro").unwrap();
        assert_eq!(
            g,
            DirGrant {
                host: "/tmp/x".into(),
                guest: "/data".into(),
                read_only: true
            }
        );
        assert!(!DirGrant::parse("/a:/b").unwrap().read_only);
        let w = DirGrant::parse("/a::/b").unwrap();
        assert_eq!(
            (w.host.as_str(), w.guest.as_str(), w.read_only),
            ("/a", "/b", false)
        );
        assert!(DirGrant::parse("/a::/b:ro").unwrap().read_only);
        assert!(DirGrant::parse("/a::").is_err());
        assert!(DirGrant::parse("/a").is_err());
        assert!(DirGrant::parse("/a:/b:xx").is_err());
    }

    #[test]
    fn config_json_defaults_and_unknown_fields() {
        let c: FunctionConfig = serde_json::from_str(r#"{"limits":{"timeout_ms":500}}"#).unwrap();
        assert_eq!(c.limits.timeout_ms, 500);
        assert_eq!(c.limits.memory_bytes, DEFAULT_MEMORY_BYTES);
        assert!(serde_json::from_str::<FunctionConfig>(r#"{"limit":{}}"#).is_err());
        let bad = FunctionConfig {
            limits: Limits {
                memory_bytes: 8 << 30,
                ..Limits::default()
            },
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().contains("memory_bytes"));
    }

    #[test]
    fn every_limit_has_an_upper_bound_named_in_the_error() {
        let set = |f: &str, v: u64| {
            let mut l = serde_json::to_value(Limits::default()).unwrap();
            l[f] = v.into();
            serde_json::from_value::<Limits>(l).unwrap()
        };
        for b in BOUNDS {
            let over = set(b.field, b.max + 1);
            let e = over.validate().unwrap_err();
            assert!(e.contains(b.field) && e.contains(&b.max.to_string()), "{e}");
            assert!(
                set(b.field, b.max).validate().is_ok(),
                "{} at its max",
                b.field
            );
        }
        assert!(Limits::default().validate().is_ok());
    }

    #[test]
    fn env_and_list_sizes_are_bounded() {
        let mut c = FunctionConfig::default();
        for i in 0..=MAX_ENV_VARS {
            c.env.insert(format!("K{i}"), "v".into());
        }
        assert!(c.validate().unwrap_err().contains("env has"));
        let mut c = FunctionConfig::default();
        c.env.insert("BIG".into(), "x".repeat(MAX_ENV_BYTES));
        assert!(c.validate().unwrap_err().contains("bytes"));
        let mut c = FunctionConfig::default();
        c.env.insert("K".into(), "a\0b".into());
        assert!(c.validate().is_err());
    }
}
