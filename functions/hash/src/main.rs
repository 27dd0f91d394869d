//! BLAKE3 over `input` repeated `iterations` times (streamed, no big buffer).
//! `input` is the request body when there is one, else `?input=` (default
//! "Hello World"). Answers the 64-digit hex digest.
use wisp_sdk::{Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let iterations: u64 = req.param_or("iterations", 1000)?;
        let input: Vec<u8> = if req.body.is_empty() {
            req.param("input")
                .unwrap_or("Hello World")
                .as_bytes()
                .to_vec()
        } else {
            req.body
        };
        let mut hasher = blake3::Hasher::new();
        for _ in 0..iterations {
            hasher.update(std::hint::black_box(&input));
        }
        Ok(Response::text(format!("{}\n", hasher.finalize().to_hex())))
    });
}
