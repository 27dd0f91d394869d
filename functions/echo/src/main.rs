//! Echo: answers the request it received as JSON — method, path, decoded query
//! parameters, headers (lower-case names), and the body (as UTF-8 text, invalid
//! sequences replaced; `body_len` is the exact byte count).
use serde_json::json;
use wisp_sdk::{Request, Response, serde_json};

fn main() {
    wisp_sdk::serve(|req: Request| {
        Ok(Response::json(&json!({
            "method": req.method,
            "path": req.path,
            "query": req.query,
            "headers": req.headers,
            "body": String::from_utf8_lossy(&req.body),
            "body_len": req.body.len(),
        })))
    });
}
