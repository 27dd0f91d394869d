//! The CPU-bound action of the OpenWhisk executor study (WOW), as an
//! OpenWhisk action: `{"iterations": N, "input": "text"}` in (parameters
//! on stdin, `wisp_sdk::json`), `{"digest": hex, "iterations": N}` out.
//! The work is `hash`'s: BLAKE3 over `input` repeated `iterations` times.
use serde::Deserialize;

#[derive(Deserialize)]
struct Input {
    iterations: Option<u64>,
    input: Option<String>,
}

fn main() {
    wisp_sdk::json(|i: Input| {
        let iterations = i.iterations.unwrap_or(1000);
        let input = i.input.unwrap_or_else(|| "Hello World".into());
        let mut hasher = blake3::Hasher::new();
        for _ in 0..iterations {
            hasher.update(std::hint::black_box(input.as_bytes()));
        }
        Ok(serde_json::json!({
            "digest": hasher.finalize().to_hex().as_str(),
            "iterations": iterations,
        }))
    });
}
