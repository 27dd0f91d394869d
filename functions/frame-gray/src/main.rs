//! Frame pipeline: grayscale. A P6 frame (body or `?file=`) becomes P5 with
//! the integer BT.601 luma `(77 R + 150 G + 29 B) >> 8`; a P5 frame passes
//! through unchanged.
use wisp_sdk::{Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let data = frame::input(&req)?;
        let (f, _) = frame::parse(&data)?;
        let out = frame::write(f.width, f.height, 1, |px| {
            if f.channels == 1 {
                px.copy_from_slice(f.pixels);
            } else {
                for (d, s) in px.iter_mut().zip(f.pixels.chunks_exact(3)) {
                    *d = frame::luma(s[0], s[1], s[2]);
                }
            }
        });
        Ok(Response::bytes(frame::PGM, out))
    });
}
