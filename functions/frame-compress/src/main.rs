//! Frame pipeline: compression. zlib (RFC 1950) of the body or `?file=`,
//! at `?level=` 0-10 (default 6), as `application/zlib`; the input's size
//! is in `X-Uncompressed-Length`.
use wisp_sdk::{Error, Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let level: u8 = req.param_or("level", 6)?;
        if level > 10 {
            return Err(Error::bad_request("level must be between 0 and 10"));
        }
        let data = frame::input(&req)?;
        let out = miniz_oxide::deflate::compress_to_vec_zlib(&data, level);
        Ok(Response::bytes("application/zlib", out).header("X-Uncompressed-Length", data.len()))
    });
}
