//! The action contract: how a Wasm command module is an OpenWhisk action.
//!
//! - **In**: the parameters as one JSON object on stdin, with the CGI
//!   variables of a `POST` of `application/json` (so `wisp_sdk::json`, which
//!   reads its input from the request body, is the way to write one), plus
//!   the activation context as `__OW_*` variables.
//! - **Out**: one JSON object on stdout, optionally after a CGI header block
//!   (what `wisp_sdk::json` writes). An object with an `error` field is an
//!   *application error*, and so is a CGI status outside 2xx (what
//!   `wisp_sdk::json` answers when the handler returns `Err`): its body
//!   becomes the `error`. Anything else on stdout (not JSON, not an object)
//!   is an *action developer error*, as are traps, non-zero exits and
//!   timeouts.
//! - **Log**: stderr.
//!
//! Used by the runtime proxy ([`crate::proxy`]) and, later, by the
//! controller API's invokes and sequences, so both judge results the same
//! way.

use bytes::Bytes;
use serde_json::{Map, Value};
use wisp_core::cgi::{CgiRequest, build_cgi_env, parse_cgi_response};
use wisp_runtime::{Output, RunError};

/// The message OpenWhisk's own runtimes give when the result isn't an object.
pub const NOT_A_DICTIONARY: &str = "The action did not return a dictionary.";

/// How an activation ended, in OpenWhisk's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `response.status` "success": the result object.
    Success(Map<String, Value>),
    /// "application error": the result object (it has an `error` field).
    ApplicationError(Map<String, Value>),
    /// "action developer error": the action broke the contract or failed.
    DeveloperError(String),
}

impl Outcome {
    /// `response.status` of the activation record.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Success(_) => "success",
            Outcome::ApplicationError(_) => "application error",
            Outcome::DeveloperError(_) => "action developer error",
        }
    }

    /// `response.statusCode` (0 success, 1 application, 2 developer error).
    pub fn status_code(&self) -> u8 {
        match self {
            Outcome::Success(_) => 0,
            Outcome::ApplicationError(_) => 1,
            Outcome::DeveloperError(_) => 2,
        }
    }

    /// `response.result`: the object, or `{"error": message}`.
    pub fn result(&self) -> Value {
        match self {
            Outcome::Success(m) | Outcome::ApplicationError(m) => Value::Object(m.clone()),
            Outcome::DeveloperError(e) => serde_json::json!({ "error": e }),
        }
    }
}

/// The guest's stdin and environment for one activation.
pub struct Input {
    /// The parameters, serialized: the guest's stdin.
    pub stdin: Bytes,
    /// CGI variables, then `env` (the action's own), then the `__OW_*` context.
    pub env: Vec<(String, String)>,
}

/// Build an activation's input. `context` is every field of the activation
/// context (`namespace`, `action_name`, `activation_id`, `deadline`, …),
/// each becoming `__OW_<FIELD>` (strings as they are, other values as JSON).
pub fn input(
    action: &str,
    params: &Map<String, Value>,
    env: &[(String, String)],
    context: &Map<String, Value>,
) -> Input {
    let stdin = Bytes::from(serde_json::to_vec(params).expect("a JSON map serializes"));
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    let req = CgiRequest {
        method: "POST",
        path_info: "",
        query: "",
        headers: &headers,
        content_length: stdin.len(),
        function: action,
        server_name: "localhost",
        server_port: 8080,
        remote_addr: "127.0.0.1",
    };
    let mut own: Vec<(String, String)> = env.to_vec();
    for (k, v) in context {
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Null => continue,
            other => other.to_string(),
        };
        own.push((format!("__OW_{}", k.to_ascii_uppercase()), v));
    }
    Input {
        stdin,
        env: build_cgi_env(&req, &own),
    }
}

/// Judge a finished run.
pub fn outcome(result: &Result<Output, RunError>) -> Outcome {
    let out = match result {
        Ok(out) => out,
        Err(e) => return Outcome::DeveloperError(developer_error(e)),
    };
    let resp = parse_cgi_response(out.stdout.clone());
    let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
    if !(200..300).contains(&resp.status) {
        // wisp_sdk::json's answer to a handler's Err: status + message.
        let error = match body {
            Some(Value::Object(mut m)) if m.contains_key("error") => {
                return Outcome::ApplicationError(std::mem::take(&mut m));
            }
            Some(v) => v,
            None => Value::String(String::from_utf8_lossy(&resp.body).trim().to_string()),
        };
        let mut m = Map::new();
        m.insert("error".into(), error);
        return Outcome::ApplicationError(m);
    }
    match body {
        Some(Value::Object(m)) if m.contains_key("error") => Outcome::ApplicationError(m),
        Some(Value::Object(m)) => Outcome::Success(m),
        _ => Outcome::DeveloperError(NOT_A_DICTIONARY.into()),
    }
}

