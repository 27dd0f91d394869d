//! Frame pipeline: resize. Shrinks a P6 or P5 frame (body or `?file=`) by
//! `?factor=` (1-64, default 2): each output pixel is the rounded mean of a
//! factor x factor box; edge pixels that don't fill a box are dropped.
use wisp_sdk::{Error, Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let k: usize = req.param_or("factor", 2)?;
        if !(1..=64).contains(&k) {
            return Err(Error::bad_request("factor must be between 1 and 64"));
        }
        let data = frame::input(&req)?;
        let (f, _) = frame::parse(&data)?;
        let (w, h, c) = (f.width / k, f.height / k, f.channels);
        if w == 0 || h == 0 {
            return Err(Error::bad_request(format!(
                "a {}x{} frame is smaller than the factor {k}",
                f.width, f.height
            )));
        }
        let area = (k * k) as u32;
        let out = frame::write(w, h, c, |px| {
            let mut acc = vec![0u32; w * c];
            for y in 0..h {
                acc.iter_mut().for_each(|a| *a = 0);
                for dy in 0..k {
                    let row = &f.pixels[(y * k + dy) * f.width * c..][..w * k * c];
                    for x in 0..w {
                        for dx in 0..k {
                            let s = &row[(x * k + dx) * c..][..c];
                            for ch in 0..c {
                                acc[x * c + ch] += s[ch] as u32;
                            }
                        }
                    }
                }
                for (d, a) in px[y * w * c..(y + 1) * w * c].iter_mut().zip(&acc) {
                    *d = ((a + area / 2) / area) as u8;
                }
            }
        });
        Ok(Response::bytes(frame::content_type(c), out))
    });
}
