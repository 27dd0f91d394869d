//! Shared types of Wisp: function specs, limits, capabilities, activation
//! records and error kinds.
//!
//! This crate does no I/O. Every other crate speaks in these types; the JSON
//! shapes here are the public API shapes of the management endpoints.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

    /// Check the limits are usable; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        if self.memory_bytes < 64 * 1024 || self.memory_bytes > MAX_MEMORY_BYTES {
            return Err(format!(
                "limits.memory_bytes must be between 64KiB and 4GiB, got {}",
                self.memory_bytes
            ));
        }
        if self.timeout_ms == 0 || self.timeout_ms > 15 * 60 * 1000 {
            return Err(format!(
                "limits.timeout_ms must be between 1 and 900000, got {}",
                self.timeout_ms
            ));
        }
        if self.max_concurrency == 0 || self.max_concurrency > 100_000 {
            return Err(format!(
                "limits.max_concurrency must be between 1 and 100000, got {}",
                self.max_concurrency
            ));
        }
        if self.max_response_bytes == 0 {
            return Err("limits.max_response_bytes must be > 0".into());
        }
        Ok(())
    }
}

/// A host directory granted to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Parse the CLI form `HOST:GUEST[:ro|:rw]`.
    pub fn parse(spec: &str) -> Result<DirGrant, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, guest, ro) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            _ => {
                return Err(format!(
                    "invalid dir grant {spec:?}: expected HOST:GUEST[:ro|:rw]"
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
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl FunctionConfig {
    /// Validate everything a deploy can check without touching the module.
    pub fn validate(&self) -> Result<(), String> {
        self.limits.validate()?;
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(format!("invalid env var name {k:?}"));
            }
        }
        outbound::AllowList::parse(&self.allowed_outbound_hosts)?;
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
        }
        Ok(())
    }
}

/// One immutable deployed version of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionVersion {
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
}

/// A function as listed: its active version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
}

impl ActivationStatus {
    /// Stable string form.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationStatus::Success => "success",
            ActivationStatus::Error => "error",
            ActivationStatus::Timeout => "timeout",
            ActivationStatus::Rejected => "rejected",
        }
    }
    /// Parse the stored string form.
    pub fn parse(s: &str) -> ActivationStatus {
        match s {
            "success" => ActivationStatus::Success,
            "timeout" => ActivationStatus::Timeout,
            "rejected" => ActivationStatus::Rejected,
            _ => ActivationStatus::Error,
        }
    }
}

/// The record of one invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    /// 32 hex chars.
    pub id: String,
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
            ErrorKind::Internal => 500,
        }
    }
    /// All kinds, for metrics.
    pub const ALL: [ErrorKind; 11] = [
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
}