/// The message for a failed run, in words an action author can act on.
fn developer_error(e: &RunError) -> String {
    match e {
        RunError::Timeout(d, _) => format!(
            "The action exceeded its time limit of {} milliseconds.",
            d.as_millis()
        ),
        RunError::Trap(m, _) => format!("The action trapped: {m}"),
        RunError::Exit(code, _) => format!("The action exited with status {code}."),
        RunError::ResponseTooLarge(n, _) => {
            format!("The action's result exceeded the {n}-byte limit.")
        }
        other => format!("The action could not run: {other}"),
    }
}

/// The guest's stderr (its log), from a success or a failure.
pub fn log(result: &Result<Output, RunError>) -> &[u8] {
    let out = match result {
        Ok(out) => Some(out),
        Err(
            RunError::Timeout(_, o)
            | RunError::Trap(_, o)
            | RunError::Exit(_, o)
            | RunError::ResponseTooLarge(_, o),
        ) => o.as_deref(),
        Err(_) => None,
    };
    out.map(|o| &o.stderr[..]).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn ran(stdout: &str) -> Result<Output, RunError> {
        Ok(Output {
            stdout: Bytes::from(stdout.to_string()),
            stderr: Bytes::from_static(b"a log line\n"),
            stderr_truncated: false,
            instantiate: Duration::ZERO,
            run: Duration::ZERO,
            started: std::time::Instant::now(),
            teardown: None,
        })
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn results_are_judged_as_openwhisk_does() {
        assert_eq!(
            outcome(&ran(r#"{"a":1}"#)),
            Outcome::Success(obj(json!({"a": 1})))
        );
        // After wisp_sdk::json's CGI header block.
        assert_eq!(
            outcome(&ran("Content-Type: application/json\n\n{\"b\":[1]}\n")),
            Outcome::Success(obj(json!({"b": [1]})))
        );
        assert_eq!(
            outcome(&ran(r#"{"error":"nope"}"#)),
            Outcome::ApplicationError(obj(json!({"error": "nope"})))
        );
        // wisp_sdk's Err: a status and a text message.
        let e = outcome(&ran(
            "Status: 400 Bad Request\nContent-Type: text/plain\n\nn is too large\n",
        ));
        assert_eq!(
            e,
            Outcome::ApplicationError(obj(json!({"error": "n is too large"})))
        );
        assert_eq!((e.status(), e.status_code()), ("application error", 1));
        for bad in ["[1,2]", "42", "not json", ""] {
            assert_eq!(
                outcome(&ran(bad)),
                Outcome::DeveloperError(NOT_A_DICTIONARY.into()),
                "{bad:?}"
            );
        }
        let t = outcome(&Err(RunError::Timeout(Duration::from_millis(300), None)));
        assert_eq!(t.status_code(), 2);
        assert!(
            t.result()["error"]
                .as_str()
                .unwrap()
                .contains("300 milliseconds")
        );
        assert_eq!(log(&ran("{}")), b"a log line\n");
    }

    #[test]
    fn the_context_becomes_ow_variables_and_params_go_on_stdin() {
        let params = obj(json!({"name": "Ünïcödé", "n": 3}));
        let ctx = obj(json!({
            "namespace": "guest",
            "action_name": "/guest/hello",
            "deadline": 1700000000000u64,
            "api_key": null,
        }));
        let inp = input("hello", &params, &[("K".into(), "v".into())], &ctx);
        let back: Value = serde_json::from_slice(&inp.stdin).unwrap();
        assert_eq!(back, Value::Object(params));
        let get = |k: &str| {
            inp.env
                .iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("__OW_NAMESPACE"), Some("guest"));
        assert_eq!(get("__OW_ACTION_NAME"), Some("/guest/hello"));
        assert_eq!(get("__OW_DEADLINE"), Some("1700000000000"));
        assert_eq!(get("__OW_API_KEY"), None, "null fields are left out");
        assert_eq!(get("K"), Some("v"));
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
        assert_eq!(get("CONTENT_TYPE"), Some("application/json"));
        assert_eq!(
            get("CONTENT_LENGTH"),
            Some(inp.stdin.len().to_string().as_str())
        );
    }
}
