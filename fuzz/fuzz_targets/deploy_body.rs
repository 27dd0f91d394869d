//! `deploy::parse_body`: the body of a deploy (`PUT /v1/functions/{name}`).
//!
//! Input: the first byte picks a content type (`byte % 8`, see `CTYPES`),
//! the rest of the first line is the multipart boundary, and what follows
//! the first `\n` is the body. In seeds the first byte is a digit.
//!
//! Invariants: never panics (nor hangs); an `Ok` always carries a non-empty
//! module; a non-multipart `Ok` is the body itself with the default config.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wisp_core::FunctionConfig;
use wisp_core::deploy::parse_body;

/// Content-type prefixes; the multipart ones get the fuzzed boundary.
const CTYPES: [&str; 8] = [
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=\"",
    "multipart/form-data;boundary=",
    "multipart/form-data",
    "application/wasm",
    "application/octet-stream",
    "",
    "text/plain; boundary=",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (boundary, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let boundary = String::from_utf8_lossy(boundary);
    let boundary = boundary.strip_suffix('\r').unwrap_or(&boundary);
    let prefix = CTYPES[pick as usize % CTYPES.len()];
    let ctype = match prefix {
        "multipart/form-data; boundary=\"" => format!("{prefix}{boundary}\""),
        p if p.ends_with('=') => format!("{p}{boundary}"),
        p => p.to_string(),
    };
    let body = Bytes::copy_from_slice(body);
    if let Ok(d) = parse_body(&ctype, body.clone()) {
        let wasm = d.wasm().expect("no content type here is the OCI (JSON) form");
        assert!(!wasm.is_empty(), "Ok with an empty module ({ctype:?})");
        if !ctype.starts_with("multipart/") {
            assert_eq!(wasm, &body);
            assert_eq!(d.config, FunctionConfig::default());
        }
    }
});
