//! Frame pipeline, last step: checksum and summary. For every PNM frame in
//! the body or `?file=` (a fan-in concatenates several), its format, size,
//! mean sample value (3 decimals) and SHA-256; then the bytes that follow the
//! last frame, and the SHA-256 of the whole input. Answers JSON.
use serde_json::json;
use sha2::{Digest, Sha256};
use wisp_sdk::{Request, Response};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let data = frame::input(&req)?;
        let (frames, trailing) = frame::frames(&data);
        let list: Vec<_> = frames
            .iter()
            .map(|f| {
                let sum: u64 = f.pixels.iter().map(|&p| p as u64).sum();
                let mean_milli = (sum * 1000 + f.pixels.len() as u64 / 2) / f.pixels.len() as u64;
                json!({
                    "format": f.magic(),
                    "width": f.width,
                    "height": f.height,
                    "bytes": f.pixels.len(),
                    "mean": format!("{}.{:03}", mean_milli / 1000, mean_milli % 1000),
                    "sha256": hex(&Sha256::digest(f.pixels)),
                })
            })
            .collect();
        Ok(Response::json(&json!({
            "frames": list,
            "trailing_bytes": trailing,
            "bytes": data.len(),
            "sha256": hex(&Sha256::digest(&data[..])),
        })))
    });
}
