//! Frame pipeline: edge filter. The 3x3 Sobel operator on a P5 frame (a P6
//! frame is taken to gray with the same luma as `frame-gray`), magnitude
//! `|gx| + |gy|` clamped to 255, border pixels 0; answers P5.
use wisp_sdk::{Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let data = frame::input(&req)?;
        let (f, _) = frame::parse(&data)?;
        let (w, h) = (f.width, f.height);
        let gray: std::borrow::Cow<'_, [u8]> = if f.channels == 1 {
            f.pixels.into()
        } else {
            f.pixels
                .chunks_exact(3)
                .map(|s| frame::luma(s[0], s[1], s[2]))
                .collect::<Vec<u8>>()
                .into()
        };
        let out = frame::write(w, h, 1, |px| {
            if w < 3 || h < 3 {
                return;
            }
            for y in 1..h - 1 {
                let (a, b, c) = (
                    &gray[(y - 1) * w..y * w],
                    &gray[y * w..(y + 1) * w],
                    &gray[(y + 1) * w..(y + 2) * w],
                );
                let dst = &mut px[y * w..(y + 1) * w];
                for x in 1..w - 1 {
                    let p = |r: &[u8], i: usize| r[i] as i32;
                    let gx = p(a, x + 1) + 2 * p(b, x + 1) + p(c, x + 1)
                        - p(a, x - 1)
                        - 2 * p(b, x - 1)
                        - p(c, x - 1);
                    let gy = p(c, x - 1) + 2 * p(c, x) + p(c, x + 1)
                        - p(a, x - 1)
                        - 2 * p(a, x)
                        - p(a, x + 1);
                    dst[x] = (gx.abs() + gy.abs()).min(255) as u8;
                }
            }
        });
        Ok(Response::bytes(frame::PGM, out))
    });
}
