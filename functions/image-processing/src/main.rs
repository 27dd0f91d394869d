//! Image processing as in the 2023 suite (`imageprocessing`): decodes a PNG (the
//! request body, or `?file=` in a granted directory), inverts its colours,
//! resizes it to `?width=` × `?height=` (default 800 × 800, bilinear/triangle
//! filter), rotates it clockwise by `?angle=` degrees (default 45; the canvas
//! grows to fit, corners transparent, bilinear sampling) and encodes a PNG.
//! Answers the PNG, or writes it to `?out=` and answers a summary.
//! Only integer/IEEE arithmetic and `libm` are used, so native and Wasm output
//! are byte-identical.
use image::{ImageFormat, Rgba, RgbaImage, imageops};
use std::io::Cursor;
use wisp_sdk::{Error, Request, Response};

/// Rotates clockwise by `degrees` around the centre into a canvas that holds
/// the whole rotated image; bilinear sampling, transparent outside.
fn rotate(src: &RgbaImage, degrees: f64) -> RgbaImage {
    let theta = degrees.to_radians();
    let (s, c) = (libm::sin(theta), libm::cos(theta));
    let (w, h) = (src.width() as f64, src.height() as f64);
    let nw = ((w * c).abs() + (h * s).abs() - 1e-9).ceil().max(1.0) as u32;
    let nh = ((w * s).abs() + (h * c).abs() - 1e-9).ceil().max(1.0) as u32;
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (ncx, ncy) = (nw as f64 / 2.0, nh as f64 / 2.0);
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let px = |x: i64, y: i64| -> [f64; 4] {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            [0.0; 4]
        } else {
            let p = src.get_pixel(x as u32, y as u32).0;
            [p[0] as f64, p[1] as f64, p[2] as f64, p[3] as f64]
        }
    };
    RgbaImage::from_fn(nw, nh, |x, y| {
        let dx = x as f64 + 0.5 - ncx;
        let dy = y as f64 + 0.5 - ncy;
        // Inverse rotation maps the output pixel centre back into the source.
        let sx = c * dx + s * dy + cx - 0.5;
        let sy = -s * dx + c * dy + cy - 0.5;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let (p00, p10, p01, p11) = (
            px(x0, y0),
            px(x0 + 1, y0),
            px(x0, y0 + 1),
            px(x0 + 1, y0 + 1),
        );
        let mut out = [0u8; 4];
        for k in 0..4 {
            let top = p00[k] + (p10[k] - p00[k]) * fx;
            let bottom = p01[k] + (p11[k] - p01[k]) * fx;
            out[k] = (top + (bottom - top) * fy).round().clamp(0.0, 255.0) as u8;
        }
        Rgba(out)
    })
}

fn main() {
    wisp_sdk::serve(|req: Request| {
        let width: u32 = req.param_or("width", 800)?;
        let height: u32 = req.param_or("height", 800)?;
        let angle: f64 = req.param_or("angle", 45.0)?;
        if width == 0 || height == 0 || width > 8192 || height > 8192 || !angle.is_finite() {
            return Err(Error::bad_request(
                "width and height must be 1..=8192 and angle finite",
            ));
        }
        let data = match req.param("file").filter(|f| !f.is_empty()) {
            Some(path) => wisp_sdk::fs::read(path)?,
            None if !req.body.is_empty() => req.body.clone(),
            None => {
                return Err(Error::bad_request(
                    "no image: send a PNG as the request body or pass ?file= (a path in a granted directory)",
                ));
            }
        };
        let img = image::load_from_memory(&data)
            .map_err(|e| Error::bad_request(format!("decoding the image: {e}")))?;
        let (iw, ih) = (img.width(), img.height());
        let mut rgba = img.into_rgba8();
        imageops::invert(&mut rgba);
        let resized = imageops::resize(&rgba, width, height, imageops::FilterType::Triangle);
        let rotated = rotate(&resized, angle);
        let mut png = Cursor::new(Vec::new());
        rotated.write_to(&mut png, ImageFormat::Png)?;
        let png = png.into_inner();
        let size = format!("{}x{}", rotated.width(), rotated.height());
        match req.param("out").filter(|o| !o.is_empty()) {
            Some(out) => {
                wisp_sdk::fs::write(out, &png)?;
                Ok(Response::text(format!(
                    "image-processing: {iw}x{ih} -> inverted, resized {width}x{height}, rotated {angle} deg -> {size}, wrote {} bytes of PNG to {out}\n",
                    png.len()
                )))
            }
            None => Ok(Response::bytes("image/png", png).header("X-Image-Size", size)),
        }
    });
}
