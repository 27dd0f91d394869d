//! Test fixture for the OpenWhisk action contract, written with
//! `wisp_sdk::json` (the documented way to write an action). By default it
//! answers `{"params": <its input>, "context": {<every __OW_* variable>},
//! "env": {<every ACTION_* variable>}}`. Parameters change that:
//!
//! - `"log": "text"`    write `text` to stderr (the activation log) first
//! - `"error": v`       answer `{"error": v}` (an application error)
//! - `"fail": "msg"`    return `Err` (wisp_sdk answers a 400 with `msg`)
//! - `"trap": true`     abort (a trap)
//! - `"exit": n`        exit with status `n`
//! - `"sleep_ms": n`    sleep first
//! - `"array": true`    answer `[1, 2]` (not a dictionary)
//! - `"add": k`         answer `{"n": input.n + k}` (for sequences)
use serde_json::{Map, Value, json};

fn main() {
    wisp_sdk::json(|input: Map<String, Value>| {
        if let Some(Value::String(s)) = input.get("log") {
            eprintln!("{s}");
        }
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if input.get("trap") == Some(&Value::Bool(true)) {
            std::process::abort();
        }
        if let Some(code) = input.get("exit").and_then(Value::as_i64) {
            std::process::exit(code as i32);
        }
        if let Some(Value::String(msg)) = input.get("fail") {
            return Err(wisp_sdk::Error::bad_request(msg));
        }
        if let Some(e) = input.get("error") {
            return Ok(json!({ "error": e }));
        }
        if input.get("array") == Some(&Value::Bool(true)) {
            return Ok(json!([1, 2]));
        }
        if let Some(k) = input.get("add").and_then(Value::as_i64) {
            let n = input.get("n").and_then(Value::as_i64).unwrap_or(0);
            return Ok(json!({ "n": n + k }));
        }
        let pick = |prefix: &str| -> Map<String, Value> {
            std::env::vars()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k, Value::String(v)))
                .collect()
        };
        Ok(json!({
            "params": input,
            "context": pick("__OW_"),
            "env": pick("ACTION_"),
        }))
    });
}
