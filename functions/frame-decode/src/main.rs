//! Frame pipeline, step 1: PNG in (body or `?file=`), raw PNM frame out:
//! P6 for colour images (alpha dropped), P5 for gray ones. Palette and
//! 16-bit images are normalised to 8 bits per sample.
use png::{ColorType, Transformations};
use wisp_sdk::{Error, Request, Response};

fn main() {
    wisp_sdk::serve(|req: Request| {
        let data = frame::input(&req)?;
        let mut dec = png::Decoder::new(std::io::Cursor::new(&data[..]));
        dec.set_transformations(Transformations::normalize_to_color8());
        let bad = |e: png::DecodingError| Error::bad_request(format!("not a PNG: {e}"));
        let mut reader = dec.read_info().map_err(bad)?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| Error::bad_request("PNG too large"))?;
        let mut buf = vec![0u8; size];
        let info = reader.next_frame(&mut buf).map_err(bad)?;
        let (w, h) = (info.width as usize, info.height as usize);
        let src_channels = match info.color_type {
            ColorType::Rgb => 3,
            ColorType::Rgba => 4,
            ColorType::Grayscale => 1,
            ColorType::GrayscaleAlpha => 2,
            ColorType::Indexed => return Err(Error::bad_request("palette PNG was not expanded")),
        };
        let channels = if src_channels >= 3 { 3 } else { 1 };
        let line = info.line_size;
        let out = frame::write(w, h, channels, |px| {
            for y in 0..h {
                let row = &buf[y * line..y * line + w * src_channels];
                let dst = &mut px[y * w * channels..(y + 1) * w * channels];
                if src_channels == channels {
                    dst.copy_from_slice(row);
                } else {
                    for (d, s) in dst
                        .chunks_exact_mut(channels)
                        .zip(row.chunks_exact(src_channels))
                    {
                        d.copy_from_slice(&s[..channels]);
                    }
                }
            }
        });
        Ok(Response::bytes(frame::content_type(channels), out))
    });
}
