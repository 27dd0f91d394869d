//! The definition as written: serde types for YAML and JSON, and [`parse`].
//!
//! ```yaml
//! description: frames to a summary
//! timeout_ms: 30000            # the whole run (default 60 s)
//! steps:
//!   - name: decode
//!     function: frame-decode   # the active version, or pin one:
//!     version: 3               #   version: N  or  digest: sha256:<hex>
//!                              # inputs default to the workflow input
//!   - name: gray
//!     function: frame-gray
//!     inputs: decode           # one step's output (or a list)
//!   - name: edges
//!     function: frame-edges
//!     inputs: gray
//!     limits: { timeout_ms: 2000, memory_bytes: 64MiB }
//!   - name: summary
//!     function: frame-summary
//!     inputs: [gray, edges]    # fan-in, merged by `merge` (default concat)
//!     query: "label=frame"
//! output: summary              # default: the one step nothing reads
//! ```

use crate::Invalid;
use serde::{Deserialize, Deserializer, Serialize};
use wisp_core::Abi;

/// The workflow's own input, as a step input.
pub const INPUT: &str = "$input";

/// Largest definition accepted, in bytes.
pub const MAX_DEFINITION_BYTES: usize = 256 << 10;

/// Default workflow-wide timeout: 60 s.
pub const DEFAULT_TIMEOUT_MS: u64 = 60_000;

/// A workflow: a DAG of steps, each a function call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// What it does, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Wall-clock budget of a whole run, in milliseconds (1 ms – 15 min;
    /// default 60 s). Past it every running step is stopped and the run
    /// answers 504.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// The steps, in any order (the inputs decide the order of execution).
    pub steps: Vec<Step>,
    /// The step whose output is the run's answer. Default: the one step
    /// whose output no other step reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// One step: a call of a deployed function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// 1-64 characters of `[a-zA-Z0-9_-]`, starting with a letter or digit;
    /// unique in the workflow.
    pub name: String,
    /// The function to call (its active version unless pinned).
    pub function: String,
    /// Pin a version of the function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// Pin the version of the function whose module has this digest
    /// (`sha256:<64 hex>`; the newest such version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The kind of function this step expects (`command` or `http`); a
    /// function of the other kind fails validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub abi: Option<Abi>,
    /// Where the request body comes from: `$input` (the workflow's input)
    /// and/or step names. A string or a list; default `[$input]`; `[]` is an
    /// empty body.
    #[serde(
        default = "default_inputs",
        deserialize_with = "one_or_many",
        skip_serializing_if = "is_default_inputs"
    )]
    pub inputs: Vec<String>,
    /// How several inputs become one body (see [`Merge`]).
    #[serde(default, skip_serializing_if = "Merge::is_default")]
    pub merge: Merge,
    /// The step's query string (`QUERY_STRING`, without `?`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub query: String,
    /// The sub-path the function sees (`PATH_INFO`; "" or starting with `/`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Lower the function's own limits for this step.
    #[serde(default, skip_serializing_if = "StepLimits::is_empty")]
    pub limits: StepLimits,
    /// Read the one input step's response body as it is produced, instead
    /// of after that step has ended. Both must be `wasi:http` components.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

fn default_inputs() -> Vec<String> {
    vec![INPUT.to_string()]
}

fn is_default_inputs(v: &[String]) -> bool {
    v.len() == 1 && v[0] == INPUT
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// How a step with several inputs gets one body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Merge {
    /// The inputs' bytes one after the other, in the order listed.
    #[default]
    Concat,
    /// One JSON object with a member per input, in the order listed: the key
    /// is the input's name (`$input` or the step's), the value that input's
    /// JSON text exactly as produced (surrounding whitespace trimmed). An
    /// input that is not JSON fails the step.
    Json,
}

impl Merge {
    fn is_default(&self) -> bool {
        *self == Merge::Concat
    }
}

