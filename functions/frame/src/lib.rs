//! Frames for the `frame-*` pipeline functions (the example workflow of
//! docs/workflows.md): binary PNM, 8 bits per sample, the simplest raw
//! format every image tool reads.
//!
//! * `P6`: RGB, `P6\n<w> <h>\n255\n` then `w*h*3` bytes;
//! * `P5`: gray, `P5\n<w> <h>\n255\n` then `w*h` bytes.
//!
//! Several frames may follow each other in one body (a workflow's fan-in
//! concatenates its inputs); [`frames`] reads them all.

use wisp_sdk::{Error, Request};

/// Content type of a P6 frame.
pub const PPM: &str = "image/x-portable-pixmap";
/// Content type of a P5 frame.
pub const PGM: &str = "image/x-portable-graymap";

/// A frame borrowed from a body.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// 3 (P6) or 1 (P5).
    pub channels: usize,
    /// `width * height * channels` samples, row by row.
    pub pixels: &'a [u8],
}

impl Frame<'_> {
    /// `P6` or `P5`.
    pub fn magic(&self) -> &'static str {
        if self.channels == 3 { "P6" } else { "P5" }
    }
}

/// The request's data: `?file=` (a path in a granted directory) or the body.
pub fn input(req: &Request) -> Result<std::borrow::Cow<'_, [u8]>, Error> {
    match req.param("file").filter(|f| !f.is_empty()) {
        Some(path) => Ok(std::borrow::Cow::Owned(wisp_sdk::fs::read(path)?)),
        None => Ok(std::borrow::Cow::Borrowed(&req.body)),
    }
}

/// Skip PNM whitespace and `#` comments.
fn skip_blank(b: &[u8], mut i: usize) -> usize {
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else {
            return i;
        }
    }
}

fn number(b: &[u8], i: usize, what: &str) -> Result<(usize, usize), Error> {
    let i = skip_blank(b, i);
    let end = b[i..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(b.len(), |p| i + p);
    if end == i || end - i > 7 {
        return Err(Error::bad_request(format!("PNM header: bad {what}")));
    }
    let n: usize = std::str::from_utf8(&b[i..end]).unwrap().parse().unwrap();
    Ok((n, end))
}

/// Parse one frame at the start of `b`; returns it and the bytes after it.
pub fn parse(b: &[u8]) -> Result<(Frame<'_>, &[u8]), Error> {
    let channels = match b.get(..2) {
        Some(b"P6") => 3,
        Some(b"P5") => 1,
        _ => return Err(Error::bad_request("not a binary PNM frame (P6 or P5)")),
    };
    let (width, i) = number(b, 2, "width")?;
    let (height, i) = number(b, i, "height")?;
    let (max, i) = number(b, i, "maxval")?;
    if max != 255 {
        return Err(Error::bad_request(format!(
            "PNM maxval {max}: only 8-bit (255) frames"
        )));
    }
    if width == 0 || height == 0 {
        return Err(Error::bad_request("PNM frame of zero size"));
    }
    // Exactly one whitespace byte ends the header.
    if !b.get(i).is_some_and(|c| c.is_ascii_whitespace()) {
        return Err(Error::bad_request("PNM header: no whitespace after maxval"));
    }
    let start = i + 1;
    let len = width * height * channels;
    let pixels = b.get(start..start + len).ok_or_else(|| {
        Error::bad_request(format!("PNM frame {width}x{height}: pixel data cut short"))
    })?;
    Ok((
        Frame {
            width,
            height,
            channels,
            pixels,
        },
        &b[start + len..],
    ))
}

/// Every frame of `b`, and how many bytes follow the last one (non-PNM data).
pub fn frames(mut b: &[u8]) -> (Vec<Frame<'_>>, usize) {
    let mut out = Vec::new();
    while let Ok((f, rest)) = parse(b) {
        out.push(f);
        b = rest;
    }
    (out, b.len())
}

/// A new frame's bytes: header, then `pixels`, filled by `fill`.
pub fn write(
    width: usize,
    height: usize,
    channels: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let head = format!(
        "{}\n{width} {height}\n255\n",
        if channels == 3 { "P6" } else { "P5" }
    );
    let mut out = vec![0u8; head.len() + width * height * channels];
    out[..head.len()].copy_from_slice(head.as_bytes());
    fill(&mut out[head.len()..]);
    out
}

/// The content type of a frame with `channels`.
pub fn content_type(channels: usize) -> &'static str {
    if channels == 3 { PPM } else { PGM }
}

/// BT.601 luma in integers: `(77 R + 150 G + 29 B) >> 8`.
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((77 * r as u32 + 150 * g as u32 + 29 * b as u32) >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_write_round_trip() {
        let f = write(2, 1, 3, |p| p.copy_from_slice(&[1, 2, 3, 4, 5, 6]));
        assert_eq!(&f[..11], b"P6\n2 1\n255\n");
        let mut two = f.clone();
        two.extend_from_slice(b"P5 # comment\n1 1 255 x");
        two.extend_from_slice(b"tail");
        let (fs, rest) = frames(&two);
        assert_eq!(fs.len(), 2);
        assert_eq!(fs[0].pixels, [1, 2, 3, 4, 5, 6]);
        assert_eq!((fs[1].channels, fs[1].pixels), (1, &b"x"[..]));
        assert_eq!(rest, 4);
        assert!(parse(b"P6\n2 2\n255\nabc").is_err());
        assert!(parse(b"P3\n1 1\n255\n").is_err());
        assert!(parse(b"P5\n1 1\n65535\nab").is_err());
        assert_eq!(luma(255, 255, 255), 255);
    }
}
