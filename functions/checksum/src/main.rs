//! MD5, SHA-256 and SHA-512 of the request body, or of `?file=` (a path in a
//! granted directory, e.g. `/data/files/sample-01.bin`). `?algo=md5,sha256`
//! restricts the algorithms (default: all three). Answers JSON.
use md5::Md5;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256, Sha512};
use wisp_sdk::{Error, Request, Response};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let (source, data) = match req.param("file").filter(|f| !f.is_empty()) {
            Some(path) => (path.to_string(), wisp_sdk::fs::read(path)?),
            None => ("body".to_string(), req.body.clone()),
        };
        let algos = req
            .param("algo")
            .filter(|a| !a.is_empty())
            .unwrap_or("md5,sha256,sha512");
        let mut out = Map::new();
        out.insert("source".into(), json!(source));
        out.insert("bytes".into(), json!(data.len()));
        for algo in algos.split(',') {
            let digest = match algo {
                "md5" => hex(&Md5::digest(&data)),
                "sha256" => hex(&Sha256::digest(&data)),
                "sha512" => hex(&Sha512::digest(&data)),
                other => {
                    return Err(Error::bad_request(format!(
                        "unknown algo {other:?} (use md5, sha256, sha512)"
                    )));
                }
            };
            out.insert(algo.to_string(), Value::String(digest));
        }
        Ok(Response::json(&out))
    });
}