/// Per-step limits: each, when set, must be within the platform's bounds and
/// no higher than the function's own limit (a workflow can only tighten).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct StepLimits {
    /// Wall-clock budget of the step, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Largest linear memory, bytes (a number, or a size like `64MiB`).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "size_opt")]
    #[schema(value_type = Option<u64>)]
    pub memory_bytes: Option<u64>,
    /// Largest output, bytes (a number, or a size like `4MiB`).
    #[serde(skip_serializing_if = "Option::is_none", deserialize_with = "size_opt")]
    #[schema(value_type = Option<u64>)]
    pub max_response_bytes: Option<u64>,
}

impl StepLimits {
    fn is_empty(&self) -> bool {
        *self == StepLimits::default()
    }
}

fn size_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        N(u64),
        S(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::N(n)) => Ok(Some(n)),
        Some(Size::S(s)) => wisp_core::units::parse_size(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Parse a definition: JSON when its first non-blank byte is `{`, YAML
/// otherwise. Unknown fields are errors (a typo must not be ignored).
pub fn parse(text: &[u8]) -> Result<Workflow, Invalid> {
    if text.len() > MAX_DEFINITION_BYTES {
        return Err(Invalid::workflow(format!(
            "the definition is {} bytes; the limit is {MAX_DEFINITION_BYTES}",
            text.len()
        )));
    }
    let json = text
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if json {
        serde_json::from_slice(text)
            .map_err(|e| Invalid::workflow(format!("the definition is not valid JSON: {e}")))
    } else {
        let s = std::str::from_utf8(text)
            .map_err(|e| Invalid::workflow(format!("the definition is not UTF-8: {e}")))?;
        serde_yaml::from_str(s)
            .map_err(|e| Invalid::workflow(format!("the definition is not valid YAML: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_give_the_same_workflow() {
        let yaml = r#"
timeout_ms: 5000
steps:
  - name: a
    function: f
  - name: b
    function: g
    version: 2
    inputs: a
    limits: { memory_bytes: 64MiB, timeout_ms: 100 }
  - name: c
    function: h
    inputs: [a, b]
    merge: json
output: c
"#;
        let json = r#"{"timeout_ms":5000,"steps":[{"name":"a","function":"f"},
            {"name":"b","function":"g","version":2,"inputs":["a"],"limits":{"memory_bytes":67108864,"timeout_ms":100}},
            {"name":"c","function":"h","inputs":["a","b"],"merge":"json"}],"output":"c"}"#;
        let a = parse(yaml.as_bytes()).unwrap();
        let b = parse(json.as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.steps[0].inputs, vec![INPUT]);
        assert_eq!(a.steps[1].limits.memory_bytes, Some(64 << 20));
        assert_eq!(a.steps[2].merge, Merge::Json);
        // The canonical JSON form parses back to the same thing and leaves
        // defaults out.
        let canon = serde_json::to_string(&a).unwrap();
        assert!(!canon.contains("$input"), "{canon}");
        assert_eq!(parse(canon.as_bytes()).unwrap(), a);
    }

    #[test]
    fn typos_and_junk_are_errors_that_say_where() {
        let e = parse(b"steps:\n  - name: a\n    functon: f\n").unwrap_err();
        assert!(e.message.contains("functon"), "{e}");
        let e = parse(b"{\"steps\": [}").unwrap_err();
        assert!(
            e.message.starts_with("the definition is not valid JSON"),
            "{e}"
        );
        assert!(parse(b"\xff\xfe").is_err());
        assert!(parse(b"").is_err());
        let e = parse(&vec![b' '; MAX_DEFINITION_BYTES + 1]).unwrap_err();
        assert!(e.message.contains("limit"), "{e}");
        let e = parse(b"steps: []\nlimits: {memory_bytes: lots}").unwrap_err();
        assert!(e.message.contains("limits"), "{e}");
        let e =
            parse(b"steps:\n  - {name: a, function: f, limits: {memory_bytes: lots}}").unwrap_err();
        assert!(e.message.contains("lots"), "{e}");
    }

    #[test]
    fn empty_inputs_are_kept_apart_from_the_default() {
        let w = parse(b"steps:\n  - {name: a, function: f, inputs: []}").unwrap();
        assert!(w.steps[0].inputs.is_empty());
        let canon = serde_json::to_string(&w).unwrap();
        assert_eq!(parse(canon.as_bytes()).unwrap(), w);
    }
}
