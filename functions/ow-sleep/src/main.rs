//! The I/O-bound action of the OpenWhisk executor study (WOW), as an
//! OpenWhisk action: `{"ms": N}` in, `{"slept_ms": N}` out after sleeping
//! N ms (default 300; through WASI `poll_oneoff` in Wasm), a stand-in for
//! a remote call.
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    ms: Option<u64>,
}

fn main() {
    wisp_sdk::json(|i: Input| {
        let ms = i.ms.unwrap_or(300);
        if ms > 60_000 {
            return Err(wisp_sdk::Error::bad_request(format!(
                "ms={ms}: at most 60000"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
        Ok(serde_json::json!({ "slept_ms": ms }))
    });
}
